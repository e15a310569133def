package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

func TestGPRevokesServiceRequestMidWay(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokGP, "walking-group-performer.json") // A81001 → frome-walks (webhook)
	for _, st := range []string{"received", "accepted", "in-progress"} {
		if r := setStatus(h, tokWalks, ref.referral, `{"status": "`+st+`"}`); r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", st, r.status, r.body)
		}
	}
	read := h.do(http.MethodGet, "/fhir/ServiceRequest/"+ref.sr, tokGP, nil)
	sr := read.json(t)
	if sr["status"] != "active" || read.header.Get("ETag") != `W/"1"` {
		t.Fatalf("ServiceRequest before: %v %s", sr["status"], read.header.Get("ETag"))
	}

	// Only status may change, only to revoked, only by the requesting practice.
	changed := h.do(http.MethodGet, "/fhir/ServiceRequest/"+ref.sr, tokGP, nil).json(t)
	changed["status"] = "revoked"
	changed["priority"] = "urgent"
	wantOutcome(t, "priority changed", h.do(http.MethodPut, "/fhir/ServiceRequest/"+ref.sr, tokGP, mustMarshal(t, changed)), http.StatusUnprocessableEntity, "ServiceRequest.priority")
	sr["status"] = "on-hold"
	wantOutcome(t, "status on-hold", h.do(http.MethodPut, "/fhir/ServiceRequest/"+ref.sr, tokGP, mustMarshal(t, sr)), http.StatusUnprocessableEntity, "ServiceRequest.status")
	sr["status"] = "revoked"
	body := mustMarshal(t, sr)
	wantOutcome(t, "community client", h.do(http.MethodPut, "/fhir/ServiceRequest/"+ref.sr, tokWalks, body), http.StatusForbidden, "")
	wantOutcome(t, "admin client", h.do(http.MethodPut, "/fhir/ServiceRequest/"+ref.sr, tokAdmin, body), http.StatusForbidden, "")
	wantOutcome(t, "another practice", h.do(http.MethodPut, "/fhir/ServiceRequest/"+ref.sr, tokGP2, body), http.StatusNotFound, "")
	wantOutcome(t, "another service's view", h.do(http.MethodPut, "/fhir/ServiceRequest/"+ref.sr, tokMuseum, body), http.StatusForbidden, "")
	wantOutcome(t, "stale If-Match", h.do(http.MethodPut, "/fhir/ServiceRequest/"+ref.sr, tokGP, body, `If-Match: W/"2"`), http.StatusPreconditionFailed, "")
	if v := h.version(ref.referral); v != 4 {
		t.Fatalf("refused revokes changed the version to %d", v)
	}
	if n := len(h.messages(ref.referral, mapping.EventReferralCancelled)); n != 0 {
		t.Fatalf("refused revokes wrote %d referral.cancelled messages", n)
	}

	r := h.do(http.MethodPut, "/fhir/ServiceRequest/"+ref.sr, tokGP, body, `If-Match: W/"1"`)
	if r.status != http.StatusOK || r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("revoke: %d ETag %q %s", r.status, r.header.Get("ETag"), r.body)
	}
	if got := r.json(t); got["status"] != "revoked" || meta(got, "versionId") != "2" {
		t.Fatalf("revoked ServiceRequest: %v %v", got["status"], got["meta"])
	}
	again := h.do(http.MethodGet, "/fhir/ServiceRequest/"+ref.sr, tokGP, nil)
	if got := again.json(t); got["status"] != "revoked" || meta(got, "versionId") != "2" || again.header.Get("ETag") != `W/"2"` {
		t.Errorf("GET after revoke: %v %v", got["status"], got["meta"])
	}
	search := h.do(http.MethodGet, "/fhir/ServiceRequest?_id="+ref.sr, tokGP, nil).json(t)
	if e, _ := search["entry"].([]any); len(e) != 1 || e[0].(map[string]any)["resource"].(map[string]any)["status"] != "revoked" {
		t.Errorf("search after revoke: %v", search["entry"])
	}
	tk := h.task(tokGP, ref.task)
	if tk["status"] != "cancelled" || tk["statusReason"].(map[string]any)["text"] == "" || meta(tk, "versionId") != "5" {
		t.Errorf("Task after revoke: %v", tk)
	}
	rec := record(t, h.do(http.MethodGet, "/community/v1/referrals/"+ref.referral, tokWalks, nil))
	if rec.Status != mapping.StatusCancelled || rec.StatusReason == "" {
		t.Errorf("community record after revoke: %s %q", rec.Status, rec.StatusReason)
	}
	if msgs := h.messages(ref.referral, mapping.EventReferralCancelled); len(msgs) != 1 || msgs[0].Destination.ID != "frome-walks" {
		t.Fatalf("want one referral.cancelled to frome-walks, got %+v", msgs)
	} else if !strings.Contains(string(msgs[0].Payload), `"actor":{"id":"practice-a81001","role":"gp"}`) {
		t.Errorf("referral.cancelled does not name the GP client that cancelled it: %.200s", msgs[0].Payload)
	}
	// Revoking again is harmless: 200, nothing new.
	if r := h.do(http.MethodPut, "/fhir/ServiceRequest/"+ref.sr, tokGP, body); r.status != http.StatusOK || h.version(ref.referral) != 5 {
		t.Errorf("repeat revoke: %d %s", r.status, r.body)
	}
	if n := len(h.messages(ref.referral, mapping.EventReferralCancelled)); n != 1 {
		t.Errorf("%d referral.cancelled messages after the repeat", n)
	}
}

func TestGPRevokesByPatchPullOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokGP, "link-worker-befriending-default.json") // A81001 → link-workers (pull-only)

	for _, tc := range []struct {
		name, patch string
		status      int
		expr        string
	}{
		{"another element", `[{"op": "replace", "path": "/priority", "value": "urgent"}]`, 422, "ServiceRequest.priority"},
		{"another status", `[{"op": "replace", "path": "/status", "value": "completed"}]`, 422, "ServiceRequest.status"},
		{"remove status", `[{"op": "remove", "path": "/status"}]`, 400, ""},
	} {
		r := h.do(http.MethodPatch, "/fhir/ServiceRequest/"+ref.sr, tokGP, []byte(tc.patch), patchCT)
		wantOutcome(t, tc.name, r, tc.status, tc.expr)
	}
	r := h.do(http.MethodPatch, "/fhir/ServiceRequest/"+ref.sr, tokGP,
		[]byte(`[{"op": "test", "path": "/status", "value": "active"}, {"op": "replace", "path": "/status", "value": "revoked"}]`), patchCT)
	if r.status != http.StatusOK || r.json(t)["status"] != "revoked" {
		t.Fatalf("PATCH revoke: %d %s", r.status, r.body)
	}
	if tk := h.task(tokGP, ref.task); tk["status"] != "cancelled" || meta(tk, "versionId") != "2" {
		t.Errorf("Task after PATCH revoke: %v", tk)
	}
	rec := record(t, h.do(http.MethodGet, "/community/v1/referrals/"+ref.referral, tokLinkWorkers, nil))
	if rec.Status != mapping.StatusCancelled {
		t.Errorf("pull-only service sees %s", rec.Status)
	}
	inbox := h.do(http.MethodGet, "/community/v1/referrals?status=cancelled", tokLinkWorkers, nil).json(t)
	if refs := inbox["referrals"].([]any); len(refs) != 1 {
		t.Errorf("pull-only inbox, cancelled: %v", refs)
	}
	all, err := h.store.ListMessages(t.Context(), outbox.MessageQuery{ReferralID: ref.referral})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 0 {
		t.Errorf("a pull-only service got %d outbox messages", len(all))
	}
	// An identical resend after the cancellation returns the referral as it is now: revoked, version 2.
	resend := postFixture(h, tokGP, "link-worker-befriending-default.json")
	if resend.status != http.StatusOK || resend.json(t)["status"] != "revoked" || resend.header.Get("ETag") != `W/"2"` {
		t.Errorf("resend after revoke: %d ETag %q %s", resend.status, resend.header.Get("ETag"), resend.body)
	}
}

func TestRevokeFinalReferralIsConflict(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokPCN, "museum-volunteering-bundle.json")
	if r := setStatus(h, tokMuseum, ref.referral, `{"status": "rejected", "reason": "Full"}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	r := h.do(http.MethodPatch, "/fhir/ServiceRequest/"+ref.sr, tokPCN, []byte(`[{"op": "replace", "path": "/status", "value": "revoked"}]`), patchCT)
	wantOutcome(t, "revoke a declined referral", r, http.StatusConflict, "Task.status")
	if v := h.version(ref.referral); v != 2 {
		t.Errorf("a refused revoke changed the version to %d", v)
	}
	if sr := h.do(http.MethodGet, "/fhir/ServiceRequest/"+ref.sr, tokPCN, nil).json(t); sr["status"] != "active" {
		t.Errorf("a declined referral's ServiceRequest is %v", sr["status"])
	}
}
