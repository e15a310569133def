package server_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/server/internal/browsertest"
)

// The community inbox in a real headless Chromium (server/internal/browsertest), driven as a volunteer uses
// it. Nothing here sets Origin, Sec-Fetch-*, Referer or Cookie: the browser sends what it sends, and the
// site records it (observes, never changes it) so that the tests can say what browsers really do.

// post is one form post to /inbox/ as the server saw it.
type post struct {
	path, origin, fetchSite string
	cookie                  bool // the browser attached the session cookie
	status                  int
}

// site is socialrx on loopback for a browser: the harness's server, with every form post to /inbox/ recorded.
type site struct {
	*harness
	posts chan post
}

func newSite(t *testing.T) *site {
	t.Helper()
	s := &site{harness: newHarness(t, nil), posts: make(chan post, 256)}
	s.url = s.instance(s.cfg, s.record)
	return s
}

// record passes requests on and reports each form post to /inbox/ once it is answered.
func (s *site) record(next http.Handler) http.Handler {
	return s.recordUnder("/inbox/", "socialrx_inbox")(next)
}

// recordUnder is record for the form posts under prefix, whose session cookie is named cookie.
func (s *site) recordUnder(prefix, cookie string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, prefix) {
				next.ServeHTTP(w, r)
				return
			}
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			_, err := r.Cookie(cookie)
			p := post{path: r.URL.Path, origin: r.Header.Get("Origin"), fetchSite: r.Header.Get("Sec-Fetch-Site"), cookie: err == nil}
			next.ServeHTTP(sw, r)
			p.status = sw.status
			s.posts <- p
		})
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// lastPost is the latest form post answered (the test fails when there was none).
func (s *site) lastPost() post {
	s.t.Helper()
	var p post
	got := false
	for {
		select {
		case p = <-s.posts:
			got = true
		default:
			if !got {
				s.t.Fatal("no form post reached the server")
			}
			return p
		}
	}
}

// nextPost waits for the next form post to be answered (a page's script may send it at any time).
func (s *site) nextPost() post {
	s.t.Helper()
	select {
	case p := <-s.posts:
		return p
	case <-time.After(time.Minute): // a safety net for a browser that never posts, not a timing assertion
		s.t.Fatal("no form post reached the server")
		return post{}
	}
}

// referVariant posts fixture with its referral identifier changed to id (a different referral, same content
// otherwise) and edit applied to the JSON text; it returns the referral's ids.
func referVariant(h *harness, fixture, oldID, newID string, edit func(string) string) ids {
	h.t.Helper()
	body := strings.Replace(string(readFile(h.t, filepath.Join(referrals, fixture))), oldID, newID, 1)
	if edit != nil {
		body = edit(body)
	}
	path := "/fhir/ServiceRequest"
	if strings.Contains(fixture, "bundle") {
		path = "/fhir"
	}
	r := h.do(http.MethodPost, path, tokenFor(h.t, []byte(body)), []byte(body))
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		h.t.Fatalf("post %s as %s: %d %s", fixture, newID, r.status, r.body)
	}
	ref, err := h.store.GetReferral(context.Background(), srFromResponse(h.t, r)["id"].(string))
	if err != nil {
		h.t.Fatal(err)
	}
	return ids{referral: ref.Record.ID, task: ref.Record.TaskID}
}

// page checks what every inbox page must be on a phone (no sideways scrolling, the WCAG basics that can be
// checked mechanically) and keeps a screenshot.
func page(t *testing.T, b *browsertest.Browser, name string) {
	t.Helper()
	if o := b.Overflow(); o > 0 {
		t.Errorf("%s: the page is %d px wider than the %d px viewport (sideways scrolling)", name, o, browsertest.PhoneWidth)
	}
	for _, p := range b.Problems() {
		t.Errorf("%s: accessibility: %s", name, p)
	}
	b.Shot(name)
}

// shows asserts the page's visible text contains every want.
func shows(t *testing.T, b *browsertest.Browser, what string, wants ...string) {
	t.Helper()
	body := b.Body()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s: the page does not show %q:\n%s", what, w, body)
		}
	}
}

// refused presses button expecting a 422 that names want and links to the field with id field.
func refused(t *testing.T, b *browsertest.Browser, button, want, field string) {
	t.Helper()
	if st := b.PressButton(button); st != http.StatusUnprocessableEntity {
		t.Errorf("%s refused: %d, want 422", button, st)
	}
	shows(t, b, button+" refused", "There is a problem", want)
	if href := browsertest.Eval[string](b, `document.querySelector("#error-message a").getAttribute("href")`); href != "#"+field {
		t.Errorf("%s refused: the error links to %q, want #%s", button, href, field)
	}
	if d := browsertest.Eval[string](b, `document.getElementById("`+field+`").getAttribute("aria-describedby")`); d != "error-message" {
		t.Errorf("%s refused: #%s is not tied to the error (aria-describedby %q)", button, field, d)
	}
}

// signInWith fills in the sign-in form and presses Sign in; it returns the status of the page that follows.
func signInWith(b *browsertest.Browser, service, token string) int {
	b.Choose("#service", service)
	b.Type("#token", token)
	return b.PressButton("Sign in")
}

const longEmail = "social.prescribing.referrals.frome.valley.medical.centre@a-very-long-nhs-trust-domain.nhs.example"

// TestBrowserInboxWalk: a volunteer on a phone signs in, reads the list, opens referrals and makes every
// move the state machine offers (mark as seen, accept, note, start, hold, resume, complete; decline; could
// not complete), has forms refused with what they typed kept, signs out, and the old session cookie no
// longer opens anything. Every page fits 390 px and is screenshotted.
func TestBrowserInboxWalk(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	const fixture, ident = "link-worker-befriending-default.json", "FVMC-2025-0177"
	long := func(b string) string { return strings.ReplaceAll(b, "fvmc.referrals@nhs.example", longEmail) }
	r1 := referVariant(s.harness, fixture, ident, "FVMC-2025-1001", long)
	r2 := referVariant(s.harness, fixture, ident, "FVMC-2025-1002", nil)
	r3 := referVariant(s.harness, fixture, ident, "FVMC-2025-1003", nil)
	b := browsertest.New(t, browsertest.Options{})

	if st := b.Open(s.url + "/inbox/"); st != http.StatusOK {
		t.Fatalf("sign-in page: %d", st)
	}
	shows(t, b, "sign-in page", "Sign in to your referrals", "Your group", "Access token")
	page(t, b, "sign-in")
	// A keyboard user sees where they are: the first Tab lands on the skip link, drawn with a focus ring.
	if el, outline, shadow := b.FocusRing(); outline == "none" && shadow == "none" {
		t.Errorf("no visible focus on %s", el)
	}
	if st := signInWith(b, "link-workers", "not-the-token"); st != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d", st)
	}
	shows(t, b, "refused sign-in", "There is a problem", "does not match the group you chose")
	if v := b.Value("#service"); v != "link-workers" {
		t.Errorf("the group chosen was not kept: %q", v)
	}
	page(t, b, "sign-in-refused")
	if st := signInWith(b, "link-workers", tokLinkWorkers); st != http.StatusOK {
		t.Fatalf("sign in: %d", st)
	}
	if p := s.lastPost(); p.path != "/inbox/login" || p.status != http.StatusSeeOther {
		t.Errorf("sign-in post: %+v", p)
	}
	shows(t, b, "list", "Mendip Social Prescribing Link Workers", "Open (3)", "New (3)", "Closed (0)", "Harold Bishop",
		"Referred 21 November 2026, 09:00: waiting less than a minute")
	if n := b.Count("ul.referrals li"); n != 3 {
		t.Errorf("the list shows %d referrals, want 3", n)
	}
	page(t, b, "list")

	// Referral 1: the whole way to completed.
	if st := b.Press(`a[href="/inbox/referrals/` + r1.referral + `"]`); st != http.StatusOK {
		t.Fatalf("open referral: %d", st)
	}
	shows(t, b, "new referral", "Harold Bishop", "New", "Mark as seen", "Accept", "Decline", longEmail)
	if href := browsertest.Eval[string](b, `document.querySelector('a[href^="mailto:"]').getAttribute("href")`); href != "mailto:"+longEmail {
		t.Errorf("the referrer's email link is %q", href)
	}
	page(t, b, "referral-new")
	step := func(what, button string, want mapping.TaskStatus, version int, flash string) {
		t.Helper()
		if st := b.PressButton(button); st != http.StatusOK {
			t.Fatalf("%s: %d\n%s", what, st, b.Body())
		}
		shows(t, b, what, flash)
		rec, err := s.store.GetReferral(context.Background(), r1.referral)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Record.Status != want || rec.Record.Version != version {
			t.Fatalf("%s: stored %s v%d, want %s v%d", what, rec.Record.Status, rec.Record.Version, want, version)
		}
	}
	step("mark as seen", "Mark as seen", mapping.StatusReceived, 2, "the referral is now “Seen”")
	// What Chromium sent with our own form: Origin null (the page's Referrer-Policy is no-referrer) and
	// Sec-Fetch-Site same-origin. The old Origin check refused exactly this.
	if p := s.lastPost(); p.origin != "null" || p.fetchSite != "same-origin" || !p.cookie || p.status != http.StatusSeeOther {
		t.Errorf("Chromium's own form post: %+v", p)
	} else {
		t.Logf("Chromium posted our form with Origin %q, Sec-Fetch-Site %q", p.origin, p.fetchSite)
	}
	step("accept", "Accept", mapping.StatusAccepted, 3, "the referral is now “Accepted”")
	b.Type("#note", "Phoned Harold; first visit on Tuesday")
	step("note", "Add note", mapping.StatusAccepted, 4, "Your note was added.")
	shows(t, b, "note", "Phoned Harold; first visit on Tuesday")
	step("start", "Start", mapping.StatusInProgress, 5, "the referral is now “Started”")
	b.Type("#reason-on-hold", "In hospital for a week")
	step("hold", "Put on hold", mapping.StatusOnHold, 6, "the referral is now “On hold”")
	page(t, b, "referral-on-hold")
	step("resume", "Resume", mapping.StatusInProgress, 7, "the referral is now “Started”")
	b.Type("#outcome-completed", "Joined the Tuesday befriending group")
	step("complete", "Complete", mapping.StatusCompleted, 8, "the referral is now “Completed”")
	shows(t, b, "completed", "This referral is closed", "Joined the Tuesday befriending group")
	page(t, b, "referral-completed")
	task := s.do(http.MethodGet, "/fhir/Task/"+r1.task, tokGP, nil).json(t)
	if task["status"] != "completed" || !strings.Contains(string(mustMarshal(t, task["businessStatus"])), `"picked-up"`) {
		t.Errorf("GP Task: status %v businessStatus %v", task["status"], task["businessStatus"])
	}

	// Referral 2: Decline without a reason is refused and changes nothing; with one it is declined.
	b.Open(s.url + "/inbox/referrals/" + r2.referral)
	refused(t, b, "Decline", "Write the reason before you press “Decline”", "reason-rejected")
	page(t, b, "decline-refused")
	b.Type("#reason-rejected", "No volunteers in Frome until March")
	if st := b.PressButton("Decline"); st != http.StatusOK {
		t.Fatalf("decline: %d", st)
	}
	shows(t, b, "declined", "the referral is now “Declined”", "No volunteers in Frome until March")

	// Referral 3: accept, start, then Could not complete: refused without a reason, the outcome typed is kept.
	b.Open(s.url + "/inbox/referrals/" + r3.referral)
	b.PressButton("Accept")
	b.PressButton("Start")
	b.Type("#outcome-failed", "Moved to Bath before the first session")
	refused(t, b, "Could not complete", "Write the reason before you press “Could not complete”", "reason-failed")
	if v := b.Value("#outcome-failed"); v != "Moved to Bath before the first session" {
		t.Errorf("the outcome typed was not kept: %q", v)
	}
	page(t, b, "could-not-complete-refused")
	b.Type("#reason-failed", "Moved out of the area")
	if st := b.PressButton("Could not complete"); st != http.StatusOK {
		t.Fatalf("could not complete: %d", st)
	}
	shows(t, b, "not completed", "the referral is now “Not completed”", "Moved to Bath before the first session")

	b.Open(s.url + "/inbox/?show=closed")
	shows(t, b, "closed tab", "Open (0)", "New (0)", "Closed (3)", "All (3)")
	page(t, b, "list-closed")

	// Sign out; the session cookie, kept from before and put back into the browser, opens nothing.
	before := b.Cookies(s.url + "/inbox/")
	if len(before) != 1 || before[0].Name != "socialrx_inbox" || !before[0].HTTPOnly || before[0].SameSite != "Strict" {
		t.Fatalf("the browser's inbox cookies: %+v", before)
	}
	if st := b.PressButton("Sign out"); st != http.StatusOK {
		t.Fatalf("sign out: %d", st)
	}
	shows(t, b, "signed out", "You are signed out.", "Sign in to your referrals")
	page(t, b, "signed-out")
	if left := b.Cookies(s.url + "/inbox/"); len(left) != 0 {
		t.Errorf("cookies left after sign-out: %+v", left)
	}
	b.Restore(before)
	if st := b.Open(s.url + "/inbox/referrals/" + r1.referral); st != http.StatusOK || !strings.HasSuffix(b.URL(), "/inbox/") {
		t.Errorf("the old session cookie: %d at %s", st, b.URL())
	}
	b.Reload()
	shows(t, b, "old cookie", "Sign in to your referrals")
	if strings.Contains(b.Body(), "Harold Bishop") {
		t.Error("the old session cookie still showed a referral")
	}
}

// TestBrowserInboxSessionEnds: rotating the group's token ends its session on every instance: another
// instance started with the new directory refuses the session at once (and deletes it), and the instance
// still on the old directory refuses it too.
func TestBrowserInboxSessionEnds(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	refer(s.harness, "", "link-worker-befriending-default.json")
	b := browsertest.New(t, browsertest.Options{})
	b.Open(s.url + "/inbox/")
	if st := signInWith(b, "link-workers", tokLinkWorkers); st != http.StatusOK {
		t.Fatalf("sign in: %d", st)
	}
	shows(t, b, "signed in", "Harold Bishop")
	session := b.Cookies(s.url + "/inbox/")

	rotated, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	for i := range rotated.Clients {
		if rotated.Clients[i].ID == "link-workers" {
			rotated.Clients[i].TokenSHA256 = sha256.Sum256([]byte("the-new-link-workers-token"))
		}
	}
	other := s.instance(rotated, nil) // same host, another port: the browser sends the same cookie
	if st := b.Open(other + "/inbox/"); st != http.StatusOK {
		t.Fatalf("the rotated instance: %d", st)
	}
	shows(t, b, "after rotation", "You were signed out", "Sign in to your referrals")
	page(t, b, "session-ended-by-rotation")
	// The first instance, still on the old directory, gets the same cookie back and refuses it: the session
	// is gone from the shared database.
	b.Restore(session)
	b.Open(s.url + "/inbox/")
	shows(t, b, "old instance", "You were signed out", "Sign in to your referrals")
	// The new token works on the rotated instance.
	b.Open(other + "/inbox/")
	if st := signInWith(b, "link-workers", "the-new-link-workers-token"); st != http.StatusOK {
		t.Fatalf("sign in with the new token: %d", st)
	}
	shows(t, b, "new token", "Harold Bishop")
}

// TestBrowserInboxThrottle: after five wrong sign-ins from one browser, the sixth (even with the right
// token) is answered 429 with Retry-After and a message saying what to do.
func TestBrowserInboxThrottle(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	b := browsertest.New(t, browsertest.Options{})
	b.Open(s.url + "/inbox/")
	for i := range 5 {
		if st := signInWith(b, "museum-volunteers", fmt.Sprintf("guess-%d", i)); st != http.StatusUnauthorized {
			t.Fatalf("wrong sign-in %d: %d", i+1, st)
		}
	}
	if st := signInWith(b, "museum-volunteers", tokMuseum); st != http.StatusTooManyRequests {
		t.Fatalf("sixth sign-in: %d, want 429", st)
	}
	if b.Header("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	shows(t, b, "throttled", "Too many wrong sign-ins from this device or network recently", "try again")
	if c := b.Cookies(s.url + "/inbox/"); len(c) != 0 {
		t.Errorf("a throttled sign-in left cookies: %+v", c)
	}
	page(t, b, "sign-in-throttled")
}

// TestBrowserInboxCrossSite: a page of another site (localhost, while the inbox is at 127.0.0.1) that
// auto-submits forms to the inbox of a signed-in volunteer changes nothing: not a status move, not a
// sign-in as another group, not from a sandboxed frame whose Origin is null.
func TestBrowserInboxCrossSite(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	ref := refer(s.harness, "", "link-worker-befriending-default.json")
	b := browsertest.New(t, browsertest.Options{})
	b.Open(s.url + "/inbox/")
	if st := signInWith(b, "link-workers", tokLinkWorkers); st != http.StatusOK {
		t.Fatalf("sign in: %d", st)
	}
	s.lastPost()

	form := fmt.Sprintf(`<form method="post" action="%s/inbox/referrals/%s/status">`+
		`<input name="status" value="accepted"><input name="version" value="1"><input name="csrf" value="%s"></form>`,
		s.url, ref.referral, strings.Repeat("0", 64))
	login := fmt.Sprintf(`<form method="post" action="%s/inbox/login"><input name="service" value="museum-volunteers">`+
		`<input name="token" value="%s"></form>`, s.url, tokMuseum)
	submit := `<script>document.forms[0].submit()</script>`
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch r.URL.Path {
		case "/accept":
			fmt.Fprint(w, "<!doctype html><title>Win a prize</title>"+form+submit)
		case "/login":
			fmt.Fprint(w, "<!doctype html><title>Win a prize</title>"+login+submit)
		case "/sandboxed":
			fmt.Fprintf(w, `<!doctype html><title>Win a prize</title><iframe sandbox="allow-forms allow-scripts" srcdoc="%s"></iframe>`,
				strings.ReplaceAll(form+submit, `"`, "&quot;"))
		}
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) // another site
	inboxHost := strings.TrimPrefix(s.url, "http://")

	version := func() int {
		t.Helper()
		r, err := s.store.GetReferral(context.Background(), ref.referral)
		if err != nil {
			t.Fatal(err)
		}
		return r.Record.Version
	}
	for _, attack := range []struct{ path, shot string }{{"/accept", "cross-site-move"}, {"/login", "cross-site-sign-in"}} {
		b.Open(evilURL + attack.path)
		p := s.nextPost() // the page's script posts the form
		if p.status != http.StatusForbidden || p.fetchSite != "cross-site" || p.cookie {
			t.Errorf("%s: the inbox answered %d (Sec-Fetch-Site %q, session cookie sent %v); want 403, cross-site, no cookie",
				attack.path, p.status, p.fetchSite, p.cookie)
		}
		b.WaitFor(fmt.Sprintf("location.host === %q && document.readyState === 'complete'", inboxHost))
		shows(t, b, attack.path, "the form was sent from another web site")
		page(t, b, attack.shot)
	}
	p := func() post { b.Open(evilURL + "/sandboxed"); return s.nextPost() }()
	if p.status != http.StatusForbidden || p.origin != "null" || p.fetchSite != "cross-site" {
		t.Errorf("sandboxed frame: %+v; want 403 for Origin null, Sec-Fetch-Site cross-site", p)
	}
	if v := version(); v != 1 {
		t.Errorf("a cross-site form changed the referral: version %d", v)
	}
	// The volunteer is still signed in as their own group, and the referral is untouched.
	b.Open(s.url + "/inbox/referrals/" + ref.referral)
	shows(t, b, "after the attacks", "Mendip Social Prescribing Link Workers", "Harold Bishop", "New", "Mark as seen")
}

// TestBrowserREADMEWalkthrough follows README.md's inbox walk-through as written, in a desktop browser: the
// museum referral posted as a transaction Bundle by the PCN hub waits in the museum's inbox; sign in as
// "Somerset Museums Volunteer Programme" with demo-museum-token, open it, Mark as seen, then Accept, and the
// GP's Task follows (received, then accepted, a new meta.versionId each time).
func TestBrowserREADMEWalkthrough(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	body := readFile(t, filepath.Join(referrals, "museum-volunteering-bundle.json"))
	if r := s.do(http.MethodPost, "/fhir", tokPCN, body); r.status != http.StatusOK {
		t.Fatalf("the README's transaction Bundle: %d %s", r.status, r.body)
	}
	refs, _, err := s.store.SearchReferrals(context.Background(), outbox.ReferralQuery{ServiceID: "museum-volunteers"})
	if err != nil || len(refs) != 1 {
		t.Fatalf("museum referrals: %d, %v", len(refs), err)
	}
	ref := refs[0]
	taskVersion := func() (string, string) {
		t.Helper()
		task := s.do(http.MethodGet, "/fhir/Task/"+ref.Record.TaskID, tokPCN, nil).json(t)
		return task["status"].(string), task["meta"].(map[string]any)["versionId"].(string)
	}

	b := browsertest.New(t, browsertest.Options{Width: browsertest.DesktopWidth, Height: browsertest.DesktopHeight})
	b.Open(s.url + "/inbox/")
	if got := browsertest.Eval[string](b, `[...document.querySelectorAll("#service option")].find(o => o.value === "museum-volunteers").text`); got != "Somerset Museums Volunteer Programme" {
		t.Errorf("the museum is listed as %q", got)
	}
	if st := signInWith(b, "museum-volunteers", "demo-museum-token"); st != http.StatusOK {
		t.Fatalf("sign in: %d", st)
	}
	b.Shot("readme-list")
	if st := b.Press(`a[href="/inbox/referrals/` + ref.Record.ID + `"]`); st != http.StatusOK {
		t.Fatalf("open: %d", st)
	}
	shows(t, b, "museum referral", "2 July 1990", "Mark as seen", "Accept")
	b.Shot("readme-referral")
	b.PressButton("Mark as seen")
	if st, v := taskVersion(); st != "received" || v != "2" {
		t.Errorf("after Mark as seen the GP's Task is %s v%s, want received v2", st, v)
	}
	b.PressButton("Accept")
	if st, v := taskVersion(); st != "accepted" || v != "3" {
		t.Errorf("after Accept the GP's Task is %s v%s, want accepted v3", st, v)
	}
	shows(t, b, "accepted", "the referral is now “Accepted”")
	b.Shot("readme-accepted")
}
