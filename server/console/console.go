// Package console is the operations console at /admin/: server-rendered HTML (html/template, no build step,
// no JavaScript) for the engineer on call, doing what the `socialrx outbox` CLI and the admin API do through
// the same referral.Operator: the system at a glance (auto-refreshing), messages filtered and paged, one
// message with every attempt and the receiver's answer (patient details masked unless revealed, each reveal
// written to the audit log), a referral's timeline, finding a referral by the GP's identifier or an NHS
// number, replaying (one, selected, or every dead message matching a filter, after a preview of how many),
// discarding, and pausing and resuming a community service.
//
// Sign-in: an admin client's token and the engineer's name (referral.Console); the browser gets a random
// session id in an HttpOnly, SameSite=Strict cookie scoped to /admin/ (never the token), the sessions are
// kept in the shared database as the inbox's are, so sign-out, expiry and a token rotation end them on every
// instance, and every action is recorded as "console:<client>/<name>". Forms carry a CSRF token derived
// from the session id and are refused when the browser says another site sent them (guard.go). Pages are
// never cached, cannot be framed and run no script (Content-Security-Policy).
package console

import (
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

const (
	// Path is where the console lives.
	Path        = "/admin/"
	cookieName  = "socialrx_console"
	nameCookie  = "socialrx_console_name"
	formMax     = 64 << 10
	refreshSecs = 15
	// pageSize is how many messages one list page shows.
	pageSize = 50
)

// Options are what the console needs.
type Options struct {
	Service *referral.Service
	// Sessions is how long console sign-ins last and how wrong ones are slowed down (zero fields: those of
	// referral.DefaultSessionPolicy).
	Sessions referral.SessionPolicy
	Logger   *slog.Logger
	Clock    func() time.Time
	// BaseURL is the configured public base URL ("" when none): forms whose Origin names it are accepted.
	BaseURL string
}

// Console serves the operations console.
type Console struct {
	o      Options
	op     referral.Operator
	signIn referral.Console
	log    *slog.Logger
	tmpl   *template.Template
	uk     *time.Location // the figures' months are UK months
}

// New returns the console.
func New(o Options) (*Console, error) {
	if o.Service == nil {
		return nil, errors.New("console: Service is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	t, err := templates()
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	uk, err := time.LoadLocation("Europe/London")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	op := o.Service.Operator()
	op.Logger = o.Logger
	return &Console{o: o, op: op, signIn: o.Service.Console(o.Sessions), log: o.Logger, tmpl: t, uk: uk}, nil
}

// Routes are the console's routes. They are public to the router: the console signs in with its own
// session cookie and checks it on every request (signedIn).
func (c *Console) Routes() []web.Route {
	get, post := http.MethodGet, http.MethodPost
	return []web.Route{
		{Path: "/admin", Name: "console_bare", Access: web.Public, Methods: map[string]http.HandlerFunc{get: c.bare}},
		{Path: "/admin/", Name: "console_overview", Access: web.Public, Methods: map[string]http.HandlerFunc{get: c.overview}},
		{Path: "/admin/login", Name: "console_login", Access: web.Public, Methods: map[string]http.HandlerFunc{post: c.login}},
		{Path: "/admin/logout", Name: "console_logout", Access: web.Public, Methods: map[string]http.HandlerFunc{post: c.logout}},
		{Path: "/admin/messages", Name: "console_messages", Access: web.Public, Methods: map[string]http.HandlerFunc{get: c.messages}},
		{Path: "/admin/messages/act", Name: "console_messages_act", Access: web.Public, Methods: map[string]http.HandlerFunc{post: c.act}},
		{Path: "/admin/messages/{id}", Name: "console_message", Access: web.Public, Methods: map[string]http.HandlerFunc{get: c.message}},
		{Path: "/admin/messages/{id}/reveal", Name: "console_message_reveal", Access: web.Public, Methods: map[string]http.HandlerFunc{post: c.reveal}},
		{Path: "/admin/messages/{id}/replay", Name: "console_message_replay", Access: web.Public, Methods: map[string]http.HandlerFunc{post: c.replayOne}},
		{Path: "/admin/messages/{id}/discard", Name: "console_message_discard", Access: web.Public, Methods: map[string]http.HandlerFunc{post: c.discardOne}},
		{Path: "/admin/services/{id}", Name: "console_service", Access: web.Public, Methods: map[string]http.HandlerFunc{get: c.service}},
		{Path: "/admin/services/{id}/pause", Name: "console_service_pause", Access: web.Public, Methods: map[string]http.HandlerFunc{post: c.pause}},
		{Path: "/admin/services/{id}/resume", Name: "console_service_resume", Access: web.Public, Methods: map[string]http.HandlerFunc{post: c.resume}},
		{Path: "/admin/referrals/{id}", Name: "console_referral", Access: web.Public, Methods: map[string]http.HandlerFunc{get: c.referral}},
		{Path: "/admin/find", Name: "console_find", Access: web.Public, Methods: map[string]http.HandlerFunc{get: c.find}},
		{Path: "/admin/figures", Name: "console_figures", Access: web.Public, Methods: map[string]http.HandlerFunc{get: c.figures}},
	}
}

// page is what every console template gets.
type page struct {
	Title   string
	Who     string // the signed-in engineer, as shown
	CSRF    string
	Refresh int    // seconds between automatic reloads (0: none)
	Flash   string // a confirmation after a change
	Error   string // what went wrong, in words
	Field   string // the form field the error is about
	Body    any    // the page's own data
	View    string // which template renders Body
	Login   bool
}

// render writes one console page with the headers every page carries (web.WritePage).
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, p page) {
	web.WritePage(w, r, c.log, c.tmpl, status, p)
}

// redirect answers a form post with 303 See Other to path (post/redirect/get).
func redirect(w http.ResponseWriter, path string) { web.SeeOther(w, path) }

// bare redirects /admin to /admin/.
func (c *Console) bare(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Location", Path)
	w.WriteHeader(http.StatusMovedPermanently)
}

// failure shows a page for a failed read or action: not found, a mistake in words, or (logged) unavailable.
func (c *Console) failure(w http.ResponseWriter, r *http.Request, p page, err error) {
	status, je := web.JSONError(err)
	web.LogFailure(c.log, r, status, err)
	switch {
	case status == http.StatusNotFound:
		p.Title, p.Error = "Not found", "There is no such message or referral."
	case status >= http.StatusInternalServerError:
		p.Title = "Not available"
		p.Error = "socialrx could not do this just now; nothing was changed. Try again in a minute. (reference " + web.RequestID(r.Context()) + ")"
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
	default:
		p.Error = je.Message
	}
	p.View = "none"
	c.render(w, r, status, p)
}
