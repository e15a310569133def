package fhirapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/jsonpatch"
	"github.com/socialrx/socialrx/server/internal/web"
)

// FHIR Subscriptions (R4, rest-hook, Subscriptions R5 Backport IG 1.1.0 shapes):
//
//	POST          /fhir/Subscription               GP clients: status requested → stored active (201); a handshake
//	                                               is queued first; classic or topic-based criteria
//	GET           /fhir/Subscription/{id}          the owner (or an admin); 410 once deleted
//	PUT, PATCH    /fhir/Subscription/{id}          the owner re-activates it (status requested) after an error
//	DELETE        /fhir/Subscription/{id}          the owner: status off (reading it is then 410)
//	GET, POST     /fhir/Subscription/{id}/$status  a searchset Bundle with the SubscriptionStatus (query-status)
//	GET, POST     /fhir/Subscription/$status       the same for several (id, status parameters) of the caller's
//
// The rules are the use cases' (package referral: subscribe.go, subscription_state.go).

// subscriptionPatchable are the Subscription elements a JSON Patch may replace.
var subscriptionPatchable = []string{"status"}

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
	a.writeSubscription(w, r, http.StatusCreated, created, "Subscription/"+created.ID+" created (active); its handshake is on its way")
}

// subscriptionJSON is the stored Subscription as clients read it: its JSON with the current status,
// meta.lastUpdated and, in error, why (R4 Subscription.error).
func subscriptionJSON(sub outbox.Subscription) ([]byte, error) {
	b, err := referral.SetJSONField(sub.Resource, "status", string(sub.Status))
	if err == nil {
		b, err = referral.SetJSONField(b, "meta", fhir.Meta{LastUpdated: fhir.ExactInstant(sub.UpdatedAt)})
	}
	if err == nil && sub.Error != "" {
		b, err = referral.SetJSONField(b, "error", sub.Error) // R4 Subscription.error: why it is in error
	}
	return b, err
}

// writeSubscription answers with the stored Subscription (honouring Prefer on writes: done is what the write
// did, "" for a read).
func (a *API) writeSubscription(w http.ResponseWriter, r *http.Request, status int, sub outbox.Subscription, done string) {
	b, err := subscriptionJSON(sub)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", a.o.Base+"/Subscription/"+sub.ID)
	w.Header().Set("Last-Modified", sub.UpdatedAt.UTC().Format(http.TimeFormat))
	if done == "" {
		Write(w, status, b)
		return
	}
	a.respond(w, r, status, b, done)
}

// readSubscription is GET /fhir/Subscription/{id}: 410 once its owner deleted it.
func (a *API) readSubscription(w http.ResponseWriter, r *http.Request) {
	sub, err := a.svc.LiveSubscription(r.Context(), web.Caller(r.Context()), mux.Vars(r)["id"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeSubscription(w, r, http.StatusOK, sub, "")
}

// deleteSubscription is DELETE /fhir/Subscription/{id}: the owner turns it off (again: a harmless 200).
func (a *API) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	off, err := a.svc.Unsubscribe(r.Context(), web.Caller(r.Context()), mux.Vars(r)["id"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeSubscription(w, r, http.StatusOK, off, "Subscription/"+off.ID+" deleted (status off): nothing more is sent to it")
}

// updateSubscription is PUT /fhir/Subscription/{id}: the Subscription as read with status requested
// re-activates it (referral.Service.Reactivate).
func (a *API) updateSubscription(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.reactivate(w, r, body)
}

// patchSubscription is PATCH /fhir/Subscription/{id} with a JSON Patch replacing /status (with requested).
func (a *API) patchSubscription(w http.ResponseWriter, r *http.Request) {
	c := web.Caller(r.Context())
	sub, err := a.svc.Subscription(r.Context(), c, mux.Vars(r)["id"], true)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ops, err := a.readPatch(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	cur, err := subscriptionJSON(sub)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	body, err := jsonpatch.Apply(cur, ops, "Subscription", subscriptionPatchable)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.reactivate(w, r, body)
}

// reactivate calls Reactivate and answers with the Subscription as it now is. What a client read carries
// meta and error, which are socialrx's: they are not compared.
func (a *API) reactivate(w http.ResponseWriter, r *http.Request, body []byte) {
	body, err := withoutFields(body, "meta", "error")
	if err != nil {
		a.fail(w, r, fhir.NewError(fault.Invalid, fhir.CodeStructure, "the body must be a Subscription object", "Subscription"))
		return
	}
	sub, err := a.svc.Reactivate(r.Context(), web.Caller(r.Context()), mux.Vars(r)["id"], body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeSubscription(w, r, http.StatusOK, sub, "Subscription/"+sub.ID+" is "+string(sub.Status))
}

// subscriptionStatus is GET or POST /fhir/Subscription/{id}/$status: a searchset Bundle holding the
// SubscriptionStatus (type query-status) with events-since-subscription-start, the number of the last
// notification queued (a GP system that processed a lower number has notifications to come, or missed some,
// and catches up with a Task search), the status (error, with why) and the topic. POST takes no parameters (an
// empty body, or a Parameters resource with none).
func (a *API) subscriptionStatus(w http.ResponseWriter, r *http.Request) {
	params, err := a.operationParams(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if len(params) > 0 {
		var issues []fhir.Issue
		for name := range params {
			issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeNotSupported, Expression: []string{name},
				Diagnostics: fmt.Sprintf("Subscription/{id}/$status takes no parameters (got %q); use Subscription/$status?id=… for several", name)})
		}
		a.fail(w, r, &fhir.Error{Kind: fault.Invalid, Issues: issues})
		return
	}
	sub, err := a.svc.LiveSubscription(r.Context(), web.Caller(r.Context()), mux.Vars(r)["id"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeStatuses(w, r, a.o.Base+"/Subscription/"+sub.ID+"/$status", []outbox.Subscription{sub})
}

// subscriptionStatuses is GET or POST /fhir/Subscription/$status (type level): the SubscriptionStatus of each
// of the caller's subscriptions named by id (a comma list, or repeated; default all of them but deleted ones),
// of the statuses named by status (active, error, off).
func (a *API) subscriptionStatuses(w http.ResponseWriter, r *http.Request) {
	params, err := a.operationParams(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var ids []string
	var statuses []outbox.SubscriptionStatus
	var issues []fhir.Issue
	for name, vals := range params {
		for _, v := range vals {
			for _, item := range splitList(v) {
				switch name {
				case "id":
					ids = append(ids, strings.TrimPrefix(strings.TrimPrefix(item, a.o.Base+"/"), "Subscription/"))
				case "status":
					st := outbox.SubscriptionStatus(item)
					if !st.Valid() {
						issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeValue, Expression: []string{"status"},
							Diagnostics: fmt.Sprintf("status %q is not a Subscription status socialrx keeps (active, error, off)", item)})
						continue
					}
					statuses = append(statuses, st)
				default:
					issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeNotSupported, Expression: []string{name},
						Diagnostics: fmt.Sprintf("$status takes the parameters id and status, not %q", name)})
				}
			}
		}
	}
	if len(issues) > 0 {
		a.fail(w, r, &fhir.Error{Kind: fault.Invalid, Issues: issues})
		return
	}
	if len(ids) == 0 && len(statuses) == 0 {
		statuses = []outbox.SubscriptionStatus{outbox.SubscriptionActive, outbox.SubscriptionError}
	}
	subs, err := a.svc.SubscriptionStatuses(r.Context(), web.Caller(r.Context()), ids, statuses)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeStatuses(w, r, a.o.Base+"/Subscription/$status", subs)
}

// writeStatuses answers a searchset Bundle with one SubscriptionStatus (query-status) per subscription.
func (a *API) writeStatuses(w http.ResponseWriter, r *http.Request, self string, subs []outbox.Subscription) {
	entries := make([]fhir.BundleEntry, 0, len(subs))
	for _, sub := range subs {
		info := outbox.SubscriptionInfo(sub)
		info.Error = sub.Error
		params, err := mapping.SubscriptionStatus(info, mapping.NotificationQueryStatus, "", nil)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		entries = append(entries, fhir.BundleEntry{FullURL: "urn:uuid:" + a.o.NewID(), Resource: params,
			Search: &fhir.BundleEntrySearch{Mode: fhir.SearchMatch}})
	}
	b := fhir.NewSearchset(len(entries), []fhir.BundleLink{{Relation: "self", URL: self}}, entries)
	b.Timestamp = fhir.ExactInstant(a.now())
	out, err := json.Marshal(b)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	Write(w, http.StatusOK, out)
}

// operationParams reads an operation's parameters: the URL's (without _format and _pretty) and, for POST, a
// Parameters resource's valueString/valueId/valueCode/valueUri parameters (an empty body has none).
func (a *API) operationParams(w http.ResponseWriter, r *http.Request) (map[string][]string, error) {
	out := map[string][]string{}
	for k, vs := range r.URL.Query() {
		if k != "_format" && k != "_pretty" {
			out[k] = append(out[k], vs...)
		}
	}
	if r.Method != http.MethodPost {
		return out, nil
	}
	body, err := web.ReadAll(w, r, a.o.MaxBodyBytes)
	if err != nil || len(strings.TrimSpace(string(body))) == 0 {
		return out, err
	}
	if mt, _, ok := web.MediaType(r); !ok || (mt != "application/fhir+json" && mt != "application/json") {
		return nil, fhir.NewError(fault.UnsupportedMedia, fhir.CodeNotSupported, "an operation's body is a Parameters resource (application/fhir+json)")
	}
	if err := fhir.ValidateResource(body, "Parameters"); err != nil {
		return nil, err
	}
	var in struct {
		Parameter []struct {
			Name        string `json:"name"`
			ValueString string `json:"valueString"`
			ValueID     string `json:"valueId"`
			ValueCode   string `json:"valueCode"`
			ValueURI    string `json:"valueUri"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fhir.NewError(fault.Invalid, fhir.CodeStructure, "the Parameters resource could not be read", "Parameters")
	}
	for _, p := range in.Parameter {
		out[p.Name] = append(out[p.Name], p.ValueString+p.ValueID+p.ValueCode+p.ValueURI)
	}
	return out, nil
}

// withoutFields removes top-level fields from a JSON object.
func withoutFields(b []byte, names ...string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, fmt.Errorf("fhirapi: not a JSON object")
	}
	for _, n := range names {
		delete(m, n)
	}
	return json.Marshal(m)
}
