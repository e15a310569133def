package mapping

import "slices"

// DeliveryProgress is how far an outbox message already written for a referral got towards its destination:
// all that the withdrawal rule (Withdrawal) needs to know of it. The store derives it from the message's
// delivery state. The zero value is invalid.
type DeliveryProgress string

// Delivery progress of a written message.
const (
	// ProgressUnsent: not delivered and no attempt under way (waiting to be sent or retried, or
	// dead-lettered): the destination has not received it.
	ProgressUnsent DeliveryProgress = "unsent"
	// ProgressInFlight: an attempt holds it now: it may be reaching the destination as we speak.
	ProgressInFlight DeliveryProgress = "in-flight"
	// ProgressDelivered: the destination took it.
	ProgressDelivered DeliveryProgress = "delivered"
	// ProgressWithdrawn: an earlier cancellation withdrew it before delivery; it is never sent.
	ProgressWithdrawn DeliveryProgress = "withdrawn"
)

// AllDeliveryProgress lists every DeliveryProgress.
func AllDeliveryProgress() []DeliveryProgress {
	return []DeliveryProgress{ProgressUnsent, ProgressInFlight, ProgressDelivered, ProgressWithdrawn}
}

// Valid reports whether p is a DeliveryProgress.
func (p DeliveryProgress) Valid() bool {
	switch p {
	case ProgressUnsent, ProgressInFlight, ProgressDelivered, ProgressWithdrawn:
		return true
	}
	return false
}

// MessageFact is one outbox message already written for a referral, as the withdrawal rule sees it.
type MessageFact struct {
	ID          string
	Type        EventType
	Destination Destination
	Progress    DeliveryProgress
}

// WithdrawalFacts names the destinations whose referral.created messages Withdrawal must be told about to
// decide a change of before that carries events: the community services that events cancel the referral
// at, when before is still requested. It returns nil when the rule cannot apply, so that a store reads
// nothing for the usual change (a delivery, an acknowledgement). Each destination is named once, in the
// order of its first cancellation.
func WithdrawalFacts(before Referral, events []Event) []Destination {
	if before.Record.Status != StatusRequested {
		return nil
	}
	var out []Destination
	for _, e := range events {
		if serviceCancel(e) && !slices.Contains(out, e.Destination) {
			out = append(out, e.Destination)
		}
	}
	return out
}

// Withdrawal decides what a change of a referral from before to after, enqueueing events, does to the
// referral's messages that were never sent (issue 4: a referral the community service never received is not
// cancelled at the service; it is simply never sent). created are the facts of the referral's
// referral.created messages to the destinations WithdrawalFacts names, oldest first (other facts are
// ignored).
//
// The rule: while before is still requested (the service has not acknowledged or acted on the referral; had
// it, it knows the referral, from its pull inbox say, and must be told), a referral.cancelled to a
// community service D whose referral.created messages to D are all unsent or withdrawn, at least one unsent,
// is dropped (nothing is sent to D), those unsent referral.created messages are withdrawn, and the
// referral's business status becomes "" (no transport fact: nothing was ever delivered). When a
// referral.created to D is in flight (a delivery may be under way) or delivered, when there is none unsent
// (the service may have seen the referral in its pull inbox), when the referral had moved past requested,
// or for any other event or destination kind (a GP's Subscription), the event is sent as it is: the store's
// per-referral ordering then delivers a cancellation after the referral.created.
//
// send is events less the dropped cancellations, in their order (events itself when none is dropped);
// withdraw lists the ids of the messages to withdraw, each once, in the order of created; business is the
// business status the new version carries: after's, or "" when anything is withdrawn.
func Withdrawal(before, after Referral, events []Event, created []MessageFact) (send []Event, withdraw []string, business BusinessStatus) {
	dests := WithdrawalFacts(before, events)
	if len(dests) == 0 {
		return events, nil, after.BusinessStatus
	}
	dropped := map[Destination]bool{}
	for _, d := range dests {
		reached, unsent := false, []string(nil)
		for _, f := range created {
			if f.Type != EventReferralCreated || f.Destination != d {
				continue
			}
			switch f.Progress {
			case ProgressUnsent:
				unsent = append(unsent, f.ID)
			case ProgressInFlight, ProgressDelivered:
				reached = true
			case ProgressWithdrawn:
			}
		}
		if reached || len(unsent) == 0 {
			continue
		}
		dropped[d] = true
		for _, id := range unsent {
			if !slices.Contains(withdraw, id) {
				withdraw = append(withdraw, id)
			}
		}
	}
	if len(dropped) == 0 {
		return events, nil, after.BusinessStatus
	}
	send = make([]Event, 0, len(events))
	for _, e := range events {
		if serviceCancel(e) && dropped[e.Destination] {
			continue
		}
		send = append(send, e)
	}
	return send, withdraw, ""
}

// serviceCancel reports whether e is a referral.cancelled to a community service.
func serviceCancel(e Event) bool {
	return e.Type == EventReferralCancelled && e.Destination.Kind == DestinationService
}
