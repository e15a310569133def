package outboxtest

import (
	"errors"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// cancelReferral cancels referral id at now, as the server does: status cancelled, a referral.cancelled to
// walks (msg id cancelID) plus any extra events.
func cancelReferral(t *testing.T, s outbox.Store, id, cancelID string, now time.Time, extra ...mapping.Event) outbox.Referral {
	t.Helper()
	events := append([]mapping.Event{event(cancelID, mapping.EventReferralCancelled, walks)}, extra...)
	r, err := s.UpdateReferral(t.Context(), id, 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.Status = mapping.StatusCancelled
		next.Record.StatusReason = "Patient moved away"
		next.ServiceRequestStatus = "revoked"
		return next, events, nil
	})
	if err != nil {
		t.Fatalf("cancel %s: %v", id, err)
	}
	return r
}

// assertWithdrawn checks that created was retired by the cancellation that made version v of ref-001, and
// that cancelID was never written.
func assertWithdrawn(t *testing.T, s outbox.Store, r outbox.Referral, created, cancelID string, v int) {
	t.Helper()
	if r.Record.Status != mapping.StatusCancelled || r.Record.Version != v || r.BusinessStatus != "" {
		t.Errorf("cancelled referral: status %s version %d businessStatus %q; want cancelled, %d, none",
			r.Record.Status, r.Record.Version, r.BusinessStatus, v)
	}
	diff(t, "referral as stored", get(t, s, r.Record.ID).Referral, r.Referral)
	m := message(t, s, created).Message
	if m.State != outbox.StateCancelled || m.LastError != outbox.WithdrawnError || m.LeaseOwner != "" {
		t.Errorf("withdrawn %s: state %s last error %q owner %q", created, m.State, m.LastError, m.LeaseOwner)
	}
	if _, err := s.GetMessage(t.Context(), cancelID); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("GetMessage(%s) = %v, want ErrNotFound: a withdrawn referral is not cancelled at the service", cancelID, err)
	}
	for _, m := range list(t, s, outbox.MessageQuery{ReferralID: r.Record.ID}) {
		if m.Type == mapping.EventReferralCancelled {
			t.Errorf("referral.cancelled %s queued for a referral never delivered", m.ID)
		}
	}
	entries, err := s.Timeline(t.Context(), r.Record.ID)
	if err != nil {
		t.Fatal(err)
	}
	last := entries[len(entries)-1]
	if last.Version != v || last.Status != mapping.StatusCancelled || last.BusinessStatus != "" {
		t.Errorf("timeline entry %+v", last)
	}
	diff(t, "withdrawn by the cancellation", last.Withdrawn, []string{created})
	for _, e := range entries[:len(entries)-1] {
		if len(e.Withdrawn) != 0 {
			t.Errorf("version %d withdrew %v", e.Version, e.Withdrawn)
		}
	}
}

func testWithdrawPending(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	create(t, s, intake(1)) // msg-001-1 referral.created to walks, pending
	create(t, s, intake(2))
	now := at(time.Minute)
	drain(s)
	r := cancelReferral(t, s, "ref-001", "msg-001-2", now, event("msg-001-3", mapping.EventReferralUpdated, debt))
	assertWithdrawn(t, s, r, "msg-001-1", "msg-001-2", 2)
	if !signalled(s) {
		t.Error("Changes not signalled after a withdrawal")
	}
	// Other events of the same update are kept.
	if m := message(t, s, "msg-001-3").Message; m.State != outbox.StatePending {
		t.Errorf("msg-001-3: %s, want pending", m.State)
	}
	counts, _, err := s.CountMessages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[outbox.StateCancelled] != 1 || counts[outbox.StatePending] != 2 {
		t.Errorf("counts %v", counts)
	}
	diff(t, "list cancelled", ids(list(t, s, outbox.MessageQuery{States: []outbox.MessageState{outbox.StateCancelled}})),
		[]string{"msg-001-1"})

	// Never claimed; it does not block a later message of its referral and destination.
	diff(t, "claim", ids(claim(t, s, "a", now, lease, 10)), []string{"msg-002-1", "msg-001-3"})
	addEvents(t, s, "ref-001", now, event("msg-001-4", mapping.EventReferralUpdated, walks))
	if due, err := s.NextDue(ctx); err != nil || !due.Equal(now) {
		t.Errorf("NextDue = %v, %v; want %v (msg-001-4 is not held up by the cancelled head)", due, err, now)
	}
	diff(t, "claim behind a cancelled message", ids(claim(t, s, "a", now, lease, 10)), []string{"msg-001-4"})

	// Never replayed: a replay by id skips it.
	got, err := s.ReplayMessages(ctx, now, outbox.ReplayRequest{IDs: []string{"msg-001-1"}, Reason: "try", Actor: "ops"})
	if err != nil || len(got) != 0 {
		t.Errorf("replay of a cancelled message: %v, %v", ids(got), err)
	}
	if m := message(t, s, "msg-001-1").Message; m.State != outbox.StateCancelled {
		t.Errorf("after replay: %s", m.State)
	}
	// A second cancellation (already cancelled: the server makes it a no-op) would find nothing to withdraw.
}

func testWithdrawDead(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	create(t, s, intake(1))
	now := at(time.Minute)
	kill(t, s, "msg-001-1", now)
	if _, err := s.UpdateReferral(ctx, "ref-001", 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.BusinessStatus = mapping.BusinessDeliveryFailed
		return next, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	r := cancelReferral(t, s, "ref-001", "msg-001-2", now.Add(time.Second))
	assertWithdrawn(t, s, r, "msg-001-1", "msg-001-2", 3)
	if d := message(t, s, "msg-001-1"); d.Message.Attempts != 1 || len(d.Attempts) != 1 {
		t.Errorf("attempt history lost: %+v", d)
	}
	// A filtered replay of dead messages no longer finds it.
	got, err := s.ReplayMessages(ctx, now, outbox.ReplayRequest{Filter: &outbox.MessageQuery{}, Reason: "fixed", Actor: "ops"})
	if err != nil || len(got) != 0 {
		t.Errorf("filtered replay: %v, %v", ids(got), err)
	}
}

func testCancelAfterDelivery(t *testing.T, open Opener) {
	s := open(t, Options{})
	create(t, s, intake(1))
	now := at(time.Minute)
	diff(t, "claim", ids(claim(t, s, "a", now, lease, 10)), []string{"msg-001-1"})
	complete(t, s, "msg-001-1", "a", now, outbox.StateDelivered, time.Time{}, 200, "")
	r := cancelReferral(t, s, "ref-001", "msg-001-2", now.Add(time.Second))
	if r.BusinessStatus != mapping.BusinessQueued {
		t.Errorf("businessStatus %q: a cancellation that is sent keeps the transport fact", r.BusinessStatus)
	}
	if m := message(t, s, "msg-001-1").Message; m.State != outbox.StateDelivered {
		t.Errorf("delivered created: %s", m.State)
	}
	m := message(t, s, "msg-001-2").Message
	if m.State != outbox.StatePending || m.Type != mapping.EventReferralCancelled {
		t.Errorf("cancellation: %+v", m)
	}
	diff(t, "claim", ids(claim(t, s, "a", now.Add(time.Second), lease, 10)), []string{"msg-001-2"})
}

func testCancelWhileInflight(t *testing.T, open Opener) {
	s := open(t, Options{})
	create(t, s, intake(1))
	now := at(time.Minute)
	diff(t, "claim", ids(claim(t, s, "a", now, lease, 10)), []string{"msg-001-1"})
	cancelReferral(t, s, "ref-001", "msg-001-2", now.Add(time.Second))
	if m := message(t, s, "msg-001-1").Message; m.State != outbox.StateInflight {
		t.Errorf("inflight created: %s (a delivery may be under way: never withdrawn)", m.State)
	}
	if m := message(t, s, "msg-001-2").Message; m.State != outbox.StatePending {
		t.Errorf("cancellation: %s", m.State)
	}
	diff(t, "claim behind the inflight created", ids(claim(t, s, "b", now.Add(time.Second), lease, 10)), []string{})
	complete(t, s, "msg-001-1", "a", now.Add(2*time.Second), outbox.StateDelivered, time.Time{}, 200, "")
	diff(t, "claim after delivery", ids(claim(t, s, "b", now.Add(2*time.Second), lease, 10)), []string{"msg-001-2"})
}

// testCancelAfterAcknowledgement: a service that acted on the referral (read from its inbox while the
// webhook was still pending) knows it, so the cancellation is queued behind the pending referral.created.
func testCancelAfterAcknowledgement(t *testing.T, open Opener) {
	s := open(t, Options{})
	create(t, s, intake(1))
	now := at(time.Minute)
	if _, err := s.UpdateReferral(t.Context(), "ref-001", 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.Status = mapping.StatusReceived
		return next, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	cancelReferral(t, s, "ref-001", "msg-001-2", now.Add(time.Second))
	diff(t, "states", []outbox.MessageState{message(t, s, "msg-001-1").Message.State, message(t, s, "msg-001-2").Message.State},
		[]outbox.MessageState{outbox.StatePending, outbox.StatePending})
	diff(t, "claim", ids(claim(t, s, "a", now.Add(time.Second), lease, 10)), []string{"msg-001-1"})
}
