package referral

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// A Subscription's life after it is created (R4 Backport IG 1.1.0):
//
//	active ──a notification goes dead──▶ error ──a delivery (replay, or re-activation by its owner)──▶ active
//	active | error ──DELETE by its owner──▶ off (deleted: reading it is 410 Gone)
//
// In error the subscription is not forgotten: every change of its practice's Tasks is still numbered and
// queued, behind the dead notification (notifications arrive in order, never with a gap). Its owner sees
// status error, and why, in a read and in $status; it recovers by fixing its endpoint and re-activating the
// subscription (PUT or PATCH with status requested): socialrx replays the dead notification (same webhook-id)
// and everything queued behind it follows in order. An operator's replay of the dead notification does the
// same. A GP system that prefers not to wait compares events-since-subscription-start with the last number it
// processed and polls Task?_lastUpdated=gt… meanwhile.

// ReactivationReason is the replay reason recorded when a Subscription's owner re-activates it.
const ReactivationReason = "Subscription re-activated by its owner (status requested)"

// LiveSubscription returns a subscription the caller may see (Subscription), or fault.Gone when it was
// deleted (status off): a deleted Subscription is still known, and says so.
func (s *Service) LiveSubscription(ctx context.Context, c Caller, id string) (outbox.Subscription, error) {
	sub, err := s.Subscription(ctx, c, id, false)
	if err != nil {
		return outbox.Subscription{}, err
	}
	if !sub.Status.Notified() {
		return outbox.Subscription{}, fhir.NewError(fault.Gone, fhir.CodeDeleted,
			"Subscription/"+id+" was deleted; create a new Subscription to be notified again")
	}
	return sub, nil
}

// Reactivate takes an update of its owner's Subscription (body: the Subscription as read, or as a JSON Patch
// left it) whose status is requested — re-activate it — or its current status (a harmless repeat). Nothing
// else may change (fault.Rule naming each element that differs; channel.header is write-only and cannot be
// changed: create a new Subscription for another endpoint or header). An errored subscription's dead
// notifications are replayed (the owner's client as actor, ReactivationReason) and it is active again; an
// active one is left as it is. A deleted one is fault.Gone.
func (s *Service) Reactivate(ctx context.Context, c Caller, id string, body []byte) (outbox.Subscription, error) {
	sub, err := s.Subscription(ctx, c, id, true)
	if err != nil {
		return outbox.Subscription{}, err
	}
	if !sub.Status.Notified() {
		return outbox.Subscription{}, fhir.NewError(fault.Gone, fhir.CodeDeleted,
			"Subscription/"+id+" was deleted and cannot be re-activated; create a new Subscription")
	}
	if err := fhir.ValidateResource(body, "Subscription"); err != nil {
		return outbox.Subscription{}, err
	}
	in, err := objectMembers(body)
	if err != nil {
		return outbox.Subscription{}, fhir.NewError(fault.Invalid, fhir.CodeStructure, "the body must be a Subscription object", "Subscription")
	}
	var gotID, status string
	if err := json.Unmarshal(in["id"], &gotID); err != nil || gotID != sub.ID {
		return outbox.Subscription{}, fhir.NewError(fault.Invalid, fhir.CodeInvalid, "Subscription.id is required and must equal the id in the URL", "Subscription.id")
	}
	_ = json.Unmarshal(in["status"], &status)
	var issues []fhir.Issue
	if status != "requested" && status != string(sub.Status) {
		issues = append(issues, ruleIssue("Subscription.status", fmt.Sprintf(
			"to re-activate a Subscription send status requested (it is %s); DELETE it to stop it", sub.Status)))
	}
	if ch, ok := in["channel"]; ok && hasMember(ch, "header") {
		issues = append(issues, ruleIssue("Subscription.channel.header",
			"channel.header is write-only and cannot be changed: create a new Subscription (and delete this one) for other headers"))
	}
	for _, k := range changedMembers(sub.Resource, body, "resourceType", "id", "meta", "status", "channel") {
		issues = append(issues, ruleIssue("Subscription."+k,
			"Subscription."+k+" cannot be changed: an update may only re-activate the Subscription (status requested); create a new Subscription for anything else"))
	}
	cur, _ := objectMembers(sub.Resource)
	for _, k := range changedMembers(cur["channel"], withoutMember(in["channel"], "header")) {
		issues = append(issues, ruleIssue("Subscription.channel."+k, "Subscription.channel."+k+" cannot be changed: create a new Subscription for another channel"))
	}
	if len(issues) > 0 {
		return outbox.Subscription{}, &fhir.Error{Kind: fault.Rule, Issues: issues}
	}
	if sub.Status == outbox.SubscriptionActive {
		return sub, nil
	}
	dest := mapping.Destination{Kind: mapping.DestinationSubscription, ID: sub.ID}
	replayed, err := s.store.ReplayMessages(ctx, s.now().UTC(), outbox.ReplayRequest{
		Filter: &outbox.MessageQuery{Destination: &dest, States: []outbox.MessageState{outbox.StateDead}},
		Reason: ReactivationReason, Actor: c.Client.ID,
	})
	if err != nil {
		return outbox.Subscription{}, err
	}
	active, err := s.store.UpdateSubscriptionStatus(ctx, sub.ID, outbox.SubscriptionActive, s.now().UTC())
	if err != nil {
		return outbox.Subscription{}, err
	}
	s.log.InfoContext(ctx, "subscription re-activated", "request_id", c.RequestID, "subscription_id", sub.ID,
		"replayed", len(replayed))
	return active, nil
}

// SubscriptionStatuses returns the caller's subscriptions for the type-level $status: those named in ids (all
// of them when ids is empty), with one of statuses (any when empty). An id the caller does not own, or does
// not exist, is outbox.ErrNotFound (never a hint that another client's exists).
func (s *Service) SubscriptionStatuses(ctx context.Context, c Caller, ids []string, statuses []outbox.SubscriptionStatus) ([]outbox.Subscription, error) {
	var subs []outbox.Subscription
	if len(ids) == 0 {
		owned, err := s.store.ListSubscriptions(ctx, outbox.SubscriptionQuery{OwnerClientID: c.Client.ID})
		if err != nil {
			return nil, err
		}
		subs = owned
	}
	for _, id := range ids {
		sub, err := s.Subscription(ctx, c, id, false)
		if err != nil {
			return nil, err
		}
		subs = append(subs, sub)
	}
	out := subs[:0]
	for _, sub := range subs {
		if len(statuses) == 0 || slices.Contains(statuses, sub.Status) {
			out = append(out, sub)
		}
	}
	return out, nil
}

// hasMember reports whether the JSON object obj has the member name.
func hasMember(obj json.RawMessage, name string) bool {
	m, err := objectMembers(obj)
	if err != nil {
		return false
	}
	_, ok := m[name]
	return ok
}

// withoutMember is the JSON object obj without the member name (obj itself when it is not an object).
func withoutMember(obj json.RawMessage, name string) json.RawMessage {
	m, err := objectMembers(obj)
	if err != nil {
		return obj
	}
	delete(m, name)
	b, err := json.Marshal(m)
	if err != nil {
		return obj
	}
	return b
}
