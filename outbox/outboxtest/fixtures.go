package outboxtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// t0 is the suite's clock origin; every time is t0 plus a whole number of microseconds.
var t0 = time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// identSystem is the ServiceRequest.identifier system of the fixtures.
const identSystem = "https://example.nhs.uk/referral-id"

// errInjected is what FailAfter hooks return.
var errInjected = errors.New("injected failure")

var (
	walks = mapping.Destination{Kind: mapping.DestinationService, ID: "frome-walks"}
	debt  = mapping.Destination{Kind: mapping.DestinationService, ID: "debt-advice"}
	sub1  = mapping.Destination{Kind: mapping.DestinationSubscription, ID: "sub-1"}
)

// intake builds a minimal valid intake number n: ids ref-00n, task-00n, sr-00n; identifier REF-00n; created
// at t0+n seconds; one referral.created message msg-00n-1 to frome-walks.
func intake(n int) mapping.Intake {
	created := at(time.Duration(n) * time.Second)
	id := fmt.Sprintf("ref-%03d", n)
	return mapping.Intake{
		Referral: mapping.Referral{
			Record: mapping.Record{
				ID:               id,
				ServiceRequestID: fmt.Sprintf("sr-%03d", n),
				TaskID:           fmt.Sprintf("task-%03d", n),
				Status:           mapping.StatusRequested,
				Version:          1,
				Service:          mapping.ServiceRef{ID: walks.ID, Name: "Frome Walking for Health"},
				Priority:         "routine",
				CreatedAt:        created,
				UpdatedAt:        created,
				Patient:          mapping.Person{NHSNumber: fmt.Sprintf("9000000%03d", n), Name: "Test Patient"},
				Referrer:         mapping.Referrer{Name: "Dr Test", ODSCode: "A81001"},
				Consent:          mapping.Consent{Recorded: true, Source: "Consent"},
			},
			PracticeODS:          "A81001",
			BusinessStatus:       mapping.BusinessQueued,
			Patient:              mapping.Reference{Reference: fmt.Sprintf("Patient/pat-%03d", n)},
			Requester:            mapping.Reference{Reference: "PractitionerRole/gp-1"},
			Owner:                mapping.Reference{Reference: "Organization/frome-walks"},
			ServiceRequestStatus: "active",
		},
		ServiceRequest: json.RawMessage(fmt.Sprintf(`{"resourceType":"ServiceRequest","id":"sr-%03d"}`, n)),
		Identifiers:    []mapping.Identifier{{System: identSystem, Value: fmt.Sprintf("REF-%03d", n)}},
		Fingerprint:    fmt.Sprintf("fp-%03d", n),
		Events: []mapping.Event{{
			ID:          fmt.Sprintf("msg-%03d-1", n),
			Type:        mapping.EventReferralCreated,
			Destination: walks,
			Payload:     json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)),
		}},
	}
}

// renamed is a fresh request for the same referral content: new referral, task, ServiceRequest and message
// ids (as a second HTTP request would get), same identifiers and fingerprint.
func renamed(in mapping.Intake, suffix string) mapping.Intake {
	out := in
	r := &out.Referral.Record
	r.ID += suffix
	r.TaskID += suffix
	r.ServiceRequestID += suffix
	out.Events = slices.Clone(in.Events)
	for i := range out.Events {
		out.Events[i].ID += suffix
	}
	return out
}

// toService routes the intake (record and messages) to dest.
func toService(in mapping.Intake, dest mapping.Destination) mapping.Intake {
	in.Referral.Record.Service.ID = dest.ID
	in.Events = slices.Clone(in.Events)
	for i := range in.Events {
		in.Events[i].Destination = dest
	}
	return in
}

// event makes a message for an update.
func event(id string, typ mapping.EventType, dest mapping.Destination) mapping.Event {
	return mapping.Event{ID: id, Type: typ, Destination: dest, Payload: json.RawMessage(`{"id":"` + id + `"}`)}
}

// stored is what a store returns for a created intake.
func stored(in mapping.Intake) outbox.Referral {
	r := in.Referral
	r.Record.Version = 1
	if r.Record.UpdatedAt.IsZero() {
		r.Record.UpdatedAt = r.Record.CreatedAt
	}
	return outbox.Referral{Referral: r, ServiceRequest: in.ServiceRequest, Identifiers: in.Identifiers,
		Fingerprint: in.Fingerprint}
}

var cmpOpts = []cmp.Option{cmpopts.EquateEmpty()}

func diff(t *testing.T, what string, got, want any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpOpts...); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}

func create(t *testing.T, s outbox.Store, in mapping.Intake) outbox.Referral {
	t.Helper()
	res, err := s.CreateReferral(t.Context(), in)
	if err != nil {
		t.Fatalf("CreateReferral(%s): %v", in.Referral.Record.ID, err)
	}
	if !res.Created {
		t.Fatalf("CreateReferral(%s): Created = false, want true", in.Referral.Record.ID)
	}
	return res.Referral
}

func get(t *testing.T, s outbox.Store, id string) outbox.Referral {
	t.Helper()
	r, err := s.GetReferral(t.Context(), id)
	if err != nil {
		t.Fatalf("GetReferral(%s): %v", id, err)
	}
	return r
}

func search(t *testing.T, s outbox.Store, q outbox.ReferralQuery) ([]string, *outbox.Cursor) {
	t.Helper()
	rs, next, err := s.SearchReferrals(t.Context(), q)
	if err != nil {
		t.Fatalf("SearchReferrals(%+v): %v", q, err)
	}
	ids := []string{}
	for _, r := range rs {
		ids = append(ids, r.Record.ID)
	}
	return ids, next
}

func list(t *testing.T, s outbox.Store, q outbox.MessageQuery) []outbox.Message {
	t.Helper()
	ms, err := s.ListMessages(t.Context(), q)
	if err != nil {
		t.Fatalf("ListMessages(%+v): %v", q, err)
	}
	return ms
}

func message(t *testing.T, s outbox.Store, id string) outbox.MessageDetail {
	t.Helper()
	d, err := s.GetMessage(t.Context(), id)
	if err != nil {
		t.Fatalf("GetMessage(%s): %v", id, err)
	}
	return d
}

func claim(t *testing.T, s outbox.Store, owner string, now time.Time, lease time.Duration, limit int) []outbox.Message {
	t.Helper()
	ms, err := s.ClaimMessages(t.Context(), owner, now, lease, limit, outbox.ClaimFilter{})
	if err != nil {
		t.Fatalf("ClaimMessages(%s): %v", owner, err)
	}
	return ms
}

func ids(ms []outbox.Message) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// complete reports an attempt by owner on message id.
func complete(t *testing.T, s outbox.Store, id, owner string, now time.Time, st outbox.MessageState, next time.Time, code int, msg string) {
	t.Helper()
	err := s.CompleteAttempt(t.Context(), id, now, outbox.AttemptResult{
		Attempt:       outbox.Attempt{MessageID: id, StartedAt: now, Latency: 1500 * time.Microsecond, StatusCode: code, Error: msg},
		Owner:         owner,
		State:         st,
		NextAttemptAt: next,
	})
	if err != nil {
		t.Fatalf("CompleteAttempt(%s, %s): %v", id, st, err)
	}
}

// kill claims id and reports a permanent failure, leaving the message dead.
func kill(t *testing.T, s outbox.Store, id string, now time.Time) {
	t.Helper()
	ms := claim(t, s, "killer", now, time.Minute, 100)
	if !slices.Contains(ids(ms), id) {
		t.Fatalf("kill: %s not claimable at %v (claimed %v)", id, now, ids(ms))
	}
	complete(t, s, id, "killer", now, outbox.StateDead, time.Time{}, 400, "HTTP 400")
	if _, err := s.ReleaseMessages(t.Context(), "killer", now); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want %v", what, err, target)
	}
}

// drain empties the Changes channel.
func drain(s outbox.Store) {
	select {
	case <-s.Changes():
	default:
	}
}

// signalled reports whether Changes holds a signal (and consumes it).
func signalled(s outbox.Store) bool {
	select {
	case <-s.Changes():
		return true
	default:
		return false
	}
}

// assertNoTrace proves that nothing of in was written: no referral by any id, no identifier, no message,
// no timeline, and the identifier still free.
func assertNoTrace(t *testing.T, s outbox.Store, in mapping.Intake) {
	t.Helper()
	ctx := t.Context()
	r := in.Referral.Record
	for _, id := range []string{r.ID, r.TaskID, r.ServiceRequestID} {
		if _, err := s.GetReferral(ctx, id); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("GetReferral(%s) after failed create: %v, want ErrNotFound", id, err)
		}
	}
	for _, ident := range in.Identifiers {
		if got, _ := search(t, s, outbox.ReferralQuery{Identifier: &ident}); len(got) != 0 {
			t.Errorf("identifier %v still finds %v", ident, got)
		}
	}
	if ms := list(t, s, outbox.MessageQuery{ReferralID: r.ID}); len(ms) != 0 {
		t.Errorf("messages of failed create: %v", ids(ms))
	}
	for _, e := range in.Events {
		if _, err := s.GetMessage(ctx, e.ID); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("GetMessage(%s) after failed create: %v, want ErrNotFound", e.ID, err)
		}
	}
	if _, err := s.Timeline(ctx, r.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("Timeline(%s) after failed create: %v, want ErrNotFound", r.ID, err)
	}
}
