package mapping

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestWithdrawal(t *testing.T) {
	t.Parallel()
	walks := Destination{Kind: DestinationService, ID: "walks"}
	debt := Destination{Kind: DestinationService, ID: "debt"}
	sub := Destination{Kind: DestinationSubscription, ID: "sub-1"}
	referral := func(st TaskStatus, bs BusinessStatus) Referral {
		return Referral{Record: Record{ID: "r", Status: st, Version: 2}, BusinessStatus: bs}
	}
	requested := referral(StatusRequested, BusinessQueued)
	cancelled := referral(StatusCancelled, BusinessQueued)
	ev := func(id string, typ EventType, d Destination) Event {
		return Event{ID: id, Type: typ, Destination: d, Payload: json.RawMessage(`{"id":"` + id + `"}`)}
	}
	cancelWalks := ev("c-walks", EventReferralCancelled, walks)
	cancelDebt := ev("c-debt", EventReferralCancelled, debt)
	updateDebt := ev("u-debt", EventReferralUpdated, debt)
	fact := func(id string, d Destination, p DeliveryProgress) MessageFact {
		return MessageFact{ID: id, Type: EventReferralCreated, Destination: d, Progress: p}
	}
	tests := []struct {
		name          string
		before, after Referral
		events        []Event
		created       []MessageFact
		facts         []Destination // what WithdrawalFacts asks for
		send          []Event
		withdraw      []string
		business      BusinessStatus
	}{
		{name: "pending created: withdrawn, cancellation dropped", before: requested, after: cancelled,
			events: []Event{cancelWalks}, created: []MessageFact{fact("m1", walks, ProgressUnsent)},
			facts: []Destination{walks}, send: []Event{}, withdraw: []string{"m1"}, business: ""},
		{name: "dead-lettered created: withdrawn", before: referral(StatusRequested, BusinessDeliveryFailed),
			after: referral(StatusCancelled, BusinessDeliveryFailed), events: []Event{cancelWalks},
			created: []MessageFact{fact("m1", walks, ProgressUnsent)}, facts: []Destination{walks},
			send: []Event{}, withdraw: []string{"m1"}, business: ""},
		{name: "inflight created: cancellation sent", before: requested, after: cancelled,
			events: []Event{cancelWalks}, created: []MessageFact{fact("m1", walks, ProgressInFlight)},
			facts: []Destination{walks}, send: []Event{cancelWalks}, business: BusinessQueued},
		{name: "delivered created: cancellation sent", before: referral(StatusRequested, BusinessDelivered),
			after: referral(StatusCancelled, BusinessDelivered), events: []Event{cancelWalks},
			created: []MessageFact{fact("m1", walks, ProgressDelivered)}, facts: []Destination{walks},
			send: []Event{cancelWalks}, business: BusinessDelivered},
		{name: "no created message (pull inbox): cancellation sent", before: requested, after: cancelled,
			events: []Event{cancelWalks}, facts: []Destination{walks}, send: []Event{cancelWalks}, business: BusinessQueued},
		{name: "only a withdrawn created: cancellation sent", before: requested, after: cancelled,
			events: []Event{cancelWalks}, created: []MessageFact{fact("m1", walks, ProgressWithdrawn)},
			facts: []Destination{walks}, send: []Event{cancelWalks}, business: BusinessQueued},
		{name: "one unsent and one delivered created: cancellation sent", before: requested, after: cancelled,
			events:  []Event{cancelWalks},
			created: []MessageFact{fact("m1", walks, ProgressDelivered), fact("m2", walks, ProgressUnsent)},
			facts:   []Destination{walks}, send: []Event{cancelWalks}, business: BusinessQueued},
		{name: "referral past requested: cancellation sent", before: referral(StatusReceived, BusinessQueued),
			after: cancelled, events: []Event{cancelWalks}, created: []MessageFact{fact("m1", walks, ProgressUnsent)},
			send: []Event{cancelWalks}, business: BusinessQueued},
		{name: "cancellation to a subscription: sent", before: requested, after: cancelled,
			events:  []Event{ev("c-sub", EventReferralCancelled, sub)},
			created: []MessageFact{fact("m1", sub, ProgressUnsent)},
			send:    []Event{ev("c-sub", EventReferralCancelled, sub)}, business: BusinessQueued},
		{name: "no cancellation: nothing to decide", before: requested, after: requested,
			events: []Event{updateDebt}, created: []MessageFact{fact("m1", walks, ProgressUnsent)},
			send: []Event{updateDebt}, business: BusinessQueued},
		{name: "no events", before: requested, after: referral(StatusRequested, BusinessDelivered),
			business: BusinessDelivered},
		{name: "other events of the change are kept, other destinations' facts ignored", before: requested,
			after: cancelled, events: []Event{cancelWalks, updateDebt},
			created: []MessageFact{fact("m1", walks, ProgressUnsent), fact("m9", debt, ProgressDelivered),
				{ID: "m8", Type: EventReferralUpdated, Destination: walks, Progress: ProgressInFlight}},
			facts: []Destination{walks}, send: []Event{updateDebt}, withdraw: []string{"m1"}, business: ""},
		{name: "two services decided apart", before: requested, after: cancelled,
			events:  []Event{cancelWalks, cancelDebt, cancelWalks},
			created: []MessageFact{fact("m1", walks, ProgressUnsent), fact("m2", walks, ProgressUnsent), fact("m3", debt, ProgressInFlight)},
			facts:   []Destination{walks, debt}, send: []Event{cancelDebt}, withdraw: []string{"m1", "m2"}, business: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.facts, WithdrawalFacts(tt.before, tt.events)); diff != "" {
				t.Errorf("WithdrawalFacts (-want +got):\n%s", diff)
			}
			send, withdraw, business := Withdrawal(tt.before, tt.after, tt.events, tt.created)
			if diff := cmp.Diff(tt.send, send, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("send (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.withdraw, withdraw); diff != "" {
				t.Errorf("withdraw (-want +got):\n%s", diff)
			}
			if business != tt.business {
				t.Errorf("business = %q, want %q", business, tt.business)
			}
		})
	}
}

// TestWithdrawalKeepsInputs: the decision neither reorders nor changes the caller's events.
func TestWithdrawalKeepsInputs(t *testing.T) {
	t.Parallel()
	walks := Destination{Kind: DestinationService, ID: "walks"}
	events := []Event{{ID: "c", Type: EventReferralCancelled, Destination: walks}, {ID: "u", Type: EventReferralUpdated, Destination: walks}}
	before := Referral{Record: Record{Status: StatusRequested}}
	send, _, _ := Withdrawal(before, before, events, []MessageFact{{ID: "m", Type: EventReferralCreated, Destination: walks, Progress: ProgressUnsent}})
	if len(send) != 1 || send[0].ID != "u" || events[0].ID != "c" || events[1].ID != "u" {
		t.Errorf("send %v, events %v", send, events)
	}
}

func TestDeliveryProgressValues(t *testing.T) {
	t.Parallel()
	for _, p := range AllDeliveryProgress() {
		if !p.Valid() {
			t.Errorf("%q is not valid", p)
		}
	}
	if DeliveryProgress("").Valid() || DeliveryProgress("sent").Valid() {
		t.Error("an unknown progress is valid")
	}
}

func TestServiceCancel(t *testing.T) {
	t.Parallel()
	svc := Destination{Kind: DestinationService, ID: "s"}
	sub := Destination{Kind: DestinationSubscription, ID: "s"}
	tests := []struct {
		e    Event
		want bool
	}{
		{Event{Type: EventReferralCancelled, Destination: svc}, true},
		{Event{Type: EventReferralCancelled, Destination: sub}, false},
		{Event{Type: EventReferralCreated, Destination: svc}, false},
	}
	for _, tt := range tests {
		if got := serviceCancel(tt.e); got != tt.want {
			t.Errorf("serviceCancel(%v) = %v, want %v", tt.e, got, tt.want)
		}
	}
}
