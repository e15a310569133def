package server

import (
	"net/http"
	"slices"
	"strings"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/server/fhirapi"
	"github.com/socialrx/socialrx/server/smart"
)

// What the FHIR base accepts besides its routes as declared: a trailing slash (HAPI's habit, and what
// fhir-kit-client and the SMART fhirclient send for POST [base]/), content negotiation (_format and Accept:
// JSON only, 406 otherwise) and CORS for browser-based SMART apps from configured origins.

// withoutTrailingSlash serves a FHIR path with one trailing slash as the path without it: POST /fhir/ is the
// transaction endpoint, GET /fhir/Task/ the Task search, GET /fhir/Task/{id}/ the read. Only /fhir paths
// change (the inbox pages keep their own slashes).
func withoutTrailingSlash(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, "/fhir/") && strings.HasSuffix(p, "/") && !strings.HasSuffix(p, "//") {
			r2 := r.Clone(r.Context())
			r2.URL.Path = strings.TrimSuffix(p, "/")
			if r2.URL.RawPath != "" {
				r2.URL.RawPath = strings.TrimSuffix(r2.URL.RawPath, "/")
			}
			r = r2
		}
		next.ServeHTTP(w, r)
	})
}

// withNegotiation applies FHIR content negotiation (fhirapi.Negotiate) to the FHIR API. SMART discovery is
// plain JSON and is left alone.
func (s *Server) withNegotiation(next http.Handler) http.Handler {
	fhirNext := fhirapi.Negotiate(next, s.log)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isFHIR(r.URL.Path) && !strings.HasPrefix(r.URL.Path, "/fhir/.well-known/") {
			fhirNext.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// CORS (off unless origins are configured). Browser-based SMART apps call the FHIR API and the token endpoint
// with Authorization headers they set themselves, never with cookies: credentials are not allowed
// (no Access-Control-Allow-Credentials), so a page of an allowed origin can only use a token it already holds.
var (
	corsMethods = "GET, HEAD, POST, PUT, PATCH, DELETE"
	corsHeaders = []string{"authorization", "content-type", "accept", "if-match", "if-none-match", "if-none-exist",
		"if-modified-since", "prefer", "x-request-id"}
	corsExposed = "Location, ETag, Content-Location, Last-Modified, X-Request-ID, WWW-Authenticate, Retry-After"
)

// corsPath reports whether path is served cross-origin: the FHIR API (with SMART discovery) and the token
// endpoint. The inbox page, the community and admin APIs and the ops endpoints never are.
func corsPath(path string) bool {
	return isFHIR(path) || path == smart.TokenPath
}

// withCORS answers preflight requests of allowed origins (204 with the allowed methods and headers; 403 for
// other origins) and marks the responses to allowed origins (Access-Control-Allow-Origin, the headers a client
// may read). A request from an origin that is not allowed is served without CORS headers, so the browser keeps
// its answer from the page.
func (s *Server) withCORS(next http.Handler) http.Handler {
	if len(s.cors) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if !corsPath(r.URL.Path) || origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		allowed := slices.Contains(s.cors, strings.ToLower(origin))
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		switch {
		case preflight && !allowed:
			s.fail(w, r, fault.New(fault.Forbidden, "origin_not_allowed", "",
				"cross-origin requests from "+origin+" are not allowed (SOCIALRX_CORS_ORIGINS)"))
		case preflight:
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			for _, name := range strings.Split(r.Header.Get("Access-Control-Request-Headers"), ",") {
				if name = strings.ToLower(strings.TrimSpace(name)); name != "" && !slices.Contains(corsHeaders, name) {
					s.fail(w, r, fault.New(fault.Forbidden, "header_not_allowed", "",
						"cross-origin requests may not send the header "+name))
					return
				}
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", corsMethods)
			h.Set("Access-Control-Allow-Headers", strings.Join(corsHeaders, ", "))
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
		case allowed:
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", corsExposed)
			next.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}
