package mapping

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/socialrx/socialrx/fault"
)

// Consent withdrawal (docs/design.md#consent-withdrawal): the GP system records that the person withdrew their
// consent by cancelling the referral's Task with the coded reason below. socialrx then erases the person's data
// from everything it keeps, tells a service that already received the referral to delete it, and keeps the
// referral as a stub.

// CancelReasonSystem is the code system of the coded reasons a GP may give when it cancels a Task.
const CancelReasonSystem = "https://socialrx.dev/fhir/CodeSystem/cancel-reason"

// ConsentWithdrawnCode is the CancelReasonSystem code that says the person withdrew their consent.
const ConsentWithdrawnCode = "consent-withdrawn"

// ConsentWithdrawnText is the display of ConsentWithdrawnCode and the stub's status reason.
const ConsentWithdrawnText = "Consent withdrawn"

// EventReferralWithdrawn is the webhook event telling a community service that already received a referral
// that the person withdrew their consent: it carries the referral's identifiers only, and asks the service to
// delete everything it holds about the person for that referral.
const EventReferralWithdrawn EventType = "referral.withdrawn"

// ActionDeletePersonalData is the action a referral.withdrawn event asks of the service.
const ActionDeletePersonalData = "delete-personal-data"

// ErasedNoteText replaces the text of every Task note of a referral whose person withdrew their consent (a
// note may name the person); its author and time stay.
const ErasedNoteText = "(removed: consent withdrawn)"

// WithdrawConsent applies a consent withdrawal (change.ConsentWithdrawn, by the requesting GP) to cur: a
// referral still open is cancelled (the state machine's requester move, ServiceRequest revoked), a final one
// keeps its status; either way the referral becomes a stub (ScrubReferral) whose status reason is
// ConsentWithdrawnText, and, when the service has a webhook, one referral.withdrawn event (IdentifiersOnly,
// action ActionDeletePersonalData) is returned for the store to send or drop (ConsentWithdrawal decides, from
// what the service already received). Repeating it is ErrNoChange. Only ActorRequester may withdraw consent.
func WithdrawConsent(cur Referral, change StatusChange, now time.Time) (Referral, []Event, error) {
	if change.By != ActorRequester {
		return cur, nil, fault.New(fault.Forbidden, "consent_withdrawal", "status",
			"only the referring practice records that the person withdrew their consent")
	}
	if cur.Record.ConsentWithdrawn {
		return cur, nil, ErrNoChange
	}
	next := ScrubReferral(cur)
	if !cur.Record.Status.Terminal() {
		next.Record.Status = StatusCancelled
		next.ServiceRequestStatus = "revoked"
	}
	next.Record.StatusReason = ConsentWithdrawnText
	if !change.ServiceHasWebhook {
		return next, nil, nil
	}
	if change.NewID == nil {
		return cur, nil, fmt.Errorf("%w: no id generator for the %s event", ErrBadInput, EventReferralWithdrawn)
	}
	snapshot := next.Record
	snapshot.Version = cur.Record.Version + 1
	snapshot.UpdatedAt = now.UTC()
	payload, err := json.Marshal(webhookBody{Type: EventReferralWithdrawn, Timestamp: now.UTC().Format(time.RFC3339Nano),
		Data: IdentifiersOnly(snapshot), Action: ActionDeletePersonalData})
	if err != nil {
		return cur, nil, fmt.Errorf("mapping: webhook payload: %w", err)
	}
	return next, []Event{{ID: change.NewID(), Type: EventReferralWithdrawn,
		Destination: Destination{Kind: DestinationService, ID: cur.Record.Service.ID}, Payload: payload}}, nil
}

// ScrubReferral is r with every personal field erased: the person (Record.Patient and the Task's subject
// reference), the clinical reasons, needs and the GP's notes, the text of every Task note; the consent is
// recorded as withdrawn (status inactive, Record.ConsentWithdrawn). What identifies the referral, its state,
// the referrer, the service and the outcome stay, so that the service's and the GP's records still make
// sense. It is pure and idempotent.
func ScrubReferral(r Referral) Referral {
	out := ExpireReferral(r)
	out.Record.Consent = Consent{Recorded: r.Record.Consent.Recorded, Status: "inactive", Source: r.Record.Consent.Source}
	out.Record.ConsentWithdrawn = true
	return out
}

// ExpireReferral is r with every personal field erased, as retention does to a referral closed long ago: the
// person (Record.Patient and the Task's subject reference), the clinical reasons, needs and the GP's notes,
// the text of every Task note. Identifiers, state, referrer, service, consent and outcome stay. It is pure and
// idempotent.
func ExpireReferral(r Referral) Referral {
	out := r
	out.Record.Patient = Person{}
	out.Record.Reasons, out.Record.Needs, out.Record.Notes, out.Record.SupportNeeds = nil, "", nil, nil
	if r.Record.Route != nil {
		route := *r.Record.Route
		route.Needs = nil
		out.Record.Route = &route
	}
	out.Patient = Reference{}
	out.TaskNotes = nil
	for _, n := range r.TaskNotes {
		n.Text = ErasedNoteText
		out.TaskNotes = append(out.TaskNotes, n)
	}
	if r.Record.Outcome != nil {
		o := *r.Record.Outcome
		out.Record.Outcome = &o
	}
	return out
}

// ConsentWithdrawal decides what a consent withdrawal does to the referral's messages to its community
// service, from the facts of every message already written to that service (any type, oldest first): every
// message not yet sent (pending or dead) is withdrawn (it carries the person's data and must never reach the
// service now); the referral.withdrawn event among events is sent only when the service received something
// (a message delivered, or in flight: it may be arriving as we speak), else dropped. Other events pass.
func ConsentWithdrawal(events []Event, facts []MessageFact) (send []Event, withdraw []string) {
	reached := false
	for _, f := range facts {
		switch f.Progress {
		case ProgressUnsent:
			if !slices.Contains(withdraw, f.ID) {
				withdraw = append(withdraw, f.ID)
			}
		case ProgressInFlight, ProgressDelivered:
			reached = true
		case ProgressWithdrawn:
		}
	}
	for _, e := range events {
		if e.Type == EventReferralWithdrawn && e.Destination.Kind == DestinationService && !reached {
			continue
		}
		send = append(send, e)
	}
	return send, withdraw
}

// ScrubPayload returns a stored outbox payload of a referral whose person withdrew their consent with the
// person's data erased: a community webhook keeps its type and timestamp and carries the record's identifiers
// only; a Subscription notification Bundle keeps its shape, each Task in it losing its subject and its notes'
// texts. Anything else (and a payload that is not such JSON) is returned unchanged, so that the call is safe
// on every message of the referral.
func ScrubPayload(typ EventType, payload []byte) []byte {
	switch typ {
	case EventReferralCreated, EventReferralCancelled, EventReferralUpdated, EventReferralWithdrawn:
		var body webhookBody
		if json.Unmarshal(payload, &body) != nil {
			return payload
		}
		body.Data = IdentifiersOnly(ExpireReferral(Referral{Record: body.Data}).Record)
		out, err := json.Marshal(body)
		if err != nil {
			return payload
		}
		return out
	case EventNotification:
		var b map[string]any
		d := json.NewDecoder(bytes.NewReader(payload))
		d.UseNumber()
		if d.Decode(&b) != nil {
			return payload
		}
		entries, _ := b["entry"].([]any)
		for _, e := range entries {
			em, _ := e.(map[string]any)
			res, _ := em["resource"].(map[string]any)
			if res == nil || res["resourceType"] != "Task" {
				continue
			}
			delete(res, "for")
			notes, _ := res["note"].([]any)
			for _, n := range notes {
				if nm, ok := n.(map[string]any); ok {
					nm["text"] = ErasedNoteText
				}
			}
		}
		out, err := json.Marshal(b)
		if err != nil {
			return payload
		}
		return out
	case EventHandshake, EventHeartbeat:
	}
	return payload
}

// erasedText replaces any string of a stored ServiceRequest that holds one of the person's details.
const erasedText = "(removed: consent withdrawn)"

// ScrubServiceRequest returns the stored ServiceRequest sr of a referral whose person withdrew their consent
// with the person erased: each contained Patient becomes a bare Patient (its id only, so that references to it
// still resolve), subject loses its identifier and display, any narrative holding one of the person's details
// is dropped, and any other string holding one (a reference's display, say) is replaced. person are the
// details to look for (the record's patient before it was scrubbed); the contained Patient's own names,
// identifiers, telecoms and addresses are looked for too. What is not JSON is returned unchanged.
func ScrubServiceRequest(sr json.RawMessage, person Person) json.RawMessage {
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(sr))
	d.UseNumber()
	if d.Decode(&m) != nil {
		return sr
	}
	needles := personValues(person)
	contained, _ := m["contained"].([]any)
	for i, c := range contained {
		res, _ := c.(map[string]any)
		if res == nil || res["resourceType"] != "Patient" {
			continue
		}
		needles = append(needles, stringsIn(res, "name", "identifier", "telecom", "address", "birthDate")...)
		contained[i] = map[string]any{"resourceType": "Patient", "id": res["id"]}
	}
	if subj, ok := m["subject"].(map[string]any); ok {
		if id, ok := subj["identifier"].(map[string]any); ok {
			if v, ok := id["value"].(string); ok {
				needles = append(needles, v)
			}
		}
		delete(subj, "identifier")
		delete(subj, "display")
		if len(subj) == 0 {
			subj["display"] = erasedText // subject is required: a display-only reference says why
		}
	}
	var keep []string
	for _, n := range needles {
		if len([]rune(n)) >= 3 && !slices.Contains(keep, n) {
			keep = append(keep, n)
		}
	}
	scrubStrings(m, keep)
	out, err := json.Marshal(m)
	if err != nil {
		return sr
	}
	return out
}

// personValues are the details of p worth looking for.
func personValues(p Person) []string {
	out := []string{p.NHSNumber, p.Name, p.Phone, p.Email, p.Postcode, p.BirthDate}
	out = append(out, p.Address...)
	return out
}

// stringsIn collects every string under the named members of res (the given names and family name of each
// name, each identifier value, …).
func stringsIn(res map[string]any, keys ...string) []string {
	var out []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch x := v.(type) {
		case string:
			switch key { // codes and places many people share are not the person's
			case "system", "use", "code", "display", "city", "district", "state", "country", "prefix", "suffix", "start", "end", "url":
			default:
				out = append(out, x)
			}
		case []any:
			for _, e := range x {
				walk(e, key)
			}
		case map[string]any:
			for k, e := range x {
				walk(e, k)
			}
		}
	}
	for _, k := range keys {
		walk(res[k], k)
	}
	return out
}

// scrubStrings drops every narrative holding one of needles and replaces every other string holding one.
func scrubStrings(v any, needles []string) any {
	holds := func(s string) bool {
		return slices.ContainsFunc(needles, func(n string) bool { return bytes.Contains([]byte(s), []byte(n)) })
	}
	switch x := v.(type) {
	case string:
		if holds(x) {
			return erasedText
		}
		return x
	case []any:
		for i := range x {
			x[i] = scrubStrings(x[i], needles)
		}
		return x
	case map[string]any:
		for k, e := range x {
			if n, ok := e.(map[string]any); ok && k == "text" {
				if div, ok := n["div"].(string); ok && holds(div) {
					delete(x, k)
					continue
				}
			}
			if k == "resourceType" || k == "id" || k == "reference" || k == "system" {
				continue
			}
			x[k] = scrubStrings(e, needles)
		}
		return x
	}
	return v
}
