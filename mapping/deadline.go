package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// DeadlineStep is the rung of the response-deadline ladder a referral has reached
// (docs/design.md#response-deadlines): none yet (""), reminded, escalated, declined. The ladder is climbed one rung at a time, in that
// order, while the referral is still requested (NextDeadlineStep); the rung is kept on the referral
// (Record.DeadlineStep, and the store's deadline_step column).
type DeadlineStep string

// Deadline rungs, in the order they are climbed.
const (
	DeadlineNone      DeadlineStep = ""
	DeadlineReminded  DeadlineStep = "reminded"  // the service was reminded (Task note, referral.reminder)
	DeadlineEscalated DeadlineStep = "escalated" // the link-worker service was told (Task note, referral.escalated)
	DeadlineDeclined  DeadlineStep = "declined"  // socialrx declined it on the service's behalf (Task rejected, RRNA)
)

// AllDeadlineSteps lists every rung a referral can reach, in climbing order (DeadlineNone, the start, is not a rung).
func AllDeadlineSteps() []DeadlineStep {
	return []DeadlineStep{DeadlineReminded, DeadlineEscalated, DeadlineDeclined}
}

// Valid reports whether s is a rung (DeadlineNone is not).
func (s DeadlineStep) Valid() bool { return s.rank() > 0 }

// rank is the rung's place on the ladder: 0 for none (or an unknown value), then 1, 2, 3.
func (s DeadlineStep) rank() int {
	switch s {
	case DeadlineReminded:
		return 1
	case DeadlineEscalated:
		return 2
	case DeadlineDeclined:
		return 3
	case DeadlineNone:
	}
	return 0
}

// Text is what a person reads about the rung (the inbox page, the console).
func (s DeadlineStep) Text() string {
	switch s {
	case DeadlineReminded:
		return "Reminder sent: please reply to this referral"
	case DeadlineEscalated:
		return "No reply yet: the link worker has been told"
	case DeadlineDeclined:
		return "Declined by socialrx: no reply within the time allowed"
	case DeadlineNone:
	}
	return ""
}

// Deadlines are one service's response deadlines, each counted from the referral's creation (directory
// deadlines: remind_after, escalate_after, decline_after).
type Deadlines struct {
	RemindAfter   time.Duration
	EscalateAfter time.Duration
	DeclineAfter  time.Duration
}

// DefaultDeadlines are the deadlines of a service whose directory entry sets none: a reminder after 2 days,
// escalation after 4, automatic decline after 14.
func DefaultDeadlines() Deadlines {
	const day = 24 * time.Hour
	return Deadlines{RemindAfter: 2 * day, EscalateAfter: 4 * day, DeclineAfter: 14 * day}
}

// Check reports what is wrong with d ("" when nothing): every deadline positive, each later than the one
// before.
func (d Deadlines) Check() string {
	switch {
	case d.RemindAfter <= 0 || d.EscalateAfter <= 0 || d.DeclineAfter <= 0:
		return "every deadline must be positive"
	case d.EscalateAfter <= d.RemindAfter:
		return "escalate_after must be later than remind_after"
	case d.DeclineAfter <= d.EscalateAfter:
		return "decline_after must be later than escalate_after"
	}
	return ""
}

// After is how long after creation the rung s is due (0 for DeadlineNone).
func (d Deadlines) After(s DeadlineStep) time.Duration {
	switch s {
	case DeadlineReminded:
		return d.RemindAfter
	case DeadlineEscalated:
		return d.EscalateAfter
	case DeadlineDeclined:
		return d.DeclineAfter
	case DeadlineNone:
	}
	return 0
}

// Next is the rung after s (DeadlineNone after the last).
func (s DeadlineStep) Next() DeadlineStep {
	switch s {
	case DeadlineNone:
		return DeadlineReminded
	case DeadlineReminded:
		return DeadlineEscalated
	case DeadlineEscalated:
		return DeadlineDeclined
	case DeadlineDeclined:
	}
	return DeadlineNone
}

// NextDeadlineStep decides the one rung a referral climbs now, if any: only while it is still requested (the
// service has not acknowledged, accepted or declined it, nor the GP cancelled it), only the rung after the
// one it reached, and only once that rung's deadline (from the referral's creation) has come. A referral
// whose sweep was missed for days climbs one rung per call, so each rung is its own Task version.
func NextDeadlineStep(cur Referral, d Deadlines, now time.Time) (DeadlineStep, bool) {
	if cur.Record.Status != StatusRequested || cur.Record.ConsentWithdrawn {
		return DeadlineNone, false
	}
	next := cur.Record.DeadlineStep.Next()
	if next == DeadlineNone || now.Before(cur.Record.CreatedAt.Add(d.After(next))) {
		return DeadlineNone, false
	}
	return next, true
}

// DeclineReasonSystem is the code system of the reason socialrx gives when it declines a referral on the
// service's behalf. NHS BaRS codes this reason RRNA; its CodeSystem URI was not available to us, so socialrx
// publishes the code under its own system (docs/design.md#response-deadlines).
const DeclineReasonSystem = "https://socialrx.dev/fhir/CodeSystem/decline-reason"

// DeclineNoResponseCode is the DeclineReasonSystem code of an automatic decline (BaRS RRNA).
const DeclineNoResponseCode = "RRNA"

// DeclineNoResponseText is DeclineNoResponseCode's display, the Task's statusReason text and the record's
// status_reason.
const DeclineNoResponseText = "Requested resource not available within timescale"

// Event types of the deadline ladder (docs/design.md#webhooks).
const (
	// EventReferralReminder reminds the referral's service that it has not replied.
	EventReferralReminder EventType = "referral.reminder"
	// EventReferralEscalated tells the link-worker service that a referral is going unanswered (step
	// escalated) or was declined for want of an answer and needs re-referral (step declined): identifiers,
	// the service and the dates only.
	EventReferralEscalated EventType = "referral.escalated"
)

// SystemAuthor is the author of the Task notes socialrx writes itself.
const SystemAuthor = "socialrx"

// DeadlineNotice is the "deadline" block of a referral.reminder or referral.escalated event: the rung, and
// when the next ones fall (UTC).
type DeadlineNotice struct {
	Step       DeadlineStep `json:"step"`
	EscalateAt *time.Time   `json:"escalate_at,omitempty"`
	DeclineAt  time.Time    `json:"decline_at"`
}

// DeadlineInput is what a rung needs beyond the referral: the service's deadlines, the service itself
// (whether it has a webhook), the link-worker service (LinkWorkerOK false: the directory has none) and
// the id generator for events.
type DeadlineInput struct {
	Deadlines    Deadlines
	Service      Service
	LinkWorker   Service
	LinkWorkerOK bool
	NewID        func() string
}

// ClimbDeadline takes the referral one rung up the ladder (NextDeadlineStep) at now and returns it with the
// events that tell of it, or ErrNoRung when no rung is due. Every rung adds a Task note (so the GP sees it)
// and sets Record.DeadlineStep:
//
//   - reminded: a referral.reminder to the service, when it has a webhook (a pull-only service sees the
//     reminder in its inbox);
//   - escalated: a referral.escalated to the link-worker service (when there is one, other than the service,
//     with a webhook): identifiers and dates only;
//   - declined: Task.status rejected with statusReason RRNA (the one status move socialrx makes itself), a
//     referral.cancelled to the service (the store drops it, and withdraws the referral.created, when the
//     service never received the referral: Withdrawal), and a referral.escalated with step declined to the
//     link-worker service so that it re-refers the person.
//
// Payloads carry mapping.IdentifiersOnly of the record: nothing of the person.
func ClimbDeadline(cur Referral, in DeadlineInput, now time.Time) (Referral, []Event, error) {
	step, ok := NextDeadlineStep(cur, in.Deadlines, now)
	if !ok {
		return cur, nil, ErrNoRung
	}
	if in.NewID == nil {
		return cur, nil, fmt.Errorf("%w: no id generator for the deadline ladder", ErrBadInput)
	}
	next := AppendTaskNotes(cur, SystemAuthor, now, deadlineNote(step, cur, in))
	next.Record.DeadlineStep = step
	if step == DeadlineDeclined {
		next.Record.Status = StatusRejected
		next.Record.StatusReason = DeclineNoResponseText
	}
	snapshot := next.Record
	snapshot.Version = cur.Record.Version + 1
	snapshot.UpdatedAt = now.UTC()
	notice := deadlineNotice(step, cur.Record.CreatedAt, in.Deadlines)
	var events []Event
	add := func(t EventType, dest string) error {
		p, err := deadlinePayload(t, IdentifiersOnly(snapshot), notice, now)
		if err != nil {
			return err
		}
		events = append(events, Event{ID: in.NewID(), Type: t, Payload: p,
			Destination: Destination{Kind: DestinationService, ID: dest}})
		return nil
	}
	hook := in.Service.Delivery.URL != ""
	lw := in.LinkWorkerOK && in.LinkWorker.ID != cur.Record.Service.ID && in.LinkWorker.Delivery.URL != ""
	var err error
	switch step {
	case DeadlineReminded:
		if hook {
			err = add(EventReferralReminder, cur.Record.Service.ID)
		}
	case DeadlineEscalated:
		if lw {
			err = add(EventReferralEscalated, in.LinkWorker.ID)
		}
	case DeadlineDeclined:
		if hook {
			err = add(EventReferralCancelled, cur.Record.Service.ID)
		}
		if err == nil && lw {
			err = add(EventReferralEscalated, in.LinkWorker.ID)
		}
	case DeadlineNone:
	}
	if err != nil {
		return cur, nil, err
	}
	return next, events, nil
}

// ErrNoRung is ClimbDeadline's answer when no rung is due.
var ErrNoRung = errors.New("mapping: no deadline rung is due")

// deadlineNotice is the event's deadline block for step.
func deadlineNotice(step DeadlineStep, created time.Time, d Deadlines) DeadlineNotice {
	n := DeadlineNotice{Step: step, DeclineAt: created.Add(d.DeclineAfter).UTC()}
	if step == DeadlineReminded {
		at := created.Add(d.EscalateAfter).UTC()
		n.EscalateAt = &at
	}
	return n
}

// deadlineNote is the Task note of a rung: what happened and what comes next, with dates only.
func deadlineNote(step DeadlineStep, cur Referral, in DeadlineInput) string {
	const day = "2 January 2006"
	created := cur.Record.CreatedAt
	svc := cur.Record.Service.Name
	if svc == "" {
		svc = cur.Record.Service.ID
	}
	switch step {
	case DeadlineReminded:
		return fmt.Sprintf("Reminder sent to %s: no reply since the referral on %s. The link worker will be told on %s; it will be declined on %s if there is still no reply.",
			svc, created.UTC().Format(day), created.Add(in.Deadlines.EscalateAfter).UTC().Format(day), created.Add(in.Deadlines.DeclineAfter).UTC().Format(day))
	case DeadlineEscalated:
		return fmt.Sprintf("Escalated: %s has not replied since %s. %s. It will be declined on %s if there is still no reply.",
			svc, created.UTC().Format(day), linkWorkerTold(cur, in), created.Add(in.Deadlines.DeclineAfter).UTC().Format(day))
	case DeadlineDeclined:
		return fmt.Sprintf("Declined by socialrx on behalf of %s: no reply within the time allowed (%s). %s for re-referral.",
			svc, DeclineNoResponseText, linkWorkerTold(cur, in))
	case DeadlineNone:
	}
	return ""
}

// linkWorkerTold says who was told of an escalation or a decline.
func linkWorkerTold(cur Referral, in DeadlineInput) string {
	if !in.LinkWorkerOK || in.LinkWorker.ID == cur.Record.Service.ID {
		return "There is no other link-worker service to tell; the referring practice should re-refer"
	}
	return "The link-worker service " + in.LinkWorker.Name + " has been told"
}

// deadlineBody is the JSON body of a deadline event: the webhook body with its deadline block.
type deadlineBody struct {
	webhookBody
	Deadline DeadlineNotice `json:"deadline"`
}

// deadlinePayload renders a deadline event's body:
//
//	{"type": "referral.reminder", "timestamp": "…", "data": <identifiers only>, "deadline": {"step", "escalate_at", "decline_at"}}
func deadlinePayload(t EventType, rec Record, notice DeadlineNotice, now time.Time) (json.RawMessage, error) {
	b, err := json.Marshal(deadlineBody{
		webhookBody: webhookBody{Type: t, Timestamp: now.UTC().Format(time.RFC3339Nano), Data: rec},
		Deadline:    notice,
	})
	if err != nil {
		return nil, fmt.Errorf("mapping: deadline payload: %w", err)
	}
	return b, nil
}

// LinkWorker is the directory's link-worker service: the one marked link_worker, else the default service.
func (d Directory) LinkWorker() (Service, bool) {
	for _, s := range d.Services {
		if s.LinkWorker {
			return s, true
		}
	}
	for _, s := range d.Services {
		if s.Default {
			return s, true
		}
	}
	return Service{}, false
}
