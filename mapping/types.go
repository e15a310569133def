package mapping

import (
	"encoding/json"
	"time"
)

// TaskStatus is the referral's FHIR Task status (http://hl7.org/fhir/task-status), the community API's status
// vocabulary. The zero value is invalid.
type TaskStatus string

// Task statuses socialrx uses (docs/design.md#state-machine).
const (
	StatusRequested      TaskStatus = "requested"
	StatusReceived       TaskStatus = "received"
	StatusAccepted       TaskStatus = "accepted"
	StatusRejected       TaskStatus = "rejected"
	StatusInProgress     TaskStatus = "in-progress"
	StatusOnHold         TaskStatus = "on-hold"
	StatusCompleted      TaskStatus = "completed"
	StatusFailed         TaskStatus = "failed"
	StatusCancelled      TaskStatus = "cancelled"
	StatusEnteredInError TaskStatus = "entered-in-error"
)

// BusinessStatus is a transport fact shown in Task.businessStatus; it never changes Task.status.
// The zero value means "none".
type BusinessStatus string

// Transport facts.
const (
	BusinessQueued         BusinessStatus = "queued"          // a webhook delivery is pending
	BusinessDelivered      BusinessStatus = "delivered"       // the community service's endpoint took it (2xx)
	BusinessDeliveryFailed BusinessStatus = "delivery-failed" // dead-lettered; an engineer must look
	BusinessAwaitingPickup BusinessStatus = "awaiting-pickup" // pull-only service: waiting in its inbox
	BusinessPickedUp       BusinessStatus = "picked-up"       // pull-only service: it has acted on it (BusinessAfterMove)
	BusinessOverdue        BusinessStatus = "overdue"         // not acknowledged in time
)

// BusinessStatusSystem is the code system of BusinessStatus codes in Task.businessStatus.
const BusinessStatusSystem = "https://socialrx.dev/fhir/CodeSystem/transport-status"

// EventType is the type of a webhook event sent to a community service.
type EventType string

// Webhook event types (docs/design.md#webhooks).
const (
	EventReferralCreated   EventType = "referral.created"
	EventReferralCancelled EventType = "referral.cancelled"
	EventReferralUpdated   EventType = "referral.updated"
)

// DestinationKind says what an outbox message is addressed to.
type DestinationKind string

// Destination kinds.
const (
	DestinationService      DestinationKind = "service"      // a community service's webhook (directory delivery.url)
	DestinationSubscription DestinationKind = "subscription" // a GP system's FHIR Subscription rest-hook
)

// Destination names the receiver of an outbox message. Its URL and secret are looked up at delivery time,
// so a rotated secret or moved endpoint applies to messages already queued.
type Destination struct {
	Kind DestinationKind `json:"kind"`
	ID   string          `json:"id"`
}

// String renders "kind:id", the form used in the store and on the CLI.
func (d Destination) String() string { return string(d.Kind) + ":" + d.ID }

// Event is an outbox message to be written in the same transaction as the referral change that caused it.
// Payload is the exact HTTP body that will be delivered (and signed) on every attempt.
type Event struct {
	ID          string // outbox message id (UUIDv7); the webhook-id header
	Type        EventType
	Destination Destination
	Payload     json.RawMessage
}

// Identifier is a FHIR identifier reduced to what matters for matching.
type Identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

// Reference is a FHIR Reference reduced to the parts socialrx keeps (literal, logical or display).
type Reference struct {
	Reference  string      `json:"reference,omitempty"`
	Type       string      `json:"type,omitempty"`
	Identifier *Identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

// Concept is a coded value: a system, a code and what a person reads.
type Concept struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// Record is the community referral record: the plain JSON document a community service receives in webhooks
// and reads from the community API and inbox. It holds only what the service needs to help the person.
// Its JSON shape is a public contract documented in README.md.
type Record struct {
	ID               string     `json:"id"`
	ServiceRequestID string     `json:"service_request_id"`
	TaskID           string     `json:"task_id"`
	Status           TaskStatus `json:"status"`
	Version          int        `json:"version"`
	Service          ServiceRef `json:"service"`
	Priority         string     `json:"priority"` // routine | urgent | asap | stat
	ReferredAt       string     `json:"referred_at,omitempty"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
	Patient          Person     `json:"patient,omitzero"`
	Requested        []Concept  `json:"service_requested,omitempty"` // ServiceRequest.code and orderDetail
	Reasons          []string   `json:"reasons,omitempty"`           // why: reasonCode / reasonReference text
	Needs            string     `json:"needs,omitempty"`             // patientInstruction: what the person asked for
	Notes            []string   `json:"notes,omitempty"`             // ServiceRequest.note texts
	Referrer         Referrer   `json:"referrer,omitzero"`
	Consent          Consent    `json:"consent,omitzero"`
	StatusReason     string     `json:"status_reason,omitempty"`
	Outcome          *Outcome   `json:"outcome,omitempty"`
	// ConsentWithdrawn is true once the person withdrew their consent (WithdrawConsent): the record is then a
	// stub, every personal field erased.
	ConsentWithdrawn bool `json:"consent_withdrawn,omitempty"`
	// Measures are the outcome measures the service recorded (AddMeasure), oldest first; append-only.
	Measures []Measure `json:"measures,omitempty"`
	// SupportNeeds are the person's support needs (ServiceRequest.orderDetail codings in SupportNeedSystem,
	// and interpreter when the patient needs one).
	SupportNeeds []SupportNeed `json:"support_needs,omitempty"`
	// Route is how the referral was routed, when there is more to say than the service it went to (a waiting
	// list, a hand-off to the link-worker service and why, no better route): RouteOutcome.Shown.
	Route *RouteDecision `json:"route,omitempty"`
	// DeadlineStep is the rung of the response-deadline ladder the referral reached (ClimbDeadline): "" while
	// none, then reminded, escalated, declined.
	DeadlineStep DeadlineStep `json:"deadline_step,omitempty"`
}

// ServiceRef names the community service a referral is routed to.
type ServiceRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Person is who was referred and how to reach them.
type Person struct {
	NHSNumber         string   `json:"nhs_number,omitempty"`
	FirstName         string   `json:"first_name,omitempty"` // the first given name (or the name's first word)
	Name              string   `json:"name,omitempty"`
	BirthDate         string   `json:"birth_date,omitempty"`
	Gender            string   `json:"gender,omitempty"`
	Phone             string   `json:"phone,omitempty"`
	Email             string   `json:"email,omitempty"`
	Address           []string `json:"address,omitempty"` // lines, city, postcode in reading order
	Postcode          string   `json:"postcode,omitempty"`
	Language          string   `json:"language,omitempty"`
	InterpreterNeeded bool     `json:"interpreter_needed,omitempty"`
}

// Called is how a person reading the record addresses the person: the full name, else the first name ("" when
// the service's sharing profile gives neither).
func (p Person) Called() string {
	if p.Name != "" {
		return p.Name
	}
	return p.FirstName
}

// Referrer is who made the referral.
type Referrer struct {
	Name         string `json:"name,omitempty"`
	Role         string `json:"role,omitempty"`
	Organisation string `json:"organisation,omitempty"`
	ODSCode      string `json:"ods_code,omitempty"`
	Phone        string `json:"phone,omitempty"`
	Email        string `json:"email,omitempty"`
}

// Consent is the patient's recorded consent to share their details with the service.
type Consent struct {
	Recorded bool   `json:"recorded"`
	Status   string `json:"status,omitempty"` // Consent.status
	Date     string `json:"date,omitempty"`   // Consent.dateTime
	Scope    string `json:"scope,omitempty"`  // Consent.scope text
	Source   string `json:"source,omitempty"` // "Consent" resource or the documented alternative
}

// Outcome is what the community service reports when it completes a referral.
type Outcome struct {
	Text string   `json:"text,omitempty"`
	Code *Concept `json:"code,omitempty"`
}

// Referral is the full state of one referral: the community record plus what socialrx needs to render the
// FHIR Task for the GP side and to scope access. It is what the store keeps.
type Referral struct {
	Record         Record
	PracticeODS    string         // the referring practice (access scope for GP clients)
	BusinessStatus BusinessStatus // transport fact shown in Task.businessStatus
	Patient        Reference      // Task.for
	Requester      Reference      // Task.requester
	Owner          Reference      // Task.owner: the routed community service
	// ServiceRequestStatus is the ServiceRequest's current status ("active", later "revoked" on cancellation).
	ServiceRequestStatus string
	// TaskNotes are the Task's notes (Task.note), oldest first. They are append-only: an update may add notes
	// at the end but never edit or remove one (TaskUpdate, AppendTaskNotes).
	TaskNotes []TaskNote `json:"TaskNotes,omitempty"`
	// Parent is the link worker's referral this one was forwarded from (Forward; nil: not forwarded): the
	// Task's partOf.
	Parent *LinkRef `json:"Parent,omitempty"`
	// Children are the referrals the link worker forwarded this one to, oldest first: the Task's output.
	Children []LinkRef `json:"Children,omitempty"`
	// ChosenChild is the id of the child the person chose: the first one a group accepted ("": none yet).
	ChosenChild string `json:"ChosenChild,omitempty"`
}

// TaskNote is one Task.note: a remark the community service or the GP practice added to the referral's Task
// (rendered as an Annotation with authorString, time and text). Author and Time are set by socialrx from the
// authenticated client and its clock, never taken from the client's request.
type TaskNote struct {
	Author string    `json:"author"` // who added it: the service's name, or the GP client's id
	Time   time.Time `json:"time"`
	Text   string    `json:"text"`
}

// Intake is everything one accepted referral writes, in one transaction.
type Intake struct {
	Referral Referral
	// ServiceRequest is the ServiceRequest as stored and returned (id assigned, meta.versionId "1",
	// bundle resources moved into contained).
	ServiceRequest json.RawMessage
	// Identifiers are the ServiceRequest.identifier values: the idempotency keys.
	Identifiers []Identifier
	// Fingerprint is a hash of the submitted content (ids, meta and urn:uuid values ignored): same
	// identifier and same fingerprint is a resend, same identifier and another fingerprint is a conflict.
	Fingerprint string
	Events      []Event
}
