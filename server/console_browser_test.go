package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/server/internal/browsertest"
)

// The operations console in a real headless Chromium (server/internal/browsertest), driven as the engineer
// on call uses it on a laptop. Nothing here sets Origin, Sec-Fetch-*, Referer or Cookie: the browser sends
// what it sends.

// consoleSite is socialrx on loopback for a browser, logging to logs, with every form post to /admin/
// recorded (as the server saw it).
func consoleSite(t *testing.T) (*site, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	s := &site{harness: newHarnessLogged(t, nil, nil, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))),
		posts: make(chan post, 256)}
	s.url = s.instance(s.cfg, s.recordUnder("/admin/", "socialrx_console"))
	return s, logs
}

// consoleBrowser is a laptop-sized browser signed in to the console at url as Alice with the admin token.
func consoleBrowser(t *testing.T, url string) *browsertest.Browser {
	t.Helper()
	b := browsertest.New(t, browsertest.Options{Width: browsertest.DesktopWidth, Height: browsertest.DesktopHeight})
	b.Open(url + "/admin/")
	b.Type("#name", "Alice")
	b.Type("#token", tokAdmin)
	if st := b.PressButton("Sign in"); st != http.StatusOK {
		t.Fatalf("sign in to the console: %d", st)
	}
	return b
}

// consolePage checks what every console page must be (the WCAG basics that can be checked mechanically, no
// sideways scrolling on a laptop) and keeps a screenshot.
func consolePage(t *testing.T, b *browsertest.Browser, name string) {
	t.Helper()
	if o := b.Overflow(); o > 0 {
		t.Errorf("%s: the page is %d px wider than the %d px window (sideways scrolling)", name, o, browsertest.DesktopWidth)
	}
	for _, p := range b.Problems() {
		t.Errorf("%s: accessibility: %s", name, p)
	}
	b.Shot(name)
}

// TestBrowserConsole: an engineer signs in with an admin token and their name, reads the overview (which
// reloads itself), filters the messages to a service's dead letters, opens one (the receiver's answer shown,
// the patient masked until revealed, the reveal audited), replays it with a reason (a missing reason is
// refused), replays the rest after a preview of how many, pauses the service and resumes it, and signs out.
// Every page is screenshotted.
func TestBrowserConsole(t *testing.T) {
	t.Parallel()
	s, logs := consoleSite(t)
	ids := make([]string, 3)
	for i := range ids {
		ids[i], _ = deadLetterWith(t, s.harness, "CONSOLE-B-"+string(rune('1'+i)))
	}
	if r := postFixture(s.harness, "", "museum-volunteering-bundle.json"); r.status != http.StatusOK {
		t.Fatalf("pull-only referral: %d", r.status)
	}
	ctx := context.Background()
	state := func(id string) outbox.MessageDetail {
		t.Helper()
		d, err := s.store.GetMessage(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	b := browsertest.New(t, browsertest.Options{Width: browsertest.DesktopWidth, Height: browsertest.DesktopHeight})

	// Sign in.
	if st := b.Open(s.url + "/admin/"); st != http.StatusOK {
		t.Fatalf("console: %d", st)
	}
	shows(t, b, "sign-in page", "Sign in to the operations console", "Your name", "Admin token")
	consolePage(t, b, "console-sign-in")
	b.Type("#name", "Alice")
	b.Type("#token", tokGP)
	if st := b.PressButton("Sign in"); st != http.StatusUnauthorized {
		t.Errorf("a GP token: %d", st)
	}
	shows(t, b, "refused sign-in", "That is not an admin token")
	b.Type("#name", "Alice")
	b.Type("#token", tokAdmin)
	if st := b.PressButton("Sign in"); st != http.StatusOK {
		t.Fatalf("sign in: %d\n%s", st, b.Body())
	}
	if p := s.lastPost(); p.path != "/admin/login" || p.status != http.StatusSeeOther || p.fetchSite != "same-origin" {
		t.Errorf("sign-in post: %+v", p)
	}
	if ck := b.Cookies(s.url + "/admin/"); len(ck) == 0 || !ck[0].HTTPOnly || ck[0].SameSite != "Strict" || ck[0].Path != "/admin/" {
		t.Errorf("console cookies: %+v", ck)
	}

	// The overview.
	shows(t, b, "overview", "Overview", "Alice (ops)", "services paused", "Somerset Museums Volunteer Programme", "pull (inbox)")
	if got := b.Text("#count-dead b"); got != "3" {
		t.Errorf("dead letters on the overview: %q, want 3", got)
	}
	if n := b.Count(`meta[http-equiv="refresh"]`); n != 1 {
		t.Errorf("the overview does not reload itself (%d refresh tags)", n)
	}
	if st := b.Reload(); st != http.StatusOK {
		t.Errorf("reload: %d", st)
	}
	consolePage(t, b, "console-overview")

	// Filter: frome-walks' dead letters.
	if st := b.Press(`nav a[href="/admin/messages"]`); st != http.StatusOK {
		t.Fatalf("messages: %d", st)
	}
	b.Choose("#f-state", "dead")
	b.Choose("#f-service", "frome-walks")
	if st := b.PressButton("Show"); st != http.StatusOK {
		t.Fatalf("filter: %d", st)
	}
	if n := b.Count(`#messages tbody tr`); n != 3 {
		t.Errorf("the filtered list shows %d messages, want 3", n)
	}
	if !strings.Contains(b.URL(), "state=dead") || !strings.Contains(b.URL(), "service=frome-walks") {
		t.Errorf("the filter is not in the address: %s", b.URL())
	}
	consolePage(t, b, "console-dead-letters")

	// One message: the receiver's answer, the payload masked, then revealed (audited).
	if st := b.Press(`a[href="/admin/messages/` + ids[0] + `"]`); st != http.StatusOK {
		t.Fatalf("message: %d", st)
	}
	shows(t, b, "message", "HTTP 400 Bad Request", `{"error":"unknown referral code"}`, "patient details masked", "•••")
	if strings.Contains(b.Text("#payload"), "Margaret") {
		t.Error("the payload shows the patient's name before a reveal")
	}
	consolePage(t, b, "console-message")
	if st := b.PressButton("Reveal patient details"); st != http.StatusOK {
		t.Fatalf("reveal: %d", st)
	}
	if !strings.Contains(b.Text("#payload"), "Margaret") {
		t.Error("the revealed payload lacks the patient's name")
	}
	revealed := false
	for _, l := range logs.lines(t, "payload revealed") {
		revealed = revealed || (l["actor"] == "console:ops/Alice" && l["message_id"] == ids[0])
	}
	if !revealed {
		t.Error("the reveal is not in the audit log with the engineer and the message")
	}
	consolePage(t, b, "console-message-revealed")

	// Replay it: without a reason it is refused; with one it is pending again, recorded as Alice.
	if st := b.PressButton("Replay"); st != http.StatusBadRequest {
		t.Errorf("replay without a reason: %d", st)
	}
	shows(t, b, "refused replay", "A reason is required")
	if d := state(ids[0]); d.Message.State != outbox.StateDead {
		t.Fatalf("the refused replay changed the message: %s", d.Message.State)
	}
	b.Type("#replay-reason", "receiver fixed, INC-42")
	if st := b.PressButton("Replay"); st != http.StatusOK {
		t.Fatalf("replay: %d", st)
	}
	shows(t, b, "replayed", "Replayed 1 message(s)", "by console:ops/Alice (was dead): receiver fixed, INC-42")
	if d := state(ids[0]); d.Message.State != outbox.StatePending || len(d.Replays) != 1 || d.Replays[0].Actor != "console:ops/Alice" {
		t.Fatalf("after replay: %s %+v", d.Message.State, d.Replays)
	}
	consolePage(t, b, "console-replayed")

	// The rest, after a preview of how many.
	if st := b.Open(s.url + "/admin/messages?service=frome-walks&state=dead"); st != http.StatusOK {
		t.Fatalf("list: %d", st)
	}
	b.Type("#reason", "walks back up")
	if st := b.PressButton("Replay every dead message matching the filter…"); st != http.StatusOK {
		t.Fatalf("preview: %d", st)
	}
	shows(t, b, "preview", "Replay 2 dead message(s)?", "2 dead message(s) match: state dead, service frome-walks", "walks back up")
	if d := state(ids[1]); d.Message.State != outbox.StateDead {
		t.Fatal("the preview replayed something")
	}
	consolePage(t, b, "console-replay-preview")
	if st := b.PressButton("Replay 2 message(s)"); st != http.StatusOK {
		t.Fatalf("bulk replay: %d", st)
	}
	shows(t, b, "bulk replayed", "Replayed 2 message(s)")
	for _, id := range ids[1:] {
		if d := state(id); d.Message.State != outbox.StatePending {
			t.Errorf("%s after the bulk replay: %s", id, d.Message.State)
		}
	}

	// Pause the service, see it on the overview, resume it.
	if st := b.Open(s.url + "/admin/services/frome-walks"); st != http.StatusOK {
		t.Fatalf("service: %d", st)
	}
	b.Type("#pause-reason", "their server is down again")
	if st := b.PressButton("Pause deliveries"); st != http.StatusOK {
		t.Fatalf("pause: %d", st)
	}
	shows(t, b, "paused", "Paused:", "by console:ops/Alice: their server is down again", "Resume deliveries")
	consolePage(t, b, "console-service-paused")
	if st := b.Press(`nav a[href="/admin/"]`); st != http.StatusOK {
		t.Fatalf("overview: %d", st)
	}
	if got := b.Text("#paused-count b"); got != "1" {
		t.Errorf("services paused on the overview: %q", got)
	}
	shows(t, b, "overview while paused", "their server is down again")
	consolePage(t, b, "console-overview-paused")
	if st := b.Open(s.url + "/admin/services/frome-walks"); st != http.StatusOK {
		t.Fatalf("service: %d", st)
	}
	if st := b.PressButton("Resume deliveries"); st != http.StatusOK {
		t.Fatalf("resume: %d", st)
	}
	shows(t, b, "resumed", "Resumed: 3 waiting message(s)", "Deliveries are running")
	if ps, err := s.store.ListPauses(ctx); err != nil || len(ps) != 0 {
		t.Errorf("pauses after resume: %v %v", ps, err)
	}

	// Sign out: the console asks to sign in again.
	if st := b.PressButton("Sign out"); st != http.StatusOK {
		t.Fatalf("sign out: %d", st)
	}
	shows(t, b, "signed out", "Sign in to the operations console")
	if st := b.Open(s.url + "/admin/messages"); st != http.StatusUnauthorized {
		t.Errorf("the message list after sign-out: %d", st)
	}
}

// TestBrowserConsoleCrossSite: a page of another site that makes the engineer's browser post a console form
// (pause a service, replay a message) changes nothing: the browser says cross-site and sends no session
// cookie, the console refuses (403) and says why.
func TestBrowserConsoleCrossSite(t *testing.T) {
	t.Parallel()
	s, _ := consoleSite(t)
	msg, _ := deadLetterWith(t, s.harness, "CONSOLE-X-1")
	b := consoleBrowser(t, s.url)
	s.lastPost()
	forms := map[string]string{
		"/pause": fmt.Sprintf(`<form method="post" action="%s/admin/services/frome-walks/pause"><input name="reason" value="pwned">`+
			`<input name="csrf" value="%s"></form>`, s.url, strings.Repeat("0", 64)),
		"/replay": fmt.Sprintf(`<form method="post" action="%s/admin/messages/%s/replay"><input name="reason" value="pwned">`+
			`<input name="csrf" value="%s"></form>`, s.url, msg, strings.Repeat("0", 64)),
	}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>Win a prize</title>"+forms[r.URL.Path]+`<script>document.forms[0].submit()</script>`)
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) // another site
	for path := range forms {
		b.Open(evilURL + path)
		p := s.nextPost() // the page's script posts the form
		if p.status != http.StatusForbidden || p.fetchSite != "cross-site" || p.cookie {
			t.Errorf("%s: the console answered %d (Sec-Fetch-Site %q, session cookie sent %v); want 403, cross-site, no cookie",
				path, p.status, p.fetchSite, p.cookie)
		}
		b.WaitFor(fmt.Sprintf("location.host === %q && document.readyState === 'complete'", strings.TrimPrefix(s.url, "http://")))
		b.Shot("console-cross-site" + strings.ReplaceAll(path, "/", "-"))
	}
	if ps, _ := s.store.ListPauses(context.Background()); len(ps) != 0 {
		t.Errorf("a cross-site form paused %v", ps)
	}
	if d, _ := s.store.GetMessage(context.Background(), msg); d.Message.State != outbox.StateDead || len(d.Replays) != 0 {
		t.Errorf("a cross-site form replayed the message: %s", d.Message.State)
	}
	// Still signed in, nothing changed.
	b.Open(s.url + "/admin/services/frome-walks")
	shows(t, b, "after the attacks", "Alice (ops)", "Deliveries are running")
}
