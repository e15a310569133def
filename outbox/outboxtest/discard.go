package outboxtest

import (
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// markFailed is the ReferralUpdate a discard applies in these tests (the operator's: delivery-failed).
func markFailed(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
	return outbox.MarkDeliveryFailed(cur)
}

// testDiscardMessages: pending and dead messages named by id become discarded (terminal), with the actor,
// reason and state left recorded, in one transaction with the referral's update (cause discard); inflight
// and delivered ones are left alone; a dry run writes nothing; an unknown id discards nothing.
func testDiscardMessages(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	for i := 1; i <= 4; i++ {
		create(t, s, intake(i))
	}
	now := at(time.Minute)
	kill(t, s, "msg-001-1", now)                                                                    // dead
	claim(t, s, "a", now, lease, 10)                                                                // 002, 003, 004 inflight
	complete(t, s, "msg-002-1", "a", now, outbox.StatePending, now.Add(time.Hour), 503, "HTTP 503") // pending
	complete(t, s, "msg-003-1", "a", now, outbox.StateDelivered, time.Time{}, 200, "")              // delivered
	// msg-004-1 stays inflight.
	before := get(t, s, "ref-002")
	drain(s)

	at2 := now.Add(time.Minute)
	req := outbox.DiscardRequest{IDs: []string{"msg-002-1", "msg-001-1", "msg-003-1", "msg-004-1", "msg-002-1"},
		Reason: "test patient, never send", Actor: "cli:alice", DryRun: true, Update: markFailed}
	got, err := s.DiscardMessages(ctx, at2, req)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "dry run", ids(got), []string{"msg-001-1", "msg-002-1"})
	if m := message(t, s, "msg-002-1"); m.Message.State != outbox.StatePending || m.Discard != nil {
		t.Errorf("dry run wrote: %+v", m)
	}
	if signalled(s) {
		t.Error("dry run signalled Changes")
	}

	req.DryRun = false
	got, err = s.DiscardMessages(ctx, at2, req)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "discarded", ids(got), []string{"msg-001-1", "msg-002-1"})
	for _, m := range got {
		if m.State != outbox.StateDiscarded {
			t.Errorf("returned %s in state %s", m.ID, m.State)
		}
	}
	for id, from := range map[string]outbox.MessageState{"msg-001-1": outbox.StateDead, "msg-002-1": outbox.StatePending} {
		d := message(t, s, id)
		if d.Message.State != outbox.StateDiscarded {
			t.Errorf("%s: state %s", id, d.Message.State)
		}
		diff(t, id+" discard record", d.Discard, &outbox.Discard{MessageID: id, At: at2, Actor: "cli:alice",
			Reason: "test patient, never send", FromState: from})
	}
	for id, st := range map[string]outbox.MessageState{"msg-003-1": outbox.StateDelivered, "msg-004-1": outbox.StateInflight} {
		if d := message(t, s, id); d.Message.State != st || d.Discard != nil {
			t.Errorf("%s: %s (discard %+v), want %s untouched", id, d.Message.State, d.Discard, st)
		}
	}
	if !signalled(s) {
		t.Error("Changes not signalled after a discard")
	}
	// Each referral with a discarded message now says that nothing will be delivered: one new version,
	// cause discard (the fixtures' referrals were queued).
	r := get(t, s, "ref-002")
	if r.Record.Version != before.Record.Version+1 || r.BusinessStatus != mapping.BusinessDeliveryFailed {
		t.Errorf("ref-002 after discard: version %d business %q", r.Record.Version, r.BusinessStatus)
	}
	entries, err := s.Timeline(ctx, "ref-002")
	if err != nil {
		t.Fatal(err)
	}
	if last := entries[len(entries)-1]; last.Cause != outbox.CauseDiscard || last.BusinessStatus != mapping.BusinessDeliveryFailed {
		t.Errorf("last timeline entry %+v, want cause discard", last)
	}

	// Discarded is terminal: never claimed (only msg-004-1's expired lease is), never replayed; counted, listed.
	diff(t, "claim after discard", ids(claim(t, s, "b", at2.Add(2*time.Hour), lease, 10)), []string{"msg-004-1"})
	replayed, err := s.ReplayMessages(ctx, at2, outbox.ReplayRequest{IDs: []string{"msg-001-1"}, Reason: "x", Actor: "ops"})
	if err != nil || len(replayed) != 0 {
		t.Errorf("replay of a discarded message: %v, %v", ids(replayed), err)
	}
	counts, _, err := s.CountMessages(ctx)
	if err != nil || counts[outbox.StateDiscarded] != 2 {
		t.Errorf("counts %v, %v", counts, err)
	}
	diff(t, "list discarded", ids(list(t, s, outbox.MessageQuery{States: []outbox.MessageState{outbox.StateDiscarded}})),
		[]string{"msg-001-1", "msg-002-1"})

	// Again: nothing left to discard, nothing changes.
	got, err = s.DiscardMessages(ctx, at2, outbox.DiscardRequest{IDs: []string{"msg-001-1"}, Reason: "again", Actor: "x"})
	if err != nil || len(got) != 0 {
		t.Errorf("second discard: %v, %v", ids(got), err)
	}
	if d := message(t, s, "msg-001-1"); d.Discard == nil || d.Discard.Actor != "cli:alice" {
		t.Errorf("second discard changed the record: %+v", d.Discard)
	}
	// An unknown id discards nothing at all.
	create(t, s, intake(5))
	_, err = s.DiscardMessages(ctx, at2, outbox.DiscardRequest{IDs: []string{"msg-005-1", "nope"}, Reason: "x", Actor: "ops"})
	wantErr(t, "discard of an unknown id", err, outbox.ErrNotFound)
	if m := message(t, s, "msg-005-1").Message; m.State != outbox.StatePending {
		t.Errorf("failed discard changed msg-005-1: %s", m.State)
	}
}

// testDiscardUnblocks: a discarded head no longer holds up the later messages of its referral.
func testDiscardUnblocks(t *testing.T, open Opener) {
	s := open(t, Options{})
	create(t, s, intake(1))
	addEvents(t, s, "ref-001", at(time.Minute), event("msg-001-2", mapping.EventReferralUpdated, walks))
	now := at(2 * time.Minute)
	kill(t, s, "msg-001-1", now)
	diff(t, "claim behind the dead head", ids(claim(t, s, "a", now, lease, 10)), []string{})
	if _, err := s.DiscardMessages(t.Context(), now, outbox.DiscardRequest{IDs: []string{"msg-001-1"}, Reason: "wrong patient",
		Actor: "ops"}); err != nil {
		t.Fatal(err)
	}
	diff(t, "claim after the head is discarded", ids(claim(t, s, "a", now, lease, 10)), []string{"msg-001-2"})
}
