package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fhir/fhirtest"
)

// searchset is the part of a searchset Bundle the tests read.
type searchset struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        *int   `json:"total"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		FullURL  string `json:"fullUrl"`
		Resource struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		} `json:"resource"`
		Search struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

func (s searchset) link(rel string) string {
	for _, l := range s.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

// ids lists the entries of a mode as Type/id, in order.
func (s searchset) ids(mode string) []string {
	out := []string{}
	for _, e := range s.Entry {
		if e.Search.Mode == mode {
			out = append(out, e.Resource.ResourceType+"/"+e.Resource.ID)
		}
	}
	return out
}

// find runs a search (GET) as token and decodes its searchset; it fails the test unless the answer is 200.
func (h *harness) find(t *testing.T, token, path string) searchset {
	t.Helper()
	r := h.do(http.MethodGet, path, token, nil)
	return decodeSearchset(t, "GET "+path, r)
}

func decodeSearchset(t *testing.T, what string, r response) searchset {
	t.Helper()
	var s searchset
	if r.status != http.StatusOK || json.Unmarshal(r.body, &s) != nil || s.Type != "searchset" {
		t.Fatalf("%s: %d %s", what, r.status, short(r.body))
	}
	return s
}

// searchFixture is three referrals of practice A81001 (walking group, two of them on 21 November 2026, one on
// 22 November, the harness's clock moved between), the first two revoked by the GP.
type searchFixture struct {
	h    *harness
	refs []ids // in creation order
}

// v validates every FHIR body returned (nil: none; the tests that search many ServiceRequests skip the costly
// schema validation that TestPostSearchIncludeAndLimits does on the same shapes).
func newSearchFixture(t *testing.T, v *fhirtest.Validator) searchFixture {
	t.Helper()
	h := newHarness(t, v)
	var refs []ids
	body := string(readFile(t, referrals+"/walking-group-performer.json"))
	for i := range 3 {
		if i == 2 {
			h.clock.Add(24 * time.Hour.Microseconds()) // the third on 22 November
		}
		b := strings.Replace(body, "FVMC-2025-0142", "FVMC-2025-014"+string(rune('a'+i)), 1)
		r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, []byte(b))
		if r.status != http.StatusCreated {
			t.Fatalf("create %d: %d %s", i, r.status, short(r.body))
		}
		refs = append(refs, refer2ids(t, h, srFromResponse(t, r)["id"].(string)))
	}
	for _, ref := range refs[:2] {
		r := h.do(http.MethodPatch, "/fhir/ServiceRequest/"+ref.sr, tokGP, []byte(`[{"op": "replace", "path": "/status", "value": "revoked"}]`),
			"Content-Type: application/json-patch+json")
		if r.status != http.StatusOK {
			t.Fatalf("revoke: %d %s", r.status, short(r.body))
		}
	}
	return searchFixture{h: h, refs: refs}
}

// TestSearchIDsStatusAndTotal: _id lists (OR), repeated parameters (AND), the ServiceRequest status filtered
// before paging (full pages, no next link to an empty page), token system|code, Bundle.total on every page,
// _summary=count, _count=0 and _total=none.
func TestSearchIDsStatusAndTotal(t *testing.T) {
	t.Parallel()
	f := newSearchFixture(t, nil)
	h, a, b, c := f.h, f.refs[0], f.refs[1], f.refs[2]
	for _, tc := range []struct {
		path  string
		total int
		match []string
	}{
		{"/fhir/Task?_id=" + a.task + "," + c.task, 2, []string{"Task/" + c.task, "Task/" + a.task}}, // a changed last (revoked)
		{"/fhir/Task?_id=" + c.task + ",nope", 1, []string{"Task/" + c.task}},
		{"/fhir/Task?_id=" + a.task + "&_id=" + c.task, 0, []string{}},
		{"/fhir/ServiceRequest?_id=" + b.sr + "," + c.sr, 2, []string{"ServiceRequest/" + c.sr, "ServiceRequest/" + b.sr}},
		{"/fhir/ServiceRequest?status=revoked", 2, []string{"ServiceRequest/" + a.sr, "ServiceRequest/" + b.sr}},
		{"/fhir/ServiceRequest?status=active", 1, []string{"ServiceRequest/" + c.sr}},
		{"/fhir/ServiceRequest?status=completed,active", 1, []string{"ServiceRequest/" + c.sr}},
		{"/fhir/ServiceRequest?status=http://hl7.org/fhir/request-status|revoked", 2, []string{"ServiceRequest/" + a.sr, "ServiceRequest/" + b.sr}},
		{"/fhir/ServiceRequest?status=http://example.org/other|revoked", 0, []string{}},
		{"/fhir/ServiceRequest?status=|revoked", 0, []string{}},
		{"/fhir/Task?status=http://hl7.org/fhir/task-status|cancelled", 2, []string{"Task/" + a.task, "Task/" + b.task}},
		{"/fhir/Task?status=cancelled,requested&_id=" + c.task, 1, []string{"Task/" + c.task}},
		{"/fhir/Task?focus=ServiceRequest/" + a.sr + ",ServiceRequest/" + c.sr, 2, []string{"Task/" + c.task, "Task/" + a.task}},
		{"/fhir/Task?focus=" + h.url + "/fhir/ServiceRequest/" + b.sr, 1, []string{"Task/" + b.task}},
	} {
		s := h.find(t, tokGP, strings.ReplaceAll(tc.path, "|", "%7C"))
		if s.Total == nil || *s.Total != tc.total || !slices.Equal(s.ids("match"), tc.match) {
			t.Errorf("GET %s: total %v, matches %v; want %d, %v", tc.path, deref(s.Total), s.ids("match"), tc.total, tc.match)
		}
	}
	// Pages of one: the two revoked ServiceRequests, then no next link (the filter is in the query).
	s := h.find(t, tokGP, "/fhir/ServiceRequest?status=revoked&_count=1")
	var pages [][]string
	for {
		pages = append(pages, s.ids("match"))
		if s.Total == nil || *s.Total != 2 {
			t.Errorf("page %d: total %v, want 2 on every page", len(pages), s.Total)
		}
		next := s.link("next")
		if next == "" {
			break
		}
		if len(pages) > 3 {
			t.Fatal("paging does not end")
		}
		// self keeps the page cursor: following next, the new page's self is that next link.
		s = h.find(t, tokGP, h.path(t, next))
		if self := s.link("self"); !sameQuery(t, self, next) {
			t.Errorf("self %s does not repeat the page %s", self, next)
		}
	}
	if fmt.Sprint(pages) != fmt.Sprint([][]string{{"ServiceRequest/" + a.sr}, {"ServiceRequest/" + b.sr}}) {
		t.Errorf("pages %v", pages)
	}
	// The total alone.
	for _, q := range []string{"/fhir/Task?_summary=count", "/fhir/Task?_count=0", "/fhir/Task?_summary=count&_total=none"} {
		s := h.find(t, tokGP, q)
		if s.Total == nil || *s.Total != 3 || len(s.Entry) != 0 || s.link("next") != "" {
			t.Errorf("GET %s: total %v, %d entries; want 3 and none", q, s.Total, len(s.Entry))
		}
	}
	if s := h.find(t, tokGP, "/fhir/Task?_total=none"); s.Total != nil || len(s.Entry) != 3 {
		t.Errorf("_total=none: total %v, %d entries", s.Total, len(s.Entry))
	}
	if s := h.find(t, tokGP2, "/fhir/Task?_summary=count"); s.Total == nil || *s.Total != 0 {
		t.Errorf("another practice's count: %v", s.Total)
	}
}

// deref shows a total (-1 when absent).
func deref(n *int) int {
	if n == nil {
		return -1
	}
	return *n
}

// sameQuery reports whether two URLs name the same path and parameters (in any order).
func sameQuery(t *testing.T, a, b string) bool {
	t.Helper()
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil {
		return false
	}
	qa, qb := ua.Query(), ub.Query()
	if ua.Path != ub.Path || len(qa) != len(qb) {
		return false
	}
	for k, v := range qa {
		if !slices.Equal(v, qb[k]) {
			return false
		}
	}
	return true
}

// TestSearchLastUpdated: eq (and no prefix) is the value's whole precision — year, month, day, minute, second —
// the zone-less forms are UTC, gt/le with a day are the periods after and up to its end, gt with an instant is
// exact (polling), repeated values AND; unsupported prefixes and bad values are 400 naming _lastUpdated.
func TestSearchLastUpdated(t *testing.T) {
	t.Parallel()
	f := newSearchFixture(t, fhirtest.NewValidator(t))
	h, a, b, c := f.h, f.refs[0], f.refs[1], f.refs[2]
	all := h.find(t, tokGP, "/fhir/Task")
	if len(all.ids("match")) != 3 {
		t.Fatalf("fixture: %v", all.ids("match"))
	}
	// The revocations happened on the 22nd (after the clock moved), so the Tasks of a and b changed then too:
	// read each Task's lastUpdated to build the expectations from what the server says.
	updated := map[string]time.Time{}
	for _, id := range []string{a.task, b.task, c.task} {
		r := h.do(http.MethodGet, "/fhir/Task/"+id, tokGP, nil)
		var task struct {
			Meta struct {
				LastUpdated time.Time `json:"lastUpdated"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(r.body, &task); err != nil {
			t.Fatal(err)
		}
		updated["Task/"+id] = task.Meta.LastUpdated
	}
	in := func(from, to time.Time) []string { // Tasks with from <= lastUpdated < to, in search order
		out := []string{}
		for _, id := range all.ids("match") {
			if u := updated[id]; !u.Before(from) && u.Before(to) {
				out = append(out, id)
			}
		}
		return out
	}
	d21 := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	d22, d23 := d21.AddDate(0, 0, 1), d21.AddDate(0, 0, 2)
	first := updated["Task/"+c.task] // c was created on the 22nd and never changed
	minute := first.Truncate(time.Minute)
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"2026-11-22", in(d22, d23)},
		{"eq2026-11-22", in(d22, d23)},
		{"2026-11-21", in(d21, d22)},
		{"2026-11", in(d21, d23)},
		{"2026", in(d21, d23)},
		{"2025", []string{}},
		{minute.Format("2006-01-02T15:04Z"), in(minute, minute.Add(time.Minute))},
		{minute.Format("2006-01-02T15:04"), in(minute, minute.Add(time.Minute))}, // zone-less: UTC
		{minute.In(time.FixedZone("", 3600)).Format("2006-01-02T15:04-07:00"), in(minute, minute.Add(time.Minute))},
		{first.Format("2006-01-02T15:04:05Z"), in(first.Truncate(time.Second), first.Truncate(time.Second).Add(time.Second))},
		{first.Format(time.RFC3339Nano), []string{"Task/" + c.task}},
		{"gt2026-11-21", in(d22, d23)},
		{"ge2026-11-22", in(d22, d23)},
		{"le2026-11-21", in(d21, d22)},
		{"lt2026-11-22", in(d21, d22)},
		{"sa2026-11-21", in(d22, d23)},
		{"eb2026-11-22", in(d21, d22)},
		{"gt" + first.Format(time.RFC3339Nano), in(first.Add(time.Microsecond), d23)},
		{"ge" + first.Format(time.RFC3339Nano), in(first, d23)},
	} {
		s := h.find(t, tokGP, "/fhir/Task?_lastUpdated="+url.QueryEscape(tc.q))
		if got := s.ids("match"); !slices.Equal(got, tc.want) {
			t.Errorf("_lastUpdated=%s: %v, want %v (updated %v)", tc.q, got, tc.want, updated)
		}
	}
	// Repeated values AND: a range, and two lower bounds (the later holds).
	s := h.find(t, tokGP, "/fhir/Task?_lastUpdated=ge2026-11-21&_lastUpdated=lt2026-11-22")
	if got := s.ids("match"); !slices.Equal(got, in(d21, d22)) {
		t.Errorf("range: %v", got)
	}
	s = h.find(t, tokGP, "/fhir/Task?_lastUpdated=ge2026-11-01&_lastUpdated=ge2026-11-22")
	if got := s.ids("match"); !slices.Equal(got, in(d22, d23)) {
		t.Errorf("two lower bounds: %v", got)
	}
	for _, bad := range []string{"ne2026-11-21", "ap2026-11-21", "yesterday", "2026-13-01", "2026-11-21T25:00", "2026-11-21T10"} {
		r := h.do(http.MethodGet, "/fhir/Task?_lastUpdated="+url.QueryEscape(bad), tokGP, nil)
		if r.status != http.StatusBadRequest || !hasExpression(issues(t, r), "_lastUpdated") {
			t.Errorf("_lastUpdated=%s: %d %s; want 400 naming _lastUpdated", bad, r.status, short(r.body))
		}
	}
}

// TestPostSearchIncludeAndLimits: POST [type]/_search with a form body (and URL parameters) finds what GET
// finds; _include=Task:focus and _revinclude=Task:focus add the other resource of each referral; other media
// types are 415, other includes 400, values beyond the limits 400 naming the parameter.
func TestPostSearchIncludeAndLimits(t *testing.T) {
	t.Parallel()
	f := newSearchFixture(t, fhirtest.NewValidator(t))
	h, a, c := f.h, f.refs[0], f.refs[2]
	form := url.Values{"_id": {a.task + "," + c.task}, "_include": {"Task:focus"}}
	r := h.do(http.MethodPost, "/fhir/Task/_search?_count=1", tokGP, []byte(form.Encode()), "Content-Type: application/x-www-form-urlencoded")
	s := decodeSearchset(t, "POST Task/_search", r)
	if s.Total == nil || *s.Total != 2 || !slices.Equal(s.ids("match"), []string{"Task/" + c.task}) ||
		!slices.Equal(s.ids("include"), []string{"ServiceRequest/" + c.sr}) || s.link("next") == "" {
		t.Errorf("POST _search with _include: total %v, matches %v, included %v, next %q", s.Total, s.ids("match"), s.ids("include"), s.link("next"))
	}
	// The self link repeats the search as GET (the form's parameters in it), and next continues it.
	self, _ := url.Parse(s.link("self"))
	if q := self.Query(); q.Get("_id") != a.task+","+c.task || q.Get("_include") != "Task:focus" || q.Get("_count") != "1" {
		t.Errorf("self %s", s.link("self"))
	}
	next := h.find(t, tokGP, h.path(t, s.link("next")))
	if !slices.Equal(next.ids("match"), []string{"Task/" + a.task}) || !slices.Equal(next.ids("include"), []string{"ServiceRequest/" + a.sr}) {
		t.Errorf("next page: %v %v", next.ids("match"), next.ids("include"))
	}
	rev := h.find(t, tokGP, "/fhir/ServiceRequest?status=active&_revinclude=Task:focus")
	if !slices.Equal(rev.ids("match"), []string{"ServiceRequest/" + c.sr}) || !slices.Equal(rev.ids("include"), []string{"Task/" + c.task}) {
		t.Errorf("_revinclude: %v %v", rev.ids("match"), rev.ids("include"))
	}
	got := decodeSearchset(t, "POST ServiceRequest/_search", h.do(http.MethodPost, "/fhir/ServiceRequest/_search", tokGP,
		[]byte("status=revoked"), "Content-Type: application/x-www-form-urlencoded; charset=utf-8"))
	if got.Total == nil || *got.Total != 2 {
		t.Errorf("POST ServiceRequest/_search status=revoked: total %v", got.Total)
	}
	empty := decodeSearchset(t, "POST with no body", h.do(http.MethodPost, "/fhir/Task/_search", tokGP, nil))
	if empty.Total == nil || *empty.Total != 3 {
		t.Errorf("POST _search without parameters: total %v", empty.Total)
	}
	for _, tc := range []struct {
		method, path, body, ct string
		status                 int
		expr                   string
	}{
		{http.MethodPost, "/fhir/Task/_search", `{"_id": "x"}`, "application/json", 415, ""},
		{http.MethodPost, "/fhir/Task/_search", "unknown=1", "application/x-www-form-urlencoded", 400, "unknown"},
		{http.MethodGet, "/fhir/Task?_include=Task:owner", "", "", 400, "_include"},
		{http.MethodGet, "/fhir/ServiceRequest?_include=Task:focus", "", "", 400, "_include"},
		{http.MethodGet, "/fhir/Task?_revinclude=Task:focus", "", "", 400, "_revinclude"},
		{http.MethodGet, "/fhir/Task?_summary=true", "", "", 400, "_summary"},
		{http.MethodGet, "/fhir/Task?_total=maybe", "", "", 400, "_total"},
		{http.MethodGet, "/fhir/Task?_count=-1", "", "", 400, "_count"},
		{http.MethodGet, "/fhir/ServiceRequest?identifier=" + strings.Repeat("x", 257), "", "", 400, "identifier"},
		{http.MethodGet, "/fhir/Task?patient=Patient/" + strings.Repeat("x", 1100), "", "", 400, "patient"},
		{http.MethodGet, "/fhir/Task?focus=https://other.example/fhir/ServiceRequest/" + a.sr, "", "", 400, "focus"},
		{http.MethodGet, "/fhir/Task?code=" + strings.Repeat("y", 3000), "", "", 400, "code"},
		{http.MethodGet, "/fhir/Task/_search", "", "", 405, ""},
	} {
		var body []byte
		var hdr []string
		if tc.body != "" {
			body = []byte(tc.body)
			hdr = append(hdr, "Content-Type: "+tc.ct)
		}
		r := h.do(tc.method, tc.path, tokGP, body, hdr...)
		if r.status != tc.status || (tc.expr != "" && !hasExpression(issues(t, r), tc.expr)) {
			t.Errorf("%s %s: %d %s; want %d naming %q", tc.method, tc.path[:min(len(tc.path), 80)], r.status, short(r.body), tc.status, tc.expr)
		}
	}
}
