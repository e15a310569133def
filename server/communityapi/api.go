// Package communityapi is socialrx's face for community services: the community JSON API (/community/v1: the
// pull inbox, one referral, status changes with notes) and the community inbox page (/inbox/, server-rendered
// HTML for groups with no IT). Both decode a request, call the same use cases of package referral (Get, Search,
// ChangeStatus), and encode the answer; errors use the JSON APIs' table (server/internal/web) or, on the inbox
// page, words a volunteer reads.
package communityapi

import (
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"
	_ "time/tzdata" // the inbox shows UK local time (Europe/London) even where the machine has no zone database

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// Options are what the community API and inbox need.
type Options struct {
	Service *referral.Service
	Config  *config.Config // the inbox authenticates its sign-in token against the directory
	Logger  *slog.Logger
	Clock   func() time.Time
	// MaxBodyBytes limits request bodies (413 beyond).
	MaxBodyBytes int64
	// BaseURL is the configured public base URL ("" when none): the inbox accepts forms whose Origin names it.
	BaseURL string
	// Sessions is how long inbox sign-ins last and how wrong ones are slowed down (zero fields: the defaults
	// of referral.DefaultSessionPolicy).
	Sessions referral.SessionPolicy
}

// API serves the community API and the inbox page.
type API struct {
	o     Options
	svc   *referral.Service
	inbox referral.Inbox
	log   *slog.Logger
	tmpl  *template.Template
	uk    *time.Location // the inbox's times are UK local time
	now   func() time.Time
}

// New returns the community API.
func New(o Options) (*API, error) {
	uk, err := time.LoadLocation(ukZone)
	if err != nil {
		return nil, fmt.Errorf("communityapi: %w", err)
	}
	t, err := inboxTemplates(uk)
	if err != nil {
		return nil, fmt.Errorf("communityapi: inbox templates: %w", err)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &API{o: o, svc: o.Service, inbox: o.Service.Inbox(o.Sessions), log: o.Logger, tmpl: t, uk: uk, now: o.Clock}, nil
}

// Routes are the community API's and the inbox page's routes. The API is for community clients only, scoped
// to the client's service; the inbox signs in with a cookie, not a bearer header, so its routes are public
// here and inbox.go authenticates every request itself.
func (a *API) Routes() []web.Route {
	get, post := http.MethodGet, http.MethodPost
	return []web.Route{
		{Path: "/community/v1/referrals", Name: "community_referrals", Access: web.CommunityOnly, Methods: map[string]http.HandlerFunc{get: a.list}},
		{Path: "/community/v1/referrals/{id}", Name: "community_referral", Access: web.CommunityOnly, Methods: map[string]http.HandlerFunc{get: a.get}},
		{Path: "/community/v1/referrals/{id}/status", Name: "community_referral_status", Access: web.CommunityOnly,
			Methods: map[string]http.HandlerFunc{post: a.status}},
		{Path: "/community/v1/referrals/{id}/forward", Name: "community_referral_forward", Access: web.CommunityOnly,
			Methods: map[string]http.HandlerFunc{post: a.forward}},
		{Path: "/community/v1/referrals/{id}/measures", Name: "community_referral_measures", Access: web.CommunityOnly,
			Methods: map[string]http.HandlerFunc{get: a.listMeasures, post: a.recordMeasure}},
		{Path: "/community/v1/figures", Name: "community_figures", Access: web.CommunityOnly, Methods: map[string]http.HandlerFunc{get: a.figures}},
		{Path: "/community/v1/capacity", Name: "community_capacity", Access: web.CommunityOnly,
			Methods: map[string]http.HandlerFunc{get: a.getCapacity, http.MethodPut: a.putCapacity}},
		{Path: "/inbox", Name: "inbox_bare", Access: web.Public, Methods: map[string]http.HandlerFunc{get: a.inboxBare}},
		{Path: "/inbox/", Name: "inbox", Access: web.Public, Methods: map[string]http.HandlerFunc{get: a.inboxHome}},
		{Path: "/inbox/login", Name: "inbox_login", Access: web.Public, Methods: map[string]http.HandlerFunc{post: a.inboxLogin}},
		{Path: "/inbox/logout", Name: "inbox_logout", Access: web.Public, Methods: map[string]http.HandlerFunc{post: a.inboxLogout}},
		{Path: "/inbox/figures", Name: "inbox_figures", Access: web.Public, Methods: map[string]http.HandlerFunc{get: a.inboxFigures}},
		{Path: "/inbox/capacity", Name: "inbox_capacity", Access: web.Public, Methods: map[string]http.HandlerFunc{post: a.inboxCapacity}},
		{Path: "/inbox/referrals/{id}", Name: "inbox_referral", Access: web.Public, Methods: map[string]http.HandlerFunc{get: a.inboxShow}},
		{Path: "/inbox/referrals/{id}/measures", Name: "inbox_referral_measures", Access: web.Public,
			Methods: map[string]http.HandlerFunc{get: a.inboxMeasureForm, post: a.inboxRecordMeasure}},
		{Path: "/inbox/referrals/{id}/forward", Name: "inbox_referral_forward", Access: web.Public, Methods: map[string]http.HandlerFunc{post: a.inboxForward}},
		{Path: "/inbox/referrals/{id}/status", Name: "inbox_referral_status", Access: web.Public, Methods: map[string]http.HandlerFunc{post: a.inboxStatus}},
	}
}

// fail answers a JSON API request with the error for err.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	web.WriteError(w, r, a.log, err)
}
