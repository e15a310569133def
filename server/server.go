package server

import (
	"context"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/outbox"
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
}

// Server serves socialrx's HTTP APIs.
type Server struct {
	cfg     *config.Config
	store   outbox.Store
	log     *slog.Logger
	now     func() time.Time
	newID   func() string
	version string
	maxBody int64
	baseURL string
	ready   func(ctx context.Context) error
	metrics *httpMetrics
	started time.Time
	router  *mux.Router
	// inboxTmpl renders the community inbox pages (inbox.go).
	inboxTmpl *template.Template
	// tokenKey signs access tokens (smart.go).
	tokenKey []byte
}

// New builds a Server and its routes.
func New(o Options) (*Server, error) {
	if o.Config == nil || o.Store == nil {
		return nil, fmt.Errorf("server: Config and Store are required")
	}
	s := &Server{
		cfg: o.Config, store: o.Store, log: o.Logger, now: o.Clock, newID: o.NewID,
		version: o.Version, maxBody: o.MaxBodyBytes, baseURL: strings.TrimSuffix(o.BaseURL, "/"), ready: o.Ready,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = NewUUIDv7
	}
	if s.maxBody <= 0 {
		s.maxBody = 1 << 20
	}
	s.started = s.now().UTC().Truncate(time.Second)
	if s.version == "" {
		s.version = "dev"
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newHTTPMetrics(reg, o.Store)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if s.tokenKey, err = tokenKeyOrRandom(o.TokenKey); err != nil {
		return nil, err
	}
	if s.inboxTmpl, err = inboxTemplates(); err != nil {
		return nil, fmt.Errorf("server: inbox templates: %w", err)
	}
	s.routes()
	return s, nil
}

// NewUUIDv7 returns a new time-ordered UUID string.
func NewUUIDv7() string {
	id, err := uuid.NewV7()
	if err != nil { // only if the system's random source fails
		return uuid.NewString()
	}
	return id.String()
}

// Handler returns the root handler with every middleware applied.
func (s *Server) Handler() http.Handler {
	return s.withRequestID(s.withRecover(s.router))
}

// access says who may use a route.
type access int

const (
	public access = iota + 1
	anyClient
	gpOrAdmin
	communityOnly
	adminOnly
)

// handle registers path with one handler per method. Requests with another method get 405 with Allow, in the
// API's own error format (gorilla/mux's own 405 has no body and no Allow).
func (s *Server) handle(path, name string, acc access, methods map[string]http.HandlerFunc) {
	allowed := make([]string, 0, len(methods)+1)
	for m := range methods {
		allowed = append(allowed, m)
	}
	if _, ok := methods[http.MethodGet]; ok {
		allowed = append(allowed, http.MethodHead)
	}
	slices.Sort(allowed)
	allow := strings.Join(allowed, ", ")
	isFHIR := strings.HasPrefix(path, "/fhir")
	s.router.Handle(path, s.instrument(name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		h, ok := methods[method]
		if !ok {
			w.Header().Set("Allow", allow)
			s.fail(w, r, isFHIR, &jsonError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
				Message: fmt.Sprintf("%s is not allowed here; allowed: %s", r.Method, allow)})
			return
		}
		if acc != public {
			cl, err := s.authenticate(r, acc, path)
			if err != nil {
				if je, ok := err.(*jsonError); ok && je.Status == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="socialrx"`)
				}
				s.fail(w, r, isFHIR, err)
				return
			}
			r = r.WithContext(withClient(r.Context(), cl))
		}
		h(w, r)
	})))
}

// fail answers with the error format of the API the request is for.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, isFHIR bool, err error) {
	if isFHIR {
		if je, ok := err.(*jsonError); ok {
			err = &fhir.Error{Status: je.Status, Issues: issue(fhirCodeFor(je.Status), je.Message)}
		}
		s.writeFHIRError(w, r, err)
		return
	}
	s.writeAPIError(w, r, err)
}

func fhirCodeFor(status int) fhir.IssueCode {
	switch status {
	case http.StatusUnauthorized:
		return fhir.CodeLogin
	case http.StatusForbidden:
		return fhir.CodeForbidden
	case http.StatusNotFound:
		return fhir.CodeNotFound
	case http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType, http.StatusNotAcceptable:
		return fhir.CodeNotSupported
	case http.StatusRequestEntityTooLarge:
		return fhir.CodeTooCostly
	case http.StatusConflict:
		return fhir.CodeConflict
	case http.StatusServiceUnavailable:
		return fhir.CodeTransient
	}
	return fhir.CodeInvalid
}

// authenticate checks the bearer token and the route's access rule.
func (s *Server) authenticate(r *http.Request, acc access, path string) (config.Client, error) {
	h := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if h == "" || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return config.Client{}, &jsonError{Status: http.StatusUnauthorized, Code: "unauthorized",
			Message: "send Authorization: Bearer <token> of a configured client"}
	}
	cl, ok := s.cfg.Authenticate(token)
	if !ok && strings.HasPrefix(token, accessPrefix) {
		if !strings.HasPrefix(path, "/fhir") {
			return config.Client{}, &jsonError{Status: http.StatusUnauthorized, Code: "unauthorized",
				Message: "access tokens from " + tokenPath + " are for the FHIR API; use your service's directory token here"}
		}
		c, g, err := s.verifyAccessToken(token)
		if err != nil {
			return config.Client{}, &jsonError{Status: http.StatusUnauthorized, Code: "unauthorized", Message: err.Error()}
		}
		if res, perm := requiredScope(path, r.Method); res != "" && !strings.ContainsRune(g.Scopes[res], rune(perm)) {
			return config.Client{}, &jsonError{Status: http.StatusForbidden, Code: "forbidden",
				Message: fmt.Sprintf("the access token's scope (%s) does not include system/%s.%c", scopeString(g.Scopes), res, perm)}
		}
		cl, ok = c, true
	}
	if !ok {
		return config.Client{}, &jsonError{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "unknown bearer token"}
	}
	allowed := true
	switch acc {
	case gpOrAdmin:
		allowed = cl.Role == config.RoleGP || cl.Role == config.RoleAdmin
	case communityOnly:
		allowed = cl.Role == config.RoleCommunity
	case adminOnly:
		allowed = cl.Role == config.RoleAdmin
	case public, anyClient:
	}
	if !allowed {
		return config.Client{}, &jsonError{Status: http.StatusForbidden, Code: "forbidden",
			Message: fmt.Sprintf("a %s client may not use this endpoint", cl.Role)}
	}
	return cl, nil
}

type ctxKey int

const (
	keyRequestID ctxKey = iota + 1
	keyClient
)

func withClient(ctx context.Context, c config.Client) context.Context {
	return context.WithValue(ctx, keyClient, c)
}

func clientFrom(ctx context.Context) config.Client {
	c, _ := ctx.Value(keyClient).(config.Client)
	return c
}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(keyRequestID).(string)
	return id
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9.-]{8,64}$`)

// withRequestID gives every request a correlation id (the client's X-Request-ID when well-formed), echoed in
// the response header, in OperationOutcome.id and in every log line.
func (s *Server) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !requestIDPattern.MatchString(id) {
			id = NewUUIDv7()
		}
		w.Header().Set("X-Request-ID", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyRequestID, id)))
	})
}

// withRecover turns a panic (a bug, never a client's mistake) into a 500 OperationOutcome and a log line.
func (s *Server) withRecover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "request_id", requestID(r.Context()), "panic", fmt.Sprint(v))
				s.fail(w, r, strings.HasPrefix(r.URL.Path, "/fhir"), fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// notFound answers unknown routes in the API's format.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	isFHIR := strings.HasPrefix(r.URL.Path, "/fhir")
	msg := "no such route"
	code := "not_found"
	if isFHIR {
		parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/fhir"), "/"), "/")
		if len(parts) > 0 && parts[0] != "" {
			msg = fmt.Sprintf("resource type or operation %q is not supported; see /fhir/metadata", parts[0])
		}
	}
	s.metrics.observe("not_found", r.Method, http.StatusNotFound, 0)
	s.fail(w, r, isFHIR, &jsonError{Status: http.StatusNotFound, Code: code, Message: msg})
}
