// Package fhir is socialrx's FHIR R4 wire layer: strict decoding and validation of incoming resources on the
// raw JSON (so samply's defaulted enums and dropped elements are never trusted), OperationOutcome errors, and
// the wire types of the resources socialrx returns. It does no I/O.
//
// Routes (served by package server/fhirapi, which declares them; docs/fhir-api.md is generated from those
// declarations and the search-parameter table):
//
//	GET  /fhir/metadata                          CapabilityStatement
//	GET  /fhir/.well-known/smart-configuration   SMART Backend Services discovery
//	POST /fhir/ServiceRequest                    create a referral (If-None-Exist; idempotent on identifier)
//	POST /fhir (or /fhir/)                       transaction Bundle: ServiceRequest + Patient [+ Consent, ...]
//	GET  /fhir/ServiceRequest/{id}               read; …/_history, …/_history/{vid}: history, vread
//	PUT  /fhir/ServiceRequest/{id}               GP cancellation: status revoked (If-Match optional)
//	PATCH /fhir/ServiceRequest/{id}              GP cancellation by JSON Patch on /status
//	GET  /fhir/ServiceRequest?…                  search (also POST /fhir/ServiceRequest/_search)
//	GET  /fhir/Task/{id}                         read; …/_history, …/_history/{vid}: history, vread
//	PUT  /fhir/Task/{id}                         status changes (If-Match required): community owner or GP
//	PATCH /fhir/Task/{id}                        the same as JSON Patch
//	POST /fhir/Observation                       an outcome measure against the Task (focus), by its service
//	GET  /fhir/Observation/{id}                  a measure, referenced from Task.output
//	GET  /fhir/DocumentReference?related=…       the GP letter of a closed referral (ServiceRequest/{id})
//	GET  /fhir/DocumentReference/{id}            the GP letter, referenced from Task.output
//	GET  /fhir/Binary/{id}                       its PDF (Accept: application/pdf) or a FHIR Binary
//	GET  /fhir/MeasureReport[?period=…]          monthly figures, one report per month (admin clients)
//	GET  /fhir/HealthcareService[?…]             the directory's services with their capacity (SDOH
//	                                             capacity-status extension); _id, service-type, code, capacity
//	GET  /fhir/HealthcareService/{id}            one service (also POST /fhir/HealthcareService/_search)
//	POST /fhir/Subscription                      GP notifications (R4 backport rest-hook, classic or topic
//	                                             criteria), scoped to a practice; a handshake first
//	GET  /fhir/Subscription/{id}                 read (owner; 410 once deleted); PUT/PATCH: re-activate
//	                                             (status requested); DELETE: status off
//	GET  /fhir/Subscription/{id}/$status         events-since-subscription-start, status, error (also POST;
//	                                             type level: /fhir/Subscription/$status?id=…&status=…)
//	GET  /fhir/Task?…                            search (_id lists, focus, patient, requester, owner, status,
//	                                             code, _lastUpdated, _include, _count, _summary=count, _total;
//	                                             total, self and next links); also POST /fhir/Task/_search
//	GET  /fhir/AuditEvent?entity=…&date=…        who saw or changed a referral (the audit trail, IHE BALP
//	                                             shape), the GP's own practices' referrals only
//
// # Validation
//
// ParseServiceRequest (POST /fhir/ServiceRequest) and ParseTransaction (POST /fhir) read the body with a strict
// JSON reader (one value, no trailing data, no duplicate keys, valid UTF-8) and validate it in stages, stopping
// after the first failing stage and reporting all of its issues in one *Error (kind fault.Invalid: 400), each with a
// FHIRPath-like expression such as "Bundle.entry[2].resource.subject" and diagnostics that start with the
// rule's name ("unknown-element:", "cardinality:", "format:", "dom-3:", "code:", …):
//
//  1. structure — resourceType, element names, JSON arrays exactly where R4 says max=*, JSON kinds and formats
//     of primitives, _element twins, choice elements, empty values, contained resources (validated by their
//     own type; dom-2 to dom-5), narratives (txt-1: basic XHTML only, no script; txt-2: some content:
//     narrative.go), and for POST /fhir the transaction shape (Bundle.type, fullUrl, request); for a
//     ServiceRequest, the indexed strings within their limits (limits.go: too-long). Issue codes structure,
//     invalid, value, invariant, required, not-supported, too-long.
//  2. required elements and required-binding codes — codes required and code-invalid.
//
// Element definitions come from the official R4 JSON schema, turned by `go generate` (internal/schemagen)
// into the read-only table in elements_gen.go; rules.go adds what the schema cannot express. Business rules
// (status=active, intent, doNotPerform, subject, NHS number, consent, routing: 422) belong to package mapping.
// ValidateResource runs the same stages on any resource, e.g. a Task update. Package fhirtest checks output
// against the official schema with an independent JSON Schema implementation.
package fhir
