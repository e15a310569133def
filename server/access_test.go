package server_test

import (
	"bytes"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
)

func TestAuthenticationAndPracticeScoping(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	body := readFile(t, filepath.Join(referrals, "walking-group-performer.json")) // requester ODS A81001

	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"unknown token", "not-a-token", http.StatusUnauthorized},
		{"community client may not refer", tokWalks, http.StatusForbidden},
		{"admin may not refer", tokAdmin, http.StatusForbidden},
		{"GP of another practice", tokGP2, http.StatusForbidden},
	} {
		r := h.do(http.MethodPost, "/fhir/ServiceRequest", tc.token, body)
		if r.status != tc.want {
			t.Errorf("%s: want %d, got %d %s", tc.name, tc.want, r.status, r.body)
		}
		_ = issues(t, r)
		if tc.want == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: 401 without WWW-Authenticate: Bearer", tc.name)
		}
	}
	if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP2, body); !hasExpression(issues(t, r), "ServiceRequest.requester") {
		t.Errorf("403 must name the requester: %s", r.body)
	}
	if n := h.countReferrals(); n != 0 {
		t.Fatalf("refused requests wrote %d referrals", n)
	}

	created := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, body)
	if created.status != http.StatusCreated {
		t.Fatalf("own practice: %d %s", created.status, created.body)
	}
	sr := srFromResponse(t, created)
	srID := sr["id"].(string)
	tasks := h.do(http.MethodGet, "/fhir/Task?focus=ServiceRequest/"+srID, tokGP, nil).json(t)
	taskID := tasks["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["id"].(string)

	// Reads: the practice, its PCN, the routed service and admin see it; another practice and another service do not.
	for _, tc := range []struct {
		token string
		want  int
	}{
		{tokGP, http.StatusOK}, {tokPCN, http.StatusOK}, {tokWalks, http.StatusOK}, {tokAdmin, http.StatusOK},
		{tokGP2, http.StatusNotFound}, {tokMuseum, http.StatusNotFound}, {"", http.StatusUnauthorized},
	} {
		for _, path := range []string{"/fhir/Task/" + taskID, "/fhir/ServiceRequest/" + srID} {
			want := tc.want
			if strings.HasPrefix(path, "/fhir/ServiceRequest/") && (tc.token == tokWalks || tc.token == tokMuseum) {
				want = http.StatusForbidden // no community service reads the GP's ServiceRequest (sharing profiles)
			}
			if r := h.do(http.MethodGet, path, tc.token, nil); r.status != want {
				t.Errorf("GET %s as %q: want %d, got %d", path, tc.token, want, r.status)
			}
		}
	}
	// Searches are scoped: another practice finds nothing, even naming the focus.
	for _, tok := range []string{tokGP2, tokMuseum} {
		b := h.do(http.MethodGet, "/fhir/Task?focus=ServiceRequest/"+srID, tok, nil).json(t)
		if b["entry"] != nil {
			t.Errorf("search as %s found another practice's Task", tok)
		}
	}
	// Asking for another practice by ODS finds nothing either.
	b := h.do(http.MethodGet, "/fhir/Task?requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|A81001", tokGP2, nil).json(t)
	if b["entry"] != nil {
		t.Errorf("GP2 found A81001's Tasks by requester:identifier")
	}
}

func TestHTTPErrorsAreOperationOutcomes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	good := readFile(t, filepath.Join(referrals, "walking-group-performer.json"))

	r := h.do(http.MethodDelete, "/fhir/ServiceRequest", tokGP, nil)
	if r.status != http.StatusMethodNotAllowed || !strings.Contains(r.header.Get("Allow"), "POST") {
		t.Errorf("DELETE type: want 405 with Allow, got %d Allow=%q", r.status, r.header.Get("Allow"))
	}
	_ = issues(t, r)
	if r := h.do(http.MethodPut, "/fhir/metadata", "", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("PUT metadata: want 405, got %d", r.status)
	}
	if r := h.do(http.MethodGet, "/fhir/Patient/1", tokGP, nil); r.status != http.StatusNotFound {
		t.Errorf("unsupported resource: want 404, got %d", r.status)
	} else {
		_ = issues(t, r)
	}
	if r := h.do(http.MethodGet, "/fhir/Task/no-such-task", tokGP, nil); r.status != http.StatusNotFound {
		t.Errorf("unknown Task: want 404, got %d", r.status)
	}
	if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, good, "Content-Type: application/xml"); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("XML: want 415, got %d", r.status)
	} else {
		_ = issues(t, r)
	}
	if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, good, "Content-Type: application/json"); r.status != http.StatusCreated {
		t.Errorf("application/json is accepted: got %d %s", r.status, r.body)
	}
	big := append([]byte(`{"resourceType":"ServiceRequest","note":[{"text":"`), bytes.Repeat([]byte("a"), 2<<20)...)
	big = append(big, []byte(`"}]}`)...)
	if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, big); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB body: want 413, got %d", r.status)
	} else {
		_ = issues(t, r)
	}
	for name, body := range map[string]string{
		"not JSON":       `{"resourceType": "ServiceRequest",`,
		"wrong resource": `{"resourceType": "Patient"}`,
		"an array":       `[]`,
		"empty":          ``,
	} {
		r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, []byte(body), "Content-Type: application/fhir+json")
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: want 400, got %d %s", name, r.status, r.body)
			continue
		}
		_ = issues(t, r)
	}
	if r := h.do(http.MethodGet, "/fhir/Task?colour=blue", tokGP, nil); r.status != http.StatusBadRequest || !hasExpression(issues(t, r), "colour") {
		t.Errorf("unknown search parameter: want 400 naming it, got %d %s", r.status, r.body)
	}
	if r := h.do(http.MethodGet, "/fhir/Task?colour=blue", tokGP, nil, "Prefer: handling=lenient"); r.status != http.StatusOK {
		t.Errorf("lenient unknown parameter: want 200, got %d", r.status)
	}
	if r := h.do(http.MethodGet, "/fhir/Task?_lastUpdated=yesterday", tokGP, nil); r.status != http.StatusBadRequest {
		t.Errorf("bad _lastUpdated: want 400, got %d", r.status)
	}
	// A search value that names nothing is a mistake, never "no filter" (which would list every referral).
	for _, q := range []string{
		"/fhir/Task?focus=ServiceRequest/",
		"/fhir/Task?patient:identifier=" + url.QueryEscape(mapping.NHSNumberSystem+"|"),
		"/fhir/Task?requester:identifier=" + url.QueryEscape(mapping.ODSOrganizationSystem+"|"),
		"/fhir/ServiceRequest?identifier=" + url.QueryEscape("https://example.org/ids|"),
	} {
		r := h.do(http.MethodGet, q, tokGP, nil)
		name, _, _ := strings.Cut(strings.SplitN(q, "?", 2)[1], "=")
		if r.status != http.StatusBadRequest || !hasExpression(issues(t, r), name) {
			t.Errorf("%s: want 400 naming %s, got %d %s", q, name, r.status, r.body)
		}
	}
	if r := h.do(http.MethodGet, "/nowhere", "", nil); r.status != http.StatusNotFound || !strings.Contains(string(r.body), `"error"`) {
		t.Errorf("unknown route: want a JSON 404, got %d %s", r.status, r.body)
	}
	if n := h.countReferrals(); n != 1 {
		t.Fatalf("want exactly the one accepted referral, have %d", n)
	}
}

func TestMetadataAndOps(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	r := h.do(http.MethodGet, "/fhir/metadata", "", nil)
	cs := r.json(t)
	if r.status != http.StatusOK || cs["resourceType"] != "CapabilityStatement" || cs["fhirVersion"] != "4.0.1" {
		t.Fatalf("metadata: %d %s", r.status, r.body)
	}
	// Every search parameter the statement declares is accepted by the server (it tells the truth).
	for _, rest := range cs["rest"].([]any) {
		for _, res := range rest.(map[string]any)["resource"].([]any) {
			rm := res.(map[string]any)
			params, _ := rm["searchParam"].([]any)
			for _, p := range params {
				name := p.(map[string]any)["name"].(string)
				val := map[string]string{"_lastUpdated": "gt2026-01-01T00:00:00Z", "status": "requested", "_count": "5", "capacity": "open",
					"entity": "ServiceRequest/x", "date": "ge2026-01-01", "period": "2026-11"}[name]
				if val == "" {
					val = "x"
				}
				path := "/fhir/" + rm["type"].(string) + "?" + name + "=" + val
				if r := h.do(http.MethodGet, path, tokAdmin, nil); r.status != http.StatusOK {
					t.Errorf("declared search parameter refused: GET %s: %d %s", path, r.status, r.body)
				}
			}
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := h.do(http.MethodGet, p, "", nil); r.status != http.StatusOK {
			t.Errorf("%s: %d", p, r.status)
		}
	}
	m := h.do(http.MethodGet, "/metrics", "", nil)
	if m.status != http.StatusOK || !strings.Contains(string(m.body), "socialrx_outbox_messages") {
		t.Errorf("metrics: %d", m.status)
	}
}
