package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
)

// logBuffer collects a server's log lines from its handlers' goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log lines with msg.
func (b *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestFailedRequestsLoggedAtInfo: every request that ends in 4xx (or 5xx) is in the info log with the
// request id the client got, the route, the status and the client (when known), never the token nor any
// patient data; successful requests are not (they are at debug).
func TestFailedRequestsLoggedAtInfo(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	h := newHarnessLogged(t, nil, nil, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	ok := postFixture(h, "", "walking-group-performer.json")
	if ok.status != http.StatusCreated {
		t.Fatalf("create: %d", ok.status)
	}
	cases := []struct {
		method, path, token string
		status              int
		route, client       string
	}{
		{http.MethodGet, "/fhir/Task", "not-a-token-at-all", http.StatusUnauthorized, "fhir_task_type", "-"},
		{http.MethodGet, "/admin/v1/messages", tokGP, http.StatusForbidden, "admin_messages", "practice-a81001"},
		{http.MethodGet, "/community/v1/referrals/no-such-referral", tokWalks, http.StatusNotFound, "community_referral", "frome-walks"},
		{http.MethodGet, "/admin/v1/messages?state=lost", tokAdmin, http.StatusBadRequest, "admin_messages", "ops"},
		{http.MethodGet, "/no/such/route", tokAdmin, http.StatusNotFound, "not_found", "-"},
	}
	ids := map[string]bool{}
	for _, tc := range cases {
		r := h.do(tc.method, tc.path, tc.token, nil)
		if r.status != tc.status {
			t.Fatalf("%s %s: %d, want %d", tc.method, tc.path, r.status, tc.status)
		}
		id := r.header.Get("X-Request-ID")
		ids[id] = true
		var found map[string]any
		for _, l := range logs.lines(t, "request") {
			if l["request_id"] == id {
				found = l
			}
		}
		if found == nil {
			t.Errorf("%s %s (%d): no info line with request id %s", tc.method, tc.path, tc.status, id)
			continue
		}
		if found["level"] != "INFO" || found["route"] != tc.route || found["status"] != float64(tc.status) ||
			found["client"] != tc.client || found["method"] != tc.method {
			t.Errorf("%s %s: log line %v, want route %s status %d client %s at INFO", tc.method, tc.path, found, tc.route, tc.status, tc.client)
		}
	}
	if okID := ok.header.Get("X-Request-ID"); len(logs.lines(t, "request")) != len(cases) || ids[okID] {
		t.Errorf("%d request lines at info, want %d (the failures only)", len(logs.lines(t, "request")), len(cases))
	}
	all := logs.buf.String()
	for _, secret := range []string{"not-a-token-at-all", tokGP, tokWalks, tokAdmin, "Ada", "9434765919", "/no/such/route"} {
		if strings.Contains(all, secret) {
			t.Errorf("the log holds %q:\n%s", secret, all)
		}
	}
}

// TestAdminAPIOperations: discard, pause, resume, the pauses, the overview and the list's type filter and
// paused flag, each through referral.Operator; mistakes are 400 naming the field and change nothing.
func TestAdminAPIOperations(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	msgID, taskID := deadLetter(t, h)
	call := func(method, path, body string) response {
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		return h.do(method, path, tokAdmin, b, "Content-Type: application/json")
	}
	for _, tc := range []struct{ path, body, field string }{
		{"/admin/v1/messages/" + msgID + "/discard", `{}`, "reason"},
		{"/admin/v1/messages/" + msgID + "/discard", `{"reason": "x", "ids": ["y"]}`, "ids"},
		{"/admin/v1/discard", `{"reason": "x"}`, "ids"},
		{"/admin/v1/services/frome-walk/pause", `{"reason": "down"}`, "service"},
		{"/admin/v1/services/museum-volunteers/pause", `{"reason": "down"}`, "service"},
		{"/admin/v1/services/frome-walks/pause", `{}`, "reason"},
		{"/admin/v1/services/frome-walks/resume", ``, "service"},
		{"/admin/v1/replay", `{"state": "dead", "reason": "x", "per_second": -1}`, "per_second"},
	} {
		r := call(http.MethodPost, tc.path, tc.body)
		if r.status != http.StatusBadRequest || r.json(t)["field"] != tc.field {
			t.Errorf("POST %s %s: want 400 naming %q, got %d %s", tc.path, tc.body, tc.field, r.status, r.body)
		}
	}
	if r := call(http.MethodPost, "/admin/v1/messages/no-such-id/discard", `{"reason": "x"}`); r.status != http.StatusNotFound {
		t.Errorf("discard of an unknown message: %d %s", r.status, r.body)
	}
	if d, _ := h.store.GetMessage(context.Background(), msgID); d.Message.State != outbox.StateDead {
		t.Fatalf("refused requests changed the message: %s", d.Message.State)
	}

	// Pause, then the list, the pauses and the overview say so.
	p := call(http.MethodPost, "/admin/v1/services/frome-walks/pause", `{"reason": "receiver down, INC-9"}`)
	if p.status != http.StatusCreated || !strings.Contains(string(p.body), `"paused_by":"admin:ops"`) {
		t.Fatalf("pause: %d %s", p.status, p.body)
	}
	if p := call(http.MethodPost, "/admin/v1/services/frome-walks/pause", `{"reason": "again"}`); p.status != http.StatusOK ||
		!strings.Contains(string(p.body), "INC-9") {
		t.Errorf("second pause: %d %s", p.status, p.body)
	}
	if r := call(http.MethodGet, "/admin/v1/pauses", ""); r.status != http.StatusOK || !strings.Contains(string(r.body), `"service":"frome-walks"`) {
		t.Errorf("pauses: %d %s", r.status, r.body)
	}
	if r := call(http.MethodGet, "/admin/v1/messages?type=referral.created", ""); !strings.Contains(string(r.body), `"paused":true`) ||
		!strings.Contains(string(r.body), msgID) {
		t.Errorf("list while paused: %s", r.body)
	}
	if r := call(http.MethodGet, "/admin/v1/messages?type=referral.cancelled", ""); strings.Contains(string(r.body), msgID) {
		t.Errorf("type filter ignored: %s", r.body)
	}
	var ov struct {
		Counts       map[string]int
		Destinations []struct {
			Destination string
			Paused      bool
			Counts      map[string]int
		}
		Inboxes []struct {
			Service  string
			PullOnly bool `json:"pull_only"`
			Waiting  int
		}
	}
	r := call(http.MethodGet, "/admin/v1/overview", "")
	if err := json.Unmarshal(r.body, &ov); r.status != http.StatusOK || err != nil || ov.Counts["dead"] != 1 || len(ov.Destinations) != 1 ||
		!ov.Destinations[0].Paused || ov.Destinations[0].Counts["dead"] != 1 || len(ov.Inboxes) < 5 {
		t.Errorf("overview: %d %v %s", r.status, err, r.body)
	}

	// Discard the dead message (dry run first), then resume.
	dry := call(http.MethodPost, "/admin/v1/messages/"+msgID+"/discard", `{"reason": "test referral", "dry_run": true}`)
	if dry.status != http.StatusOK || dry.json(t)["count"] != float64(1) {
		t.Fatalf("dry discard: %d %s", dry.status, dry.body)
	}
	if d := call(http.MethodPost, "/admin/v1/discard", `{"ids": ["`+msgID+`"], "reason": "test referral"}`); d.status != http.StatusOK ||
		d.json(t)["count"] != float64(1) {
		t.Fatalf("discard: %d %s", d.status, d.body)
	}
	show := call(http.MethodGet, "/admin/v1/messages/"+msgID, "")
	if !strings.Contains(string(show.body), `"state":"discarded"`) || !strings.Contains(string(show.body), `"actor":"admin:ops","reason":"test referral","from_state":"dead"`) {
		t.Errorf("show discarded: %s", show.body)
	}
	if bs := businessStatus(t, h, taskID); bs != "delivery-failed" {
		t.Errorf("businessStatus after discard: %q", bs)
	}
	if r := call(http.MethodPost, "/admin/v1/messages/"+msgID+"/replay", `{"reason": "oops"}`); r.status != http.StatusBadRequest {
		t.Errorf("replay of a discarded message: %d %s", r.status, r.body)
	}
	res := call(http.MethodPost, "/admin/v1/services/frome-walks/resume", "")
	if res.status != http.StatusOK || !strings.Contains(string(res.body), `"resumed_by":"admin:ops"`) {
		t.Errorf("resume: %d %s", res.status, res.body)
	}
	for _, tok := range []string{tokGP, tokWalks} {
		if r := h.do(http.MethodPost, "/admin/v1/services/frome-walks/pause", tok, []byte(`{"reason":"x"}`), "Content-Type: application/json"); r.status != http.StatusForbidden {
			t.Errorf("pause as %s: %d", tok, r.status)
		}
	}
}

// TestMetricsInboxesAndPauses: /metrics reports each pull inbox (waiting, overdue, oldest wait), the paused
// destinations and discarded messages.
func TestMetricsInboxesAndPauses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	if r := postFixture(h, "", "museum-volunteering-bundle.json"); r.status != http.StatusOK {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	op := referral.Operator{Store: h.store, Directory: &h.cfg.Directory}
	if _, _, err := op.Pause(context.Background(), "frome-walks", "down", "ops"); err != nil {
		t.Fatal(err)
	}
	r := h.do(http.MethodGet, "/metrics", "", nil)
	body := string(r.body)
	for _, want := range []string{
		`socialrx_inbox_referrals_waiting{delivery="pull",service="museum-volunteers"} 1`,
		`socialrx_inbox_referrals_waiting{delivery="pull",service="lunch-club"} 0`,
		`socialrx_inbox_referrals_overdue{delivery="pull",service="museum-volunteers"} 0`,
		`socialrx_inbox_oldest_wait_seconds{delivery="pull",service="museum-volunteers"}`,
		`socialrx_outbox_destination_paused{destination="service:frome-walks"} 1`,
		`socialrx_outbox_paused_destinations 1`,
		`socialrx_outbox_messages{state="discarded"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
