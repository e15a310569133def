package communityapi

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// The community inbox page (/inbox/, docs/design.md#community-inbox-page): server-rendered HTML for community groups with no IT, doing
// what the community API does (list, read, acknowledge, accept, decline, start, hold, complete, not complete,
// add a note) through the same use cases (referral.Service.Search, Get and ChangeStatus: the state machine, one
// store transaction).
//
// Sign-in: the group pastes its community token once; it is kept in an HttpOnly, SameSite=Strict cookie
// scoped to /inbox/ (Secure behind TLS) and checked like a bearer token on every request, so rotating the
// token in the directory file signs everyone out at once and any instance can serve any request. Forms carry
// a CSRF token derived from the signed-in token (HMAC), checked on every change. Pages are never cached.

const (
	inboxCookie = "socialrx_inbox"
	inboxPath   = "/inbox/"
	// inboxSession is how long a browser keeps the sign-in.
	inboxSession = 8 * time.Hour
	// inboxFormMax bounds a posted form.
	inboxFormMax = 64 << 10
)

//go:embed inbox.html.tmpl
var inboxTemplateText string

// inboxTemplates parses the inbox page templates (html/template: every value is escaped for its context).
func inboxTemplates() (*template.Template, error) {
	return template.New("inbox").Funcs(template.FuncMap{
		"label": statusLabel,
		"when":  func(t time.Time) string { return t.UTC().Format("2 Jan 2006 15:04 UTC") },
		"join":  strings.Join,
		"needsReason": func(st mapping.TaskStatus) bool {
			return st == mapping.StatusRejected || st == mapping.StatusOnHold || st == mapping.StatusFailed
		},
		"takesOutcome": func(st mapping.TaskStatus) bool {
			return st == mapping.StatusCompleted || st == mapping.StatusFailed
		},
	}).Parse(inboxTemplateText)
}

// statusLabel is a status as a volunteer reads it.
func statusLabel(st mapping.TaskStatus) string {
	switch st {
	case mapping.StatusRequested:
		return "New"
	case mapping.StatusReceived:
		return "Seen"
	case mapping.StatusAccepted:
		return "Accepted"
	case mapping.StatusRejected:
		return "Declined"
	case mapping.StatusInProgress:
		return "Started"
	case mapping.StatusOnHold:
		return "On hold"
	case mapping.StatusCompleted:
		return "Completed"
	case mapping.StatusFailed:
		return "Not completed"
	case mapping.StatusCancelled:
		return "Cancelled by the GP"
	case mapping.StatusEnteredInError:
		return "Entered in error"
	}
	return string(st)
}

// inboxAction is one move offered as a button on a referral page.
type inboxAction struct {
	Status mapping.TaskStatus
	Label  string
}

// actionLabel is the button text of a move.
func actionLabel(st mapping.TaskStatus) string {
	switch st {
	case mapping.StatusReceived:
		return "Mark as seen"
	case mapping.StatusAccepted:
		return "Accept"
	case mapping.StatusRejected:
		return "Decline"
	case mapping.StatusInProgress:
		return "Start"
	case mapping.StatusOnHold:
		return "Put on hold"
	case mapping.StatusCompleted:
		return "Complete"
	case mapping.StatusFailed:
		return "Could not complete"
	}
	return statusLabel(st)
}

// inboxFilters are the list page's filters, in the order shown.
var inboxFilters = []struct {
	Key      string
	Label    string
	Statuses []mapping.TaskStatus
}{
	{"open", "Open", []mapping.TaskStatus{mapping.StatusRequested, mapping.StatusReceived, mapping.StatusAccepted,
		mapping.StatusInProgress, mapping.StatusOnHold}},
	{"new", "New", []mapping.TaskStatus{mapping.StatusRequested}},
	{"closed", "Closed", []mapping.TaskStatus{mapping.StatusRejected, mapping.StatusCompleted, mapping.StatusFailed,
		mapping.StatusCancelled, mapping.StatusEnteredInError}},
	{"all", "All", nil},
}

// inboxPageData is what every inbox template gets.
type inboxPageData struct {
	Title   string
	Service string // the signed-in service's name
	CSRF    string
	Flash   string // a confirmation after a change
	Error   string // what went wrong, in words
	Field   string // the form field the error is about

	// login
	LoginNeeded bool

	// list
	Filter    string
	Filters   []inboxFilterLink
	Referrals []mapping.Record
	More      string // link to the next page

	// one referral
	Record  *mapping.Record
	Notes   []mapping.TaskNote
	Actions []inboxAction
	Form    url.Values // the form as posted, when it is shown again with an error
}

// inboxFilterLink is one filter tab.
type inboxFilterLink struct {
	Key, Label string
	Current    bool
}

// inboxSignedIn reads the sign-in cookie. When a community client is signed in it returns the request
// carrying that client (as a bearer token would, so the community API's helpers apply) and the page data
// every signed-in page starts from (title, service name, CSRF token, any confirmation); ok false otherwise.
func (a *API) inboxSignedIn(r *http.Request, title string) (*http.Request, config.Client, inboxPageData, bool) {
	c, err := r.Cookie(inboxCookie)
	if err != nil || c.Value == "" {
		return r, config.Client{}, inboxPageData{}, false
	}
	token, err := url.QueryUnescape(c.Value)
	if err != nil {
		return r, config.Client{}, inboxPageData{}, false
	}
	cl, ok := a.o.Config.Authenticate(token)
	if !ok || cl.Role != config.RoleCommunity {
		return r, config.Client{}, inboxPageData{}, false
	}
	d := inboxPageData{Title: title, Service: a.svc.ServiceName(cl.Service), CSRF: inboxCSRF(token), Flash: flashText(r)}
	return r.WithContext(web.WithClient(r.Context(), cl)), cl, d, true
}

// inboxCSRF is the form token of a signed-in token: an HMAC keyed by the token, so only a page that the
// signed-in browser loaded can know it.
func inboxCSRF(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("socialrx inbox form"))
	return hex.EncodeToString(m.Sum(nil))
}

// renderInbox writes one inbox page with the headers every inbox page carries.
func (a *API) renderInbox(w http.ResponseWriter, r *http.Request, status int, d inboxPageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store") // patient details: never kept by a browser or a proxy
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	var b bytes.Buffer
	if err := a.tmpl.ExecuteTemplate(&b, "page", d); err != nil {
		a.log.Error("render inbox page", "request_id", web.RequestID(r.Context()), "err", err)
		http.Error(w, "the page could not be shown", http.StatusInternalServerError)
		return
	}
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = b.WriteTo(w)
}

// inboxRedirect answers a form post with 303 See Other to path (post/redirect/get).
func inboxRedirect(w http.ResponseWriter, path string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", path)
	w.WriteHeader(http.StatusSeeOther)
}

// inboxBare redirects /inbox to /inbox/.
func (a *API) inboxBare(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Location", inboxPath)
	w.WriteHeader(http.StatusMovedPermanently)
}

// inboxHome is GET /inbox/: the sign-in form, or the service's referrals.
func (a *API) inboxHome(w http.ResponseWriter, r *http.Request) {
	r, cl, d, ok := a.inboxSignedIn(r, "Referrals")
	if !ok {
		a.renderInbox(w, r, http.StatusOK, inboxPageData{Title: "Sign in", LoginNeeded: true})
		return
	}
	d.Filter = r.URL.Query().Get("show")
	if d.Filter == "" {
		d.Filter = "open"
	}
	var q referral.Query
	q.Limit = defaultLimit
	found := false
	for _, f := range inboxFilters {
		d.Filters = append(d.Filters, inboxFilterLink{Key: f.Key, Label: f.Label, Current: f.Key == d.Filter})
		if f.Key == d.Filter {
			q.Statuses, found = f.Statuses, true
		}
	}
	if !found {
		d.Error, d.Field = fmt.Sprintf("%q is not a list to show; choose open, new, closed or all", d.Filter), "show"
		a.renderInbox(w, r, http.StatusBadRequest, d)
		return
	}
	if after := r.URL.Query().Get("after"); after != "" {
		c, err := web.DecodeCursor(after)
		if err != nil {
			d.Error, d.Field = "the page link is damaged; start again from the first page", "after"
			a.renderInbox(w, r, http.StatusBadRequest, d)
			return
		}
		q.After = &c
	}
	refs, next, err := a.svc.Search(r.Context(), web.Caller(r.Context()), q)
	if err != nil {
		a.inboxFailure(w, r, d, err)
		return
	}
	for _, ref := range refs {
		if ref.Record.Service.ID == cl.Service { // defence in depth: the query is already scoped
			d.Referrals = append(d.Referrals, ref.Record)
		}
	}
	// Newest change first reads best for a person; keyset paging still walks the stored order.
	slices.Reverse(d.Referrals)
	if next != nil {
		d.More = inboxPath + "?" + url.Values{"show": {d.Filter}, "after": {web.EncodeCursor(*next)}}.Encode()
	}
	a.renderInbox(w, r, http.StatusOK, d)
}

// flashText is the confirmation named by ?done= after a change.
func flashText(r *http.Request) string {
	switch r.URL.Query().Get("done") {
	case "":
		return ""
	case "note":
		return "Your note was added."
	case "same":
		return "Nothing to change: the referral already had that status."
	}
	st, ok := mapping.ParseTaskStatus(r.URL.Query().Get("done"))
	if !ok {
		return ""
	}
	return "Saved: the referral is now “" + statusLabel(st) + "”. The GP practice can see this."
}

// inboxLogin is POST /inbox/login: check the pasted token and keep it in the cookie.
func (a *API) inboxLogin(w http.ResponseWriter, r *http.Request) {
	d := inboxPageData{Title: "Sign in", LoginNeeded: true}
	if err := a.parseInboxForm(w, r); err != nil {
		d.Error = err.Error()
		a.renderInbox(w, r, http.StatusBadRequest, d)
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	if token == "" {
		d.Error, d.Field = "Paste your service's access token to sign in.", "token"
		a.renderInbox(w, r, http.StatusBadRequest, d)
		return
	}
	cl, ok := a.o.Config.Authenticate(token)
	if !ok {
		a.log.Info("inbox sign-in refused: unknown token", "request_id", web.RequestID(r.Context()))
		d.Error, d.Field = "That token is not recognised. Check it with whoever set up socialrx for your group.", "token"
		a.renderInbox(w, r, http.StatusUnauthorized, d)
		return
	}
	if cl.Role != config.RoleCommunity {
		a.log.Info("inbox sign-in refused: not a community client", "request_id", web.RequestID(r.Context()), "client", cl.ID)
		d.Error, d.Field = "This token belongs to a "+string(cl.Role)+" client; the inbox is for community services.", "token"
		a.renderInbox(w, r, http.StatusForbidden, d)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: inboxCookie, Value: url.QueryEscape(token), Path: inboxPath,
		MaxAge: int(inboxSession / time.Second), HttpOnly: true, Secure: web.SecureRequest(r), SameSite: http.SameSiteStrictMode})
	a.log.Info("inbox sign-in", "request_id", web.RequestID(r.Context()), "client", cl.ID)
	inboxRedirect(w, inboxPath)
}

// inboxLogout is POST /inbox/logout.
func (a *API) inboxLogout(w http.ResponseWriter, r *http.Request) {
	if err := a.parseInboxForm(w, r); err != nil {
		a.renderInbox(w, r, http.StatusBadRequest, inboxPageData{Title: "Sign out", Error: err.Error()})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: inboxCookie, Value: "", Path: inboxPath, MaxAge: -1, HttpOnly: true,
		Secure: web.SecureRequest(r), SameSite: http.SameSiteStrictMode})
	inboxRedirect(w, inboxPath)
}

// parseInboxForm reads a posted form (readForm) sent from a page of this site: a browser's Origin header, when it sends one, must name this host (as the request, a proxy's
// X-Forwarded-Host or the configured base URL names it).
func (a *API) parseInboxForm(w http.ResponseWriter, r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !a.ownHost(r, u.Host) {
			return errors.New("the form was sent from another web site")
		}
	}
	return web.ReadForm(w, r, inboxFormMax)
}

// ownHost reports whether host (from a browser's Origin) is this service as the browser reached it.
func (a *API) ownHost(r *http.Request, host string) bool {
	if host == "" {
		return false
	}
	hosts := []string{r.Host, r.Header.Get("X-Forwarded-Host")}
	if b, err := url.Parse(a.o.BaseURL); err == nil && a.o.BaseURL != "" {
		hosts = append(hosts, b.Host)
	}
	return slices.ContainsFunc(hosts, func(h string) bool { return h != "" && strings.EqualFold(h, host) })
}

// inboxShow is GET /inbox/referrals/{id}.
func (a *API) inboxShow(w http.ResponseWriter, r *http.Request) {
	r, _, d, ok := a.inboxSignedIn(r, "Referral")
	if !ok {
		inboxRedirect(w, inboxPath)
		return
	}
	ref, err := a.referral(r)
	if err != nil {
		a.inboxFailure(w, r, d, err)
		return
	}
	a.renderInbox(w, r, http.StatusOK, referralPage(d, ref, nil))
}

// referralPage fills the one-referral page.
func referralPage(d inboxPageData, ref outbox.Referral, form url.Values) inboxPageData {
	rec := ref.Record
	d.Title = "Referral for " + rec.Patient.Name
	if rec.Patient.Name == "" {
		d.Title = "Referral " + rec.ID
	}
	d.Record, d.Notes, d.Form = &rec, ref.TaskNotes, form
	for _, st := range mapping.AllowedMoves(rec.Status, mapping.ActorCommunity) {
		d.Actions = append(d.Actions, inboxAction{Status: st, Label: actionLabel(st)})
	}
	return d
}

// inboxStatus is POST /inbox/referrals/{id}/status: one move (or a note) from the referral page's form.
func (a *API) inboxStatus(w http.ResponseWriter, r *http.Request) {
	r, cl, d, ok := a.inboxSignedIn(r, "Referral")
	if !ok {
		a.renderInbox(w, r, http.StatusUnauthorized, inboxPageData{Title: "Sign in", LoginNeeded: true,
			Error: "You are signed out (or your token changed). Sign in again; nothing was changed."})
		return
	}
	if err := a.parseInboxForm(w, r); err != nil {
		d.Error = err.Error()
		a.renderInbox(w, r, http.StatusBadRequest, d)
		return
	}
	if got := r.PostForm.Get("csrf"); subtle.ConstantTimeCompare([]byte(got), []byte(d.CSRF)) != 1 {
		a.log.Warn("inbox form refused: bad CSRF token", "request_id", web.RequestID(r.Context()), "client", cl.ID)
		d.Error = "This form did not come from your inbox page (or it is out of date). Open the referral again; nothing was changed."
		a.renderInbox(w, r, http.StatusForbidden, d)
		return
	}
	ref, err := a.referral(r)
	if err != nil {
		a.inboxFailure(w, r, d, err)
		return
	}
	form := r.PostForm
	fail := func(status int, field, msg string) {
		pd := referralPage(d, ref, form)
		pd.Error, pd.Field = msg, field
		a.renderInbox(w, r, status, pd)
	}
	if k := web.RepeatedField(form, "status", "reason", "outcome", "note", "version"); k != "" {
		fail(http.StatusBadRequest, k, k+" was sent more than once")
		return
	}
	expect, err := strconv.Atoi(form.Get("version"))
	if err != nil || expect < 1 {
		fail(http.StatusBadRequest, "version", "the form is missing the referral's version; open the referral again")
		return
	}
	to := mapping.TaskStatus(form.Get("status"))
	note := strings.TrimSpace(form.Get("note"))
	if form.Get("status") == "" { // the note form
		if note == "" {
			fail(http.StatusUnprocessableEntity, "note", "Write a note before adding it.")
			return
		}
		to = ref.Record.Status
	} else if !slices.Contains(referral.CommunityStatuses(), to) {
		fail(http.StatusBadRequest, "status", fmt.Sprintf("%q is not a status a service sets", form.Get("status")))
		return
	}
	change := referral.StatusRequest{ReferralID: ref.Record.ID, ExpectVersion: expect, Status: to,
		Reason: strings.TrimSpace(form.Get("reason")), Note: note}
	if o := strings.TrimSpace(form.Get("outcome")); o != "" {
		change.Outcome = &mapping.Outcome{Text: o}
	}
	if msg, field := inboxTextLimits(change, note); msg != "" {
		fail(http.StatusUnprocessableEntity, field, msg)
		return
	}
	from := ref.Record.Status
	_, next, err := a.svc.ChangeStatus(r.Context(), web.Caller(r.Context()), change)
	if err != nil {
		status, je := web.JSONError(err)
		web.LogFailure(a.log, r, status, err)
		msg := je.Message
		if errors.Is(err, outbox.ErrVersionMismatch) {
			msg = "Someone changed this referral since you opened it. Here it is as it is now; nothing was changed."
			if cur, gerr := a.referral(r); gerr == nil {
				ref = cur
			}
			form = nil
		}
		if status >= http.StatusInternalServerError {
			a.inboxFailure(w, r, d, err)
			return
		}
		fail(status, je.Field, msg)
		return
	}
	done := string(next.Record.Status)
	switch {
	case next.Record.Version == ref.Record.Version:
		done = "same"
	case next.Record.Status == from:
		done = "note"
	}
	inboxRedirect(w, inboxPath+"referrals/"+url.PathEscape(ref.Record.ID)+"?done="+url.QueryEscape(done))
}

// inboxTextLimits applies the community API's length limits to the form's texts.
func inboxTextLimits(c referral.StatusRequest, note string) (msg, field string) {
	switch {
	case len([]rune(c.Reason)) > maxReasonRunes:
		return fmt.Sprintf("The reason is too long (at most %d characters).", maxReasonRunes), "reason"
	case c.Outcome != nil && len([]rune(c.Outcome.Text)) > maxOutcomeRunes:
		return fmt.Sprintf("The outcome is too long (at most %d characters).", maxOutcomeRunes), "outcome"
	case len([]rune(note)) > maxOutcomeRunes:
		return fmt.Sprintf("The note is too long (at most %d characters).", maxOutcomeRunes), "note"
	}
	return "", ""
}

// inboxFailure shows a page for a failed read or write: not found, or (logged) unavailable.
func (a *API) inboxFailure(w http.ResponseWriter, r *http.Request, d inboxPageData, err error) {
	status, je := web.JSONError(err)
	web.LogFailure(a.log, r, status, err)
	d.Title = "Not available"
	switch {
	case status == http.StatusNotFound:
		d.Title, d.Error = "Not found", "There is no such referral for your service."
	case status >= http.StatusInternalServerError:
		d.Error = "socialrx could not do this just now; nothing was changed. Try again in a minute. (reference " + web.RequestID(r.Context()) + ")"
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
	default:
		d.Error = je.Message
	}
	a.renderInbox(w, r, status, d)
}
