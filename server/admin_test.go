package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// deadLetter posts a referral for the webhook service frome-walks and fails its delivery permanently, as the
// dispatcher would after a 400 (claim, then CompleteAttempt dead with businessStatus delivery-failed).
func deadLetter(t *testing.T, h *harness) (msgID, taskID string) {
	t.Helper()
	r := postFixture(h, "", "walking-group-performer.json")
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	ctx := context.Background()
	now := time.Now()
	msgs, err := h.store.ClaimMessages(ctx, "test-dispatcher", now, time.Minute, 10, outbox.ClaimFilter{})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("claim: %v %d", err, len(msgs))
	}
	err = h.store.CompleteAttempt(ctx, msgs[0].ID, now, outbox.AttemptResult{
		Owner: "test-dispatcher", State: outbox.StateDead,
		Attempt: outbox.Attempt{MessageID: msgs[0].ID, StartedAt: now, Latency: 12 * time.Millisecond, StatusCode: 400, Error: "HTTP 400 Bad Request"},
		Update: func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			next, changed := mapping.MarkBusinessStatus(cur.Referral, mapping.BusinessDeliveryFailed)
			if !changed {
				return next, nil, outbox.ErrNoChange
			}
			return next, nil, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := h.store.GetReferral(ctx, msgs[0].ReferralID)
	if err != nil {
		t.Fatal(err)
	}
	return msgs[0].ID, ref.Record.TaskID
}

func businessStatus(t *testing.T, h *harness, taskID string) string {
	t.Helper()
	var task struct {
		BusinessStatus struct {
			Coding []struct{ Code string }
		}
	}
	r := h.do(http.MethodGet, "/fhir/Task/"+taskID, tokAdmin, nil)
	if err := json.Unmarshal(r.body, &task); err != nil || len(task.BusinessStatus.Coding) == 0 {
		t.Fatalf("Task: %v %s", err, r.body)
	}
	return task.BusinessStatus.Coding[0].Code
}

func TestAdminAPIFindsAndReplaysDeadLetters(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	msgID, taskID := deadLetter(t, h)
	if bs := businessStatus(t, h, taskID); bs != "delivery-failed" {
		t.Fatalf("GP must see the dead letter: businessStatus %q", bs)
	}
	json := func(method, path string, body string) response {
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		return h.do(method, path, tokAdmin, b, "Content-Type: application/json")
	}
	list := json(http.MethodGet, "/admin/v1/messages?state=dead&service=frome-walks", "")
	if list.status != http.StatusOK || !strings.Contains(string(list.body), msgID) || strings.Contains(string(list.body), "payload") {
		t.Fatalf("list dead: %d %s", list.status, list.body)
	}
	if r := json(http.MethodGet, "/admin/v1/messages?state=delivered", ""); strings.Contains(string(r.body), msgID) {
		t.Fatalf("state filter ignored: %s", r.body)
	}
	show := json(http.MethodGet, "/admin/v1/messages/"+msgID, "")
	if show.status != http.StatusOK || !strings.Contains(string(show.body), `"status_code":400`) || !strings.Contains(string(show.body), `"latency_ms":12`) {
		t.Fatalf("show: %d %s", show.status, show.body)
	}
	for _, tc := range []struct{ body, field string }{
		{`{}`, "reason"},
		{`{"reason": "  "}`, "reason"},
		{`{"reason": "x", "colour": "red"}`, "colour"},
		{`{"reason": 7}`, "reason"},
	} {
		r := json(http.MethodPost, "/admin/v1/messages/"+msgID+"/replay", tc.body)
		if r.status != http.StatusBadRequest || r.json(t)["field"] != tc.field {
			t.Errorf("replay %s: want 400 naming %s, got %d %s", tc.body, tc.field, r.status, r.body)
		}
	}
	if r := json(http.MethodPost, "/admin/v1/replay", `{"state": "delivered", "reason": "x"}`); r.status != http.StatusBadRequest {
		t.Errorf("filtered replay of delivered messages: want 400, got %d %s", r.status, r.body)
	}
	dry := json(http.MethodPost, "/admin/v1/replay", `{"state": "dead", "service": "frome-walks", "reason": "endpoint fixed", "dry_run": true}`)
	if dry.status != http.StatusOK || !strings.Contains(string(dry.body), msgID) {
		t.Fatalf("dry run: %d %s", dry.status, dry.body)
	}
	if d, _ := h.store.GetMessage(context.Background(), msgID); d.Message.State != outbox.StateDead || len(d.Replays) != 0 {
		t.Fatalf("dry run changed the message: %s, %d replays", d.Message.State, len(d.Replays))
	}
	rep := json(http.MethodPost, "/admin/v1/messages/"+msgID+"/replay", `{"reason": "receiver fixed, ticket 42"}`)
	if rep.status != http.StatusOK {
		t.Fatalf("replay: %d %s", rep.status, rep.body)
	}
	d, err := h.store.GetMessage(context.Background(), msgID)
	if err != nil || d.Message.State != outbox.StatePending || len(d.Replays) != 1 || d.Replays[0].Actor != "admin:ops" || d.Replays[0].Reason != "receiver fixed, ticket 42" {
		t.Fatalf("after replay: %v %+v", err, d)
	}
	if bs := businessStatus(t, h, taskID); bs != "queued" {
		t.Fatalf("replay must clear delivery-failed for the GP: businessStatus %q", bs)
	}
	tl := json(http.MethodGet, "/admin/v1/referrals/"+d.Message.ReferralID+"/timeline", "")
	if tl.status != http.StatusOK || strings.Count(string(tl.body), `"version"`) < 3 || !strings.Contains(string(tl.body), msgID) {
		t.Fatalf("timeline: %d %s", tl.status, tl.body)
	}
	// Access: admin only.
	for _, tok := range []string{tokGP, tokWalks} {
		if r := h.do(http.MethodGet, "/admin/v1/messages", tok, nil); r.status != http.StatusForbidden {
			t.Errorf("admin API as %s: want 403, got %d", tok, r.status)
		}
	}
	if r := h.do(http.MethodGet, "/admin/v1/messages", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("admin API without token: want 401, got %d", r.status)
	}
	if r := json(http.MethodGet, "/admin/v1/messages?colour=red", ""); r.status != http.StatusBadRequest || r.json(t)["field"] != "colour" {
		t.Errorf("unknown filter: %d %s", r.status, r.body)
	}
	for _, f := range []string{"referral", "service"} {
		if r := json(http.MethodGet, "/admin/v1/messages?"+f+"=", ""); r.status != http.StatusBadRequest || r.json(t)["field"] != f {
			t.Errorf("empty %s filter (would list everything): %d %s", f, r.status, r.body)
		}
	}
	if r := json(http.MethodGet, "/admin/v1/messages/no-such-id", ""); r.status != http.StatusNotFound {
		t.Errorf("unknown message: %d", r.status)
	}
	if r := json(http.MethodDelete, "/admin/v1/messages/"+msgID, ""); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") == "" {
		t.Errorf("DELETE message: %d Allow=%q", r.status, r.header.Get("Allow"))
	}
}
