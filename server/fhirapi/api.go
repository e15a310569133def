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

// Routes are the FHIR API's routes (register them with full paths on the root router).
func (a *API) Routes() []web.Route {
	get := http.MethodGet
	return []web.Route{
		{Path: "/fhir/metadata", Name: "fhir_metadata", Access: web.Public, Methods: map[string]http.HandlerFunc{get: a.metadata}},
		{Path: "/fhir", Name: "fhir_transaction", Access: web.GPOrAdmin, Methods: map[string]http.HandlerFunc{http.MethodPost: a.transaction}},
		{Path: "/fhir/ServiceRequest", Name: "fhir_servicerequest_type", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{
			http.MethodPost: a.createServiceRequest, get: a.search(typeServiceRequest)}},
		{Path: "/fhir/ServiceRequest/{id}", Name: "fhir_servicerequest", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{
			http.MethodPut: a.updateServiceRequest, http.MethodPatch: a.patchServiceRequest, // GP cancellation (issue 4)
			get: a.readServiceRequest}},
		{Path: "/fhir/Task", Name: "fhir_task_type", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{get: a.search(typeTask)}},
		{Path: "/fhir/Task/{id}", Name: "fhir_task", Access: web.AnyClient, Methods: map[string]http.HandlerFunc{
			http.MethodPut: a.updateTask, http.MethodPatch: a.patchTask, // Task updates, If-Match required (issue 4)
			get: a.readTask}},
		{Path: "/fhir/Subscription", Name: "fhir_subscription_type", Access: web.GPOrAdmin, Methods: map[string]http.HandlerFunc{
			http.MethodPost: a.createSubscription}},
		{Path: "/fhir/Subscription/{id}", Name: "fhir_subscription", Access: web.GPOrAdmin, Methods: map[string]http.HandlerFunc{
			get: a.readSubscription, http.MethodDelete: a.deleteSubscription}},
		{Path: "/fhir/Subscription/{id}/$status", Name: "fhir_subscription_status", Access: web.GPOrAdmin, Methods: map[string]http.HandlerFunc{
			get: a.subscriptionStatus}},
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

// setResourceHeaders sets Location, ETag and Last-Modified for one resource version.
func (a *API) setResourceHeaders(w http.ResponseWriter, r *http.Request, typ, id, version string, modified time.Time) {
	w.Header().Set("Location", a.o.Base+"/"+typ+"/"+id+"/_history/"+version)
	w.Header().Set("ETag", `W/"`+version+`"`)
	w.Header().Set("Last-Modified", modified.UTC().Format(http.TimeFormat))
}
