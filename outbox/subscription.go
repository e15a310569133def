package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/socialrx/socialrx/mapping"
)

// Errors of endpoint lookups. A message whose destination lookup fails with one of them goes dead at once
// (replay it once the destination is back); any other lookup error is retried like a network error.
var (
	// ErrUnknownDestination: no such destination (an unknown service or subscription).
	ErrUnknownDestination = errors.New("unknown destination")
	// ErrDestinationOff: the destination exists but takes no messages (a Subscription with status off).
	ErrDestinationOff = errors.New("destination is off")
)

// FHIRJSON is the MIME type of FHIR Subscription notifications (channel.payload).
const FHIRJSON = "application/fhir+json"

// ChannelHeaders are the request headers a FHIR Subscription's channel.header may set (names compare
// case-insensitively): what GP endpoints authenticate and correlate with. Anything else — Cookie, Host,
// hop-by-hop and proxy headers, Content-Type, the webhook-* headers — is refused when the Subscription is
// made and never sent.
func ChannelHeaders() []string {
	return []string{"Authorization", "X-API-Key", "Api-Key", "Ocp-Apim-Subscription-Key", "X-Correlation-ID", "X-Request-ID"}
}

// ChannelHeaderAllowed reports whether a channel.header may set the header name.
func ChannelHeaderAllowed(name string) bool {
	for _, h := range ChannelHeaders() {
		if strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}

// WithSubscriptions composes next (for example DirectoryEndpoints) with the FHIR Subscriptions of store:
// subscription destinations resolve, at delivery time, to the subscription's channel.endpoint (Guarded: it
// came from a client, so the dispatcher's outbound policy applies) with its channel.header values (opened
// with keys; only ChannelHeaders are ever sent) and Content-Type application/fhir+json, and no signing secret
// (notifications are unsigned; webhook-id and webhook-timestamp are still sent, webhook-id being the message
// id). A subscription that is off or gone makes its pending messages dead (ErrDestinationOff,
// ErrUnknownDestination); headers that do not open (the key is missing) fail the lookup, which is retried.
// Every other destination goes to next (nil: none); one next does not know is unknown ("kind:id: unknown
// destination").
func WithSubscriptions(store Store, next EndpointResolver, keys *Keyring) EndpointResolver {
	if next == nil {
		return next
	}
	return &subscriptionEndpoints{subs: store, next: next, keys: keys}
}

type subscriptionEndpoints struct {
	subs Subscriptions
	next EndpointResolver
	keys *Keyring
}

// Endpoint resolves d: subscriptions from the store, everything else through next.
func (r *subscriptionEndpoints) Endpoint(ctx context.Context, d mapping.Destination) (Endpoint, error) {
	switch d.Kind {
	case mapping.DestinationSubscription:
		sub, err := r.subs.GetSubscription(ctx, d.ID)
		if errors.Is(err, ErrNotFound) {
			return Endpoint{}, fmt.Errorf("subscription %s: %w", d.ID, ErrUnknownDestination)
		}
		if err != nil {
			return Endpoint{}, fmt.Errorf("subscription %s: lookup: %w", d.ID, err)
		}
		switch sub.Status {
		case SubscriptionActive, SubscriptionError: // in error: its replayed notifications are delivered
		case SubscriptionOff:
			return Endpoint{}, fmt.Errorf("subscription %s is off (deleted by its owner): %w", d.ID, ErrDestinationOff)
		}
		h := http.Header{}
		for _, stored := range sub.Header {
			line, err := r.keys.Open(stored, SubscriptionHeaderContext(sub.ID))
			if err != nil {
				return Endpoint{}, fmt.Errorf("subscription %s: channel.header: %w", d.ID, err)
			}
			k, v, ok := strings.Cut(line, ":")
			if k = strings.TrimSpace(k); ok && k != "" && ChannelHeaderAllowed(k) {
				h.Add(k, strings.TrimSpace(v))
			}
		}
		h.Set("Content-Type", FHIRJSON)
		return Endpoint{URL: sub.Endpoint, Header: h, Guarded: true}, nil
	case mapping.DestinationService:
	}
	ep, err := r.next.Endpoint(ctx, d)
	if errors.Is(err, ErrUnknownDestination) {
		return Endpoint{}, fmt.Errorf("%s: %w", d, ErrUnknownDestination)
	}
	return ep, err
}

// RenderNotification is the NotifyFunc of socialrx: the backport-style R4 notification Bundle of
// mapping.NotificationBundle for sub and the referral's new version.
func RenderNotification(sub Subscription, ref Referral, eventNumber int64, now time.Time) (json.RawMessage, error) {
	return mapping.NotificationBundle(SubscriptionInfo(sub), ref.Referral, eventNumber, now)
}

// RenderHeartbeat is the HeartbeatFunc of socialrx: mapping.HeartbeatBundle for sub at now.
func RenderHeartbeat(sub Subscription, now time.Time) (json.RawMessage, error) {
	return mapping.HeartbeatBundle(SubscriptionInfo(sub), now)
}

// SubscriptionInfo is what a notification says of sub: id, base, status, payload content, topic and the
// events numbered so far.
func SubscriptionInfo(sub Subscription) mapping.SubscriptionInfo {
	return mapping.SubscriptionInfo{ID: sub.ID, BaseURL: sub.BaseURL, Status: string(sub.Status), Payload: sub.Payload,
		EventsSinceStart: sub.EventsSinceStart, Topic: sub.Topic}
}
