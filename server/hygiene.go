package server

import (
	"net/http"

	"github.com/socialrx/socialrx/server/internal/web"
)

// withCleanInput refuses, before routing, a request whose path or query holds a NUL byte or invalid UTF-8
// (percent-decoded): a 400 in the API's format naming the parameter (or the path), whatever the route and
// whoever asks, so that no such value ever reaches a use case or the database (both backends answer alike).
// Bodies are checked by each API's decoder (package fhir for FHIR resources, web.CheckJSONText and
// web.ReadForm for the JSON APIs and forms); headers that carry values (If-None-Exist) by their readers.
func (s *Server) withCleanInput(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := web.CheckText("path", "the request path", r.URL.Path); err != nil {
			s.fail(w, r, err)
			return
		}
		if err := web.CheckQuery(r.URL.RawQuery); err != nil {
			s.fail(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// withSecurityHeaders sets, on every answer, X-Content-Type-Options: nosniff and Cache-Control: no-store
// (answers carry patient data, tokens or the state of the service; nothing may be kept by a cache or a
// browser). Public discovery documents set their own Cache-Control over it.
func withSecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}
