package mapping

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/socialrx/socialrx/fhir"
)

// EventNotification is the type of an outbox message that carries a FHIR Subscription notification to a GP
// system (destination kind subscription). It is not a community webhook event, so AllEventTypes does not
// list it.
const EventNotification EventType = "subscription.notification"

// The other messages a Subscription gets (R4 Backport IG 1.1.0), neither numbered nor about a referral.
const (
	// EventHandshake is the handshake sent when a Subscription is activated (SubscriptionStatus type
	// handshake): the first message of its queue.
	EventHandshake EventType = "subscription.handshake"
	// EventHeartbeat is a heartbeat (SubscriptionStatus type heartbeat), sent when the Subscription asked for
	// one every heartbeatPeriod and nothing else was sent in that time.
	EventHeartbeat EventType = "subscription.heartbeat"
)

// Subscriptions R5 Backport IG (for R4) canonical URLs socialrx uses.
const (
	// BackportStatusProfile is the profile of the SubscriptionStatus Parameters resource in R4.
	BackportStatusProfile = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
	// BackportPayloadContentURL is the extension on Subscription.channel.payload that says how much of the
	// changed resource a notification carries (id-only | full-resource).
	BackportPayloadContentURL = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
)

// PayloadContent is how much of the changed Task a notification carries. The zero value is invalid.
type PayloadContent string

// Payload contents (backport-content-value-set; "empty" is not offered).
const (
	PayloadIDOnly       PayloadContent = "id-only"       // the notification's focus references the Task
	PayloadFullResource PayloadContent = "full-resource" // and the Bundle carries the Task itself
)

// AllPayloadContents lists every supported payload content.
func AllPayloadContents() []PayloadContent {
	return []PayloadContent{PayloadIDOnly, PayloadFullResource}
}

// Valid reports whether p is a supported payload content.
func (p PayloadContent) Valid() bool {
	switch p {
	case PayloadIDOnly, PayloadFullResource:
		return true
	}
	return false
}

// NotificationType is SubscriptionStatus.type. The zero value is invalid.
type NotificationType string

// Notification types socialrx sends or returns.
const (
	NotificationEvent       NotificationType = "event-notification" // a rest-hook notification of a change
	NotificationQueryStatus NotificationType = "query-status"       // the answer of Subscription/{id}/$status
	NotificationHandshake   NotificationType = "handshake"          // sent when a Subscription is activated
	NotificationHeartbeat   NotificationType = "heartbeat"          // sent every heartbeatPeriod of silence
)

// AllNotificationTypes lists every notification type socialrx produces.
func AllNotificationTypes() []NotificationType {
	return []NotificationType{NotificationEvent, NotificationQueryStatus, NotificationHandshake, NotificationHeartbeat}
}

// Valid reports whether t is a notification type socialrx produces.
func (t NotificationType) Valid() bool {
	switch t {
	case NotificationEvent, NotificationQueryStatus, NotificationHandshake, NotificationHeartbeat:
		return true
	}
	return false
}

// SubscriptionInfo is what a notification needs to know about its Subscription.
type SubscriptionInfo struct {
	ID               string
	BaseURL          string // the FHIR base (no trailing slash); empty: references are relative
	Status           string // Subscription.status (active | error | off)
	Payload          PayloadContent
	EventsSinceStart int64
	// Topic is the SubscriptionTopic canonical of a topic-based subscription ("": a classic one, no topic
	// parameter).
	Topic string
	// Error says why the subscription is in error ("": no error parameter).
	Error string
}

// NotificationEventInfo is one notification-event of a SubscriptionStatus.
type NotificationEventInfo struct {
	Number    int64
	Timestamp time.Time
	Focus     string // reference of the changed resource; empty: none
}

type parameters struct {
	ResourceType string      `json:"resourceType"`
	ID           string      `json:"id,omitempty"`
	Meta         *fhir.Meta  `json:"meta,omitempty"`
	Parameter    []parameter `json:"parameter"`
}

type parameter struct {
	Name                 string                `json:"name"`
	ValueReference       *fhir.Reference       `json:"valueReference,omitempty"`
	ValueCode            string                `json:"valueCode,omitempty"`
	ValueString          string                `json:"valueString,omitempty"`
	ValueInstant         string                `json:"valueInstant,omitempty"`
	ValueCanonical       string                `json:"valueCanonical,omitempty"`
	ValueCodeableConcept *fhir.CodeableConcept `json:"valueCodeableConcept,omitempty"`
	Part                 []parameter           `json:"part,omitempty"`
}

type historyBundle struct {
	ResourceType string         `json:"resourceType"`
	ID           string         `json:"id"`
	Type         string         `json:"type"`
	Timestamp    string         `json:"timestamp"`
	Entry        []historyEntry `json:"entry"`
}

type historyEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Request  historyRequest  `json:"request"`
	Response historyResponse `json:"response"`
}

type historyRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type historyResponse struct {
	Status       string `json:"status"`
	Etag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
}

// notificationNS namespaces the deterministic ids of notification Bundles (UUIDv5 of subscription id and
// event number), so that a re-rendered notification is byte-identical.
var notificationNS = uuid.MustParse("6c1f0f5e-8a43-4f7e-9d7a-2f3b5c2d9e10")

// ref renders a reference to typ/id under base (relative when base is empty).
func (s SubscriptionInfo) ref(typ, id string) string {
	if s.BaseURL == "" {
		return typ + "/" + id
	}
	return s.BaseURL + "/" + typ + "/" + id
}

// SubscriptionStatus renders the backport SubscriptionStatus (an R4 Parameters resource, profile
// BackportStatusProfile) with parameters subscription, topic (a topic-based subscription's), status, type,
// events-since-subscription-start, one notification-event per event (event-number, timestamp, focus) and
// error (why the subscription is in error). id may be empty.
func SubscriptionStatus(s SubscriptionInfo, typ NotificationType, id string, events []NotificationEventInfo) ([]byte, error) {
	if s.ID == "" || !typ.Valid() {
		return nil, fmt.Errorf("%w: subscription status needs a subscription id and a known type", ErrBadInput)
	}
	p := parameters{
		ResourceType: "Parameters",
		ID:           id,
		Meta:         &fhir.Meta{Profile: []string{BackportStatusProfile}},
		Parameter: []parameter{
			{Name: "subscription", ValueReference: &fhir.Reference{Reference: s.ref("Subscription", s.ID)}},
		},
	}
	if s.Topic != "" {
		p.Parameter = append(p.Parameter, parameter{Name: "topic", ValueCanonical: s.Topic})
	}
	p.Parameter = append(p.Parameter,
		parameter{Name: "status", ValueCode: s.Status},
		parameter{Name: "type", ValueCode: string(typ)},
		parameter{Name: "events-since-subscription-start", ValueString: strconv.FormatInt(s.EventsSinceStart, 10)})
	for _, e := range events {
		ne := parameter{Name: "notification-event", Part: []parameter{
			{Name: "event-number", ValueString: strconv.FormatInt(e.Number, 10)},
			{Name: "timestamp", ValueInstant: fhir.ExactInstant(e.Timestamp)},
		}}
		if e.Focus != "" {
			ne.Part = append(ne.Part, parameter{Name: "focus", ValueReference: &fhir.Reference{Reference: e.Focus}})
		}
		p.Parameter = append(p.Parameter, ne)
	}
	if s.Error != "" {
		p.Parameter = append(p.Parameter, parameter{Name: "error", ValueCodeableConcept: &fhir.CodeableConcept{Text: s.Error}})
	}
	return json.Marshal(p)
}

// HandshakeBundle renders the handshake a Subscription gets when it is activated (backport style, R4): a
// history Bundle whose one entry is the SubscriptionStatus of type handshake, with the events numbered so far
// (0 for a new subscription). The Bundle id is derived from the subscription's id. It is pure.
func HandshakeBundle(s SubscriptionInfo, now time.Time) (json.RawMessage, error) {
	return statusOnlyBundle(s, NotificationHandshake, uuid.NewSHA1(notificationNS, []byte(s.ID+"#handshake")).String(), now)
}

// HeartbeatBundle renders a heartbeat (backport style, R4): a history Bundle whose one entry is the
// SubscriptionStatus of type heartbeat, with the events numbered so far, so that a GP system that missed a
// notification learns it even when nothing changes. The Bundle id is derived from the subscription and now.
// It is pure.
func HeartbeatBundle(s SubscriptionInfo, now time.Time) (json.RawMessage, error) {
	id := uuid.NewSHA1(notificationNS, []byte(s.ID+"#heartbeat#"+strconv.FormatInt(now.UnixMicro(), 10))).String()
	return statusOnlyBundle(s, NotificationHeartbeat, id, now)
}

// statusOnlyBundle is a history Bundle holding only the SubscriptionStatus of type typ.
func statusOnlyBundle(s SubscriptionInfo, typ NotificationType, id string, now time.Time) (json.RawMessage, error) {
	if !s.Payload.Valid() {
		return nil, fmt.Errorf("%w: unknown payload content %q", ErrBadInput, s.Payload)
	}
	status, err := SubscriptionStatus(s, typ, id, nil)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(historyBundle{
		ResourceType: "Bundle", ID: id, Type: "history", Timestamp: fhir.ExactInstant(now),
		Entry: []historyEntry{{
			FullURL:  "urn:uuid:" + id,
			Resource: status,
			Request:  historyRequest{Method: "GET", URL: s.ref("Subscription", s.ID) + "/$status"},
			Response: historyResponse{Status: "200"},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("mapping: encode %s: %w", typ, err)
	}
	return out, nil
}

// NotificationBundle renders one rest-hook notification (backport style, R4): a Bundle of type history whose
// first entry is the SubscriptionStatus (type event-notification, events-since-subscription-start =
// eventNumber, one notification-event numbered eventNumber whose focus is the referral's Task, as an absolute
// reference under s.BaseURL). With PayloadFullResource the second entry is the Task as TaskFor renders it
// (request POST Task for version 1, PUT Task/{id} after). The Bundle id is derived from (s.ID, eventNumber),
// so rendering the same event twice gives the same bytes. It is pure.
func NotificationBundle(s SubscriptionInfo, r Referral, eventNumber int64, now time.Time) (json.RawMessage, error) {
	if eventNumber <= 0 {
		return nil, fmt.Errorf("%w: event numbers start at 1", ErrBadInput)
	}
	if !s.Payload.Valid() {
		return nil, fmt.Errorf("%w: unknown payload content %q", ErrBadInput, s.Payload)
	}
	if r.Record.TaskID == "" {
		return nil, fmt.Errorf("%w: referral without a task id", ErrBadInput)
	}
	s.EventsSinceStart = eventNumber
	id := uuid.NewSHA1(notificationNS, []byte(s.ID+"#"+strconv.FormatInt(eventNumber, 10))).String()
	taskRef := s.ref("Task", r.Record.TaskID)
	status, err := SubscriptionStatus(s, NotificationEvent, id, []NotificationEventInfo{
		{Number: eventNumber, Timestamp: r.Record.UpdatedAt, Focus: taskRef},
	})
	if err != nil {
		return nil, err
	}
	statusURL := s.ref("Subscription", s.ID) + "/$status"
	b := historyBundle{
		ResourceType: "Bundle",
		ID:           id,
		Type:         "history",
		Timestamp:    fhir.ExactInstant(now),
		Entry: []historyEntry{{
			FullURL:  "urn:uuid:" + id,
			Resource: status,
			Request:  historyRequest{Method: "GET", URL: statusURL},
			Response: historyResponse{Status: "200"},
		}},
	}
	switch s.Payload {
	case PayloadFullResource:
		task, err := json.Marshal(TaskFor(r))
		if err != nil {
			return nil, fmt.Errorf("mapping: encode task: %w", err)
		}
		e := historyEntry{
			Resource: task,
			Request:  historyRequest{Method: "PUT", URL: "Task/" + r.Record.TaskID},
			Response: historyResponse{Status: "200", Etag: `W/"` + strconv.Itoa(r.Record.Version) + `"`,
				LastModified: fhir.ExactInstant(r.Record.UpdatedAt)},
		}
		if r.Record.Version <= 1 {
			e.Request = historyRequest{Method: "POST", URL: "Task"}
			e.Response.Status = "201"
		}
		if strings.Contains(taskRef, "://") {
			e.FullURL = taskRef
		}
		b.Entry = append(b.Entry, e)
	case PayloadIDOnly:
	}
	out, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("mapping: encode notification: %w", err)
	}
	return out, nil
}
