package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
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
	// BaseURL is the public base of the FHIR API, e.g. "https://socialrx.example.org/fhir"; empty: derived from
	// each request's Host.
	BaseURL string
	// Ready reports extra readiness conditions (e.g. the dispatcher is running); nil: always ready.
	Ready func(ctx context.Context) error
	// TokenKey signs the access tokens of SMART Backend Services (POST /oauth/token); instances that share a
	// database must share it (SOCIALRX_TOKEN_KEY). Empty: a random key, so tokens work on this process only.
	TokenKey []byte
	// InboxSessions is how long community inbox sign-ins last (SOCIALRX_INBOX_IDLE_TIMEOUT,
	// SOCIALRX_INBOX_SESSION_MAX) and how wrong ones are slowed down; zero fields: the defaults.
	InboxSessions referral.SessionPolicy
	// ConsoleSessions is how long operations console sign-ins last and how wrong ones are slowed down; zero
	// fields: the defaults (referral.DefaultSessionPolicy).
	ConsoleSessions referral.SessionPolicy
}

// Server serves socialrx's HTTP APIs.
type Server struct {
	cfg     *config.Config
	svc     *referral.Service
	log     *slog.Logger
	baseURL string
	ready   func(ctx context.Context) error
	metrics *httpMetrics
	smart   *smart.Server
	router  *mux.Router
}

// New builds a Server: the use cases over o.Store, every API, and their routes.
func New(o Options) (*Server, error) {
	if o.Config == nil || o.Store == nil {
		return nil, fmt.Errorf("server: Config and Store are required")
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
	svc, err := referral.New(referral.Options{Store: o.Store, Config: o.Config, Clock: o.Clock, NewID: o.NewID, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: o.Config, svc: svc, log: o.Logger, baseURL: strings.TrimSuffix(o.BaseURL, "/"), ready: o.Ready}
	if s.metrics, err = newHTTPMetrics(o.Registry, svc.Operator()); err != nil {
		return nil, err
	}
	if s.smart, err = smart.New(smart.Options{Config: o.Config, Service: svc, Logger: o.Logger, Clock: o.Clock,
		Key: o.TokenKey, Base: s.base}); err != nil {
		return nil, err
	}
	community, err := communityapi.New(communityapi.Options{Service: svc, Config: o.Config, Logger: o.Logger, Clock: o.Clock,
		MaxBodyBytes: o.MaxBodyBytes, BaseURL: s.baseURL, Sessions: o.InboxSessions})
	if err != nil {
		return nil, err
	}
	fhirAPI := fhirapi.New(fhirapi.Options{Service: svc, Logger: o.Logger, Clock: o.Clock, NewID: o.NewID, Version: o.Version,
		Started: o.Clock().UTC().Truncate(time.Second), MaxBodyBytes: o.MaxBodyBytes, Base: s.base, TokenPath: smart.TokenPath,
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

// Handler returns the root handler with every middleware applied.
func (s *Server) Handler() http.Handler {
	return s.withRequestID(s.withRecover(s.router))
}

// base is the FHIR base URL as clients see it.
func (s *Server) base(r *http.Request) string {
	if s.baseURL != "" {
		return s.baseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/fhir"
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9.-]{8,64}$`)

// withRequestID gives every request a correlation id (the client's X-Request-ID when well-formed), echoed in
// the response header, in OperationOutcome.id and in every log line.
func (s *Server) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !requestIDPattern.MatchString(id) {
			id = referral.NewUUIDv7()
		}
		w.Header().Set("X-Request-ID", id)
		next.ServeHTTP(w, r.WithContext(web.WithRequestID(r.Context(), id)))
	})
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
	if isFHIR(r.URL.Path) {
		fhirapi.WriteError(w, r, s.log, err)
		return
	}
	web.WriteError(w, r, s.log, err)
}

func isFHIR(path string) bool { return strings.HasPrefix(path, "/fhir") }
