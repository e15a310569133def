package mapping

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/socialrx/socialrx/fault"
)

// Actor is who asks for a status change. The zero value is invalid.
type Actor string

// Actors.
const (
	// ActorCommunity is the community service the referral is routed to (community API, inbox page, or a
	// FHIR-capable community platform updating the Task).
	ActorCommunity Actor = "community"
	// ActorRequester is the referring GP practice (cancellation, entered-in-error).
	ActorRequester Actor = "requester"
	// ActorSystem is socialrx itself. It never moves Task.status: what it learns about delivery is a
	// transport fact recorded with MarkBusinessStatus (docs/design.md#state-machine), so every status move by it is refused.
	ActorSystem Actor = "system"
)

// AllActors lists every actor.
func AllActors() []Actor { return []Actor{ActorCommunity, ActorRequester, ActorSystem} }

// Valid reports whether a is a known actor.
func (a Actor) Valid() bool {
	switch a {
	case ActorCommunity, ActorRequester, ActorSystem:
		return true
	}
	return false
}

// AllStatuses lists every Task status, in state-machine order.
func AllStatuses() []TaskStatus {
	return []TaskStatus{
		StatusRequested, StatusReceived, StatusAccepted, StatusRejected, StatusInProgress,
		StatusOnHold, StatusCompleted, StatusFailed, StatusCancelled, StatusEnteredInError,
	}
}

// ParseTaskStatus returns the status named by s (a Task status code), and whether it is one.
func ParseTaskStatus(s string) (TaskStatus, bool) {
	st := TaskStatus(s)
	return st, st.Valid()
}

// Valid reports whether s is a status of the referral state machine.
func (s TaskStatus) Valid() bool {
	switch s {
	case StatusRequested, StatusReceived, StatusAccepted, StatusRejected, StatusInProgress,
		StatusOnHold, StatusCompleted, StatusFailed, StatusCancelled, StatusEnteredInError:
		return true
	}
	return false
}

// Terminal reports whether nothing can happen to a referral in status s any more.
func (s TaskStatus) Terminal() bool {
	switch s {
	case StatusRejected, StatusCompleted, StatusFailed, StatusCancelled, StatusEnteredInError:
		return true
	case StatusRequested, StatusReceived, StatusAccepted, StatusInProgress, StatusOnHold:
		return false
	}
	return false
}

// mover is the one actor who may move a referral into status s ("" for requested: only Build creates it).
func mover(s TaskStatus) Actor {
	switch s {
	case StatusReceived, StatusAccepted, StatusRejected, StatusInProgress, StatusOnHold, StatusCompleted, StatusFailed:
		return ActorCommunity
	case StatusCancelled, StatusEnteredInError:
		return ActorRequester
	case StatusRequested:
	}
	return ""
}

// successors are the statuses the state machine (docs/design.md#state-machine) allows after s, whoever moves.
func successors(s TaskStatus) []TaskStatus {
	var next []TaskStatus
	switch s {
	case StatusRequested:
		next = []TaskStatus{StatusReceived, StatusAccepted, StatusRejected, StatusCancelled}
	case StatusReceived:
		next = []TaskStatus{StatusAccepted, StatusRejected, StatusCancelled}
	case StatusAccepted:
		next = []TaskStatus{StatusInProgress, StatusCancelled}
	case StatusInProgress:
		next = []TaskStatus{StatusOnHold, StatusCompleted, StatusFailed, StatusCancelled}
	case StatusOnHold:
		next = []TaskStatus{StatusInProgress, StatusCompleted, StatusFailed, StatusCancelled}
	case StatusRejected, StatusCompleted, StatusFailed, StatusCancelled, StatusEnteredInError:
		return nil
	}
	return append(next, StatusEnteredInError)
}

// AllowedMoves lists the statuses actor by may move a referral in status from to.
func AllowedMoves(from TaskStatus, by Actor) []TaskStatus {
	var out []TaskStatus
	for _, to := range successors(from) {
		if mover(to) == by {
			out = append(out, to)
		}
	}
	return out
}

// Errors of the state machine.
var (
	// ErrNoChange signals an idempotent no-op: the referral is already in the requested status (and the actor
	// is one who may set it). Callers treat it as success and write nothing: no version bump, no event.
	ErrNoChange = errors.New("referral already has this status")
	// ErrInvalidTransition is matched (errors.Is) by every *TransitionError.
	ErrInvalidTransition = errors.New("status change not allowed")
)

// Fields and rule codes of the state machine's refusals (fault.Issue): the field names are the use cases' own
// (a request's status, reason, outcome and note); each API renders them in its terms (the FHIR API as the Task's
// status, statusReason, output and note; the community API as its JSON fields of the same names).
const (
	FieldStatus  = "status"
	FieldReason  = "reason"
	FieldOutcome = "outcome"
	FieldNote    = "note"

	// CodeIllegalTransition: the state machine does not allow the move (a *TransitionError, kind conflict).
	CodeIllegalTransition fault.Code = "illegal_transition"
	// CodeReasonRequired: the move needs a reason (rejected, on-hold, failed, cancelled).
	CodeReasonRequired fault.Code = "reason_required"
	// CodeOutcomeNotAllowed: an outcome comes with a status other than completed or failed.
	CodeOutcomeNotAllowed fault.Code = "outcome_not_allowed"
	// CodeOutcomeRequired: an outcome has neither a text nor a code.
	CodeOutcomeRequired fault.Code = "outcome_required"
	// CodeTooManyNotes: the Task would keep more than MaxTaskNotes notes.
	CodeTooManyNotes fault.Code = "too_many_notes"
)

// TransitionError is a refused status change. It names the current status and the moves the actor may make
// from it; it carries no patient data.
type TransitionError struct {
	From    TaskStatus
	To      TaskStatus
	By      Actor
	Allowed []TaskStatus // what By may do from From (empty: nothing)
}

// Error implements error.
func (e *TransitionError) Error() string {
	if !e.From.Valid() || !e.To.Valid() || !e.By.Valid() {
		return fmt.Sprintf("status change not allowed: unknown status or actor (from %q to %q by %q)", e.From, e.To, e.By)
	}
	msg := fmt.Sprintf("the referral is %s and cannot move to %s", e.From, e.To)
	if len(e.Allowed) == 0 {
		if e.From.Terminal() {
			return msg + fmt.Sprintf(": %s is final", e.From)
		}
		return msg + fmt.Sprintf(": the %s may not change a referral's status", e.By)
	}
	moves := make([]string, len(e.Allowed))
	for i, s := range e.Allowed {
		moves[i] = string(s)
	}
	return msg + fmt.Sprintf(": the %s may move it to %s", e.By, strings.Join(moves, ", "))
}

// Is makes errors.Is(err, ErrInvalidTransition) true.
func (e *TransitionError) Is(target error) bool { return target == ErrInvalidTransition }

// FaultKind implements fault.Kinded: the referral's current status forbids the move.
func (e *TransitionError) FaultKind() fault.Kind { return fault.Conflict }

// CanTransition checks a status change against the referral state machine (docs/design.md#state-machine), the one place it is
// enforced:
//
//	requested   → received | accepted | rejected | cancelled
//	received    → accepted | rejected | cancelled
//	accepted    → in-progress | cancelled
//	in-progress → on-hold | completed | failed | cancelled
//	on-hold     → in-progress | completed | failed | cancelled
//	any non-terminal → entered-in-error
//	terminal: rejected, completed, failed, cancelled, entered-in-error
//
// The community service makes every move except cancelled and entered-in-error, which only the requester
// (the GP) makes; the system actor makes none. It returns nil when the move is allowed, ErrNoChange when the
// referral already has status to and by is the actor who sets it (an idempotent repeat), and a
// *TransitionError otherwise.
func CanTransition(from, to TaskStatus, by Actor) error {
	if !from.Valid() || !to.Valid() || !by.Valid() {
		return &TransitionError{From: from, To: to, By: by}
	}
	if from == to && mover(to) == by {
		return ErrNoChange
	}
	allowed := AllowedMoves(from, by)
	for _, s := range allowed {
		if s == to {
			return nil
		}
	}
	return &TransitionError{From: from, To: to, By: by, Allowed: allowed}
}

// StatusChange is a requested status change and what ApplyStatus needs to know to tell the service.
type StatusChange struct {
	To      TaskStatus
	By      Actor
	Reason  string   // required for rejected, on-hold, failed and cancelled; becomes Task.statusReason
	Outcome *Outcome // only with completed or failed
	// ServiceHasWebhook is true when the routed service has a delivery URL now.
	ServiceHasWebhook bool
	// ServiceHasReferral is true when the service's referral.created event was delivered or is still queued
	// (not dead): only then is there something at the service to cancel or correct.
	ServiceHasReferral bool
	// NewID returns event ids (UUIDv7); needed only when an event is emitted.
	NewID func() string
	// Notes are the texts of Task notes to append with this change (TaskUpdate's new Task.note entries, or
	// the community API's note), authored by NoteAuthor at the change's time. Validated by the caller
	// (CheckNoteText).
	Notes []string
	// NoteAuthor is who adds Notes: the service's name or the GP client's id.
	NoteAuthor string
	// ConsentWithdrawn: the GP records that the person withdrew their consent (a Task cancelled with the coded
	// reason CancelReasonSystem|ConsentWithdrawnCode); ApplyStatus then applies WithdrawConsent.
	ConsentWithdrawn bool
	// Actor, when set, is named in the event's webhook payload (who made the change).
	Actor *EventActor
}

// needsReason reports whether moving to s requires a reason.
func needsReason(s TaskStatus) bool {
	switch s {
	case StatusRejected, StatusOnHold, StatusFailed, StatusCancelled:
		return true
	case StatusRequested, StatusReceived, StatusAccepted, StatusInProgress, StatusCompleted, StatusEnteredInError:
	}
	return false
}

// ApplyStatus validates a status change and returns the changed referral and the events to enqueue with it.
//
// Errors: a *TransitionError (errors.Is ErrInvalidTransition: the move is not allowed, 409), ErrNoChange (the
// referral already has that status and no note comes with the change: success, write nothing), or a
// *fault.Error of kind fault.Rule (CodeReasonRequired, CodeOutcomeNotAllowed, CodeOutcomeRequired,
// CodeTooManyNotes) naming the field (FieldReason, FieldOutcome, FieldNote).
//
// Notes: change.Notes are appended to TaskNotes (AppendTaskNotes, by NoteAuthor at now) with any change. A
// change to the status the referral already has that carries notes is a note-only change: whoever sends it,
// and in any status (a final one included), it appends the notes and changes nothing else (no event; its
// reason and outcome are ignored, as for a repeat). The store's version bump then tells the GP side.
//
// The new state: Record.Status = To, Record.StatusReason = Reason (cleared when none), Record.Outcome =
// Outcome when given; ServiceRequestStatus becomes "revoked" on cancelled, "entered-in-error" on
// entered-in-error and "completed" on completed. ApplyStatus does not bump Record.Version nor set
// Record.UpdatedAt: the store does (outbox.ReferralUpdate), to Version+1 and now. The event payload already
// carries those values, so the service sees the record exactly as stored.
//
// Events go only to a service with a webhook that has the referral (ServiceHasWebhook and
// ServiceHasReferral), and only for the requester's moves, which the service cannot otherwise know:
// cancelled → referral.cancelled, entered-in-error → referral.updated. The community service's own moves are
// not echoed back to it. An event's record is IdentifiersOnly: the service already has what its sharing profile
// lets it have from referral.created, and a change needs nothing more. Telling the GP side (Subscriptions) is not mapping's job.
func ApplyStatus(cur Referral, change StatusChange, now time.Time) (Referral, []Event, error) {
	if change.ConsentWithdrawn {
		return WithdrawConsent(cur, change, now)
	}
	if len(change.Notes) > 0 && len(cur.TaskNotes)+len(change.Notes) > MaxTaskNotes {
		return cur, nil, fault.New(fault.Rule, CodeTooManyNotes, FieldNote, fmt.Sprintf("a Task keeps at most %d notes", MaxTaskNotes))
	}
	if change.To == cur.Record.Status && change.To.Valid() && len(change.Notes) > 0 {
		next := AppendTaskNotes(cur, change.NoteAuthor, now, change.Notes...)
		next.BusinessStatus = BusinessAfterMove(cur.BusinessStatus, change.By, change.ServiceHasWebhook)
		return next, nil, nil
	}
	if err := CanTransition(cur.Record.Status, change.To, change.By); err != nil {
		return cur, nil, err
	}
	reason := strings.TrimSpace(change.Reason)
	var is []fault.Issue
	if needsReason(change.To) && reason == "" {
		is = append(is, fault.Issue{Code: CodeReasonRequired, Field: FieldReason,
			Message: "a reason is required to move a referral to " + string(change.To)})
	}
	if change.Outcome != nil {
		switch {
		case change.To != StatusCompleted && change.To != StatusFailed:
			is = append(is, fault.Issue{Code: CodeOutcomeNotAllowed, Field: FieldOutcome,
				Message: "an outcome can only be given with status completed or failed"})
		case strings.TrimSpace(change.Outcome.Text) == "" && (change.Outcome.Code == nil || change.Outcome.Code.Code == ""):
			is = append(is, fault.Issue{Code: CodeOutcomeRequired, Field: FieldOutcome, Message: "an outcome needs a text or a code"})
		}
	}
	if len(is) > 0 {
		return cur, nil, &fault.Error{Kind: fault.Rule, Issues: is}
	}

	next := AppendTaskNotes(cur, change.NoteAuthor, now, change.Notes...)
	next.Record.Status = change.To
	next.Record.StatusReason = reason
	next.BusinessStatus = BusinessAfterMove(cur.BusinessStatus, change.By, change.ServiceHasWebhook)
	if change.Outcome != nil {
		o := *change.Outcome
		o.Text = strings.TrimSpace(o.Text)
		if o.Code != nil {
			code := *o.Code
			o.Code = &code
		}
		next.Record.Outcome = &o
	}
	switch change.To {
	case StatusCancelled:
		next.ServiceRequestStatus = "revoked"
	case StatusEnteredInError:
		next.ServiceRequestStatus = "entered-in-error"
	case StatusCompleted:
		next.ServiceRequestStatus = "completed"
	case StatusRequested, StatusReceived, StatusAccepted, StatusRejected, StatusInProgress, StatusOnHold, StatusFailed:
	}

	var typ EventType
	switch change.To {
	case StatusCancelled:
		typ = EventReferralCancelled
	case StatusEnteredInError:
		typ = EventReferralUpdated
	case StatusRequested, StatusReceived, StatusAccepted, StatusRejected, StatusInProgress, StatusOnHold, StatusCompleted, StatusFailed:
	}
	if typ == "" || !change.ServiceHasWebhook || !change.ServiceHasReferral {
		return next, nil, nil
	}
	if change.NewID == nil {
		return cur, nil, fmt.Errorf("%w: no id generator for the %s event", ErrBadInput, typ)
	}
	snapshot := next.Record
	snapshot.Version = cur.Record.Version + 1
	snapshot.UpdatedAt = now.UTC()
	payload, err := WebhookPayloadBy(typ, IdentifiersOnly(snapshot), now, change.Actor)
	if err != nil {
		return cur, nil, err
	}
	return next, []Event{{
		ID:          change.NewID(),
		Type:        typ,
		Destination: Destination{Kind: DestinationService, ID: cur.Record.Service.ID},
		Payload:     payload,
	}}, nil
}

// MarkBusinessStatus records a transport fact (docs/design.md#state-machine: queued, delivered, delivery-failed, overdue,
// awaiting-pickup) without touching Task.status. changed is false when the referral already shows that fact,
// or when bs is not a known fact (the empty value clears the fact). Like ApplyStatus it leaves Version and
// UpdatedAt to the store; a caller should skip the write when changed is false.
func MarkBusinessStatus(cur Referral, bs BusinessStatus) (Referral, bool) {
	if bs != "" && !bs.Valid() {
		return cur, false
	}
	if cur.BusinessStatus == bs {
		return cur, false
	}
	cur.BusinessStatus = bs
	return cur, true
}
