package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/server/internal/web"
)

// routes registers every API's routes on the root router with full paths (gorilla/mux answers 404 instead of
// 405 under PathPrefix subrouters: docs/design.md#known-traps).
func (s *Server) routes(apis ...[]web.Route) {
	s.router = mux.NewRouter()
	s.router.NotFoundHandler = http.HandlerFunc(s.notFound)
	s.router.MethodNotAllowedHandler = http.HandlerFunc(s.notFound)
	for _, api := range apis {
		for _, rt := range api {
			s.handle(rt)
		}
	}
}

// handle registers one route. Requests with another method get 405 with Allow, in the API's own error format
// (gorilla/mux's own 405 has no body and no Allow); requests the route's access rule refuses get 401 or 403.
func (s *Server) handle(rt web.Route) {
	allowed := make([]string, 0, len(rt.Methods)+1)
	for m := range rt.Methods {
		allowed = append(allowed, m)
	}
	if _, ok := rt.Methods[http.MethodGet]; ok {
		allowed = append(allowed, http.MethodHead)
	}
	slices.Sort(allowed)
	allow := strings.Join(allowed, ", ")
	s.router.Handle(rt.Path, s.instrument(rt.Name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		h, ok := rt.Methods[method]
		if !ok {
			w.Header().Set("Allow", allow)
			s.fail(w, r, fault.New(fault.MethodNotAllowed, "method_not_allowed", "",
				fmt.Sprintf("%s is not allowed here; allowed: %s", r.Method, allow)))
			return
		}
		r, release, ok := s.admit(w, r, rt) // credentials, rates, body slots (admit.go)
		if !ok {
			return
		}
		defer release()
		h(w, r)
	})))
}

// notFound answers unknown routes in the API's format.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	msg := "no such route"
	if isFHIR(r.URL.Path) {
		parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/fhir"), "/"), "/")
		if len(parts) > 0 && parts[0] != "" {
			msg = fmt.Sprintf("resource type or operation %q is not supported; see /fhir/metadata", parts[0])
		}
	}
	s.metrics.observe("not_found", r.Method, http.StatusNotFound, 0)
	s.logRequest(r, "not_found", http.StatusNotFound, "", 0)
	s.fail(w, r, fault.New(fault.NotFound, "not_found", "", msg))
}

// opsRoutes are the public ops endpoints (/metrics only when it is not served on its own listener).
func (s *Server) opsRoutes() []web.Route {
	get := http.MethodGet
	routes := []web.Route{
		{Path: "/healthz", Name: "healthz", Access: web.Public, Methods: map[string]http.HandlerFunc{get: s.healthz}},
		{Path: "/readyz", Name: "readyz", Access: web.Public, Methods: map[string]http.HandlerFunc{get: s.readyz}},
	}
	if !s.noMetricsRoute {
		routes = append(routes, web.Route{Path: "/metrics", Name: "metrics", Access: web.Public,
			Methods: map[string]http.HandlerFunc{get: s.MetricsHandler().ServeHTTP}})
	}
	return routes
}

// healthz says the process is alive.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	web.WriteJSON(w, s.log, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz says the process can serve: the database takes writes (a tiny write through the normal write path,
// and no write failed for want of the database since the previous check) and the dispatcher runs.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.svc.CheckWrite(ctx); err != nil {
		s.log.Warn("not ready: database", "err", err)
		w.Header().Set("Retry-After", "5")
		web.WriteJSON(w, s.log, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "database"})
		return
	}
	if s.ready != nil {
		if err := s.ready(ctx); err != nil {
			w.Header().Set("Retry-After", "5")
			web.WriteJSON(w, s.log, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
	}
	web.WriteJSON(w, s.log, http.StatusOK, map[string]string{"status": "ready"})
}
