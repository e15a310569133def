// Package web is the machinery every HTTP adapter of socialrx shares: who is calling and the request's
// correlation id (context.go), reading request bodies and forms within limits (body.go, form.go), ETags and
// If-Match (etag.go), paging cursors (cursor.go), the JSON APIs' error table and JSON rendering (json.go), and
// route declarations with their access rules (route.go). Each API package (server/fhirapi, server/communityapi,
// server/adminapi, server/smart) decodes a request with it, calls one use case (package referral), and
// encodes the answer; the FHIR API's own rendering and status table live in server/fhirapi.
package web
