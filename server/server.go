package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/adminapi"
	"github.com/socialrx/socialrx/server/communityapi"
	"github.com/socialrx/socialrx/server/console"
	"github.com/socialrx/socialrx/server/fhirapi"
	"github.com/socialrx/socialrx/server/internal/web"
	"github.com/socialrx/socialrx/server/smart"
)

// Options are what a Server needs; everything that varies is injected.
type Options struct {
	Config   *config.Config
	Store    outbox.Store
	Logger   *slog.Logger
	Clock    func() time.Time // default time.Now
	NewID    func() string    // default UUIDv7
	Version  string           // software version for CapabilityStatement and User-Agent
	Registry *prometheus.Registry
	// MaxBodyBytes limits request bodies (413 beyond).
	MaxBodyBytes int64
	// BaseURL is the public base of the FHIR API, e.g. "https://socialrx.example.org/fhir" (required: an
	// absolute http(s) URL ending in /fhir). Every absolute URL the server writes is built on it, never on a
	// request's Host or X-Forwarded-* headers (docs/design.md#deployment).
	BaseURL string
	// CORSOrigins are the browser origins allowed to call the FHIR API and the token endpoint cross-origin
	// (exact scheme://host[:port]); empty: no CORS headers at all.
	CORSOrigins []string
	// Ready reports extra readiness conditions (e.g. the dispatcher is running); nil: always ready.
	Ready func(ctx context.Context) error
	// TokenKey signs the access tokens of SMART Backend Services (POST /oauth/token); instances that share a
	// database must share it (SOCIALRX_TOKEN_KEY). Empty: a random key, so tokens work on this process only.
	TokenKey []byte
	// InboxSessions is how long community inbox sign-ins last (SOCIALRX_INBOX_IDLE_TIMEOUT,
	// SOCIALRX_INBOX_SESSION_MAX) and how wrong ones are slowed down; zero fields: the defaults.
	InboxSessions referral.SessionPolicy
	// Limits are the rate limits, body slots and Subscription cap (config.Limits; the process passes
	// config.Settings.Limits). Nil: no limits (tests and benchmarks that measure something else).
	Limits *config.Limits
	// LimitClock is the time the rate limits run on (default time.Now; never the data clock, Clock).
	LimitClock func() time.Time
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names the client address.
	TrustedProxies []netip.Prefix
	// Secrets seal stored credentials (Subscription channel.header values; the dispatcher's resolver opens
	// them with the same keyring). Nil: channel.header is refused.
	Secrets *outbox.Keyring
	// SubscriptionOff, if set, is told the id of each Subscription its owner deletes (DeliveryMetrics.Forget).
	SubscriptionOff func(id string)
	// MetricsToken, if set, is the bearer token /metrics requires (SOCIALRX_METRICS_TOKEN).
	MetricsToken string
	// NoMetricsRoute leaves /metrics off the API listener (it is served on its own: MetricsHandler).
	NoMetricsRoute bool
	// ConsoleSessions is how long operations console sign-ins last and how wrong ones are slowed down; zero
	// fields: the defaults (referral.DefaultSessionPolicy).
	ConsoleSessions referral.SessionPolicy
	// Auditor records every read and change of patient data in the audit trail (an outbox.AuditLog the
	// process closes after the server). Nil: nothing is audited (tests that measure something else).
	Auditor referral.Auditor
}

// Server serves socialrx's HTTP APIs.
type Server struct {
	cfg     *config.Config
	svc     *referral.Service
	log     *slog.Logger
	baseURL string
	cors    []string
	ready   func(ctx context.Context) error
	metrics *httpMetrics
	smart   *smart.Server
	router  *mux.Router
	limits  *limiter
	maxBody int64
	// metricsToken guards /metrics when set; noMetricsRoute leaves it off the API listener.
	metricsToken   string
	noMetricsRoute bool
}

// New builds a Server: the use cases over o.Store, every API, and their routes.
func New(o Options) (*Server, error) {
	if o.Config == nil || o.Store == nil {
		return nil, fmt.Errorf("server: Config and Store are required")
	}
	base, err := config.ParseBaseURL(o.BaseURL)
	if err != nil || !strings.HasSuffix(base, "/fhir") {
		return nil, fmt.Errorf("server: BaseURL %q must be the absolute http(s) URL of the FHIR API, ending in /fhir", o.BaseURL)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.NewID == nil {
		o.NewID = referral.NewUUIDv7
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	lim := config.Unlimited()
	if o.Limits != nil {
		lim = *o.Limits
	}
	svc, err := referral.New(referral.Options{Store: o.Store, Config: o.Config, Clock: o.Clock, NewID: o.NewID, Logger: o.Logger,
		Secrets: o.Secrets, MaxSubscriptionsPerClient: lim.SubscriptionsPerClient, SubscriptionOff: o.SubscriptionOff,
		Auditor: o.Auditor})
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: o.Config, svc: svc, log: o.Logger, baseURL: base, cors: o.CORSOrigins, ready: o.Ready,
		maxBody: o.MaxBodyBytes, metricsToken: o.MetricsToken, noMetricsRoute: o.NoMetricsRoute}
	s.limits = newLimiter(lim, o.LimitClock, o.TrustedProxies)
	if s.metrics, err = newHTTPMetrics(o.Registry, svc.Operator()); err != nil {
		return nil, err
	}
	if s.smart, err = smart.New(smart.Options{Config: o.Config, Service: svc, Logger: o.Logger, Clock: o.Clock,
		Key: o.TokenKey, Base: s.baseURL}); err != nil {
		return nil, err
	}
	community, err := communityapi.New(communityapi.Options{Service: svc, Config: o.Config, Logger: o.Logger, Clock: o.Clock,
		MaxBodyBytes: o.MaxBodyBytes, BaseURL: s.baseURL, Sessions: o.InboxSessions})
	if err != nil {
		return nil, err
	}
	fhirAPI := fhirapi.New(fhirapi.Options{Service: svc, Logger: o.Logger, Clock: o.Clock, NewID: o.NewID, Version: o.Version,
		Started: o.Clock().UTC().Truncate(time.Second), MaxBodyBytes: o.MaxBodyBytes, Base: s.baseURL, TokenPath: smart.TokenPath,
		Referrals: s.metrics.referrals})
	admin := adminapi.New(adminapi.Options{Service: svc, Logger: o.Logger, Clock: o.Clock, MaxBodyBytes: o.MaxBodyBytes})
	apis := [][]web.Route{s.opsRoutes(), fhirAPI.Routes(), s.smart.Routes(), admin.Routes(), community.Routes()}
	ops, err := console.New(console.Options{Service: svc, Sessions: o.ConsoleSessions, Logger: o.Logger, Clock: o.Clock,
		BaseURL: s.baseURL})
	if err != nil {
		return nil, err
	}
	s.routes(append(apis, ops.Routes())...)
	return s, nil
}

// Handler returns the root handler with every middleware applied: correlation id, panic recovery, the security
// headers, CORS (when origins are configured), clean input (no NUL or invalid UTF-8 in the path or query), the
// FHIR base's trailing slash, FHIR content negotiation, then the routes.
func (s *Server) Handler() http.Handler {
	return s.withRequestID(s.withRecover(withSecurityHeaders(s.withCORS(s.withCleanInput(withoutTrailingSlash(s.withNegotiation(s.router)))))))
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9.-]{8,64}$`)

// withRequestID gives every request a correlation id the server makes (a UUIDv7, never the client's),
// sent in the X-Request-ID response header, OperationOutcome.id, JSON errors' request_id, every log line and
// the audit trail. A client's own X-Request-ID (when well-formed) is kept beside it: in the request's log
// line and its audit records (client_request_id), never instead of it. The request's origin for the audit
// trail (ids, client address, route) goes into its context (referral.WithOrigin).
func (s *Server) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := referral.NewUUIDv7()
		clientID := r.Header.Get("X-Request-ID")
		if !requestIDPattern.MatchString(clientID) {
			clientID = ""
		}
		w.Header().Set("X-Request-ID", id)
		o := &referral.Origin{RequestID: id, ClientRequestID: clientID, Via: via(r.URL.Path)}
		if a := s.limits.clientAddr(r); a.IsValid() {
			o.Address = a.String()
		}
		ctx := web.WithClientRequestID(web.WithRequestID(r.Context(), id), clientID)
		next.ServeHTTP(w, r.WithContext(referral.WithOrigin(ctx, o)))
	})
}

// via is the audit trail's name of the route a path belongs to.
func via(path string) string {
	switch {
	case isFHIR(path):
		return referral.ViaFHIR
	case strings.HasPrefix(path, "/community/"):
		return referral.ViaCommunity
	case strings.HasPrefix(path, "/inbox"):
		return referral.ViaInbox
	case strings.HasPrefix(path, "/admin/v1/"):
		return referral.ViaAdmin
	case strings.HasPrefix(path, "/admin"):
		return referral.ViaConsole
	}
	return "http"
}

// withRecover turns a panic (a bug, never a client's mistake) into a 500 in the API's error format and a log line.
func (s *Server) withRecover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "request_id", web.RequestID(r.Context()), "panic", fmt.Sprint(v))
				s.fail(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// fail answers with the error format of the API the request is for.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case isFHIR(r.URL.Path):
		fhirapi.WriteError(w, r, s.log, err)
	case r.URL.Path == smart.TokenPath:
		smart.WriteError(w, r, s.log, err)
	default:
		web.WriteError(w, r, s.log, err)
	}
}

func isFHIR(path string) bool { return strings.HasPrefix(path, "/fhir") }
