package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/fhir/fhirtest"
)

// short is a response body cut to a readable length for failure messages.
func short(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "…"
	}
	return string(b)
}

// path is an absolute URL of the harness as a path (the harness sends paths).
func (h *harness) path(t *testing.T, u string) string {
	t.Helper()
	p, ok := strings.CutPrefix(u, h.url)
	if !ok {
		t.Fatalf("%q is not on the configured base %s", u, h.url)
	}
	return p
}

// historyBundle is the part of a history Bundle the tests read.
type historyBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        int    `json:"total"`
	Entry        []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  struct {
			Method string `json:"method"`
			URL    string `json:"url"`
		} `json:"request"`
		Response struct {
			Status   string `json:"status"`
			Location string `json:"location"`
			Etag     string `json:"etag"`
		} `json:"response"`
	} `json:"entry"`
}

// TestVersionHistory: every Location socialrx returns resolves (vread), each version reads exactly as it was
// served, _history lists them newest first (POST for the first, PUT after), for Task and ServiceRequest; an
// unknown version is a 404 that says so; another practice cannot read a version.
func TestVersionHistory(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	created := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, readFile(t, referrals+"/walking-group-performer.json"))
	if created.status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.status, short(created.body))
	}
	loc := created.header.Get("Location")
	v1 := h.do(http.MethodGet, h.path(t, loc), tokGP, nil)
	if v1.status != http.StatusOK || !bytes.Equal(v1.body, created.body) || v1.header.Get("ETag") != `W/"1"` ||
		v1.header.Get("Content-Location") != loc {
		t.Fatalf("GET the create's Location %s: %d %s (ETag %s)", loc, v1.status, short(v1.body), v1.header.Get("ETag"))
	}
	sr := srFromResponse(t, created)["id"].(string)
	ids := refer2ids(t, h, sr)

	// The Task's versions as they are served, one per change.
	served := map[int][]byte{}
	read := func() {
		t.Helper()
		r := h.do(http.MethodGet, "/fhir/Task/"+ids.task, tokGP, nil)
		v, _ := strconv.Atoi(strings.Trim(strings.TrimPrefix(r.header.Get("ETag"), "W/"), `"`))
		served[v] = r.body
		if loc := r.header.Get("Location"); loc != h.url+"/fhir/Task/"+ids.task+"/_history/"+strconv.Itoa(v) {
			t.Errorf("Task read Location %s", loc)
		}
	}
	read()
	for _, step := range []string{`{"status": "received"}`, `{"status": "accepted", "note": "We will call her on Monday"}`} {
		if r := setStatus(h, tokWalks, ids.referral, step); r.status != http.StatusOK {
			t.Fatalf("community %s: %d %s", step, r.status, short(r.body))
		}
		read()
	}
	// A FHIR update's Location resolves to the version it made.
	up := h.do(http.MethodPatch, "/fhir/Task/"+ids.task, tokWalks,
		[]byte(`[{"op": "replace", "path": "/status", "value": "in-progress"}]`), "Content-Type: application/json-patch+json", `If-Match: W/"3"`)
	if up.status != http.StatusOK {
		t.Fatalf("patch: %d %s", up.status, short(up.body))
	}
	// (Each client reads the Task as it is shown to it: the service's cut to its sharing profile.)
	if got := h.do(http.MethodGet, h.path(t, up.header.Get("Location")), tokWalks, nil); !bytes.Equal(got.body, up.body) {
		t.Errorf("the patch's Location reads %s, want what the patch returned", short(got.body))
	}
	read()
	for v, body := range served {
		got := h.do(http.MethodGet, "/fhir/Task/"+ids.task+"/_history/"+strconv.Itoa(v), tokGP, nil)
		if got.status != http.StatusOK || !bytes.Equal(got.body, body) || got.header.Get("ETag") != `W/"`+strconv.Itoa(v)+`"` {
			t.Errorf("vread Task version %d: %d %s\nwant %s", v, got.status, short(got.body), short(body))
		}
	}
	hist := h.do(http.MethodGet, "/fhir/Task/"+ids.task+"/_history", tokGP, nil)
	var hb historyBundle
	if err := json.Unmarshal(hist.body, &hb); err != nil || hist.status != http.StatusOK || hb.Type != "history" || hb.Total != 4 || len(hb.Entry) != 4 {
		t.Fatalf("Task _history: %d %s", hist.status, short(hist.body))
	}
	for i, e := range hb.Entry {
		v := 4 - i // newest first
		if !bytes.Equal(e.Resource, served[v]) || e.Response.Etag != `W/"`+strconv.Itoa(v)+`"` || e.FullURL != h.url+"/fhir/Task/"+ids.task {
			t.Errorf("history entry %d: %+v\n%s\nwant %s", i, e.Response, short(e.Resource), short(served[v]))
		}
		wantMethod, wantURL := "PUT", "Task/"+ids.task
		if v == 1 {
			wantMethod, wantURL = "POST", "Task"
		}
		if e.Request.Method != wantMethod || e.Request.URL != wantURL {
			t.Errorf("history entry %d request %+v", i, e.Request)
		}
	}
	if !strings.Contains(string(served[1]), `"status":"requested"`) || !strings.Contains(string(served[3]), "We will call her on Monday") {
		t.Errorf("versions are not as they were: v1 %s", short(served[1]))
	}

	// The GP revokes the ServiceRequest: version 2, and version 1 still reads as accepted.
	rev := h.do(http.MethodPatch, "/fhir/ServiceRequest/"+sr, tokGP, []byte(`[{"op": "replace", "path": "/status", "value": "revoked"}]`),
		"Content-Type: application/json-patch+json")
	if rev.status != http.StatusOK || !strings.HasSuffix(rev.header.Get("Location"), "/ServiceRequest/"+sr+"/_history/2") {
		t.Fatalf("revoke: %d %s %s", rev.status, rev.header.Get("Location"), short(rev.body))
	}
	if got := h.do(http.MethodGet, h.path(t, rev.header.Get("Location")), tokGP, nil); !bytes.Equal(got.body, rev.body) {
		t.Errorf("the revoke's Location reads %s", short(got.body))
	}
	if got := h.do(http.MethodGet, "/fhir/ServiceRequest/"+sr+"/_history/1", tokGP, nil); !bytes.Equal(got.body, created.body) {
		t.Errorf("ServiceRequest version 1 after the revoke: %s", short(got.body))
	}
	srHist := h.do(http.MethodGet, "/fhir/ServiceRequest/"+sr+"/_history", tokGP, nil)
	var sb historyBundle
	if err := json.Unmarshal(srHist.body, &sb); err != nil || sb.Total != 2 || len(sb.Entry) != 2 ||
		!bytes.Equal(sb.Entry[0].Resource, rev.body) || !bytes.Equal(sb.Entry[1].Resource, created.body) ||
		sb.Entry[1].Request.Method != "POST" || sb.Entry[0].Request.Method != "PUT" || sb.Entry[0].Response.Location != "ServiceRequest/"+sr+"/_history/2" {
		t.Errorf("ServiceRequest _history: %s", short(srHist.body))
	}

	// Unknown versions say so; versions follow the resource's visibility.
	for _, c := range []struct {
		path, token string
		status      int
		says        string
	}{
		{"/fhir/Task/" + ids.task + "/_history/99", tokGP, 404, "has no version"},
		{"/fhir/Task/" + ids.task + "/_history/0", tokGP, 404, "has no version"},
		{"/fhir/Task/" + ids.task + "/_history/abc", tokGP, 404, "has no version"},
		{"/fhir/ServiceRequest/" + sr + "/_history/3", tokGP, 404, "versions are 1 to 2"},
		{"/fhir/Task/" + ids.task + "/_history/1", tokGP2, 404, "not visible"},
		{"/fhir/Task/" + ids.task + "/_history", tokMuseum, 404, "not visible"},
		{"/fhir/Task/nope/_history", tokGP, 404, "not visible"},
		{"/fhir/Task/" + ids.task + "/_history?_since=2026-01-01", tokGP, 400, "_since"},
		{"/fhir/Task/" + ids.task + "/_history/1", "", 401, "Authorization"},
	} {
		r := h.do(http.MethodGet, c.path, c.token, nil)
		if r.status != c.status || !strings.Contains(string(r.body), c.says) || issues(t, r)[0].Severity != "error" {
			t.Errorf("GET %s as %s: %d %s; want %d saying %q", c.path, c.token, r.status, short(r.body), c.status, c.says)
		}
	}
	// A transaction's entry Location resolves under the base.
	tx := h.do(http.MethodPost, "/fhir", tokPCN, readFile(t, referrals+"/museum-volunteering-bundle.json"))
	var txb struct {
		Entry []struct {
			Response struct{ Location string } `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(tx.body, &txb); err != nil || tx.status != http.StatusOK {
		t.Fatalf("transaction: %d %s", tx.status, short(tx.body))
	}
	for _, e := range txb.Entry {
		if e.Response.Location == "" {
			continue
		}
		if r := h.do(http.MethodGet, "/fhir/"+e.Response.Location, tokPCN, nil); r.status != http.StatusOK {
			t.Errorf("transaction Location %s: %d %s", e.Response.Location, r.status, short(r.body))
		}
	}
}

// refer2ids finds the referral of a created ServiceRequest.
func refer2ids(t *testing.T, h *harness, sr string) ids {
	t.Helper()
	ref, err := h.store.GetReferral(t.Context(), sr)
	if err != nil {
		t.Fatal(err)
	}
	return ids{referral: ref.Record.ID, task: ref.Record.TaskID, sr: sr}
}
