package referral

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/url"
	"slices"
	"strings"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// FHIR Subscriptions (R4, rest-hook, Subscriptions R5 Backport notification shapes): a GP client subscribes
// with criteria Task?requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|ODS for one of its
// practices; every new version of a Task of that practice is then delivered by the outbox as a numbered
// notification (mapping.NotificationBundle). The owner reads and deletes it (status off); an admin may read it.

// Subscribe checks a GP client's new Subscription (body: a schema-valid R4 Subscription; fault.Invalid when it
// is not one, fault.Rule naming each broken rule) and stores it active. baseURL is the FHIR base its
// notifications reference resources under.
func (s *Service) Subscribe(ctx context.Context, c Caller, body []byte, baseURL string) (outbox.Subscription, error) {
	cl := c.Client
	if err := MaySubscribe(c); err != nil {
		return outbox.Subscription{}, err
	}
	if err := fhir.ValidateResource(body, "Subscription"); err != nil {
		return outbox.Subscription{}, err
	}
	sub, resource, err := parseSubscription(cl, body, s.cfg.Outbound.AllowLoopback)
	if err != nil {
		return outbox.Subscription{}, err
	}
	now := s.Now()
	sub.ID = s.newID()
	if err := s.sealHeaders(&sub); err != nil {
		return outbox.Subscription{}, err
	}
	sub.OwnerClientID = cl.ID
	sub.BaseURL = baseURL
	sub.CreatedAt, sub.UpdatedAt = now, now
	if sub.Resource, err = SetJSONField(resource, "id", sub.ID); err != nil {
		return outbox.Subscription{}, err
	}
	if sub.Handshake, err = mapping.HandshakeBundle(outbox.SubscriptionInfo(sub), now); err != nil { // the first message of its queue
		return outbox.Subscription{}, err
	}
	created, err := s.store.CreateSubscription(ctx, sub, s.maxSubs)
	if err != nil {
		return outbox.Subscription{}, s.subscriptionLimitError(err)
	}
	s.log.InfoContext(ctx, "subscription created", "request_id", c.RequestID,
		"subscription_id", created.ID, "client", cl.ID, "practice", created.PracticeODS, "payload", string(created.Payload))
	return created, nil
}

// MaySubscribe says whether the caller may create Subscriptions at all (GP clients only: fault.Forbidden).
func MaySubscribe(c Caller) error {
	if c.Client.Role != config.RoleGP {
		return fhir.NewError(fault.Forbidden, fhir.CodeForbidden, "only GP clients may create Subscriptions")
	}
	return nil
}

// Subscription returns a subscription the caller may see: its owner's, or any for an admin unless ownerOnly
// (outbox.ErrNotFound otherwise).
func (s *Service) Subscription(ctx context.Context, c Caller, id string, ownerOnly bool) (outbox.Subscription, error) {
	sub, err := s.store.GetSubscription(ctx, id)
	if err != nil {
		return outbox.Subscription{}, err
	}
	if sub.OwnerClientID != c.Client.ID && (ownerOnly || c.Client.Role != config.RoleAdmin) {
		return outbox.Subscription{}, fmt.Errorf("referral: subscription of another client: %w", outbox.ErrNotFound)
	}
	return sub, nil
}

// Unsubscribe turns the owner's subscription off. Notifications already queued are not sent (they go dead:
// outbox.ErrDestinationOff); the resource stays readable with status off.
func (s *Service) Unsubscribe(ctx context.Context, c Caller, id string) (outbox.Subscription, error) {
	sub, err := s.Subscription(ctx, c, id, true)
	if err != nil {
		return outbox.Subscription{}, err
	}
	off, err := s.store.UpdateSubscriptionStatus(ctx, sub.ID, outbox.SubscriptionOff, s.now().UTC())
	if err != nil {
		return outbox.Subscription{}, err
	}
	s.log.InfoContext(ctx, "subscription off", "request_id", c.RequestID, "subscription_id", sub.ID)
	if s.subscriptionOff != nil {
		s.subscriptionOff(sub.ID)
	}
	return off, nil
}

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

// parseSubscription checks the business rules of a (schema-valid) Subscription and returns what to store and
// the resource to keep (status active, channel.header removed: headers are write-only).
func parseSubscription(cl config.Client, body []byte, allowLoopback bool) (outbox.Subscription, json.RawMessage, error) {
	var in subscriptionWire
	if err := json.Unmarshal(body, &in); err != nil {
		return outbox.Subscription{}, nil, fhir.NewError(fault.Invalid, fhir.CodeStructure, "the Subscription could not be read", "Subscription")
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
		return outbox.Subscription{}, nil, &fhir.Error{Kind: fault.Invalid, Issues: missing}
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
	ods, topic, criteriaIssues := subscriptionCriteria(cl, body) // classic or topic-based (subscription_topic.go)
	is = append(is, criteriaIssues...)
	heartbeat, channelIssues := channelExtensions(body)
	is = append(is, channelIssues...)
	if in.Channel.Type != "rest-hook" {
		add(fhir.CodeNotSupported, "Subscription.channel.type", fmt.Sprintf("only the rest-hook channel is supported (got %q)", in.Channel.Type))
	}
	if msg := checkEndpoint(in.Channel.Endpoint, allowLoopback); msg != "" {
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
	checkHeaders(in.Channel.Header, add) // subscribe_rules.go
	if len(is) > 0 {
		return outbox.Subscription{}, nil, &fhir.Error{Kind: fault.Rule, Issues: is}
	}

	resource, err := withoutChannelHeader(body)
	if err != nil {
		return outbox.Subscription{}, nil, err
	}
	if resource, err = SetJSONField(resource, "status", string(outbox.SubscriptionActive)); err != nil {
		return outbox.Subscription{}, nil, err
	}
	return outbox.Subscription{
		PracticeODS: ods, Criteria: in.Criteria, Endpoint: in.Channel.Endpoint,
		Header: in.Channel.Header, Payload: content, Status: outbox.SubscriptionActive,
		Topic: topic, HeartbeatPeriod: heartbeat,
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
	return mapping.NormalODS(cl.Practices[i]), ""
}

// withoutChannelHeader removes channel.header from a Subscription (headers may hold credentials: they are
// stored apart and never returned).
func withoutChannelHeader(body []byte) (json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, fmt.Errorf("referral: subscription: %w", err)
	}
	var ch map[string]json.RawMessage
	if err := json.Unmarshal(top["channel"], &ch); err != nil {
		return nil, fmt.Errorf("referral: subscription channel: %w", err)
	}
	delete(ch, "header")
	delete(ch, "_header")
	b, err := json.Marshal(ch)
	if err != nil {
		return nil, fmt.Errorf("referral: subscription channel: %w", err)
	}
	top["channel"] = b
	out, err := json.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("referral: subscription: %w", err)
	}
	return out, nil
}
