package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// browser is a program on the inbox that is not a web browser (like curl, or a browser too old to send
// Fetch Metadata): a cookie jar, no automatic redirects, and no Origin, Sec-Fetch-* or Referer headers, which
// only a browser sends (the real-browser tests in inbox_browser_test.go cover those). What protects such a
// client's forms is the SameSite=Strict session and the CSRF token.
type browser struct {
	h      *harness
	client *http.Client
	jar    http.CookieJar
}

func newBrowser(h *harness) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return &browser{h: h, jar: jar, client: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// get fetches a page.
func (b *browser) get(path string) response {
	b.h.t.Helper()
	return b.send(http.MethodGet, path, nil)
}

// post submits a form.
func (b *browser) post(path string, form url.Values) response {
	b.h.t.Helper()
	return b.send(http.MethodPost, path, form)
}

func (b *browser) send(method, path string, form url.Values) response {
	b.h.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.h.url+path, body)
	if err != nil {
		b.h.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.h.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// inboxServiceOf is the service whose inbox a demo community token opens.
var inboxServiceOf = map[string]string{tokLinkWorkers: "link-workers", tokMuseum: "museum-volunteers", tokWalks: "frome-walks"}

// signIn signs the browser in with token (for its own service) and checks the cookie it gets.
func (b *browser) signIn(token string) {
	b.h.t.Helper()
	r := b.post("/inbox/login", url.Values{"service": {inboxServiceOf[token]}, "token": {token}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/inbox/" {
		b.h.t.Fatalf("sign-in: %d %s", r.status, r.body)
	}
	c := r.header.Get("Set-Cookie")
	for _, want := range []string{"socialrx_inbox=", "Path=/inbox/", "HttpOnly", "SameSite=Strict", "Max-Age=28800"} {
		if !strings.Contains(c, want) {
			b.h.t.Errorf("sign-in cookie %q lacks %q", c, want)
		}
	}
	if strings.Contains(c, token) || strings.Contains(c, url.QueryEscape(token)) {
		b.h.t.Errorf("the sign-in cookie holds the token: %q", c)
	}
}

// cookie is the browser's inbox session cookie ("" when it has none).
func (b *browser) cookie() string {
	u, _ := url.Parse(b.h.url + "/inbox/")
	for _, c := range b.jar.Cookies(u) {
		if c.Name == "socialrx_inbox" {
			return c.Value
		}
	}
	return ""
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`)

// csrf reads the form token from a page.
func csrf(t *testing.T, page response) string {
	t.Helper()
	m := csrfField.FindSubmatch(page.body)
	if m == nil {
		t.Fatalf("no CSRF field on the page: %s", page.body)
	}
	return string(m[1])
}

// checkPageHeaders asserts what every inbox page must carry.
func checkPageHeaders(t *testing.T, what string, r response) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", what, k, got, want)
		}
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "form-action 'self'") {
		t.Errorf("%s: Content-Security-Policy %q", what, csp)
	}
}

func contains(t *testing.T, what string, r response, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(string(r.body), w) {
			t.Errorf("%s: the page lacks %q:\n%s", what, w, r.body)
		}
	}
}

func TestInboxSignIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	b := newBrowser(h)

	r := b.get("/inbox")
	if r.status != http.StatusMovedPermanently || r.header.Get("Location") != "/inbox/" {
		t.Errorf("/inbox: %d %s", r.status, r.header.Get("Location"))
	}
	r = b.get("/inbox/")
	checkPageHeaders(t, "sign-in page", r)
	if r.status != http.StatusOK {
		t.Fatalf("sign-in page: %d", r.status)
	}
	contains(t, "sign-in page", r, `action="/inbox/login"`, `name="token"`, `name="service"`,
		`<option value="link-workers">Mendip Social Prescribing Link Workers</option>`, "for 30 minutes without use, and for 8 hours at most")

	// Every wrong token gets the same answer: the page never tells whose token it was, nor its role.
	const wrong = "That access token does not match the group you chose."
	for _, c := range []struct {
		name   string
		form   url.Values
		status int
		field  string
		says   string
	}{
		{"no group", url.Values{"token": {tokLinkWorkers}}, http.StatusBadRequest, "service", "Choose your group"},
		{"unknown group", url.Values{"service": {"nobody"}, "token": {tokLinkWorkers}}, http.StatusBadRequest, "service", "Choose your group"},
		{"empty token", url.Values{"service": {"link-workers"}, "token": {" "}}, http.StatusBadRequest, "token", "Paste your group"},
		{"unknown token", url.Values{"service": {"link-workers"}, "token": {"not-a-token"}}, http.StatusUnauthorized, "token", wrong},
		{"another group's token", url.Values{"service": {"link-workers"}, "token": {tokMuseum}}, http.StatusUnauthorized, "token", wrong},
		{"GP token", url.Values{"service": {"link-workers"}, "token": {tokGP}}, http.StatusUnauthorized, "token", wrong},
	} {
		r := b.post("/inbox/login", c.form)
		if r.status != c.status || r.header.Get("Set-Cookie") != "" {
			t.Errorf("%s: %d, Set-Cookie %q; want %d and no cookie", c.name, r.status, r.header.Get("Set-Cookie"), c.status)
		}
		contains(t, c.name, r, c.says, `data-field="`+c.field+`"`, `aria-describedby="error-message"`)
		for _, leak := range []string{"gp client", "admin", "community client", "belongs to"} {
			if strings.Contains(strings.ToLower(string(r.body)), leak) {
				t.Errorf("%s: the page says %q", c.name, leak)
			}
		}
		if c.field == "token" && !strings.Contains(string(r.body), `selected>Mendip Social Prescribing Link Workers`) {
			t.Errorf("%s: the group chosen was not kept", c.name)
		}
		checkPageHeaders(t, c.name, r)
	}
	// A form that is not a web form (e.g. JSON) is refused, not guessed at.
	req, _ := http.NewRequest(http.MethodPost, h.url+"/inbox/login", strings.NewReader(`{"token":"`+tokLinkWorkers+`"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("JSON sign-in: %d, cookie %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
	// Wrong method: 405 with Allow.
	if r := b.get("/inbox/login"); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
		t.Errorf("GET /inbox/login: %d Allow %q", r.status, r.header.Get("Allow"))
	}

	b.signIn(tokLinkWorkers)
	r = b.get("/inbox/")
	if r.status != http.StatusOK {
		t.Fatalf("inbox: %d %s", r.status, r.body)
	}
	contains(t, "empty inbox", r, "Mendip Social Prescribing Link Workers", "No referrals here.", `action="/inbox/logout"`,
		"Open (0)", "New (0)", "Closed (0)", "All (0)")

	// A bearer token is not a sign-in: the inbox reads its cookie only.
	if r := h.do(http.MethodGet, "/inbox/", tokLinkWorkers, nil); !strings.Contains(string(r.body), `name="token"`) {
		t.Errorf("a bearer header signed the inbox in: %s", r.body)
	}

	// Sign-out needs the page's CSRF token (another site cannot sign a volunteer out either)…
	session := b.cookie()
	if r := b.post("/inbox/logout", url.Values{}); r.status != http.StatusForbidden || b.cookie() != session {
		t.Errorf("sign out without the page's token: %d, cookie kept %v", r.status, b.cookie() == session)
	}
	r = b.post("/inbox/logout", url.Values{"csrf": {csrf(t, b.get("/inbox/"))}})
	if r.status != http.StatusSeeOther || !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("sign out: %d %q", r.status, r.header.Get("Set-Cookie"))
	}
	if r := b.get(r.header.Get("Location")); !strings.Contains(string(r.body), `name="token"`) || !strings.Contains(string(r.body), "You are signed out.") {
		t.Errorf("still signed in after signing out: %s", r.body)
	}
	if r := b.get("/inbox/referrals/anything"); r.status != http.StatusSeeOther {
		t.Errorf("a referral page when signed out: %d, want 303 to the sign-in page", r.status)
	}
	// …and ends the session in the database: the old cookie, presented again (as a copy of it would be),
	// opens nothing and is deleted.
	u, _ := url.Parse(h.url + "/inbox/")
	b.jar.SetCookies(u, []*http.Cookie{{Name: "socialrx_inbox", Value: session, Path: "/inbox/"}})
	r = b.get("/inbox/")
	if !strings.Contains(string(r.body), `name="token"`) || !strings.Contains(string(r.body), "You were signed out") ||
		!strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("the signed-out session's cookie still opened the inbox: %s", r.body)
	}
}

// TestInboxThrottle429: past the limit of wrong sign-ins from one address, the sign-in page answers 429 with
// Retry-After and says when to try again, without looking at the token.
func TestInboxThrottle429(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	b := newBrowser(h)
	for i := range 5 {
		if r := b.post("/inbox/login", url.Values{"service": {"museum-volunteers"}, "token": {"guess-" + string(rune('a'+i))}}); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong sign-in %d: %d", i+1, r.status)
		}
	}
	r := b.post("/inbox/login", url.Values{"service": {"museum-volunteers"}, "token": {tokMuseum}})
	if r.status != http.StatusTooManyRequests || r.header.Get("Set-Cookie") != "" {
		t.Fatalf("sixth sign-in: %d, cookie %q; want 429 and no cookie", r.status, r.header.Get("Set-Cookie"))
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 15*60 {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	contains(t, "throttled sign-in", r, "Too many wrong sign-ins from this device or network recently", "try again")
	checkPageHeaders(t, "throttled sign-in", r)
}

// TestInboxWalk: a group with no IT walks a referral from new to completed in the browser, and the GP's
// Task follows; bad forms change nothing.
func TestInboxWalk(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, "", "link-worker-befriending-default.json") // default service: link-workers, pull-only
	other := refer(h, "", "museum-volunteering-bundle.json")
	b := newBrowser(h)
	b.signIn(tokLinkWorkers)

	list := b.get("/inbox/")
	checkPageHeaders(t, "list", list)
	contains(t, "list", list, "Harold Bishop", `href="/inbox/referrals/`+ref.referral+`"`, "New")
	if strings.Contains(string(list.body), other.referral) {
		t.Errorf("the link workers' inbox lists the museum's referral %s", other.referral)
	}
	if r := b.get("/inbox/?show=closed"); !strings.Contains(string(r.body), "No referrals here.") {
		t.Errorf("closed list: %s", r.body)
	}
	if r := b.get("/inbox/?show=everything"); r.status != http.StatusBadRequest {
		t.Errorf("unknown list: %d", r.status)
	}

	page := b.get("/inbox/referrals/" + ref.referral)
	checkPageHeaders(t, "referral page", page)
	contains(t, "referral page", page, "Harold Bishop", "9993446637", "Would like someone to talk to",
		"Mark as seen", "Accept", "Decline", `name="version" value="1"`)
	token := csrf(t, page)
	path := "/inbox/referrals/" + ref.referral + "/status"
	form := func(kv ...string) url.Values {
		v := url.Values{"csrf": {token}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	stored := func() mapping.Record {
		t.Helper()
		r, err := h.store.GetReferral(context.Background(), ref.referral)
		if err != nil {
			t.Fatal(err)
		}
		return r.Record
	}
	unchanged := func(what string, status int, r response, version int, says string) {
		t.Helper()
		if r.status != status {
			t.Errorf("%s: %d, want %d: %s", what, r.status, status, r.body)
		}
		contains(t, what, r, says)
		if v := stored().Version; v != version {
			t.Errorf("%s changed the referral: version %d, want %d", what, v, version)
		}
	}

	// Refused forms change nothing.
	noCSRF := form("status", "received", "version", "1")
	noCSRF.Del("csrf")
	unchanged("no CSRF token", http.StatusForbidden, b.post(path, noCSRF), 1, "did not come from your inbox page")
	bad := form("status", "received", "version", "1")
	bad.Set("csrf", strings.Repeat("0", 64))
	unchanged("wrong CSRF token", http.StatusForbidden, b.post(path, bad), 1, "did not come from your inbox page")
	unchanged("decline without a reason", http.StatusUnprocessableEntity,
		b.post(path, form("status", "rejected", "version", "1")), 1, "Write the reason before you press “Decline”")
	unchanged("complete a new referral", http.StatusConflict,
		b.post(path, form("status", "completed", "outcome", "done", "version", "1")), 1, "the referral is requested and cannot move to completed")
	unchanged("cancel (the GP's move)", http.StatusBadRequest,
		b.post(path, form("status", "cancelled", "reason", "x", "version", "1")), 1, "is not a status a service sets")
	unchanged("no version", http.StatusBadRequest, b.post(path, form("status", "received")), 1, "missing the referral")
	unchanged("empty note", http.StatusUnprocessableEntity, b.post(path, form("note", " ", "version", "1")), 1, "Write a note")

	step := func(what string, f url.Values, wantStatus mapping.TaskStatus, wantVersion int, flash string) {
		t.Helper()
		r := b.post(path, f)
		if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/inbox/referrals/"+ref.referral+"?done=") {
			t.Fatalf("%s: %d %s %s", what, r.status, r.header.Get("Location"), r.body)
		}
		if rec := stored(); rec.Status != wantStatus || rec.Version != wantVersion {
			t.Fatalf("%s: stored %s v%d, want %s v%d", what, rec.Status, rec.Version, wantStatus, wantVersion)
		}
		contains(t, what, b.get(r.header.Get("Location")), flash)
	}
	step("mark as seen", form("status", "received", "version", "1"), mapping.StatusReceived, 2, "“Seen”")
	step("the same again (a double click)", form("status", "received", "version", "2"), mapping.StatusReceived, 2, "Nothing to change")
	unchanged("a stale page", http.StatusConflict, b.post(path, form("status", "accepted", "version", "1")), 2,
		"Someone changed this referral since you opened it")
	step("accept", form("status", "accepted", "version", "2"), mapping.StatusAccepted, 3, "“Accepted”")
	step("note", form("note", "Phoned Harold; first visit on Tuesday", "version", "3"), mapping.StatusAccepted, 4, "Your note was added.")
	step("start", form("status", "in-progress", "version", "4"), mapping.StatusInProgress, 5, "“Started”")
	step("complete", form("status", "completed", "outcome", "Joined the Tuesday befriending group", "version", "5"), mapping.StatusCompleted, 6, "“Completed”")

	done := b.get("/inbox/referrals/" + ref.referral)
	contains(t, "completed referral", done, "Joined the Tuesday befriending group", "Phoned Harold; first visit on Tuesday",
		"This referral is closed")
	if strings.Contains(string(done.body), `name="status"`) {
		t.Error("a closed referral still offers moves")
	}

	// The GP's Task followed every step (valid FHIR, checked by the harness).
	task := h.do(http.MethodGet, "/fhir/Task/"+ref.task, tokGP, nil).json(t)
	if task["status"] != "completed" || task["meta"].(map[string]any)["versionId"] != "6" {
		t.Errorf("GP Task: status %v meta %v", task["status"], task["meta"])
	}
	if out, _ := task["output"].([]any); len(out) == 0 || !strings.Contains(string(mustMarshal(t, out)), "Joined the Tuesday befriending group") {
		t.Errorf("GP Task output %v", task["output"])
	}
	if notes, _ := task["note"].([]any); len(notes) != 1 || !strings.Contains(string(mustMarshal(t, notes)), "Mendip Social Prescribing Link Workers") {
		t.Errorf("GP Task notes %v", task["note"])
	}
	// A pull-only referral the service has acted on no longer says it is waiting to be collected.
	if bs := string(mustMarshal(t, task["businessStatus"])); !strings.Contains(bs, `"code":"picked-up"`) {
		t.Errorf("GP Task businessStatus %s, want picked-up", bs)
	}

	// Another service's referral does not exist for this group, and cannot be changed.
	if r := b.get("/inbox/referrals/" + other.referral); r.status != http.StatusNotFound || strings.Contains(string(r.body), "Volunteer") {
		t.Errorf("another service's referral: %d %s", r.status, r.body)
	}
	r := b.post("/inbox/referrals/"+other.referral+"/status", form("status", "received", "version", "1"))
	if rec, err := h.store.GetReferral(context.Background(), other.referral); err != nil || r.status != http.StatusNotFound || rec.Record.Version != 1 {
		t.Errorf("changing another service's referral: %d, version %d, %v", r.status, rec.Record.Version, err)
	}
}

// TestInboxEscapes: what a GP system sent is shown as text, never as markup.
func TestInboxEscapes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	body := readFile(t, filepath.Join(referrals, "link-worker-befriending-default.json"))
	body = []byte(strings.Replace(string(body), "Harold Bishop", `<script>alert(1)</script> Bishop`, 1))
	if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, body); r.status != http.StatusCreated {
		t.Fatalf("post: %d %s", r.status, r.body)
	}
	b := newBrowser(h)
	b.signIn(tokLinkWorkers)
	r := b.get("/inbox/")
	if strings.Contains(string(r.body), "<script>") || !strings.Contains(string(r.body), "&lt;script&gt;alert(1)&lt;/script&gt; Bishop") {
		t.Errorf("the patient's name is not escaped: %s", r.body)
	}
}

// TestInboxAtAGlance: what a coordinator needs without opening anything: counts per tab, urgent first, how
// long each referral has waited, an overdue mark, UK local time (BST in summer), readable dates, phone and
// email links, Decline apart from Accept; and a refused form keeps what was typed.
func TestInboxAtAGlance(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	body := string(readFile(t, filepath.Join(referrals, "museum-volunteering-bundle.json")))
	// An urgent referral made on 1 July 2026 at 09:00 UTC (10:00 BST)…
	h.clock.Store(time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC).UnixMicro())
	urgent := strings.Replace(strings.Replace(body, `"priority": "routine"`, `"priority": "urgent"`, 1), "MVS-88412", "MVS-88413", 1)
	if r := h.do(http.MethodPost, "/fhir", tokPCN, []byte(urgent)); r.status != http.StatusOK {
		t.Fatalf("urgent referral: %d %s", r.status, r.body)
	}
	// …and a routine one on 21 November 2026 at 09:00 UTC (09:00 GMT), changed last.
	h.clock.Store(time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC).UnixMicro())
	routine := refer(h, tokPCN, "museum-volunteering-bundle.json")
	h.clock.Store(time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC).UnixMicro())

	b := newBrowser(h)
	b.signIn(tokMuseum)
	list := b.get("/inbox/")
	contains(t, "list", list, "Open (2)", "New (2)", "Closed (0)", "All (2)",
		"Referred 1 July 2026, 10:00: waiting 146 days", "Referred 21 November 2026, 09:00: waiting 3 days",
		`<span class="tag urgent">Urgent</span>`)
	page := string(list.body)
	if u, r := strings.Index(page, "1 July 2026"), strings.Index(page, "21 November 2026"); u < 0 || r < 0 || u > r {
		t.Errorf("the urgent referral is not listed first (at %d, the routine one at %d)", u, r)
	}
	if strings.Contains(page, "Overdue") {
		t.Error("an overdue mark before anything is overdue")
	}

	// The overdue sweep marks the routine referral; the list and the page say so.
	if _, err := h.store.UpdateReferral(context.Background(), routine.referral, 0, time.Date(2026, 11, 24, 9, 31, 0, 0, time.UTC),
		func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			next, _ := mapping.MarkBusinessStatus(cur.Referral, mapping.BusinessOverdue)
			return next, nil, nil
		}); err != nil {
		t.Fatal(err)
	}
	contains(t, "list with an overdue referral", b.get("/inbox/"), `<span class="tag overdue">Overdue</span>`)
	one := b.get("/inbox/referrals/" + routine.referral)
	contains(t, "referral page", one, "Overdue: the GP practice has not had an answer in the agreed time",
		"<dd>2 July 1990</dd>", `<a href="tel:07700900456">07700 900456</a>`, `<a href="mailto:d.okafor@example.net">d.okafor@example.net</a>`,
		`<a href="mailto:tom.haddon@nhs.example">tom.haddon@nhs.example</a>`,
		`<form class="move go" method="post"`, `<button class="go" type="submit">Accept</button>`,
		`<form class="move stop" method="post"`, `<button class="stop" type="submit">Decline</button>`)

	// A refused form keeps what the volunteer typed, and points at the field.
	r := b.post("/inbox/referrals/"+routine.referral+"/status", url.Values{"csrf": {csrf(t, one)}, "version": {"2"},
		"status": {"rejected"}, "reason": {"  "}})
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("decline without a reason: %d %s", r.status, r.body)
	}
	contains(t, "refused decline", r, `id="reason-rejected" name="reason" rows="2" class="invalid" aria-invalid="true" aria-describedby="error-message">  </textarea>`)
	r = b.post("/inbox/referrals/"+routine.referral+"/status", url.Values{"csrf": {csrf(t, one)}, "version": {"2"},
		"note": {strings.Repeat("Long note. ", 400)}})
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("a note too long: %d", r.status)
	}
	contains(t, "refused note", r, "The note is too long", `aria-invalid="true" aria-describedby="error-message">Long note. Long note.`)
}
