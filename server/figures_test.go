package server_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fhir/fhirtest"
)

// referN posts the walking-group fixture under identifier WALK-<n> (a new referral each) and returns its ids.
func referN(h *harness, n int) ids {
	h.t.Helper()
	body := bytes.Replace(readFile(h.t, filepath.Join(referrals, "walking-group-performer.json")),
		[]byte(`"value": "FVMC-2025-0142"`), []byte(fmt.Sprintf(`"value": "WALK-%d"`, n)), 1)
	r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, body)
	if r.status != http.StatusCreated {
		h.t.Fatalf("refer %d: %d %s", n, r.status, r.body)
	}
	id := r.json(h.t)["id"].(string)
	ref, err := h.store.GetReferral(h.t.Context(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return ids{referral: ref.Record.ID, task: ref.Record.TaskID, sr: id}
}

// TestMonthlyFigures: the group's, the practice's and the area's figures over real HTTP (JSON and CSV),
// counted from what happened to real referrals, with small numbers suppressed; the scope of each client
// holds.
func TestMonthlyFigures(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	// November 2026 (the harness's clock starts on 21 November, 09:00 UTC): six referrals to frome-walks.
	var refs []ids
	for n := range 6 {
		refs = append(refs, referN(h, n))
	}
	h.advance(24 * time.Hour) // first contact one day later
	for i, ref := range refs {
		body := `{"status":"accepted"}`
		if i == 5 {
			body = `{"status":"rejected","reason":"Group full"}`
		}
		if r := setStatus(h, tokWalks, ref.referral, body); r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", body, r.status, r.body)
		}
	}
	for _, ref := range refs[:5] {
		if r := postMeasure(h, tokWalks, ref.referral, `{"instrument":"swemwbs","timing":"baseline","date":"2026-11-22","items":[3,3,3,3,3,3,3]}`); r.status != http.StatusCreated {
			t.Fatalf("baseline: %d %s", r.status, r.body)
		}
	}
	h.advance(9 * 24 * time.Hour)
	for i, ref := range refs[:5] {
		items := "[4,4,4,4,4,4,4]" // raw 21 → 28: metric 19.25 → 25.03
		if i == 4 {
			items = "[3,3,3,3,3,3,4]" // raw 21 → 22: 19.25 → 19.98
		}
		if r := postMeasure(h, tokWalks, ref.referral, `{"instrument":"swemwbs","timing":"follow-up","date":"2026-12-01","items":`+items+`}`); r.status != http.StatusCreated {
			t.Fatalf("follow-up: %d %s", r.status, r.body)
		}
	}
	for _, ref := range refs[:2] { // two completed, ten days after they were received
		for _, st := range []string{`{"status":"in-progress"}`, `{"status":"completed","outcome":"Walks weekly"}`} {
			if r := setStatus(h, tokWalks, ref.referral, st); r.status != http.StatusOK {
				t.Fatalf("%s: %d %s", st, r.status, r.body)
			}
		}
	}
	// Mean SWEMWBS change: (4 × 5.78 + 0.73) / 5 = 23.85 / 5 = 4.77 → 4.8.
	want := `{"month":"2026-11","received":6,"accepted":5,"declined":"<5","declined_by_reason":[{"reason":"other reasons","count":"<5"}],"completed":"<5",` +
		`"median_days_to_first_contact":{"n":6,"value":1},"median_days_to_completion":{"n":"<5","value":null},"with_baseline":5,"with_follow_up":5,` +
		`"percent_with_baseline":100,"percent_with_follow_up":100,"swemwbs_metric_change":{"n":5,"value":4.8},`
	month := func(token, query string) string {
		r := h.do(http.MethodGet, query, token, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", query, r.status, r.body)
		}
		var body struct {
			Months []json.RawMessage `json:"months"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil || len(body.Months) != 2 {
			t.Fatalf("%s: %s", query, r.body)
		}
		return strings.ReplaceAll(string(body.Months[0]), `\u003c`, "<")
	}
	for _, c := range []struct{ token, query string }{
		{tokWalks, "/community/v1/figures?from=2026-11&to=2026-12"},
		{tokAdmin, "/admin/v1/figures?from=2026-11&to=2026-12&practice=a81001"},
		{tokAdmin, "/admin/v1/figures?from=2026-11&to=2026-12&service=frome-walks"},
		{tokAdmin, "/admin/v1/figures?from=2026-11&to=2026-12"},
	} {
		if got := month(c.token, c.query); !strings.HasPrefix(got, want) {
			t.Errorf("%s:\n got %s\nwant %s…", c.query, got, want)
		}
	}
	// Another group's and another practice's figures count none of them.
	if got := month(tokMuseum, "/community/v1/figures?from=2026-11&to=2026-12"); !strings.Contains(got, `"received":0,`) {
		t.Errorf("museum's figures: %s", got)
	}
	if got := month(tokAdmin, "/admin/v1/figures?from=2026-11&to=2026-12&practice=B82002"); !strings.Contains(got, `"received":0,`) {
		t.Errorf("B82002's figures: %s", got)
	}
	// CSV.
	r := h.do(http.MethodGet, "/admin/v1/figures?from=2026-11&to=2026-11&practice=A81001&format=csv", tokAdmin, nil)
	rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	if err != nil || r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(r.header.Get("Content-Disposition"), "figures-practice-A81001-2026-11-2026-11.csv") {
		t.Fatalf("CSV: %d %v %q %s", r.status, err, r.header, r.body)
	}
	if len(rows) != 2 || rows[1][0] != "2026-11" || rows[1][1] != "6" || rows[1][2] != "5" || rows[1][3] != "<5" || rows[1][4] != "other reasons: <5" ||
		rows[1][5] != "<5" || rows[1][6] != "1.0" || rows[1][7] != "" || rows[1][13] != "4.8" {
		t.Errorf("CSV rows %q", rows)
	}
	// Bad queries are 400 naming the parameter; other roles are refused.
	for _, q := range []string{"?from=2026-11", "?from=2026-13&to=2026-12", "?from=2026-11&to=2026-10", "?from=2026-11&to=2026-12&format=xml",
		"?from=2026-11&to=2026-12&practice=A81001&service=x", "?from=2026-11&to=2026-12&colour=red"} {
		if r := h.do(http.MethodGet, "/admin/v1/figures"+q, tokAdmin, nil); r.status != http.StatusBadRequest {
			t.Errorf("admin figures%s: %d %s", q, r.status, r.body)
		} else {
			apiErr(t, r)
		}
	}
	if r := h.do(http.MethodGet, "/community/v1/figures?from=2026-11&to=2026-12&practice=A81001", tokWalks, nil); r.status != http.StatusBadRequest {
		t.Errorf("community figures by practice: %d", r.status)
	}
	if r := h.do(http.MethodGet, "/admin/v1/figures?from=2026-11&to=2026-12", tokGP, nil); r.status != http.StatusForbidden {
		t.Errorf("a GP client reads the area's figures: %d", r.status)
	}
	checkMeasureReports(t, h)
}

// checkMeasureReports: the same figures as FHIR MeasureReports (valid R4: the harness validates them), one per
// month, the suppressed ones left out and marked masked; bad periods are 400 naming period; only admins.
func checkMeasureReports(t *testing.T, h *harness) {
	t.Helper()
	r := h.do(http.MethodGet, "/fhir/MeasureReport?period=ge2026-11&period=le2026-12&practice=A81001", tokAdmin, nil)
	var b struct {
		Total int `json:"total"`
		Entry []struct {
			Resource struct {
				ID     string `json:"id"`
				Period struct{ Start, End string }
				Group  []struct {
					Extension []struct{ ValueCode string } `json:"extension"`
					Code      struct {
						Coding []struct{ Code string } `json:"coding"`
					} `json:"code"`
					Population []struct {
						Count     *int `json:"count"`
						Extension []struct {
							ValueCode string `json:"valueCode"`
						} `json:"extension"`
					} `json:"population"`
					MeasureScore *struct{ Value float64 } `json:"measureScore"`
				} `json:"group"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || r.status != http.StatusOK || b.Total != 2 {
		t.Fatalf("MeasureReports: %d %.500s", r.status, r.body)
	}
	nov := b.Entry[0].Resource
	got := map[string]string{}
	for _, g := range nov.Group {
		v := "masked"
		switch p := g.Population[0]; {
		case g.MeasureScore != nil:
			v = fmt.Sprintf("%v (n %d)", g.MeasureScore.Value, *p.Count)
		case p.Count != nil && len(g.Extension) == 0:
			v = fmt.Sprint(*p.Count)
		case p.Count == nil && (len(p.Extension) == 0 || p.Extension[0].ValueCode != "masked"):
			v = "missing without a reason"
		}
		got[g.Code.Coding[0].Code] = v
	}
	want := map[string]string{"received": "6", "accepted": "5", "declined": "masked", "completed": "masked", "with-baseline": "5",
		"with-follow-up": "5", "median-days-to-first-contact": "1 (n 6)", "median-days-to-completion": "masked",
		"swemwbs-metric-change": "4.8 (n 5)"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("November's %s: %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if nov.ID != "practice-A81001-2026-11" || nov.Period.Start != "2026-11-01" || nov.Period.End != "2026-11-30" {
		t.Errorf("November's report %s %+v", nov.ID, nov.Period)
	}
	for q, field := range map[string]string{"?period=soon": "period", "?period=2026-13": "period", "?period=ge2026-11&period=le2026-10": "period",
		"?practice=A81001&service=x": "practice", "?colour=red": "colour"} {
		if r := h.do(http.MethodGet, "/fhir/MeasureReport"+q, tokAdmin, nil); r.status != http.StatusBadRequest || !hasExpression(issues(t, r), field) {
			t.Errorf("MeasureReport%s: want 400 naming %s, got %d %s", q, field, r.status, r.body)
		}
	}
	for _, tok := range []string{tokGP, tokWalks} {
		if r := h.do(http.MethodGet, "/fhir/MeasureReport", tok, nil); r.status != http.StatusForbidden {
			t.Errorf("a non-admin client reads MeasureReports: %d", r.status)
		}
	}
}
