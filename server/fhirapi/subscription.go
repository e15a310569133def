package fhirapi

import (
	"encoding/json"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// FHIR Subscriptions (R4, rest-hook, Subscriptions R5 Backport notification shapes):
//
//	POST   /fhir/Subscription               GP clients: status requested → stored active (201)
//	GET    /fhir/Subscription/{id}          the owner (or an admin)
//	DELETE /fhir/Subscription/{id}          the owner: status off (the resource stays readable)
//	GET    /fhir/Subscription/{id}/$status  searchset Bundle with the SubscriptionStatus (query-status)
//
// The rules are the Subscribe use case's (package referral).

// createSubscription is POST /fhir/Subscription.
func (a *API) createSubscription(w http.ResponseWriter, r *http.Request) {
	c := web.Caller(r.Context())
	if err := referral.MaySubscribe(c); err != nil { // before the body is even read
		a.fail(w, r, err)
		return
	}
	body, err := a.readBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	created, err := a.svc.Subscribe(r.Context(), c, body, a.o.Base)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeSubscription(w, r, http.StatusCreated, created)
}

// writeSubscription answers with the stored Subscription: its JSON with the current status and lastUpdated.
func (a *API) writeSubscription(w http.ResponseWriter, r *http.Request, status int, sub outbox.Subscription) {
	b, err := referral.SetJSONField(sub.Resource, "status", string(sub.Status))
	if err == nil {
		b, err = referral.SetJSONField(b, "meta", fhir.Meta{LastUpdated: fhir.ExactInstant(sub.UpdatedAt)})
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", a.o.Base+"/Subscription/"+sub.ID)
	w.Header().Set("Last-Modified", sub.UpdatedAt.UTC().Format(http.TimeFormat))
	Write(w, status, b)
}

// readSubscription is GET /fhir/Subscription/{id}.
func (a *API) readSubscription(w http.ResponseWriter, r *http.Request) {
	sub, err := a.svc.Subscription(r.Context(), web.Caller(r.Context()), mux.Vars(r)["id"], false)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeSubscription(w, r, http.StatusOK, sub)
}

// deleteSubscription is DELETE /fhir/Subscription/{id}: the owner turns it off.
func (a *API) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	off, err := a.svc.Unsubscribe(r.Context(), web.Caller(r.Context()), mux.Vars(r)["id"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeSubscription(w, r, http.StatusOK, off)
}

// subscriptionStatus is GET /fhir/Subscription/{id}/$status: a searchset Bundle holding the SubscriptionStatus
// (type query-status) with events-since-subscription-start, the number of the last notification queued; a
// GP system that saw a lower number has missed notifications and catches up with a Task search.
func (a *API) subscriptionStatus(w http.ResponseWriter, r *http.Request) {
	sub, err := a.svc.Subscription(r.Context(), web.Caller(r.Context()), mux.Vars(r)["id"], false)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	info := mapping.SubscriptionInfo{ID: sub.ID, BaseURL: a.o.Base, Status: string(sub.Status),
		Payload: sub.Payload, EventsSinceStart: sub.EventsSinceStart}
	params, err := mapping.SubscriptionStatus(info, mapping.NotificationQueryStatus, "", nil)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	self := a.o.Base + "/Subscription/" + sub.ID + "/$status"
	b := fhir.NewSearchset(1, []fhir.BundleLink{{Relation: "self", URL: self}}, []fhir.BundleEntry{{
		FullURL: "urn:uuid:" + a.o.NewID(), Resource: params, Search: &fhir.BundleEntrySearch{Mode: fhir.SearchMatch},
	}})
	b.Timestamp = fhir.ExactInstant(a.now())
	out, err := json.Marshal(b)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	Write(w, http.StatusOK, out)
}
