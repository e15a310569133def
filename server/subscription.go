package server

import (
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// FHIR Subscriptions (R4, rest-hook, Subscriptions R5 Backport notification shapes):
//
//	POST   /fhir/Subscription               GP clients: status requested → stored active (201)
//	GET    /fhir/Subscription/{id}          the owner (or an admin)
//	DELETE /fhir/Subscription/{id}          the owner: status off (the resource stays readable)
//	GET    /fhir/Subscription/{id}/$status  searchset Bundle with the SubscriptionStatus (query-status)
//
// criteria must be Task?requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|ODS for one of the
// client's practices; every new version of a Task of that practice is then delivered by the outbox as a
// numbered notification (mapping.NotificationBundle).

// subscriptionWire is the part of an R4 Subscription socialrx reads (the whole body is validated first).
type subscriptionWire struct {
	Status   string `json:"status"`
	Reason   string `json:"reason"`
	Criteria string `json:"criteria"`
	End      string `json:"end"`
	Channel  struct {
		Type     string   `json:"type"`
		Endpoint string   `json:"endpoint"`
		Payload  string   `json:"payload"`
		Header   []string `json:"header"`
		PayloadX *struct {
			Extension []struct {
				URL       string `json:"url"`
				ValueCode string `json:"valueCode"`
			} `json:"extension"`
		} `json:"_payload"`
	} `json:"channel"`
}

// reservedHeaders are request headers a channel.header may not set (socialrx sets them).
var reservedHeaders = []string{"content-type", "content-length", "host", "user-agent", "transfer-encoding", "connection",
	outbox.HeaderWebhookID, outbox.HeaderWebhookTimestamp, outbox.HeaderWebhookSignature}

// subscriptionStore returns the store's Subscriptions capability.
func (s *Server) subscriptionStore() (outbox.Subscriptions, error) {
	subs, ok := s.store.(outbox.Subscriptions)
	if !ok {
		return nil, fhir.NewError(http.StatusNotImplemented, fhir.CodeNotSupported, "this storage backend does not support Subscriptions")
	}
	return subs, nil
}

// createSubscription is POST /fhir/Subscription.
func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request) {
	cl := clientFrom(r.Context())
	if cl.Role != config.RoleGP {
		s.writeFHIRError(w, r, fhir.NewError(http.StatusForbidden, fhir.CodeForbidden, "only GP clients may create Subscriptions"))
		return
	}
	subs, err := s.subscriptionStore()
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	body, err := s.readFHIRBody(w, r)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	if err := fhir.ValidateResource(body, "Subscription"); err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	sub, resource, err := parseSubscription(cl, body)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	sub.ID = s.newID()
	sub.OwnerClientID = cl.ID
	sub.BaseURL = s.base(r)
	sub.CreatedAt, sub.UpdatedAt = now, now
	if sub.Resource, err = setJSONField(resource, "id", sub.ID); err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	created, err := subs.CreateSubscription(r.Context(), sub)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "subscription created", "request_id", requestID(r.Context()),
		"subscription_id", created.ID, "client", cl.ID, "practice", created.PracticeODS, "payload", string(created.Payload))
	s.writeSubscription(w, r, http.StatusCreated, created)
}

// parseSubscription checks the business rules of a (schema-valid) Subscription and returns what to store and
// the resource to keep (status active, channel.header removed: headers are write-only).
func parseSubscription(cl config.Client, body []byte) (outbox.Subscription, json.RawMessage, error) {
	var in subscriptionWire
	if err := json.Unmarshal(body, &in); err != nil {
		return outbox.Subscription{}, nil, fhir.NewError(http.StatusBadRequest, fhir.CodeStructure, "the Subscription could not be read", "Subscription")
	}
	// R4 cardinality 1..1 that the generic validator does not enforce for these primitives.
	var missing []fhir.Issue
	for _, f := range []struct{ name, v string }{{"status", in.Status}, {"reason", in.Reason}, {"criteria", in.Criteria}} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeRequired,
				Diagnostics: "Subscription." + f.name + " is required (1..1)", Expression: []string{"Subscription." + f.name}})
		}
	}
	if len(missing) > 0 {
		return outbox.Subscription{}, nil, &fhir.Error{Status: http.StatusBadRequest, Issues: missing}
	}
	var is []fhir.Issue
	add := func(code fhir.IssueCode, expr, diag string) {
		is = append(is, fhir.Issue{Severity: fhir.SeverityError, Code: code, Diagnostics: diag, Expression: []string{expr}})
	}
	if in.Status != "requested" {
		add(fhir.CodeBusinessRule, "Subscription.status", fmt.Sprintf("a new Subscription must have status requested (got %q); the server makes it active", in.Status))
	}
	if in.End != "" {
		add(fhir.CodeNotSupported, "Subscription.end", "Subscription.end is not supported: DELETE the Subscription to stop it")
	}
	ods, msg := criteriaPractice(cl, in.Criteria)
	if msg != "" {
		add(fhir.CodeBusinessRule, "Subscription.criteria", msg)
	}
	if in.Channel.Type != "rest-hook" {
		add(fhir.CodeNotSupported, "Subscription.channel.type", fmt.Sprintf("only the rest-hook channel is supported (got %q)", in.Channel.Type))
	}
	if msg := checkEndpoint(in.Channel.Endpoint); msg != "" {
		add(fhir.CodeBusinessRule, "Subscription.channel.endpoint", msg)
	}
	if mt, _, err := mime.ParseMediaType(in.Channel.Payload); err != nil || mt != outbox.FHIRJSON {
		add(fhir.CodeNotSupported, "Subscription.channel.payload",
			fmt.Sprintf("channel.payload must be %s (got %q): notifications are FHIR R4 JSON Bundles", outbox.FHIRJSON, in.Channel.Payload))
	}
	content := mapping.PayloadFullResource
	if in.Channel.PayloadX != nil {
		for _, e := range in.Channel.PayloadX.Extension {
			if e.URL != mapping.BackportPayloadContentURL {
				continue
			}
			content = mapping.PayloadContent(e.ValueCode)
			if !content.Valid() {
				add(fhir.CodeNotSupported, "Subscription.channel.payload.extension",
					fmt.Sprintf("payload content %q is not supported; use id-only or full-resource", e.ValueCode))
			}
		}
	}
	for i, h := range in.Channel.Header {
		if msg := checkHeader(h); msg != "" {
			add(fhir.CodeBusinessRule, fmt.Sprintf("Subscription.channel.header[%d]", i), msg)
		}
	}
	if len(is) > 0 {
		return outbox.Subscription{}, nil, &fhir.Error{Status: http.StatusUnprocessableEntity, Issues: is}
	}

	resource, err := withoutChannelHeader(body)
	if err != nil {
		return outbox.Subscription{}, nil, err
	}
	if resource, err = setJSONField(resource, "status", string(outbox.SubscriptionActive)); err != nil {
		return outbox.Subscription{}, nil, err
	}
	return outbox.Subscription{
		PracticeODS: ods, Criteria: in.Criteria, Endpoint: in.Channel.Endpoint,
		Header: in.Channel.Header, Payload: content, Status: outbox.SubscriptionActive,
	}, resource, nil
}

// criteriaPractice reads Task?requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|ODS and returns
// the practice (as configured for the client), or a message saying what is wrong.
func criteriaPractice(cl config.Client, criteria string) (string, string) {
	want := fmt.Sprintf("criteria must be Task?requester:identifier=%s|ODS for one of this client's practices (%s)",
		mapping.ODSOrganizationSystem, strings.Join(cl.Practices, ", "))
	q, ok := strings.CutPrefix(criteria, "Task?")
	if !ok {
		return "", "only Task subscriptions are supported: " + want
	}
	vals, err := url.ParseQuery(q)
	if err != nil || len(vals) != 1 || len(vals["requester:identifier"]) != 1 {
		return "", want
	}
	system, ods, ok := strings.Cut(vals["requester:identifier"][0], "|")
	if !ok || system != mapping.ODSOrganizationSystem || ods == "" {
		return "", want
	}
	i := slices.IndexFunc(cl.Practices, func(p string) bool { return strings.EqualFold(p, ods) })
	if i < 0 {
		return "", fmt.Sprintf("this client may not subscribe to practice %s; %s", ods, want)
	}
	return cl.Practices[i], ""
}

// checkEndpoint requires an absolute https URL (http only to a loopback host) without credentials.
func checkEndpoint(raw string) string {
	const rule = "channel.endpoint must be an absolute https URL (http only for a loopback host)"
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return rule
	}
	if u.User != nil {
		return "channel.endpoint must not carry credentials; use channel.header (for example Authorization)"
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		host := u.Hostname()
		if strings.EqualFold(host, "localhost") {
			return ""
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return ""
		}
	}
	return rule
}

// checkHeader requires "Name: value" with a token name that socialrx does not set itself.
func checkHeader(h string) string {
	name, value, ok := strings.Cut(h, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.TrimSpace(value) == "" || strings.ContainsAny(h, "\r\n") {
		return `channel.header entries must be "Name: value"`
	}
	for _, c := range name {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return "channel.header name is not a valid HTTP header name"
		}
	}
	if slices.Contains(reservedHeaders, strings.ToLower(name)) {
		return "channel.header may not set " + name + " (socialrx sets it)"
	}
	return ""
}

// withoutChannelHeader removes channel.header from a Subscription (headers may hold credentials: they are
// stored apart and never returned).
func withoutChannelHeader(body []byte) (json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, fmt.Errorf("server: subscription: %w", err)
	}
	var ch map[string]json.RawMessage
	if err := json.Unmarshal(top["channel"], &ch); err != nil {
		return nil, fmt.Errorf("server: subscription channel: %w", err)
	}
	delete(ch, "header")
	delete(ch, "_header")
	b, err := json.Marshal(ch)
	if err != nil {
		return nil, fmt.Errorf("server: subscription channel: %w", err)
	}
	top["channel"] = b
	out, err := json.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("server: subscription: %w", err)
	}
	return out, nil
}

// setJSONField sets one top-level field of a JSON object (and drops its _field twin).
func setJSONField(obj json.RawMessage, field string, value any) (json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(obj, &top); err != nil {
		return nil, fmt.Errorf("server: resource: %w", err)
	}
	v, err := json.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("server: resource: %w", err)
	}
	top[field] = v
	delete(top, "_"+field)
	out, err := json.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("server: resource: %w", err)
	}
	return out, nil
}

// ownSubscription loads a subscription visible to the client: its owner, or any for an admin (404 otherwise).
func (s *Server) ownSubscription(r *http.Request, ownerOnly bool) (outbox.Subscriptions, outbox.Subscription, error) {
	subs, err := s.subscriptionStore()
	if err != nil {
		return nil, outbox.Subscription{}, err
	}
	sub, err := subs.GetSubscription(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		return nil, outbox.Subscription{}, err
	}
	cl := clientFrom(r.Context())
	if sub.OwnerClientID != cl.ID && (ownerOnly || cl.Role != config.RoleAdmin) {
		return nil, outbox.Subscription{}, fmt.Errorf("server: subscription of another client: %w", outbox.ErrNotFound)
	}
	return subs, sub, nil
}

// writeSubscription answers with the stored Subscription: its JSON with the current status and lastUpdated.
func (s *Server) writeSubscription(w http.ResponseWriter, r *http.Request, status int, sub outbox.Subscription) {
	b, err := setJSONField(sub.Resource, "status", string(sub.Status))
	if err == nil {
		b, err = setJSONField(b, "meta", fhir.Meta{LastUpdated: mapping.FHIRInstant(sub.UpdatedAt)})
	}
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	w.Header().Set("Location", s.base(r)+"/Subscription/"+sub.ID)
	w.Header().Set("Last-Modified", sub.UpdatedAt.UTC().Format(http.TimeFormat))
	s.writeFHIR(w, status, b)
}

// readSubscription is GET /fhir/Subscription/{id}.
func (s *Server) readSubscription(w http.ResponseWriter, r *http.Request) {
	_, sub, err := s.ownSubscription(r, false)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.writeSubscription(w, r, http.StatusOK, sub)
}

// deleteSubscription is DELETE /fhir/Subscription/{id}: the owner turns it off. Notifications already queued
// are not sent (they go dead: outbox.ErrDestinationOff); the resource stays readable with status off.
func (s *Server) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	subs, sub, err := s.ownSubscription(r, true)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	off, err := subs.UpdateSubscriptionStatus(r.Context(), sub.ID, outbox.SubscriptionOff, s.now().UTC())
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "subscription off", "request_id", requestID(r.Context()), "subscription_id", sub.ID)
	s.writeSubscription(w, r, http.StatusOK, off)
}

// subscriptionStatus is GET /fhir/Subscription/{id}/$status: a searchset Bundle holding the SubscriptionStatus
// (type query-status) with events-since-subscription-start, the number of the last notification queued; a
// GP system that saw a lower number has missed notifications and catches up with a Task search.
func (s *Server) subscriptionStatus(w http.ResponseWriter, r *http.Request) {
	_, sub, err := s.ownSubscription(r, false)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	info := mapping.SubscriptionInfo{ID: sub.ID, BaseURL: s.base(r), Status: string(sub.Status),
		Payload: sub.Payload, EventsSinceStart: sub.EventsSinceStart}
	params, err := mapping.SubscriptionStatus(info, mapping.NotificationQueryStatus, "", nil)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	self := s.base(r) + "/Subscription/" + sub.ID + "/$status"
	b := fhir.NewSearchset(1, []fhir.BundleLink{{Relation: "self", URL: self}}, []fhir.BundleEntry{{
		FullURL: "urn:uuid:" + s.newID(), Resource: params, Search: &fhir.BundleEntrySearch{Mode: fhir.SearchMatch},
	}})
	b.Timestamp = mapping.FHIRInstant(s.now())
	out, err := json.Marshal(b)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.writeFHIR(w, http.StatusOK, out)
}
