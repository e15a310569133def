package web

import (
	"encoding/csv"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
)

// FiguresQuery is what a request for monthly figures asks (issue 14): from and to (YYYY-MM), format (json
// or csv) and the keys a route allows besides them (practice, service).
type FiguresQuery struct {
	From, To, Format string
	Extra            map[string]string
}

// ParseFiguresQuery reads ?from=&to=[&format=json|csv] and the allowed extra keys (each at most once);
// anything else is a 400 naming it.
func ParseFiguresQuery(vals url.Values, extra ...string) (FiguresQuery, error) {
	q := FiguresQuery{Format: "json", Extra: map[string]string{}}
	allowed := append([]string{"from", "to", "format"}, extra...)
	for k, vs := range vals {
		if !slices.Contains(allowed, k) {
			return q, fault.New(fault.Invalid, "unknown_parameter", k, fmt.Sprintf("query parameter %q is not supported; use %s", k, strings.Join(allowed, ", ")))
		}
		if len(vs) != 1 {
			return q, fault.New(fault.Invalid, "invalid_parameter", k, k+" must be given once")
		}
		switch k {
		case "from":
			q.From = vs[0]
		case "to":
			q.To = vs[0]
		case "format":
			if vs[0] != "json" && vs[0] != "csv" {
				return q, fault.New(fault.Invalid, "invalid_parameter", k, "format is json or csv")
			}
			q.Format = vs[0]
		default:
			q.Extra[k] = vs[0]
		}
	}
	for _, k := range []string{"from", "to"} {
		if vals.Get(k) == "" {
			return q, fault.New(fault.Invalid, "required", k, k+" is required: a month written YYYY-MM")
		}
	}
	return q, nil
}

// WriteFigures answers with the figures as JSON ({"scope": …, "months": […]}) or, for format csv, as a CSV
// download named after the scope.
func WriteFigures(w http.ResponseWriter, log *slog.Logger, q FiguresQuery, scope string, figs []mapping.MonthFigures) {
	if q.Format != "csv" {
		if figs == nil {
			figs = []mapping.MonthFigures{}
		}
		WriteJSON(w, log, http.StatusOK, map[string]any{"scope": scope, "from": q.From, "to": q.To,
			"suppressed_below": mapping.SuppressBelow, "months": figs})
		return
	}
	var b strings.Builder
	cw := csv.NewWriter(&b)
	if err := cw.WriteAll(mapping.FiguresCSV(figs)); err != nil {
		log.Error("encode figures", "err", err)
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, "figures-"+scope+"-"+q.From+"-"+q.To)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
}
