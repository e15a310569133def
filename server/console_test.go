package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/outbox"
)

// consoleHarness is a server (with the operations console), a person's browser (cookie jar, no automatic
// redirects) and the server's log.
type consoleHarness struct {
	*harness
	b    *browser
	logs *logBuffer
}

func newConsoleHarness(t *testing.T) *consoleHarness {
	t.Helper()
	logs := &logBuffer{}
	h := newHarnessLogged(t, nil, nil, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	return &consoleHarness{harness: h, b: newBrowser(h), logs: logs}
}

// signIn signs the console browser in as name with the demo admin token.
func (c *consoleHarness) signIn(name string) {
	c.t.Helper()
	r := c.b.post("/admin/login", url.Values{"token": {tokAdmin}, "name": {name}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/admin/" {
		c.t.Fatalf("console sign-in: %d %s", r.status, r.body)
	}
	for _, want := range []string{"socialrx_console=", "Path=/admin/", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(strings.Join(r.header.Values("Set-Cookie"), "\n"), want) {
			c.t.Errorf("console sign-in cookie lacks %q: %v", want, r.header.Values("Set-Cookie"))
		}
	}
}

// page fetches a console page and checks the headers every console page carries.
func (c *consoleHarness) page(path string, status int) response {
	c.t.Helper()
	r := c.b.get(path)
	if r.status != status {
		c.t.Fatalf("GET %s: %d, want %d\n%s", path, r.status, status, r.body)
	}
	checkPageHeaders(c.t, path, r)
	if xfo := r.header.Get("X-Frame-Options"); xfo != "DENY" {
		c.t.Errorf("%s: X-Frame-Options %q", path, xfo)
	}
	return r
}

// submit posts a console form with the page's CSRF token.
func (c *consoleHarness) submit(from response, path string, form url.Values) response {
	c.t.Helper()
	form.Set("csrf", csrf(c.t, from))
	return c.b.post(path, form)
}

// deadLetters makes n dead referral.created messages to frome-walks (fixture referrals under new
// identifiers) and returns their ids in order.
func (c *consoleHarness) deadLetters(n int) []string {
	c.t.Helper()
	var ids []string
	for i := range n {
		id, _ := deadLetterWith(c.t, c.harness, fmt.Sprintf("CONSOLE-%04d", i))
		ids = append(ids, id)
	}
	return ids
}

// TestConsoleSignIn: signed out, /admin/ is the sign-in form; a GP's token and a wrong token are refused,
// an admin token with a name signs in; every page refuses a signed-out browser; sign-out ends the session.
func TestConsoleSignIn(t *testing.T) {
	t.Parallel()
	c := newConsoleHarness(t)
	r := c.page("/admin/", http.StatusOK)
	contains(t, "sign-in page", r, `name="token"`, `name="name"`, "Sign in to the operations console")
	for _, tc := range []struct {
		token, name string
		status      int
		field       string
	}{
		{tokGP, "alice", http.StatusUnauthorized, "token"},
		{"not-a-token", "alice", http.StatusUnauthorized, "token"},
		{tokAdmin, "", http.StatusBadRequest, "name"},
		{tokAdmin, "a/b", http.StatusBadRequest, "name"},
		{"", "alice", http.StatusBadRequest, "token"},
	} {
		r := c.b.post("/admin/login", url.Values{"token": {tc.token}, "name": {tc.name}})
		if r.status != tc.status || !strings.Contains(string(r.body), `data-field="`+tc.field+`"`) || len(r.header.Values("Set-Cookie")) != 0 {
			t.Errorf("sign-in %q/%q: %d, want %d naming %s", tc.token, tc.name, r.status, tc.status, tc.field)
		}
	}
	for _, path := range []string{"/admin/messages", "/admin/find", "/admin/services/frome-walks", "/admin/referrals/x", "/admin/messages/x"} {
		if r := c.b.get(path); r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), `name="token"`) {
			t.Errorf("GET %s signed out: %d", path, r.status)
		}
	}
	c.signIn("alice")
	r = c.page("/admin/", http.StatusOK)
	contains(t, "overview", r, "alice (ops)", "Overview", `<meta http-equiv="refresh" content="15">`, "Sign out")
	r = c.submit(r, "/admin/logout", url.Values{})
	if r.status != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", r.status)
	}
	if r := c.page("/admin/", http.StatusOK); !strings.Contains(string(r.body), `name="token"`) {
		t.Errorf("after sign-out the overview is shown")
	}
}

// TestConsoleOverviewListAndDetail: the overview counts dead letters by service and links them; the list
// filters and pages; a message shows every attempt with the receiver's answer and its payload masked until
// revealed, each reveal written to the audit log with the engineer and the message.
func TestConsoleOverviewListAndDetail(t *testing.T) {
	t.Parallel()
	c := newConsoleHarness(t)
	ids := c.deadLetters(55)
	c.signIn("alice")
	r := c.page("/admin/", http.StatusOK)
	contains(t, "overview", r, `id="count-dead"`, `<b>55</b>`, `href="/admin/messages?service=frome-walks&amp;state=dead"`,
		"Somerset Museums Volunteer Programme", "pull (inbox)")
	r = c.page("/admin/messages?service=frome-walks&state=dead", http.StatusOK)
	if n := strings.Count(string(r.body), `name="id" value=`); n != 50 {
		t.Errorf("first page shows %d messages, want 50", n)
	}
	next := regexp.MustCompile(`href="(/admin/messages\?[^"]*after=\d+[^"]*)" id="next"`).FindSubmatch(r.body)
	if next == nil {
		t.Fatalf("no next page link")
	}
	r = c.page(strings.ReplaceAll(string(next[1]), "&amp;", "&"), http.StatusOK)
	if n := strings.Count(string(r.body), `name="id" value=`); n != 5 || !strings.Contains(string(r.body), ids[54]) {
		t.Errorf("second page shows %d messages", n)
	}
	if r := c.b.get("/admin/messages?state=lost"); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `data-field="state"`) {
		t.Errorf("bad state filter: %d", r.status)
	}
	if r := c.page("/admin/messages?state=delivered", http.StatusOK); !strings.Contains(string(r.body), "No messages match.") {
		t.Errorf("delivered filter shows messages")
	}

	r = c.page("/admin/messages/"+ids[0], http.StatusOK)
	contains(t, "message", r, "HTTP 400 Bad Request", `{&#34;error&#34;:&#34;unknown referral code&#34;}`, "Reveal patient details", "•••")
	if strings.Contains(string(r.body), "Margaret") {
		t.Errorf("the payload shows the patient's name before a reveal")
	}
	r = c.submit(r, "/admin/messages/"+ids[0]+"/reveal", url.Values{})
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "Margaret") || !strings.Contains(string(r.body), "recorded with your name") {
		t.Errorf("reveal: %d", r.status)
	}
	var audit map[string]any
	for _, l := range c.logs.lines(t, "payload revealed") {
		audit = l
	}
	if audit == nil || audit["actor"] != "console:ops/alice" || audit["message_id"] != ids[0] || audit["level"] != "INFO" {
		t.Errorf("reveal audit line: %v", audit)
	}
}

// TestConsoleActions: replay one (a reason is required; refused forms change nothing), discard one, replay
// every dead message matching a filter after a preview of how many, pause and resume a service; every change
// is recorded as the signed-in engineer; a form without its CSRF token changes nothing.
func TestConsoleActions(t *testing.T) {
	t.Parallel()
	c := newConsoleHarness(t)
	ids := c.deadLetters(4)
	ctx := context.Background()
	c.signIn("alice")
	state := func(id string) outbox.MessageState {
		d, err := c.store.GetMessage(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return d.Message.State
	}
	r := c.page("/admin/messages/"+ids[0], http.StatusOK)
	if r := c.submit(r, "/admin/messages/"+ids[0]+"/replay", url.Values{"reason": {"  "}}); r.status != http.StatusBadRequest ||
		!strings.Contains(string(r.body), `data-field="reason"`) || state(ids[0]) != outbox.StateDead {
		t.Errorf("replay without a reason: %d, state %s", r.status, state(ids[0]))
	}
	if r := c.b.post("/admin/messages/"+ids[0]+"/replay", url.Values{"reason": {"x"}}); r.status != http.StatusForbidden || state(ids[0]) != outbox.StateDead {
		t.Errorf("replay without the CSRF token: %d, state %s", r.status, state(ids[0]))
	}
	r = c.submit(r, "/admin/messages/"+ids[0]+"/replay", url.Values{"reason": {"receiver fixed, INC-7"}})
	if r.status != http.StatusSeeOther || state(ids[0]) != outbox.StatePending {
		t.Fatalf("replay: %d, state %s", r.status, state(ids[0]))
	}
	r = c.page(r.header.Get("Location"), http.StatusOK)
	contains(t, "after replay", r, "Replayed 1 message(s)", "by console:ops/alice (was dead): receiver fixed, INC-7")

	r = c.submit(r, "/admin/messages/"+ids[1]+"/discard", url.Values{"reason": {"test referral"}})
	if r.status != http.StatusSeeOther || state(ids[1]) != outbox.StateDiscarded {
		t.Fatalf("discard: %d, state %s", r.status, state(ids[1]))
	}

	// Every dead message of frome-walks: preview (2), then confirm.
	r = c.page("/admin/messages?service=frome-walks&state=dead", http.StatusOK)
	r = c.submit(r, "/admin/messages/act", url.Values{"action": {"replay-all"}, "service": {"frome-walks"}, "state": {"dead"},
		"reason": {"walks back up"}})
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "Replay 2 message(s)") || state(ids[2]) != outbox.StateDead {
		t.Fatalf("preview: %d\n%s", r.status, r.body)
	}
	r = c.submit(r, "/admin/messages/act", url.Values{"action": {"replay-all"}, "service": {"frome-walks"}, "state": {"dead"},
		"reason": {"walks back up"}, "confirm": {"yes"}})
	if r.status != http.StatusSeeOther || state(ids[2]) != outbox.StatePending || state(ids[3]) != outbox.StatePending {
		t.Fatalf("confirmed bulk replay: %d, states %s %s", r.status, state(ids[2]), state(ids[3]))
	}
	contains(t, "after bulk replay", c.page(r.header.Get("Location"), http.StatusOK), "Replayed 2 message(s)")

	// Pause and resume.
	r = c.page("/admin/services/frome-walks", http.StatusOK)
	if r := c.submit(r, "/admin/services/frome-walks/pause", url.Values{"reason": {""}}); r.status != http.StatusBadRequest {
		t.Errorf("pause without a reason: %d", r.status)
	}
	r = c.submit(r, "/admin/services/frome-walks/pause", url.Values{"reason": {"their server is down"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	r = c.page(r.header.Get("Location"), http.StatusOK)
	contains(t, "paused service", r, "Paused:", "by console:ops/alice: their server is down", "Resume deliveries")
	contains(t, "overview while paused", c.page("/admin/", http.StatusOK), `id="paused-count"`, "their server is down")
	r = c.submit(r, "/admin/services/frome-walks/resume", url.Values{})
	if r.status != http.StatusSeeOther {
		t.Fatalf("resume: %d", r.status)
	}
	contains(t, "resumed", c.page(r.header.Get("Location"), http.StatusOK), "Resumed: 3 waiting message(s)", "Deliveries are running")
	if ps, _ := c.store.ListPauses(ctx); len(ps) != 0 {
		t.Errorf("pauses after resume: %v", ps)
	}
}

// TestConsoleFindAndTimeline: a referral is found by the GP's identifier and by NHS number, and its
// timeline lists its versions and messages.
func TestConsoleFindAndTimeline(t *testing.T) {
	t.Parallel()
	c := newConsoleHarness(t)
	ids := c.deadLetters(2)
	c.signIn("alice")
	r := c.b.get("/admin/find?q=CONSOLE-0001")
	if r.status != http.StatusSeeOther {
		t.Fatalf("find by the GP's identifier: %d", r.status)
	}
	r = c.page(r.header.Get("Location"), http.StatusOK)
	contains(t, "timeline", r, ids[1], "create", "attempt", "delivery-failed")
	r = c.page("/admin/find?q=999+954+2557", http.StatusOK)
	if n := strings.Count(string(r.body), `href="/admin/referrals/`); n != 2 {
		t.Errorf("NHS number search found %d referrals, want 2", n)
	}
	contains(t, "no match", c.page("/admin/find?q=nothing-like-it", http.StatusOK), "No referral matches")
}

// deadLetterWith posts the walking-group fixture under the ServiceRequest.identifier value ident and fails
// its delivery permanently (as the dispatcher would after a 400 whose body explained why), as deadLetter does.
func deadLetterWith(t *testing.T, h *harness, ident string) (msgID, referralID string) {
	t.Helper()
	body := readFile(t, filepath.Join(referrals, "walking-group-performer.json"))
	var sr map[string]any
	if err := json.Unmarshal(body, &sr); err != nil {
		t.Fatal(err)
	}
	sr["identifier"] = []any{map[string]any{"system": "https://fhir.frome-valley-mc.example/Id/referral", "value": ident}}
	body, _ = json.Marshal(sr)
	if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, body); r.status != http.StatusCreated {
		t.Fatalf("create %s: %d %s", ident, r.status, r.body)
	}
	ctx := context.Background()
	now := time.Now()
	msgs, err := h.store.ClaimMessages(ctx, "test-dispatcher", now, time.Minute, 10, outbox.ClaimFilter{})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("claim: %v %d", err, len(msgs))
	}
	err = h.store.CompleteAttempt(ctx, msgs[0].ID, now, outbox.AttemptResult{
		Owner: "test-dispatcher", State: outbox.StateDead, Update: outbox.MarkDeliveryFailed,
		Attempt: outbox.Attempt{MessageID: msgs[0].ID, StartedAt: now, Latency: 12 * time.Millisecond, StatusCode: 400,
			Error: "HTTP 400 Bad Request", Response: `{"error":"unknown referral code"}`},
	})
	if err != nil {
		t.Fatal(err)
	}
	return msgs[0].ID, msgs[0].ReferralID
}

// TestConsoleSignInThrottled: after five wrong sign-ins from one address, the sixth (even with the right
// token) is 429 with Retry-After, and no session is opened.
func TestConsoleSignInThrottled(t *testing.T) {
	t.Parallel()
	c := newConsoleHarness(t)
	for i := range 5 {
		if r := c.b.post("/admin/login", url.Values{"token": {"guess-" + fmt.Sprint(i)}, "name": {"mallory"}}); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong sign-in %d: %d", i+1, r.status)
		}
	}
	r := c.b.post("/admin/login", url.Values{"token": {tokAdmin}, "name": {"mallory"}})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || len(r.header.Values("Set-Cookie")) != 0 {
		t.Errorf("sixth sign-in: %d Retry-After %q cookies %v; want 429 with Retry-After and no session",
			r.status, r.header.Get("Retry-After"), r.header.Values("Set-Cookie"))
	}
	contains(t, "throttled sign-in", r, "Too many wrong sign-ins")
}
