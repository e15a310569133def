// Package fhirapi is socialrx's FHIR R4 REST API (base /fhir): referral intake (ServiceRequest and transaction
// Bundles), reads and searches of ServiceRequests and Tasks, GP cancellation and Task updates (PUT and JSON
// Patch), Subscriptions and the CapabilityStatement. Each handler decodes the request (package fhir for
// resources, search.go's declared parameter table for searches), calls one use case of package referral, and
// encodes the answer; errors become OperationOutcomes through this package's one status table (errors.go).
package fhirapi

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// Options are what the FHIR API needs.
type Options struct {
	Service *referral.Service
	Logger  *slog.Logger
	Clock   func() time.Time
	NewID   func() string
	// Version is the software version the CapabilityStatement names; Started its date.
	Version string
	Started time.Time
	// MaxBodyBytes limits request bodies (413 beyond).
	MaxBodyBytes int64
	// Base is the public base URL of the FHIR API (e.g. "https://socialrx.example.org/fhir"), configured: every
	// absolute URL the API writes is built on it, never on a request's Host.
	Base string
	// TokenPath is the path of the SMART token endpoint (named in the CapabilityStatement).
	TokenPath string
	// Referrals counts submissions by outcome (created, resent, rejected); nil: not counted.
	Referrals *prometheus.CounterVec
}

// API serves the FHIR routes.
type API struct {
	o   Options
	svc *referral.Service
	log *slog.Logger
}

// New returns the FHIR API.
func New(o Options) *API {
	return &API{o: o, svc: o.Service, log: o.Logger}
}

// Routes are the FHIR API's routes (register them with full paths on the root router, in this order: a
// literal segment such as _search or $status comes before the {id} it would otherwise match).
func (a *API) Routes() []web.Route {
	get, post := http.MethodGet, http.MethodPost
	return []web.Route{
		{Path: "/fhir/metadata", Name: "fhir_metadata", Access: web.Public, Methods: map[string]http.HandlerFunc{get: a.metadata}},
		{Path: "/fhir", Name: "fhir_transaction", Access: web.GPOrAdmin, Methods: map[string]http.HandlerFunc{post: a.transaction}},
		{Path: "/fhir/ServiceRequest", Name: "fhir_servicerequest_type", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{
			post: a.createServiceRequest, get: a.search(typeServiceRequest)}},
		{Path: "/fhir/ServiceRequest/_search", Name: "fhir_servicerequest_search", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{
			post: a.search(typeServiceRequest)}},
		{Path: "/fhir/ServiceRequest/{id}", Name: "fhir_servicerequest", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{
			http.MethodPut: a.updateServiceRequest, http.MethodPatch: a.patchServiceRequest, // GP cancellation (issue 4)
			get: a.readServiceRequest}},
		{Path: "/fhir/ServiceRequest/{id}/_history", Name: "fhir_servicerequest_history", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{
			get: a.historyServiceRequest}},
		{Path: "/fhir/ServiceRequest/{id}/_history/{vid}", Name: "fhir_servicerequest_vread", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{
			get: a.vreadServiceRequest}},
		{Path: "/fhir/Task", Name: "fhir_task_type", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{get: a.search(typeTask)}},
		{Path: "/fhir/Task/_search", Name: "fhir_task_search", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{post: a.search(typeTask)}},
		{Path: "/fhir/Task/{id}", Name: "fhir_task", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{
			http.MethodPut: a.updateTask, http.MethodPatch: a.patchTask, // Task updates, If-Match required (issue 4)
			get: a.readTask}},
		{Path: "/fhir/Task/{id}/_history", Name: "fhir_task_history", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{get: a.historyTask}},
		{Path: "/fhir/Task/{id}/_history/{vid}", Name: "fhir_task_vread", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{get: a.vreadTask}},
		{Path: "/fhir/AuditEvent", Name: "fhir_auditevent_type", Access: web.GPOrAdmin, Methods: map[string]http.HandlerFunc{get: a.searchAuditEvents}},
		{Path: "/fhir/Observation", Name: "fhir_observation_type", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{
			post: a.createObservation}},
		{Path: "/fhir/Observation/{id}", Name: "fhir_observation", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{
			get: a.readObservation}},
		{Path: "/fhir/DocumentReference", Name: "fhir_documentreference_type", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{
			get: a.searchDocumentReferences}},
		{Path: "/fhir/DocumentReference/{id}", Name: "fhir_documentreference", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{
			get: a.readDocumentReference}},
		{Path: "/fhir/MeasureReport", Name: "fhir_measurereport_type", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{get: a.searchMeasureReports}},
		{Path: "/fhir/Binary/{id}", Name: "fhir_binary", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{get: a.readBinary}},
		{Path: "/fhir/HealthcareService", Name: "fhir_healthcareservice_type", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{get: a.searchHealthcareServices}},
		{Path: "/fhir/HealthcareService/_search", Name: "fhir_healthcareservice_search", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{post: a.searchHealthcareServices}},
		{Path: "/fhir/HealthcareService/{id}", Name: "fhir_healthcareservice", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{get: a.readHealthcareService}},
		{Path: "/fhir/Subscription", Name: "fhir_subscription_type", Access: web.GPOrAdmin, Methods: map[string]http.HandlerFunc{
			post: a.createSubscription}},
		{Path: "/fhir/Subscription/$status", Name: "fhir_subscription_statuses", Access: web.GPOrAdmin, Methods: map[string]http.HandlerFunc{
			get: a.subscriptionStatuses, post: a.subscriptionStatuses}},
		{Path: "/fhir/Subscription/{id}", Name: "fhir_subscription", Access: web.GPOrAdmin, Methods: map[string]http.HandlerFunc{
			get: a.readSubscription, http.MethodDelete: a.deleteSubscription,
			http.MethodPut: a.updateSubscription, http.MethodPatch: a.patchSubscription}},
		{Path: "/fhir/Subscription/{id}/$status", Name: "fhir_subscription_status", Access: web.GPOrAdmin, Methods: map[string]http.HandlerFunc{
			get: a.subscriptionStatus, post: a.subscriptionStatus}},
	}
}

// fail answers with an OperationOutcome for err.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) { WriteError(w, r, a.log, err) }

// now is the API's clock.
func (a *API) now() time.Time { return a.o.Clock() }

// preferReturn reads Prefer: return=minimal|representation|OperationOutcome.
func preferReturn(r *http.Request) string {
	for _, part := range strings.Split(r.Header.Get("Prefer"), ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "return="); ok {
			return v
		}
	}
	return "representation"
}

// lenient reports Prefer: handling=lenient (unknown search parameters are then ignored, not refused).
func lenient(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Prefer"), "handling=lenient")
}

// respond answers a write (R4 http.html#ops, Prefer: return=…): the resource (return=representation, the
// default), nothing (return=minimal) or an informational OperationOutcome saying what was done
// (return=OperationOutcome), always with status and the headers already set.
func (a *API) respond(w http.ResponseWriter, r *http.Request, status int, body []byte, done string) {
	switch preferReturn(r) {
	case "minimal":
		w.WriteHeader(status)
	case "OperationOutcome":
		Write(w, status, fhir.MarshalOutcome(web.RequestID(r.Context()),
			[]fhir.Issue{{Severity: fhir.SeverityInformation, Code: fhir.CodeInformational, Diagnostics: done}}))
	default:
		Write(w, status, body)
	}
}

// setResourceHeaders sets Location, ETag and Last-Modified for one resource version.
func (a *API) setResourceHeaders(w http.ResponseWriter, r *http.Request, typ, id, version string, modified time.Time) {
	w.Header().Set("Location", a.o.Base+"/"+typ+"/"+id+"/_history/"+version)
	w.Header().Set("ETag", `W/"`+version+`"`)
	w.Header().Set("Last-Modified", modified.UTC().Format(http.TimeFormat))
}
