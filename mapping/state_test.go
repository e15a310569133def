package mapping

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
)

// The state machine of docs/design.md#state-machine, written out independently of state.go.
var (
	specCommunity = map[TaskStatus][]TaskStatus{
		StatusRequested:  {StatusReceived, StatusAccepted, StatusRejected},
		StatusReceived:   {StatusAccepted, StatusRejected},
		StatusAccepted:   {StatusInProgress},
		StatusInProgress: {StatusOnHold, StatusCompleted, StatusFailed},
		StatusOnHold:     {StatusInProgress, StatusCompleted, StatusFailed},
	}
	specTerminal = []TaskStatus{StatusRejected, StatusCompleted, StatusFailed, StatusCancelled, StatusEnteredInError}
)

// specMoves is what actor by may do from status from according to docs/design.md#state-machine.
func specMoves(from TaskStatus, by Actor) []TaskStatus {
	switch by {
	case ActorCommunity:
		return specCommunity[from]
	case ActorRequester:
		if slices.Contains(specTerminal, from) {
			return nil
		}
		return []TaskStatus{StatusCancelled, StatusEnteredInError}
	case ActorSystem:
	}
	return nil
}

// specSets is every status actor by ever sets.
func specSets(by Actor, to TaskStatus) bool {
	for _, from := range AllStatuses() {
		if slices.Contains(specMoves(from, by), to) {
			return true
		}
	}
	return false
}

func TestEnumsWalk(t *testing.T) {
	t.Parallel()
	if got := len(AllStatuses()); got != 10 {
		t.Errorf("AllStatuses has %d values, want 10", got)
	}
	for _, s := range AllStatuses() {
		if !s.Valid() {
			t.Errorf("%q not valid", s)
		}
		if got, want := s.Terminal(), slices.Contains(specTerminal, s); got != want {
			t.Errorf("%q Terminal = %v, want %v", s, got, want)
		}
		if p, ok := ParseTaskStatus(string(s)); !ok || p != s {
			t.Errorf("ParseTaskStatus(%q) = %q, %v", s, p, ok)
		}
	}
	for _, bad := range []string{"", "draft", "ready", "Accepted", "in progress"} {
		if _, ok := ParseTaskStatus(bad); ok {
			t.Errorf("ParseTaskStatus(%q) ok", bad)
		}
		if TaskStatus(bad).Terminal() {
			t.Errorf("%q terminal", bad)
		}
	}
	for _, a := range AllActors() {
		if !a.Valid() {
			t.Errorf("actor %q not valid", a)
		}
	}
	if Actor("").Valid() || Actor("admin").Valid() {
		t.Error("unknown actor valid")
	}
	for _, b := range AllBusinessStatuses() {
		if !b.Valid() || b.Text() == "" {
			t.Errorf("business status %q: Valid %v Text %q", b, b.Valid(), b.Text())
		}
	}
	if BusinessStatus("").Valid() || BusinessStatus("lost").Valid() {
		t.Error("unknown business status valid")
	}
	for _, e := range AllEventTypes() {
		if !e.Valid() {
			t.Errorf("event type %q not valid", e)
		}
	}
	if EventType("").Valid() || EventType("referral.deleted").Valid() {
		t.Error("unknown event type valid")
	}
}

// TestCanTransitionExhaustive checks every (from, to, actor) triple against docs/design.md#state-machine.
func TestCanTransitionExhaustive(t *testing.T) {
	t.Parallel()
	n := 0
	for _, from := range AllStatuses() {
		for _, to := range AllStatuses() {
			for _, by := range AllActors() {
				n++
				err := CanTransition(from, to, by)
				allowed := specMoves(from, by)
				switch {
				case from == to && specSets(by, to):
					if !errors.Is(err, ErrNoChange) {
						t.Errorf("%s→%s by %s: %v, want ErrNoChange", from, to, by, err)
					}
				case slices.Contains(allowed, to):
					if err != nil {
						t.Errorf("%s→%s by %s: %v, want allowed", from, to, by, err)
					}
				default:
					var te *TransitionError
					if !errors.As(err, &te) || !errors.Is(err, ErrInvalidTransition) {
						t.Errorf("%s→%s by %s: %v, want *TransitionError", from, to, by, err)
						continue
					}
					if !cmp.Equal(sorted(te.Allowed), sorted(allowed)) {
						t.Errorf("%s→%s by %s: Allowed %v, want %v", from, to, by, te.Allowed, allowed)
					}
					msg := err.Error()
					if !strings.Contains(msg, "is "+string(from)) {
						t.Errorf("message %q does not name the current status", msg)
					}
					for _, s := range allowed {
						if !strings.Contains(msg, string(s)) {
							t.Errorf("message %q does not name allowed move %s", msg, s)
						}
					}
				}
			}
		}
	}
	if n != 10*10*3 {
		t.Errorf("walked %d triples", n)
	}
}

// kind classifies a state-machine result.
func kind(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNoChange):
		return "no change"
	case errors.Is(err, ErrInvalidTransition):
		return "refused"
	}
	return "other: " + err.Error()
}

func sorted(s []TaskStatus) []TaskStatus {
	out := slices.Clone(s)
	slices.Sort(out)
	if out == nil {
		out = []TaskStatus{}
	}
	return out
}

func TestCanTransitionInvalidValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		from, to TaskStatus
		by       Actor
	}{
		{"", StatusAccepted, ActorCommunity},
		{StatusRequested, "", ActorCommunity},
		{StatusRequested, StatusAccepted, ""},
		{"draft", StatusAccepted, ActorCommunity},
		{StatusRequested, "ready", ActorCommunity},
		{StatusRequested, StatusAccepted, "admin"},
		{"", "", ""},
	} {
		err := CanTransition(tc.from, tc.to, tc.by)
		if !errors.Is(err, ErrInvalidTransition) || !strings.Contains(err.Error(), "unknown") {
			t.Errorf("CanTransition(%q, %q, %q) = %v", tc.from, tc.to, tc.by, err)
		}
	}
}

// referralAt returns the walking-group referral moved to status s (bypassing the state machine).
func referralAt(t testing.TB, s TaskStatus) Referral {
	t.Helper()
	in, err := buildFixture(t, loadFixture(t, fixturesDir+"/walking-group-performer.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := in.Referral
	r.Record.Status = s
	r.Record.Version = 3
	return r
}

var later = testNow.Add(26 * time.Hour)

// TestApplyStatusExhaustive applies every (from, to, actor) change with a reason and checks it agrees with
// CanTransition and never changes what it must not.
func TestApplyStatusExhaustive(t *testing.T) {
	t.Parallel()
	for _, from := range AllStatuses() {
		cur := referralAt(t, from)
		for _, to := range AllStatuses() {
			for _, by := range AllActors() {
				change := StatusChange{To: to, By: by, Reason: "a reason", ServiceHasWebhook: true, ServiceHasReferral: true, NewID: counterIDs()}
				next, events, err := ApplyStatus(cur, change, later)
				want := CanTransition(from, to, by)
				if kind(err) != kind(want) {
					t.Errorf("%s→%s by %s: ApplyStatus %v, CanTransition %v", from, to, by, err, want)
				}
				if err != nil {
					if !cmp.Equal(next, cur) || events != nil {
						t.Errorf("%s→%s by %s: refused change altered the referral or emitted events", from, to, by)
					}
					continue
				}
				if next.Record.Status != to || next.Record.Version != cur.Record.Version || !next.Record.UpdatedAt.Equal(cur.Record.UpdatedAt) {
					t.Errorf("%s→%s by %s: status %s version %d updated %v", from, to, by, next.Record.Status, next.Record.Version, next.Record.UpdatedAt)
				}
				wantEvents := 0
				if by == ActorRequester {
					wantEvents = 1
				}
				if len(events) != wantEvents {
					t.Errorf("%s→%s by %s: %d events, want %d", from, to, by, len(events), wantEvents)
				}
			}
		}
	}
}

// ruleKey is a neutral issue as a test compares it: the rule and the field.
type ruleKey struct {
	Code  fault.Code
	Field string
}

func ruleKeysOf(issues []fault.Issue) []ruleKey {
	out := make([]ruleKey, 0, len(issues))
	for _, is := range issues {
		out = append(out, ruleKey{is.Code, is.Field})
	}
	return out
}

func TestApplyStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		from       TaskStatus
		change     StatusChange
		wantErr    []ruleKey // fault.Rule issues (422)
		wantStatus TaskStatus
		wantReason string
		wantSR     string
		wantEvent  EventType // "" none
	}{
		{name: "accept", from: StatusRequested, change: StatusChange{To: StatusAccepted, By: ActorCommunity}, wantStatus: StatusAccepted, wantSR: "active"},
		{name: "acknowledge", from: StatusRequested, change: StatusChange{To: StatusReceived, By: ActorCommunity, Reason: "  thanks  "}, wantStatus: StatusReceived, wantReason: "thanks", wantSR: "active"},
		{name: "reject needs a reason", from: StatusReceived, change: StatusChange{To: StatusRejected, By: ActorCommunity, Reason: "   "},
			wantErr: []ruleKey{{CodeReasonRequired, FieldReason}}},
		{name: "reject", from: StatusReceived, change: StatusChange{To: StatusRejected, By: ActorCommunity, Reason: "Outside our area"},
			wantStatus: StatusRejected, wantReason: "Outside our area", wantSR: "active"},
		{name: "on-hold needs a reason", from: StatusInProgress, change: StatusChange{To: StatusOnHold, By: ActorCommunity},
			wantErr: []ruleKey{{CodeReasonRequired, FieldReason}}},
		{name: "failed needs a reason", from: StatusInProgress, change: StatusChange{To: StatusFailed, By: ActorCommunity},
			wantErr: []ruleKey{{CodeReasonRequired, FieldReason}}},
		{name: "cancel needs a reason", from: StatusAccepted, change: StatusChange{To: StatusCancelled, By: ActorRequester},
			wantErr: []ruleKey{{CodeReasonRequired, FieldReason}}},
		{name: "outcome only with completed or failed", from: StatusRequested, change: StatusChange{To: StatusAccepted, By: ActorCommunity, Outcome: &Outcome{Text: "x"}},
			wantErr: []ruleKey{{CodeOutcomeNotAllowed, FieldOutcome}}},
		{name: "empty outcome", from: StatusInProgress, change: StatusChange{To: StatusCompleted, By: ActorCommunity, Outcome: &Outcome{Text: " ", Code: &Concept{}}},
			wantErr: []ruleKey{{CodeOutcomeRequired, FieldOutcome}}},
		{name: "both problems at once", from: StatusInProgress, change: StatusChange{To: StatusOnHold, By: ActorCommunity, Outcome: &Outcome{Text: "x"}},
			wantErr: []ruleKey{{CodeReasonRequired, FieldReason}, {CodeOutcomeNotAllowed, FieldOutcome}}},
		{name: "complete with outcome", from: StatusInProgress, change: StatusChange{To: StatusCompleted, By: ActorCommunity, Outcome: &Outcome{Text: "Walks weekly with the Tuesday group"}},
			wantStatus: StatusCompleted, wantSR: "completed"},
		{name: "resume clears the hold reason", from: StatusOnHold, change: StatusChange{To: StatusInProgress, By: ActorCommunity},
			wantStatus: StatusInProgress, wantSR: "active"},
		{name: "cancel tells a webhook service that has the referral", from: StatusAccepted,
			change:     StatusChange{To: StatusCancelled, By: ActorRequester, Reason: "Patient moved away", ServiceHasWebhook: true, ServiceHasReferral: true},
			wantStatus: StatusCancelled, wantReason: "Patient moved away", wantSR: "revoked", wantEvent: EventReferralCancelled},
		{name: "cancel: created never delivered", from: StatusRequested,
			change:     StatusChange{To: StatusCancelled, By: ActorRequester, Reason: "Sent in error", ServiceHasWebhook: true},
			wantStatus: StatusCancelled, wantReason: "Sent in error", wantSR: "revoked"},
		{name: "cancel: pull-only service", from: StatusRequested,
			change:     StatusChange{To: StatusCancelled, By: ActorRequester, Reason: "Sent in error", ServiceHasReferral: true},
			wantStatus: StatusCancelled, wantReason: "Sent in error", wantSR: "revoked"},
		{name: "entered-in-error tells the service", from: StatusInProgress,
			change:     StatusChange{To: StatusEnteredInError, By: ActorRequester, ServiceHasWebhook: true, ServiceHasReferral: true},
			wantStatus: StatusEnteredInError, wantSR: "entered-in-error", wantEvent: EventReferralUpdated},
		{name: "community moves are not echoed", from: StatusInProgress,
			change:     StatusChange{To: StatusCompleted, By: ActorCommunity, ServiceHasWebhook: true, ServiceHasReferral: true},
			wantStatus: StatusCompleted, wantSR: "completed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cur := referralAt(t, tt.from)
			cur.Record.StatusReason = "earlier reason"
			tt.change.NewID = counterIDs()
			next, events, err := ApplyStatus(cur, tt.change, later)
			if tt.wantErr != nil {
				var fe *fault.Error
				if !errors.As(err, &fe) || fe.Kind != fault.Rule {
					t.Fatalf("err = %v, want a fault.Rule error (422)", err)
				}
				if diff := cmp.Diff(tt.wantErr, ruleKeysOf(fe.Issues)); diff != "" {
					t.Errorf("issues (-want +got):\n%s", diff)
				}
				if !cmp.Equal(next, cur) {
					t.Error("refused change altered the referral")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if next.Record.Status != tt.wantStatus || next.Record.StatusReason != tt.wantReason || next.ServiceRequestStatus != tt.wantSR {
				t.Errorf("status %q reason %q SR %q; want %q %q %q", next.Record.Status, next.Record.StatusReason, next.ServiceRequestStatus, tt.wantStatus, tt.wantReason, tt.wantSR)
			}
			if o := tt.change.Outcome; o != nil && !cmp.Equal(next.Record.Outcome, o) {
				t.Errorf("outcome = %+v, want %+v", next.Record.Outcome, o)
			}
			if next.Record.Version != cur.Record.Version {
				t.Error("ApplyStatus must leave the version to the store")
			}
			if tt.wantEvent == "" {
				if len(events) != 0 {
					t.Errorf("events = %+v, want none", events)
				}
				return
			}
			if len(events) != 1 {
				t.Fatalf("%d events, want 1", len(events))
			}
			e := events[0]
			if e.Type != tt.wantEvent || e.Destination != (Destination{Kind: DestinationService, ID: "frome-walks"}) || e.ID == "" {
				t.Errorf("event = %+v", e)
			}
			var body webhookBody
			if err := json.Unmarshal(e.Payload, &body); err != nil {
				t.Fatal(err)
			}
			if body.Type != tt.wantEvent || body.Timestamp != fhir.ExactInstant(later) {
				t.Errorf("payload type %q timestamp %q", body.Type, body.Timestamp)
			}
			want := IdentifiersOnly(next.Record)
			want.Version = cur.Record.Version + 1
			want.UpdatedAt = later
			if !cmp.Equal(want.Patient, Person{}) || want.Referrer != (Referrer{}) || len(want.Reasons) > 0 {
				t.Errorf("a later event carries personal data: %+v", want)
			}
			if diff := cmp.Diff(want, body.Data); diff != "" {
				t.Errorf("payload record (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyStatusNoChangeAndBadInput(t *testing.T) {
	t.Parallel()
	cur := referralAt(t, StatusAccepted)
	next, events, err := ApplyStatus(cur, StatusChange{To: StatusAccepted, By: ActorCommunity}, later)
	if !errors.Is(err, ErrNoChange) || !cmp.Equal(next, cur) || events != nil {
		t.Errorf("repeat accept: %v %v", err, events)
	}
	_, _, err = ApplyStatus(cur, StatusChange{To: StatusCancelled, By: ActorRequester, Reason: "r", ServiceHasWebhook: true, ServiceHasReferral: true}, later)
	if !errors.Is(err, ErrBadInput) {
		t.Errorf("event without NewID: %v", err)
	}
	_, _, err = ApplyStatus(cur, StatusChange{To: StatusCancelled, By: ActorCommunity, Reason: "r"}, later)
	var te *TransitionError
	if !errors.As(err, &te) || te.From != StatusAccepted {
		t.Errorf("community cancel: %v", err)
	}
}

func TestMarkBusinessStatus(t *testing.T) {
	t.Parallel()
	cur := referralAt(t, StatusRequested) // queued
	tests := []struct {
		bs          BusinessStatus
		wantChanged bool
		want        BusinessStatus
	}{
		{BusinessQueued, false, BusinessQueued},
		{BusinessDelivered, true, BusinessDelivered},
		{BusinessDeliveryFailed, true, BusinessDeliveryFailed},
		{BusinessAwaitingPickup, true, BusinessAwaitingPickup},
		{BusinessOverdue, true, BusinessOverdue},
		{"", true, ""},
		{"lost", false, BusinessQueued},
	}
	for _, tt := range tests {
		next, changed := MarkBusinessStatus(cur, tt.bs)
		if changed != tt.wantChanged || next.BusinessStatus != tt.want {
			t.Errorf("MarkBusinessStatus(%q) = %q, %v; want %q, %v", tt.bs, next.BusinessStatus, changed, tt.want, tt.wantChanged)
		}
		if !cmp.Equal(next.Record, cur.Record) {
			t.Errorf("MarkBusinessStatus(%q) changed the record", tt.bs)
		}
	}
}
