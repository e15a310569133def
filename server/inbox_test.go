package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
)

// browser is a person's browser on the inbox: a cookie jar, no automatic redirects.
type browser struct {
	h      *harness
	client *http.Client
}

func newBrowser(h *harness) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return &browser{h: h, client: &http.Client{Jar: jar,
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
		req.Header.Set("Origin", b.h.url) // as a browser sends it with a form from this site
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

// signIn signs the browser in with token and checks the cookie it gets.
func (b *browser) signIn(token string) {
	b.h.t.Helper()
	r := b.post("/inbox/login", url.Values{"token": {token}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/inbox/" {
		b.h.t.Fatalf("sign-in: %d %s", r.status, r.body)
	}
	c := r.header.Get("Set-Cookie")
	for _, want := range []string{"socialrx_inbox=", "Path=/inbox/", "HttpOnly", "SameSite=Strict", "Max-Age=28800"} {
		if !strings.Contains(c, want) {
			b.h.t.Errorf("sign-in cookie %q lacks %q", c, want)
		}
	}
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
	contains(t, "sign-in page", r, `action="/inbox/login"`, `name="token"`)

	for _, c := range []struct {
		name   string
		form   url.Values
		ct     string
		status int
		says   string
	}{
		{"empty token", url.Values{"token": {" "}}, "", http.StatusBadRequest, "Paste your service"},
		{"unknown token", url.Values{"token": {"not-a-token"}}, "", http.StatusUnauthorized, "not recognised"},
		{"GP token", url.Values{"token": {tokGP}}, "", http.StatusForbidden, "the inbox is for community services"},
		{"admin token", url.Values{"token": {tokAdmin}}, "", http.StatusForbidden, "admin client"},
	} {
		r := b.post("/inbox/login", c.form)
		if r.status != c.status || r.header.Get("Set-Cookie") != "" {
			t.Errorf("%s: %d, Set-Cookie %q; want %d and no cookie", c.name, r.status, r.header.Get("Set-Cookie"), c.status)
		}
		contains(t, c.name, r, c.says, `data-field="token"`)
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
	// A form posted from another web site is refused (the browser names it in Origin).
	req, _ = http.NewRequest(http.MethodPost, h.url+"/inbox/login", strings.NewReader("token="+tokLinkWorkers))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	resp, err = b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("cross-site sign-in: %d, cookie %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
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
	contains(t, "empty inbox", r, "Mendip Social Prescribing Link Workers", "No referrals here.", `action="/inbox/logout"`)

	// A bearer token is not a sign-in: the inbox reads its cookie only.
	if r := h.do(http.MethodGet, "/inbox/", tokLinkWorkers, nil); !strings.Contains(string(r.body), `name="token"`) {
		t.Errorf("a bearer header signed the inbox in: %s", r.body)
	}

	if r := b.post("/inbox/logout", url.Values{}); r.status != http.StatusSeeOther || !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("sign out: %d %q", r.status, r.header.Get("Set-Cookie"))
	}
	if r := b.get("/inbox/"); !strings.Contains(string(r.body), `name="token"`) {
		t.Errorf("still signed in after signing out: %s", r.body)
	}
	if r := b.get("/inbox/referrals/anything"); r.status != http.StatusSeeOther {
		t.Errorf("a referral page when signed out: %d, want 303 to the sign-in page", r.status)
	}
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
		b.post(path, form("status", "rejected", "version", "1")), 1, "reason is required")
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
