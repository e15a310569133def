package mapping

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/socialrx/socialrx/fhir"
)

// TaskFor renders the referral's FHIR R4 Task, the resource the GP side reads:
//
//   - id = TaskID; meta.versionId = Version; meta.lastUpdated = UpdatedAt (FHIR instant);
//   - status; statusReason.text when a reason is recorded;
//   - businessStatus (a coding in BusinessStatusSystem plus text) when a transport fact is set, and a coding in
//     RouteDecisionSystem when the routing decision is worth showing (RouteOutcome.Shown: waitlisted, handed
//     to the link-worker service, no better route), its text appended;
//   - intent "order"; priority; code http://hl7.org/fhir/CodeSystem/task-code#fulfill;
//   - focus ServiceRequest/{id}; for (the patient); authoredOn = CreatedAt; lastModified = UpdatedAt;
//   - requester; owner (the routed community service);
//   - output, when the service reported an outcome: type.text "outcome" with valueCodeableConcept (a coded
//     outcome, its text alongside) or valueString (text only);
//   - output, after the outcome: "episode-code" SNOMED CT 871711000000103 when the referral was rejected, and
//     one "outcome-measure" per recorded measure referencing its Observation (taskOutputs);
//   - note: one Annotation per TaskNote, oldest first (authorString, time, text).
func TaskFor(r Referral) fhir.Task {
	rec := r.Record
	t := fhir.Task{
		ResourceType: "Task",
		ID:           rec.TaskID,
		Meta:         &fhir.Meta{VersionID: strconv.Itoa(rec.Version), LastUpdated: fhir.ExactInstant(rec.UpdatedAt)},
		Status:       string(rec.Status),
		Intent:       "order",
		Priority:     rec.Priority,
		Code: &fhir.CodeableConcept{
			Coding: []fhir.Coding{{System: TaskCodeSystem, Code: "fulfill", Display: "Fulfill the focal request"}},
		},
		Focus:        &fhir.Reference{Reference: "ServiceRequest/" + rec.ServiceRequestID, Type: "ServiceRequest"},
		For:          fhirRef(r.Patient),
		AuthoredOn:   fhir.ExactInstant(rec.CreatedAt),
		LastModified: fhir.ExactInstant(rec.UpdatedAt),
		Requester:    fhirRef(r.Requester),
		Owner:        fhirRef(r.Owner),
	}
	if rec.StatusReason != "" {
		t.StatusReason = &fhir.CodeableConcept{Text: rec.StatusReason}
	}
	if p := r.Parent; p != nil {
		t.PartOf = []fhir.Reference{{Reference: "Task/" + p.TaskID, Type: "Task"}}
	}
	if rec.DeadlineStep == DeadlineDeclined && rec.Status == StatusRejected { // socialrx's own decline, coded
		t.StatusReason = &fhir.CodeableConcept{
			Coding: []fhir.Coding{{System: DeclineReasonSystem, Code: DeclineNoResponseCode, Display: DeclineNoResponseText}},
			Text:   DeclineNoResponseText,
		}
	}
	if rec.ConsentWithdrawn { // the GP's coded reason, as it was sent
		t.StatusReason = &fhir.CodeableConcept{
			Coding: []fhir.Coding{{System: CancelReasonSystem, Code: ConsentWithdrawnCode, Display: ConsentWithdrawnText}},
			Text:   ConsentWithdrawnText,
		}
	}
	if r.BusinessStatus != "" {
		text := r.BusinessStatus.Text()
		t.BusinessStatus = &fhir.CodeableConcept{
			Coding: []fhir.Coding{{System: BusinessStatusSystem, Code: string(r.BusinessStatus), Display: text}},
			Text:   text,
		}
	}
	if d := rec.Route; d != nil && d.Outcome.Shown() {
		// The routing decision (issue 13) stays beside whatever transport fact follows.
		if t.BusinessStatus == nil {
			t.BusinessStatus = &fhir.CodeableConcept{}
		}
		t.BusinessStatus.Coding = append(t.BusinessStatus.Coding, fhir.Coding{System: RouteDecisionSystem, Code: string(d.Outcome), Display: d.Outcome.Display()})
		t.BusinessStatus.Text = strings.TrimPrefix(t.BusinessStatus.Text+"; "+d.Text, "; ")
	}
	if o := rec.Outcome; o != nil && (o.Text != "" || (o.Code != nil && o.Code.Code != "")) {
		out := fhir.TaskOutput{Type: fhir.CodeableConcept{Text: "outcome"}}
		if o.Code != nil && o.Code.Code != "" {
			out.ValueCodeableConcept = &fhir.CodeableConcept{
				Coding: []fhir.Coding{{System: o.Code.System, Code: o.Code.Code, Display: o.Code.Display}},
				Text:   o.Text,
			}
		} else {
			text := o.Text
			out.ValueString = &text
		}
		t.Output = []fhir.TaskOutput{out}
	}
	t.Output = append(t.Output, taskOutputs(r)...)
	for _, n := range r.TaskNotes {
		t.Note = append(t.Note, fhir.Annotation{AuthorString: n.Author, Time: fhir.ExactInstant(n.Time), Text: n.Text})
	}
	return t
}

// MaxNoteRunes bounds the text of one Task note.
const MaxNoteRunes = 4000

// MaxTaskNotes bounds how many notes one referral's Task keeps (the notes are stored with the referral and
// rendered on every read).
const MaxTaskNotes = 100

// AppendTaskNotes returns r with one note per text appended, oldest first, each authored by author at now
// (UTC, truncated to the microsecond as the store keeps times). Texts are trimmed; callers validate them
// first (CheckNoteText). The existing notes are never changed.
func AppendTaskNotes(r Referral, author string, now time.Time, texts ...string) Referral {
	if len(texts) == 0 {
		return r
	}
	notes := make([]TaskNote, 0, len(r.TaskNotes)+len(texts))
	notes = append(notes, r.TaskNotes...)
	at := now.UTC().Truncate(time.Microsecond)
	for _, t := range texts {
		notes = append(notes, TaskNote{Author: author, Time: at, Text: strings.TrimSpace(t)})
	}
	r.TaskNotes = notes
	return r
}

// CheckNoteText reports what is wrong with a note's text ("" when nothing): it must not be blank and must
// be at most MaxNoteRunes characters.
func CheckNoteText(text string) string {
	switch t := strings.TrimSpace(text); {
	case t == "":
		return "a note needs a text"
	case utf8.RuneCountInString(t) > MaxNoteRunes:
		return fmt.Sprintf("a note is at most %d characters", MaxNoteRunes)
	}
	return ""
}

// fhirRef converts a kept Reference to its wire form; an empty one is nil (omitted).
func fhirRef(r Reference) *fhir.Reference {
	if r.Reference == "" && r.Identifier == nil && r.Display == "" {
		return nil
	}
	out := &fhir.Reference{Reference: r.Reference, Type: r.Type, Display: r.Display}
	if r.Identifier != nil {
		out.Identifier = &fhir.Identifier{System: r.Identifier.System, Value: r.Identifier.Value}
	}
	return out
}

// Text is the human-readable meaning of a transport fact, shown as Task.businessStatus text.
func (b BusinessStatus) Text() string {
	switch b {
	case BusinessQueued:
		return "Waiting to be delivered to the community service"
	case BusinessDelivered:
		return "Delivered to the community service"
	case BusinessDeliveryFailed:
		return "Delivery to the community service failed; an engineer has been alerted"
	case BusinessAwaitingPickup:
		return "Waiting for the community service to collect it from its inbox"
	case BusinessPickedUp:
		return "Collected by the community service from its inbox"
	case BusinessOverdue:
		return "Not yet acknowledged by the community service"
	}
	return ""
}

// Valid reports whether b is a known transport fact (the zero value, "none", is not a fact).
func (b BusinessStatus) Valid() bool { return b.Text() != "" }

// AllBusinessStatuses lists every transport fact.
func AllBusinessStatuses() []BusinessStatus {
	return []BusinessStatus{BusinessQueued, BusinessDelivered, BusinessDeliveryFailed, BusinessAwaitingPickup, BusinessPickedUp,
		BusinessOverdue}
}

// Valid reports whether t is a known event type.
func (t EventType) Valid() bool {
	switch t {
	case EventReferralCreated, EventReferralCancelled, EventReferralUpdated, EventReferralWithdrawn,
		EventReferralReminder, EventReferralEscalated:
		return true
	}
	return false
}

// AllEventTypes lists every webhook event type.
func AllEventTypes() []EventType {
	return []EventType{EventReferralCreated, EventReferralCancelled, EventReferralUpdated, EventReferralWithdrawn,
		EventReferralReminder, EventReferralEscalated}
}

// webhookBody is the JSON body of a webhook event (docs/design.md#webhooks).
type webhookBody struct {
	Type      EventType   `json:"type"`
	Timestamp string      `json:"timestamp"`
	Actor     *EventActor `json:"actor,omitempty"`
	Data      Record      `json:"data"`
	// Action is what the event asks of the service (referral.withdrawn: ActionDeletePersonalData).
	Action string `json:"action,omitempty"`
}

// EventActor is who made the change an event tells of: a directory client's id (the GP system, the
// community service) or an engineer ("console:<client>/<name>", "cli:<name>"), and its role (gp, community,
// admin, operator).
type EventActor struct {
	ID   string `json:"id"`
	Role string `json:"role"`
}

// WebhookPayload renders the body of a webhook event sent to a community service:
//
//	{"type": "referral.created", "timestamp": "<RFC 3339, UTC>", "data": <Record>}
//
// The body is built once, when the event is enqueued, and delivered byte for byte on every attempt, so that
// receivers can dedupe on webhook-id and verify the signature over exactly these bytes.
func WebhookPayload(t EventType, rec Record, now time.Time) (json.RawMessage, error) {
	return WebhookPayloadBy(t, rec, now, nil)
}

// WebhookPayloadBy is WebhookPayload with the actor of the change (nil: none is named):
//
//	{"type": "referral.updated", "timestamp": "…", "actor": {"id": "practice-a81001", "role": "gp"}, "data": <Record>}
func WebhookPayloadBy(t EventType, rec Record, now time.Time, actor *EventActor) (json.RawMessage, error) {
	if !t.Valid() {
		return nil, fmt.Errorf("%w: unknown event type %q", ErrBadInput, t)
	}
	b, err := json.Marshal(webhookBody{Type: t, Timestamp: now.UTC().Format(time.RFC3339Nano), Actor: actor, Data: rec})
	if err != nil {
		return nil, fmt.Errorf("mapping: webhook payload: %w", err)
	}
	return b, nil
}
