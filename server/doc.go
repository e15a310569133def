// Package server is socialrx's HTTP adapter: the FHIR API (/fhir), the community API (/community/v1), the
// community inbox page (/inbox/, server-rendered HTML for groups with no IT), the admin API (/admin/v1) and the
// ops endpoints (/healthz, /readyz, /metrics).
//
// It is a top-level package because DESIGN.md's dependency order (cmd → outbox/{sqlite,postgres} → outbox →
// mapping → fhir) has no home for a layer that needs all of them: fhir and mapping do no I/O, and outbox must not
// know HTTP request handling. Handlers here only translate: they authenticate, decode with fhir, decide with
// mapping, persist with an outbox.Store, and choose HTTP statuses in one table per API (errors.go).
package server
