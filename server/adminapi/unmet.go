package adminapi

import (
	"encoding/csv"
	"net/http"
	"strconv"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/server/internal/web"
)

// unmetView is the body of GET /admin/v1/unmet-need.
type unmetView struct {
	// SuppressedBelow: a count from 1 to SuppressedBelow-1 is shown as suppressed (count null), never as is.
	SuppressedBelow int        `json:"suppressed_below"`
	Rows            []unmetRow `json:"rows"`
}

type unmetRow struct {
	Month      string `json:"month"`
	District   string `json:"district"`
	Reason     string `json:"reason"`
	Need       string `json:"need,omitempty"`
	Count      *int   `json:"count"`
	Suppressed bool   `json:"suppressed,omitempty"`
}

// unmetNeed is GET /admin/v1/unmet-need: the unmet-need counts as JSON, or as CSV with ?format=csv (the
// count column says "<5" for a suppressed cell).
func (a *API) unmetNeed(w http.ResponseWriter, r *http.Request) {
	format := "json"
	for k, v := range r.URL.Query() {
		if k != "format" || len(v) != 1 || (v[0] != "json" && v[0] != "csv") {
			a.fail(w, r, fault.New(fault.Invalid, "invalid_parameter", k, "the only parameter is format=json or format=csv"))
			return
		}
		format = v[0]
	}
	rows, err := a.op.UnmetNeed(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="unmet-need.csv"`)
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"month", "district", "reason", "need", "count"})
		for _, row := range rows {
			n := strconv.Itoa(row.Count)
			if row.Suppressed {
				n = "<" + strconv.Itoa(mapping.SuppressBelow)
			}
			_ = cw.Write([]string{row.Month, row.District, string(row.Reason), string(row.Need), n})
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			a.log.Warn("unmet-need CSV not fully written", "request_id", web.RequestID(r.Context()), "error", err)
		}
		return
	}
	out := unmetView{SuppressedBelow: mapping.SuppressBelow, Rows: []unmetRow{}}
	for _, row := range rows {
		v := unmetRow{Month: row.Month, District: row.District, Reason: string(row.Reason), Need: string(row.Need), Suppressed: row.Suppressed}
		if !row.Suppressed {
			n := row.Count
			v.Count = &n
		}
		out.Rows = append(out.Rows, v)
	}
	web.WriteJSON(w, a.log, http.StatusOK, out)
}
