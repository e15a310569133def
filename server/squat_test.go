package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestIdentifierSquatting: a ServiceRequest.identifier is the referring practice's own key. Practice B
// (another GP client) posting practice A's identifier, before or after A, gets its own referral — never a 409
// that would tell it A's referral exists, never A's referral — and A's real referral is never blocked; each
// practice's identifier search and conditional create see only its own.
func TestIdentifierSquatting(t *testing.T) {
	t.Parallel()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			h := newHostile(t, b.open(t), nil, nil)
			a := readFile(t, referrals+"/walking-group-performer.json")
			ofB := func(body []byte) []byte {
				return []byte(strings.Replace(string(body), `"A81001"`, `"B82002"`, 1))
			}
			srID := func(r response) string { return r.json(t)["id"].(string) }

			// A first, then B with A's identifier (and its own body): B gets its own referral.
			ra := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, a)
			if ra.status != http.StatusCreated {
				t.Fatalf("A: %d %s", ra.status, ra.body)
			}
			rb := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP2, ofB(a))
			if rb.status != http.StatusCreated || srID(rb) == srID(ra) {
				t.Fatalf("B posting A's identifier: %d %s, want 201 and its own referral", rb.status, rb.body)
			}
			// Resends find each practice's own.
			if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, a); r.status != http.StatusOK || srID(r) != srID(ra) {
				t.Errorf("A's resend: %d, want 200 with A's referral", r.status)
			}
			if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP2, ofB(a)); r.status != http.StatusOK || srID(r) != srID(rb) {
				t.Errorf("B's resend: %d, want 200 with B's referral", r.status)
			}
			// Searches and conditional creates see only the practice's own.
			q := "/fhir/ServiceRequest?identifier=" + url.QueryEscape("https://fhir.frome-valley-mc.example/Id/referral|FVMC-2025-0142")
			for tok, want := range map[string]string{tokGP: srID(ra), tokGP2: srID(rb)} {
				m := h.do(http.MethodGet, q, tok, nil).json(t)
				entries, _ := m["entry"].([]any)
				if len(entries) != 1 || !strings.Contains(entries[0].(map[string]any)["fullUrl"].(string), want) {
					t.Errorf("identifier search as %s: %v, want only %s", tok, entries, want)
				}
			}
			cond := "If-None-Exist: identifier=" + url.QueryEscape("https://fhir.frome-valley-mc.example/Id/referral|FVMC-2025-0142")
			if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP2, ofB(a), cond); r.status != http.StatusOK || srID(r) != srID(rb) {
				t.Errorf("B's conditional create: %d, want 200 with B's own referral", r.status)
			}

			// B squats an identifier A has not used yet; A's real referral is still created, as A's.
			squat := []byte(strings.Replace(string(ofB(a)), "FVMC-2025-0142", "FVMC-2025-0143", 1))
			if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP2, squat); r.status != http.StatusCreated {
				t.Fatalf("B's squat: %d %s", r.status, r.body)
			}
			real := []byte(strings.Replace(string(a), "FVMC-2025-0142", "FVMC-2025-0143", 1))
			if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, real); r.status != http.StatusCreated {
				t.Errorf("A's real referral after B squatted its identifier: %d %s", r.status, r.body)
			}
			// A's conditional create on an identifier only B used creates A's referral (it learns nothing).
			fresh := []byte(strings.Replace(string(a), "FVMC-2025-0142", "FVMC-2025-0144", 1))
			if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP2, []byte(strings.Replace(string(ofB(a)), "FVMC-2025-0142", "FVMC-2025-0144", 1))); r.status != http.StatusCreated {
				t.Fatalf("B: %d", r.status)
			}
			cond = "If-None-Exist: identifier=" + url.QueryEscape("https://fhir.frome-valley-mc.example/Id/referral|FVMC-2025-0144")
			if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, fresh, cond); r.status != http.StatusCreated {
				t.Errorf("A's conditional create on B's identifier: %d %s, want 201", r.status, r.body)
			}
			if n := h.countReferrals(); n != 6 {
				t.Errorf("%d referrals, want 6 (A, B, B's squat, A's real one, B's and A's 0144)", n)
			}
		})
	}
}
