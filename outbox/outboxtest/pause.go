package outboxtest

import (
	"errors"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// toCreatedAt is in created (and its messages due) at created.
func toCreatedAt(in mapping.Intake, created time.Time) mapping.Intake {
	in.Referral.Record.CreatedAt, in.Referral.Record.UpdatedAt = created, created
	return in
}

// pause pauses dest at now for the tests.
func pause(t *testing.T, s outbox.Store, p outbox.Pause) outbox.Pause {
	t.Helper()
	got, started, err := s.PauseDestination(t.Context(), p)
	if err != nil {
		t.Fatalf("PauseDestination(%s): %v", p.Destination, err)
	}
	if !started {
		t.Fatalf("PauseDestination(%s): started = false, want true", p.Destination)
	}
	return got
}

// testPauseHoldsClaims: while a destination is paused no claim leases its messages (pending or with an
// expired lease) and NextDue does not count them; other destinations go on; pausing again keeps the first
// pause; the pause is listed.
func testPauseHoldsClaims(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	create(t, s, intake(1))                  // walks
	create(t, s, toService(intake(2), debt)) // debt
	create(t, s, intake(3))                  // walks
	now := at(time.Minute)
	diff(t, "claim one walks message", ids(claim(t, s, "a", now, lease, 1)), []string{"msg-001-1"})

	p := outbox.Pause{Destination: walks, PausedAt: now, PausedBy: "cli:alice", Reason: "receiver down, ticket 42"}
	diff(t, "pause", pause(t, s, p), p)
	again, started, err := s.PauseDestination(ctx, outbox.Pause{Destination: walks, PausedAt: now.Add(time.Second),
		PausedBy: "cli:bob", Reason: "me too"})
	if err != nil || started {
		t.Fatalf("second pause: started %v, %v", started, err)
	}
	diff(t, "second pause returns the first", again, p)
	pauses, err := s.ListPauses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "pauses", pauses, []outbox.Pause{p})

	// Only debt is claimed, now and after walks' lease on msg-001-1 has expired.
	later := now.Add(time.Hour)
	diff(t, "claim while walks is paused", ids(claim(t, s, "b", later, lease, 10)), []string{"msg-002-1"})
	diff(t, "claim again", ids(claim(t, s, "b", later, lease, 10)), []string{})
	// NextDue names debt's lease expiry, not the earlier one of walks' msg-001-1 (paused) nor msg-003-1.
	next, err := s.NextDue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !next.Equal(later.Add(lease)) {
		t.Errorf("NextDue while walks is paused: %v, want %v (debt's lease expiry)", next, later.Add(lease))
	}
	if m := message(t, s, "msg-003-1").Message; m.State != outbox.StatePending || m.Attempts != 0 {
		t.Errorf("paused message: %s, %d attempts", m.State, m.Attempts)
	}
	// A claim filter that gives walks room does not override the pause.
	got, err := s.ClaimMessages(ctx, "c", later, lease, 10, outbox.ClaimFilter{Room: map[mapping.Destination]int{walks: 5}})
	if err != nil || len(got) != 0 {
		t.Errorf("claim with room for walks: %v, %v", ids(got), err)
	}
}

// testResumeKeepsBudgetAndOrder: resuming gives the paused time back to the waiting messages' retry budgets
// (a message created or replayed during the pause starts its budget at the resume), makes pending messages
// due at once, leaves dead ones alone, and the claim still hands out each referral's messages in order.
func testResumeKeepsBudgetAndOrder(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	create(t, s, intake(1)) // msg-001-1 created at t0+1s
	create(t, s, intake(2))
	t1 := at(time.Minute)
	claim(t, s, "a", t1, lease, 10)
	complete(t, s, "msg-001-1", "a", t1, outbox.StatePending, t1.Add(4*time.Hour), 503, "HTTP 503")
	complete(t, s, "msg-002-1", "a", t1, outbox.StateDead, time.Time{}, 410, "HTTP 410 Gone")

	pausedAt := at(10 * time.Minute)
	pause(t, s, outbox.Pause{Destination: walks, PausedAt: pausedAt, PausedBy: "ops", Reason: "down"})
	// During the pause: a new message for referral 1 (behind msg-001-1), a new referral.
	during := at(20 * time.Minute)
	addEvents(t, s, "ref-001", during, event("msg-001-2", mapping.EventReferralUpdated, walks))
	create(t, s, toCreatedAt(intake(3), during))

	if _, err := s.ResumeDestination(ctx, debt, at(30*time.Minute), "ops"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("resume of a destination that is not paused: %v, want ErrNotFound", err)
	}
	resumedAt := at(2 * time.Hour)
	drain(s)
	res, err := s.ResumeDestination(ctx, walks, resumedAt, "cli:bob")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "resumed", res, outbox.Resumed{Pause: outbox.Pause{Destination: walks, PausedAt: pausedAt, PausedBy: "ops",
		Reason: "down", ResumedAt: resumedAt, ResumedBy: "cli:bob"}, Messages: 3})
	if !signalled(s) {
		t.Error("Changes not signalled after a resume")
	}
	if pauses, err := s.ListPauses(ctx); err != nil || len(pauses) != 0 {
		t.Errorf("pauses after resume: %v, %v", pauses, err)
	}
	paused := resumedAt.Sub(pausedAt)
	for _, tc := range []struct {
		id          string
		budgetFrom  time.Time
		nextAttempt time.Time
		state       outbox.MessageState
	}{
		{"msg-001-1", at(time.Second).Add(paused), resumedAt, outbox.StatePending}, // its retry at t1+4h comes forward
		{"msg-001-2", resumedAt, during, outbox.StatePending},                      // created during the pause
		{"msg-003-1", resumedAt, during, outbox.StatePending},                      // created during the pause
		{"msg-002-1", at(2 * time.Second), at(2 * time.Second), outbox.StateDead},  // dead: untouched
	} {
		m := message(t, s, tc.id).Message
		if m.State != tc.state || !m.BudgetFrom.Equal(tc.budgetFrom) || !m.NextAttemptAt.Equal(tc.nextAttempt) {
			t.Errorf("%s after resume: state %s budget from %v next %v; want %s, %v, %v", tc.id, m.State,
				m.BudgetFrom, m.NextAttemptAt, tc.state, tc.budgetFrom, tc.nextAttempt)
		}
	}
	// In order: referral 1's second message waits for its first.
	diff(t, "claim after resume", ids(claim(t, s, "b", resumedAt, lease, 10)), []string{"msg-003-1", "msg-001-1"})
	complete(t, s, "msg-001-1", "b", resumedAt, outbox.StateDelivered, time.Time{}, 200, "")
	diff(t, "claim after the first is delivered", ids(claim(t, s, "b", resumedAt, lease, 10)), []string{"msg-001-2"})

	// The destination can be paused again (the ended pause is kept, not in force).
	pause(t, s, outbox.Pause{Destination: walks, PausedAt: resumedAt.Add(time.Minute), PausedBy: "ops", Reason: "again"})
}
