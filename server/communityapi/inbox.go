package communityapi

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"math"
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

// The community inbox page (/inbox/, docs/design.md#community-inbox-page): server-rendered HTML for community
// groups with no IT, doing what the community API does (list, read, acknowledge, accept, decline, start,
// hold, resume, complete, not complete, add a note) through the same use cases (referral.Service.Search, Get
// and ChangeStatus: the state machine, one store transaction).
//
// Sign-in: the group chooses its name and pastes its community token once (referral.Inbox.SignIn); the
// browser gets a random session id in an HttpOnly, SameSite=Strict cookie scoped to /inbox/ (never the
// token), and the shared database keeps the id's hash, so sign-out, expiry (idle and absolute) and a token
// rotation end the session on every instance. Forms carry a CSRF token derived from the session id and are
// refused when a browser says another site sent them (inbox_guard.go). Pages are never cached.

const (
	inboxCookie = "socialrx_inbox"
	inboxPath   = "/inbox/"
	// inboxFormMax bounds a posted form.
	inboxFormMax = 64 << 10
	// inboxPage is how many referrals one list page shows (urgent first within it).
	inboxPage = maxLimit
)

//go:embed inbox.html.tmpl
var inboxTemplateText string

// inboxTemplates parses the inbox page templates (html/template: every value is escaped for its context).
func inboxTemplates(uk *time.Location) (*template.Template, error) {
	return template.New("inbox").Funcs(template.FuncMap{
		"label":    statusLabel,
		"when":     func(t time.Time) string { return dateTime(t, uk) },
		"date":     func(s string) string { return readableDate(s, uk) },
		"nonEmpty": nonEmpty,
		"waiting":  awaitsAnswer,
		"join":     strings.Join,
		"tel":      telLink,
		"mailto":   mailtoLink,
		"priority": priorityLabel,
		"summary":  func(m mapping.Measure) string { return m.Summary() },
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

// inboxAction is one move offered as a button on a referral page, with what the volunteer typed into it
// when the page is shown again after a refusal.
type inboxAction struct {
	Status mapping.TaskStatus
	Label  string
	// Style is the button's look: "go" (moves the referral on), "stop" (declines or gives up: red, apart
	// from the others) or "plain".
	Style         string
	NeedsReason   bool
	TakesOutcome  bool
	NeedsOutcome  bool
	Reason        string // as typed, after a refusal of this form
	Outcome       string
	ErrorOn       string // "reason" or "outcome": the field the refusal is about
	ReasonPrompt  string
	OutcomePrompt string
}

// moveAction is the button for a move from status from.
func moveAction(from, to mapping.TaskStatus) inboxAction {
	a := inboxAction{Status: to, Style: "plain"}
	switch to {
	case mapping.StatusReceived:
		a.Label = "Mark as seen"
	case mapping.StatusAccepted:
		a.Label, a.Style = "Accept", "go"
	case mapping.StatusRejected:
		a.Label, a.Style, a.NeedsReason = "Decline", "stop", true
		a.ReasonPrompt = "Why you cannot take this referral (the GP practice will see it)"
	case mapping.StatusInProgress:
		a.Label, a.Style = "Start", "go"
		if from == mapping.StatusOnHold {
			a.Label = "Resume"
		}
	case mapping.StatusOnHold:
		a.Label, a.NeedsReason = "Put on hold", true
		a.ReasonPrompt = "Why it is on hold (the GP practice will see it)"
	case mapping.StatusCompleted:
		a.Label, a.Style, a.TakesOutcome, a.NeedsOutcome = "Complete", "go", true, true
		a.OutcomePrompt = "What happened (the GP practice will see it)"
	case mapping.StatusFailed:
		a.Label, a.Style, a.NeedsReason, a.TakesOutcome = "Could not complete", "stop", true, true
		a.ReasonPrompt = "Why it could not be completed (the GP practice will see it)"
		a.OutcomePrompt = "What happened, if anything (optional)"
	case mapping.StatusRequested, mapping.StatusCancelled, mapping.StatusEnteredInError:
		a.Label = statusLabel(to)
	}
	return a
}

// inboxFilters are the list page's tabs, in the order shown.
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
	// ErrorFor is the id of the element the error is about (the error links to it), "" when none.
	ErrorFor string

	// sign-in
	LoginNeeded bool
	Services    []referral.InboxService
	Chosen      string // the service chosen on a refused sign-in
	Idle, Max   string // how long a sign-in lasts, in words

	// list
	Filter  string
	Filters []inboxFilterLink
	Items   []inboxItem
	More    string // link to the next page

	// the group's capacity (the list page's one-tap control, or alone after a refused setting)
	Capacity     *capacityBox
	CapacityOnly bool

	// one referral
	Record   *mapping.Record
	Overdue  bool
	Waited   string
	Notes    []mapping.TaskNote
	Actions  []inboxAction
	NoteText string // the note as typed, after a refusal

	// an outcome measure's form (issue 14)
	MeasureForm *measureForm
	// the monthly figures page (issue 14)
	Figures *figuresView

	// the link worker's "Suggest groups" form: the directory's other groups (nil: not the link worker's to
	// forward)
	Suggest []suggestGroup

	// the link worker's list: referrals of other groups escalated to it or declined for no answer (the
	// response-deadline ladder), identifiers and dates only
	Escalations []escalationItem
}

// escalationItem is one line of the link worker's "Waiting too long at other groups".
type escalationItem struct {
	Group, Practice, Task, Referred, Since string
	Declined                               bool
}

// inboxFilterLink is one tab, with how many referrals it holds.
type inboxFilterLink struct {
	Key, Label string
	Count      int
	Current    bool
}

// signedIn is a request's live inbox session.
type signedIn struct {
	r      *http.Request // carrying the client, as a bearer token would (the community API's helpers apply)
	client config.Client
	id     string // the secret session id (for the CSRF token)
	d      inboxPageData
}

// inboxSignedIn finds the request's live session. ok is false when the browser has none (no cookie, or one
// that no longer opens a session: then the cookie is deleted and ended is true); err is a store failure.
func (a *API) inboxSignedIn(w http.ResponseWriter, r *http.Request, title string) (s signedIn, ok, ended bool, err error) {
	c, cerr := r.Cookie(inboxCookie)
	if cerr != nil || c.Value == "" {
		return signedIn{}, false, false, nil
	}
	sess, err := a.inbox.Session(r.Context(), c.Value)
	if errors.Is(err, referral.ErrNoSession) {
		setSessionCookie(w, r, "", 0)
		return signedIn{}, false, true, nil
	}
	if err != nil {
		return signedIn{}, false, false, err
	}
	d := inboxPageData{Title: title, Service: a.svc.ServiceName(sess.Client.Service), CSRF: inboxCSRF(sess.ID), Flash: flashText(r)}
	return signedIn{r: r.WithContext(web.WithClient(r.Context(), sess.Client)), client: sess.Client, id: sess.ID, d: d}, true, false, nil
}

// inboxPageSession is inboxSignedIn for a page that shows the sign-in form to a signed-out browser (saying
// so when its session ended by itself): ok is false when it has answered (that form, or a store failure).
func (a *API) inboxPageSession(w http.ResponseWriter, r *http.Request, title string) (signedIn, bool) {
	s, ok, ended, err := a.inboxSignedIn(w, r, title)
	if err != nil {
		a.inboxFailure(w, r, a.loginPage(r), err)
		return s, false
	}
	if !ok {
		d := a.loginPage(r)
		if ended {
			d.Flash = sessionEnded
		}
		a.renderInbox(w, r, http.StatusOK, d)
	}
	return s, ok
}

// loginPage is the sign-in page's data.
func (a *API) loginPage(r *http.Request) inboxPageData {
	p := a.inbox.Policy()
	return inboxPageData{Title: "Sign in", LoginNeeded: true, Services: a.inbox.Services(), Flash: flashText(r),
		Idle: waited(p.Idle), Max: waited(p.Max)}
}

// renderInbox writes one inbox page with the headers every page carries (web.WritePage).
func (a *API) renderInbox(w http.ResponseWriter, r *http.Request, status int, d inboxPageData) {
	if d.ErrorFor == "" && d.LoginNeeded && (d.Field == "service" || d.Field == "token") {
		d.ErrorFor = d.Field // the sign-in fields' ids are their names
	}
	web.WritePage(w, r, a.log, a.tmpl, status, d)
}

// inboxRedirect answers a form post with 303 See Other to path (post/redirect/get).
func inboxRedirect(w http.ResponseWriter, path string) { web.SeeOther(w, path) }

// inboxBare redirects /inbox to /inbox/.
func (a *API) inboxBare(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Location", inboxPath)
	w.WriteHeader(http.StatusMovedPermanently)
}

// sessionEnded is the notice shown when a browser's session has ended by itself.
const sessionEnded = "You were signed out: the sign-in ended (after a while without use, at the end of the day, or because your group's token was changed). Sign in again."

// inboxHome is GET /inbox/: the sign-in form, or the service's referrals.
func (a *API) inboxHome(w http.ResponseWriter, r *http.Request) {
	s, ok := a.inboxPageSession(w, r, "Referrals")
	if !ok {
		return
	}
	r, d := s.r, s.d
	d.Filter = cmpOr(r.URL.Query().Get("show"), "open")
	var q referral.Query
	q.Limit = inboxPage
	counts, err := a.inbox.Counts(r.Context(), web.Caller(r.Context()))
	if err != nil {
		a.inboxFailure(w, r, d, err)
		return
	}
	if d.Capacity, err = a.capacityBox(r, nil); err != nil {
		a.inboxFailure(w, r, d, err)
		return
	}
	var found bool
	d.Filters, q.Statuses, found = tabs(counts, d.Filter)
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
	now := a.now()
	if d.Escalations, err = a.escalations(r, now); err != nil {
		a.inboxFailure(w, r, d, err)
		return
	}
	for _, ref := range refs {
		if ref.Record.Service.ID == s.client.Service { // defence in depth: the query is already scoped
			d.Items = append(d.Items, listItem(a.svc.Shared(ref.Record), ref.BusinessStatus, now, a.uk))
		}
	}
	// Newest change first reads best for a person; then the most pressing first (stable: within a priority,
	// overdue first, then newest change first). Keyset paging still walks the stored order.
	slices.Reverse(d.Items)
	slices.SortStableFunc(d.Items, byUrgency)
	if next != nil {
		d.More = inboxPath + "?" + url.Values{"show": {d.Filter}, "after": {web.EncodeCursor(*next)}}.Encode()
	}
	a.renderInbox(w, r, http.StatusOK, d)
}

// tabs are the list's tabs with their counts, the statuses the current one (filter) shows, and whether
// filter is a tab at all.
func tabs(counts map[mapping.TaskStatus]int, filter string) ([]inboxFilterLink, []mapping.TaskStatus, bool) {
	var out []inboxFilterLink
	var statuses []mapping.TaskStatus
	found := false
	for _, f := range inboxFilters {
		n := 0
		for st, c := range counts {
			if f.Statuses == nil || slices.Contains(f.Statuses, st) {
				n += c
			}
		}
		out = append(out, inboxFilterLink{Key: f.Key, Label: f.Label, Count: n, Current: f.Key == filter})
		if f.Key == filter {
			statuses, found = f.Statuses, true
		}
	}
	return out, statuses, found
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
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
	case "signed-out":
		return "You are signed out."
	case "capacity":
		return "Saved: GP practices and link workers now see how full your group is."
	case "measure":
		return "Saved: the measure was recorded. The GP practice can see it."
	case "forwarded":
		return "Sent: each group you ticked now has the referral in its inbox. The GP practice can see this."
	}
	st, ok := mapping.ParseTaskStatus(r.URL.Query().Get("done"))
	if !ok {
		return ""
	}
	return "Saved: the referral is now “" + statusLabel(st) + "”. The GP practice can see this."
}

// inboxLogin is POST /inbox/login: check the group and its token, open a session.
func (a *API) inboxLogin(w http.ResponseWriter, r *http.Request) {
	d := a.loginPage(r)
	if msg, crossSite := a.parseInboxForm(w, r); msg != "" {
		d.Error = msg + "; nothing was done."
		status := http.StatusBadRequest
		if crossSite {
			status = http.StatusForbidden
			a.log.Warn("inbox sign-in refused: sent from another site", "request_id", web.RequestID(r.Context()))
		}
		a.renderInbox(w, r, status, d)
		return
	}
	if k := web.RepeatedField(r.PostForm, "service", "token"); k != "" {
		d.Error, d.Field = k+" was sent more than once", k
		a.renderInbox(w, r, http.StatusBadRequest, d)
		return
	}
	d.Chosen = r.PostForm.Get("service")
	token := strings.TrimSpace(r.PostForm.Get("token"))
	switch {
	case !slices.ContainsFunc(d.Services, func(s referral.InboxService) bool { return s.ID == d.Chosen }):
		d.Error, d.Field, d.Chosen = "Choose your group from the list.", "service", ""
	case token == "":
		d.Error, d.Field = "Paste your group's access token to sign in.", "token"
	}
	if d.Error != "" {
		a.renderInbox(w, r, http.StatusBadRequest, d)
		return
	}
	sess, err := a.inbox.SignIn(r.Context(), referral.SignInRequest{Token: token, ServiceID: d.Chosen, Address: r.RemoteAddr})
	var te *referral.ThrottledError
	switch {
	case err == nil:
	case errors.As(err, &te):
		a.log.Warn("inbox sign-in throttled", "request_id", web.RequestID(r.Context()), "per_service", te.PerService)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(te.RetryAfter.Seconds()))))
		who := "from this device or network"
		if te.PerService {
			who = "for this group"
		}
		d.Error, d.Field = fmt.Sprintf("Too many wrong sign-ins %s recently. Wait %s and try again (the token was not checked this time).",
			who, waited(te.RetryAfter+time.Minute-time.Second)), "token"
		a.renderInbox(w, r, http.StatusTooManyRequests, d)
		return
	case errors.Is(err, referral.ErrSignInRefused):
		// Whatever the token was (someone else's, another role's, nobody's), the answer is the same.
		a.log.Info("inbox sign-in refused", "request_id", web.RequestID(r.Context()), "service", d.Chosen)
		d.Error, d.Field = "That access token does not match the group you chose. Check both with whoever set up socialrx for your group.", "token"
		a.renderInbox(w, r, http.StatusUnauthorized, d)
		return
	default:
		a.inboxFailure(w, r, d, err)
		return
	}
	setSessionCookie(w, r, sess.ID, sess.Session.ExpiresAt.Sub(sess.Session.CreatedAt))
	a.log.Info("inbox sign-in", "request_id", web.RequestID(r.Context()), "client", sess.Client.ID)
	inboxRedirect(w, inboxPath)
}

// inboxLogout is POST /inbox/logout: end the session for every instance and delete the cookie.
func (a *API) inboxLogout(w http.ResponseWriter, r *http.Request) {
	if msg, _ := a.parseInboxForm(w, r); msg != "" {
		d := a.loginPage(r)
		d.Error = msg + "; you are still signed in."
		a.renderInbox(w, r, http.StatusForbidden, d)
		return
	}
	if c, err := r.Cookie(inboxCookie); err == nil && c.Value != "" {
		if r.PostForm.Get("csrf") == "" || !csrfOK(r, c.Value) {
			d := a.loginPage(r)
			d.Error = "This sign-out did not come from your inbox page; you are still signed in. Use the Sign out button."
			a.renderInbox(w, r, http.StatusForbidden, d)
			return
		}
		if err := a.inbox.SignOut(r.Context(), c.Value); err != nil {
			a.inboxFailure(w, r, a.loginPage(r), err)
			return
		}
	}
	setSessionCookie(w, r, "", 0)
	inboxRedirect(w, inboxPath+"?done=signed-out")
}

// inboxShow is GET /inbox/referrals/{id}.
func (a *API) inboxShow(w http.ResponseWriter, r *http.Request) {
	s, ref, ok := a.inboxReferralPage(w, r, "Referral")
	if ok {
		a.renderInbox(w, s.r, http.StatusOK, a.referralPage(s.r.Context(), s.d, ref, nil, ""))
	}
}

// inboxReferralPage starts a page about one referral (GET /inbox/referrals/{id}…): the session (signed out: a
// redirect to the list, whose page signs in) and the referral the path names, if the group may see it
// (otherwise the failure page). false: the answer is written.
func (a *API) inboxReferralPage(w http.ResponseWriter, r *http.Request, title string) (signedIn, outbox.Referral, bool) {
	s, ok, _, err := a.inboxSignedIn(w, r, title)
	if err != nil {
		a.inboxFailure(w, r, a.loginPage(r), err)
		return s, outbox.Referral{}, false
	}
	if !ok {
		inboxRedirect(w, inboxPath)
		return s, outbox.Referral{}, false
	}
	ref, err := a.referral(s.r)
	if err != nil {
		a.inboxFailure(w, s.r, s.d, err)
		return s, outbox.Referral{}, false
	}
	return s, ref, true
}

// referralPage fills the one-referral page; form is the refused form (nil: none) and field the field its
// refusal is about.
func (a *API) referralPage(ctx context.Context, d inboxPageData, ref outbox.Referral, form url.Values, field string) inboxPageData {
	rec := a.svc.Shared(ref.Record) // only what the service's sharing profile lets it see
	d.Title = "Referral for " + rec.Patient.Called()
	if rec.Patient.Called() == "" {
		d.Title = "Referral " + rec.ID
	}
	d.Record, d.Notes = &rec, ref.TaskNotes
	d.Overdue = ref.BusinessStatus == mapping.BusinessOverdue
	d.Waited = waited(a.now().Sub(rec.CreatedAt))
	d.Suggest = a.suggestions(ctx, ref, form)
	posted := mapping.TaskStatus(form.Get("status"))
	for _, st := range mapping.AllowedMoves(rec.Status, mapping.ActorCommunity) {
		act := moveAction(rec.Status, st)
		if form != nil && posted == st {
			act.Reason, act.Outcome = form.Get("reason"), form.Get("outcome")
			if field == "reason" || field == "outcome" {
				act.ErrorOn = field
				d.ErrorFor = field + "-" + string(st)
			}
		}
		d.Actions = append(d.Actions, act)
	}
	if form != nil && form.Get("status") == "" {
		d.NoteText = form.Get("note")
		if field == "note" {
			d.ErrorFor = "note"
		}
	}
	return d
}

// inboxFormPost is what every inbox form that changes something checks first, in this order: the form itself
// and where the browser says it came from (parseInboxForm: 400, or 403 cross-site), a live session (401 with the
// sign-in page), and the CSRF token derived from the session id (403; reopen names the page to open again). It
// answers the refusal itself; ok is false then and nothing was read or changed.
func (a *API) inboxFormPost(w http.ResponseWriter, r *http.Request, title, reopen string) (signedIn, bool) {
	if msg, crossSite := a.parseInboxForm(w, r); msg != "" {
		status := http.StatusBadRequest
		if crossSite {
			status = http.StatusForbidden
			a.log.Warn("inbox form refused: sent from another site", "request_id", web.RequestID(r.Context()))
		}
		a.renderInbox(w, r, status, inboxPageData{Title: "Not saved", Error: msg + "; nothing was changed."})
		return signedIn{}, false
	}
	s, ok, _, err := a.inboxSignedIn(w, r, title)
	if err != nil {
		a.inboxFailure(w, r, a.loginPage(r), err)
		return signedIn{}, false
	}
	if !ok {
		d := a.loginPage(r)
		d.Error = "You are signed out (or your group's token changed). Sign in again; nothing was changed."
		a.renderInbox(w, r, http.StatusUnauthorized, d)
		return signedIn{}, false
	}
	if !csrfOK(s.r, s.id) {
		a.log.Warn("inbox form refused: bad CSRF token", "request_id", web.RequestID(s.r.Context()), "client", s.client.ID)
		s.d.Error = "This form did not come from your inbox page (or it is out of date). Open the " + reopen + " again; nothing was changed."
		a.renderInbox(w, s.r, http.StatusForbidden, s.d)
		return signedIn{}, false
	}
	return s, true
}

// inboxStatus is POST /inbox/referrals/{id}/status: one move (or a note) from the referral page's form.
func (a *API) inboxStatus(w http.ResponseWriter, r *http.Request) {
	p, ok := a.inboxReferralForm(w, r, "Referral")
	if !ok {
		return
	}
	r, ref := p.s.r, p.ref
	change, bad := formChange(r.PostForm, ref.Record)
	if bad != nil {
		p.fail(w, bad.status, bad.field, bad.msg)
		return
	}
	from := ref.Record.Status
	_, next, err := a.svc.ChangeStatus(r.Context(), web.Caller(r.Context()), change)
	if err != nil {
		p.refused(w, err, "", func(je web.APIError) string {
			if je.Error == string(mapping.CodeReasonRequired) {
				return fmt.Sprintf("Write the reason before you press “%s”: the GP practice will see it.", moveAction(from, change.Status).Label)
			}
			return je.Message
		})
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

// referralForm is a form posted from a referral's page, checked (inboxFormPost) and its referral read.
type referralForm struct {
	a    *API
	s    signedIn
	ref  outbox.Referral
	form url.Values // what was posted, kept on the page drawn after a refusal (nil: drop it)
}

// inboxReferralForm checks a form posted from a referral's page and reads its referral (the session's own);
// ok false when it already answered.
func (a *API) inboxReferralForm(w http.ResponseWriter, r *http.Request, title string) (referralForm, bool) {
	s, ok := a.inboxFormPost(w, r, title, "referral")
	if !ok {
		return referralForm{}, false
	}
	ref, err := a.referral(s.r)
	if err != nil {
		a.inboxFailure(w, s.r, s.d, err)
		return referralForm{}, false
	}
	return referralForm{a: a, s: s, ref: ref, form: s.r.PostForm}, true
}

// fail draws the referral's page again with msg at field, what was typed kept.
func (p referralForm) fail(w http.ResponseWriter, status int, field, msg string) {
	pd := p.a.referralPage(p.s.r.Context(), p.s.d, p.ref, p.form, field)
	pd.Error, pd.Field = msg, field
	p.a.renderInbox(w, p.s.r, status, pd)
}

// refused answers a change the use case refused: a failure of socialrx is the failure page; a stale form
// shows the referral as it is now (the form dropped); anything else the page with the message (words: the
// message for the error, nil: its own) at field ("": the error's).
func (p referralForm) refused(w http.ResponseWriter, err error, field string, words func(web.APIError) string) {
	r := p.s.r
	status, je := web.JSONError(err)
	web.LogFailure(p.a.log, r, status, err)
	if status >= http.StatusInternalServerError {
		p.a.inboxFailure(w, r, p.s.d, err)
		return
	}
	msg := je.Message
	if words != nil {
		msg = words(je)
	}
	if errors.Is(err, outbox.ErrVersionMismatch) {
		msg = "Someone changed this referral since you opened it. Here it is as it is now; nothing was changed."
		if cur, gerr := p.a.referral(r); gerr == nil {
			p.ref = cur
		}
		p.form = nil
	}
	if field == "" {
		field = je.Field
	}
	p.fail(w, status, field, msg)
}

// formRefusal is why a posted referral form cannot be acted on: the page's status, the field, the words.
type formRefusal struct {
	status     int
	field, msg string
}

// formChange reads a referral page's posted form (a move, or the note form) into the status change it asks
// for on rec, or says why it cannot.
func formChange(form url.Values, rec mapping.Record) (referral.StatusRequest, *formRefusal) {
	refuse := func(status int, field, msg string) (referral.StatusRequest, *formRefusal) {
		return referral.StatusRequest{}, &formRefusal{status: status, field: field, msg: msg}
	}
	if k := web.RepeatedField(form, "status", "reason", "outcome", "note", "version"); k != "" {
		return refuse(http.StatusBadRequest, k, k+" was sent more than once")
	}
	expect, err := strconv.Atoi(form.Get("version"))
	if err != nil || expect < 1 {
		return refuse(http.StatusBadRequest, "version", "the form is missing the referral's version; open the referral again")
	}
	to := mapping.TaskStatus(form.Get("status"))
	note := strings.TrimSpace(form.Get("note"))
	switch {
	case form.Get("status") == "" && note == "": // the note form, empty
		return refuse(http.StatusUnprocessableEntity, "note", "Write a note before adding it.")
	case form.Get("status") == "":
		to = rec.Status
	case !slices.Contains(referral.CommunityStatuses(), to):
		return refuse(http.StatusBadRequest, "status", fmt.Sprintf("%q is not a status a service sets", form.Get("status")))
	}
	change := referral.StatusRequest{ReferralID: rec.ID, ExpectVersion: expect, Status: to,
		Reason: strings.TrimSpace(form.Get("reason")), Note: note}
	if o := strings.TrimSpace(form.Get("outcome")); o != "" {
		change.Outcome = &mapping.Outcome{Text: o}
	} else if to == mapping.StatusCompleted && to != rec.Status {
		return refuse(http.StatusUnprocessableEntity, "outcome", "Say what happened before completing the referral.")
	}
	if msg, field := inboxTextLimits(change, note); msg != "" {
		return refuse(http.StatusUnprocessableEntity, field, msg)
	}
	return change, nil
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
	d.LoginNeeded = false
	a.renderInbox(w, r, status, d)
}

// escalationWindow is how far back the link worker's list of escalations reaches.
const escalationWindow = 30 * 24 * time.Hour

// escalations is the link worker's "Waiting too long at other groups" (nil for any other group).
func (a *API) escalations(r *http.Request, now time.Time) ([]escalationItem, error) {
	c := web.Caller(r.Context())
	if lw, ok := a.svc.Directory().LinkWorker(); !ok || lw.ID != c.Client.Service {
		return nil, nil
	}
	es, err := a.svc.Escalations(r.Context(), c, now.Add(-escalationWindow))
	if err != nil {
		return nil, err
	}
	out := make([]escalationItem, 0, len(es))
	for _, e := range es {
		out = append(out, escalationItem{Group: e.ServiceName, Practice: e.PracticeODS, Task: e.TaskID,
			Referred: dateTime(e.CreatedAt, a.uk), Since: dateTime(e.UpdatedAt, a.uk), Declined: e.Step == mapping.DeadlineDeclined})
	}
	return out, nil
}
