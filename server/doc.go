// Package server composes socialrx's HTTP adapters into one handler: the FHIR API (server/fhirapi), the
// community API and inbox page (server/communityapi), the admin API (server/adminapi), SMART Backend Services
// (server/smart) and the ops endpoints (/healthz, /readyz, /metrics). It owns what every route shares: the
// correlation id, panic recovery, security headers, the refusal of NUL bytes and invalid UTF-8 in paths and
// queries (hygiene.go), request metrics, bearer-token authentication and each route's access rule, the
// admission of a request before its body is read (rate limits, body budgets and slots, the failed-
// authentication throttle: admit.go, limits.go), and the 404 and 405 answers in each API's error format.
//
// The adapters only translate: they decode a request, call one use case of package referral, and encode the
// answer; none of them imports another, and none reaches the store but through the use cases. This package
// is the composition root that needs them all, which is why it sits above them (docs/design.md#house-style: cmd → HTTP adapters
// → use cases → outbox → mapping → fhir).
package server
