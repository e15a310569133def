package outboxtest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

const lease = 30 * time.Second

// addEvents enqueues events on a referral through UpdateReferral at now.
func addEvents(t *testing.T, s outbox.Store, id string, now time.Time, events ...mapping.Event) {
	t.Helper()
	_, err := s.UpdateReferral(t.Context(), id, 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		return cur.Referral, events, nil
	})
	if err != nil {
		t.Fatalf("UpdateReferral(%s): %v", id, err)
	}
}

func testClaimOrderPerReferral(t *testing.T, open Opener) {
	s := open(t, Options{})
	create(t, s, intake(1)) // msg-001-1 to walks at t0+1s
	addEvents(t, s, "ref-001", at(time.Minute),
		event("msg-001-2", mapping.EventReferralUpdated, walks), // same destination: waits for msg-001-1
		event("msg-001-3", mapping.EventReferralUpdated, sub1))  // another destination: independent
	now := at(2 * time.Minute)

	got := claim(t, s, "a", now, lease, 10)
	diff(t, "first claim", ids(got), []string{"msg-001-1", "msg-001-3"})
	for _, m := range got {
		if m.State != outbox.StateInflight || m.LeaseOwner != "a" || !m.LeaseUntil.Equal(now.Add(lease)) {
			t.Errorf("claimed %s: state %s owner %q until %v", m.ID, m.State, m.LeaseOwner, m.LeaseUntil)
		}
	}
	if len(got) > 0 {
		stored := message(t, s, got[0].ID).Message
		stored.PracticeODS = "A81001" // the claim reads its referral's practice with it
		diff(t, "claimed message as stored", stored, got[0])
	}
	diff(t, "claim while the head is inflight", ids(claim(t, s, "b", now, lease, 10)), []string{})
	complete(t, s, "msg-001-3", "a", now, outbox.StateDelivered, time.Time{}, 200, "")

	// A retry scheduled later keeps the second message waiting behind the first.
	retry := now.Add(5 * time.Minute)
	complete(t, s, "msg-001-1", "a", now, outbox.StatePending, retry, 503, "HTTP 503")
	diff(t, "claim before the retry is due", ids(claim(t, s, "b", now, lease, 10)), []string{})
	diff(t, "claim when the retry is due", ids(claim(t, s, "b", retry, lease, 10)), []string{"msg-001-1"})
	complete(t, s, "msg-001-1", "b", retry, outbox.StateDelivered, time.Time{}, 200, "")
	diff(t, "claim after the head is delivered", ids(claim(t, s, "b", retry, lease, 10)), []string{"msg-001-2"})
}

func testClaimDeadBlocks(t *testing.T, open Opener) {
	s := open(t, Options{})
	create(t, s, intake(1))
	create(t, s, intake(2))
	addEvents(t, s, "ref-001", at(time.Minute), event("msg-001-2", mapping.EventReferralUpdated, walks))
	now := at(2 * time.Minute)
	kill(t, s, "msg-001-1", now)

	// The dead head blocks its referral's next message, not the other referral.
	diff(t, "claim behind a dead head", ids(claim(t, s, "a", now, lease, 10)), []string{"msg-002-1"})
	if _, err := s.ReplayMessages(t.Context(), now, outbox.ReplayRequest{IDs: []string{"msg-001-1"}, Reason: "fixed", Actor: "ops"}); err != nil {
		t.Fatal(err)
	}
	diff(t, "claim after replay", ids(claim(t, s, "a", now, lease, 10)), []string{"msg-001-1"})
	complete(t, s, "msg-001-1", "a", now, outbox.StateDelivered, time.Time{}, 204, "")
	diff(t, "claim after delivery", ids(claim(t, s, "a", now, lease, 10)), []string{"msg-001-2"})
}

func testClaimAcrossReferrals(t *testing.T, open Opener) {
	s := open(t, Options{})
	for i := 1; i <= 5; i++ {
		create(t, s, intake(i))
	}
	// Created later (higher seq) but due earlier: claimed first.
	early := intake(6)
	early.Referral.Record.CreatedAt = at(500 * time.Millisecond)
	early.Referral.Record.UpdatedAt = early.Referral.Record.CreatedAt
	create(t, s, early)
	// Not due yet at now.
	future := intake(7)
	future.Referral.Record.CreatedAt = at(time.Hour)
	future.Referral.Record.UpdatedAt = future.Referral.Record.CreatedAt
	create(t, s, toService(future, debt))

	now := at(time.Minute)
	const lease = 2 * time.Hour // no lease expires in this test
	diff(t, "first claim", ids(claim(t, s, "a", now, lease, 3)), []string{"msg-006-1", "msg-001-1", "msg-002-1"})
	diff(t, "second claim", ids(claim(t, s, "b", now, lease, 10)), []string{"msg-003-1", "msg-004-1", "msg-005-1"})
	diff(t, "nothing left due", ids(claim(t, s, "c", now, lease, 10)), []string{})
	diff(t, "limit 0", ids(claim(t, s, "c", at(2*time.Hour), lease, 0)), []string{})
	diff(t, "due later", ids(claim(t, s, "c", at(time.Hour), lease, 10)), []string{"msg-007-1"})
	for _, m := range list(t, s, outbox.MessageQuery{}) {
		if m.State != outbox.StateInflight {
			t.Errorf("%s: %s, want inflight", m.ID, m.State)
		}
	}
}

// testClaimNamesPractice: a claimed message names its referral's practice (Message.PracticeODS, read with
// the message, so that the dispatcher's audit record of its delivery needs no read of its own), whichever way
// the claim goes: the dispatcher's usual claim (per-destination limits) and the other (no limits).
func testClaimNamesPractice(t *testing.T, open Opener) {
	s := open(t, Options{})
	want := map[string]string{}
	for i, ods := range []string{"A81001", "B82002", "C83003", "A81001"} {
		in := ofPractice(intake(i+1), ods, "")
		create(t, s, in)
		want[in.Events[0].ID] = ods
	}
	now := at(time.Minute)
	limited, err := s.ClaimMessages(t.Context(), "a", now, time.Hour, 2, outbox.ClaimFilter{PerDestination: 8})
	if err != nil {
		t.Fatal(err)
	}
	rest, err := s.ClaimMessages(t.Context(), "b", now, time.Hour, 10, outbox.ClaimFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(limited) + len(rest); got != len(want) {
		t.Fatalf("claimed %d messages, want %d", got, len(want))
	}
	for _, m := range append(limited, rest...) {
		if m.PracticeODS != want[m.ID] {
			t.Errorf("%s names practice %q, want %q", m.ID, m.PracticeODS, want[m.ID])
		}
	}
}

func testLeaseExpiryAndLeaseLost(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	create(t, s, intake(1))
	now := at(time.Minute)
	diff(t, "claim by a", ids(claim(t, s, "a", now, lease, 10)), []string{"msg-001-1"})
	diff(t, "claim by b before expiry", ids(claim(t, s, "b", now.Add(lease-time.Microsecond), lease, 10)), []string{})

	// a crashed (or stalled): once its lease expires, b takes the message.
	expiry := now.Add(lease)
	got := claim(t, s, "b", expiry, lease, 10)
	diff(t, "claim by b at expiry", ids(got), []string{"msg-001-1"})
	if len(got) == 1 && (got[0].LeaseOwner != "b" || !got[0].LeaseUntil.Equal(expiry.Add(lease))) {
		t.Errorf("reclaimed: owner %q until %v", got[0].LeaseOwner, got[0].LeaseUntil)
	}

	// a comes back: its attempt is recorded but changes nothing else.
	err := s.CompleteAttempt(ctx, "msg-001-1", expiry.Add(time.Second), outbox.AttemptResult{
		Attempt: outbox.Attempt{StartedAt: now, Latency: 31 * time.Second, Error: "timeout"},
		Owner:   "a",
		State:   outbox.StateDelivered,
		Update: func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			next := cur.Referral
			next.BusinessStatus = mapping.BusinessDelivered
			return next, nil, nil
		},
	})
	wantErr(t, "stale owner's CompleteAttempt", err, outbox.ErrLeaseLost)
	d := message(t, s, "msg-001-1")
	if d.Message.State != outbox.StateInflight || d.Message.LeaseOwner != "b" || d.Message.Attempts != 0 {
		t.Errorf("after lease lost: %+v", d.Message)
	}
	diff(t, "attempts after lease lost", d.Attempts, []outbox.Attempt{{MessageID: "msg-001-1", N: 1, StartedAt: now,
		Latency: 31 * time.Second, Error: "timeout"}})
	if r := get(t, s, "ref-001"); r.Record.Version != 1 || r.BusinessStatus != mapping.BusinessQueued {
		t.Errorf("lost lease's update applied: version %d business %q", r.Record.Version, r.BusinessStatus)
	}

	complete(t, s, "msg-001-1", "b", expiry.Add(2*time.Second), outbox.StateDelivered, time.Time{}, 200, "")
	d = message(t, s, "msg-001-1")
	if d.Message.State != outbox.StateDelivered || d.Message.Attempts != 1 || len(d.Attempts) != 2 || d.Attempts[1].N != 2 {
		t.Errorf("after b's delivery: %+v, attempts %+v", d.Message, d.Attempts)
	}
	// Completing again (a duplicate report) is a lost lease too.
	err = s.CompleteAttempt(ctx, "msg-001-1", expiry.Add(3*time.Second), outbox.AttemptResult{Owner: "b", State: outbox.StateDelivered})
	wantErr(t, "completing a delivered message", err, outbox.ErrLeaseLost)
	err = s.CompleteAttempt(ctx, "nope", now, outbox.AttemptResult{Owner: "b", State: outbox.StateDelivered})
	wantErr(t, "completing an unknown message", err, outbox.ErrNotFound)
}

func testCompleteAttemptStates(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	create(t, s, intake(1))
	create(t, s, intake(2))
	now := at(time.Minute)
	claim(t, s, "a", now, lease, 10)

	for _, st := range []outbox.MessageState{"", outbox.StateInflight, "bogus"} {
		if err := s.CompleteAttempt(ctx, "msg-001-1", now, outbox.AttemptResult{Owner: "a", State: st}); err == nil {
			t.Errorf("CompleteAttempt to state %q: no error", st)
		}
	}
	if err := s.CompleteAttempt(ctx, "msg-001-1", now, outbox.AttemptResult{Owner: "a", State: outbox.StatePending}); err == nil {
		t.Error("CompleteAttempt to pending without NextAttemptAt: no error")
	}
	if d := message(t, s, "msg-001-1"); len(d.Attempts) != 0 || d.Message.State != outbox.StateInflight {
		t.Errorf("invalid results wrote: %+v", d)
	}

	// Retry, then permanent failure.
	retry := now.Add(time.Minute)
	complete(t, s, "msg-001-1", "a", now, outbox.StatePending, retry, 503, "HTTP 503")
	m := message(t, s, "msg-001-1").Message
	if m.State != outbox.StatePending || !m.NextAttemptAt.Equal(retry) || m.Attempts != 1 || m.LastError != "HTTP 503" ||
		m.LeaseOwner != "" || !m.LeaseUntil.IsZero() {
		t.Errorf("after retryable failure: %+v", m)
	}
	claim(t, s, "a", retry, lease, 10)
	complete(t, s, "msg-001-1", "a", retry, outbox.StateDead, time.Time{}, 410, "HTTP 410")
	d := message(t, s, "msg-001-1")
	if d.Message.State != outbox.StateDead || d.Message.Attempts != 2 || d.Message.LastError != "HTTP 410" ||
		!d.Message.DeliveredAt.IsZero() {
		t.Errorf("after permanent failure: %+v", d.Message)
	}
	diff(t, "attempts", d.Attempts, []outbox.Attempt{
		{MessageID: "msg-001-1", N: 1, StartedAt: now, Latency: 1500 * time.Microsecond, StatusCode: 503, Error: "HTTP 503"},
		{MessageID: "msg-001-1", N: 2, StartedAt: retry, Latency: 1500 * time.Microsecond, StatusCode: 410, Error: "HTTP 410"},
	})

	// Delivery.
	complete(t, s, "msg-002-1", "a", now, outbox.StateDelivered, time.Time{}, 200, "")
	m = message(t, s, "msg-002-1").Message
	if m.State != outbox.StateDelivered || !m.DeliveredAt.Equal(now) || m.Attempts != 1 || m.LastError != "" {
		t.Errorf("after delivery: %+v", m)
	}

	// Attempt numbers continue across a replay.
	if _, err := s.ReplayMessages(ctx, retry, outbox.ReplayRequest{IDs: []string{"msg-001-1"}, Reason: "receiver fixed", Actor: "ops"}); err != nil {
		t.Fatal(err)
	}
	claim(t, s, "a", retry, lease, 10)
	complete(t, s, "msg-001-1", "a", retry.Add(time.Second), outbox.StateDelivered, time.Time{}, 200, "")
	d = message(t, s, "msg-001-1")
	if d.Message.Attempts != 3 || len(d.Attempts) != 3 || d.Attempts[2].N != 3 || d.Message.State != outbox.StateDelivered {
		t.Errorf("after replay and delivery: %+v attempts %+v", d.Message, d.Attempts)
	}
}

func testCompleteAttemptUpdate(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	create(t, s, intake(1))
	now := at(time.Minute)
	claim(t, s, "a", now, lease, 10)

	// A failing update aborts everything: no attempt, message still leased.
	errBoom := errors.New("boom")
	err := s.CompleteAttempt(ctx, "msg-001-1", now, outbox.AttemptResult{Owner: "a", State: outbox.StateDelivered,
		Update: func(outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			return mapping.Referral{}, nil, errBoom
		}})
	if !errors.Is(err, errBoom) {
		t.Errorf("failing update: %v, want %v", err, errBoom)
	}
	if d := message(t, s, "msg-001-1"); len(d.Attempts) != 0 || d.Message.State != outbox.StateInflight {
		t.Errorf("after failing update: %+v", d)
	}

	err = s.CompleteAttempt(ctx, "msg-001-1", now, outbox.AttemptResult{Owner: "a", State: outbox.StateDelivered,
		Attempt: outbox.Attempt{StatusCode: 200},
		Update: func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			next := cur.Referral
			next.BusinessStatus = mapping.BusinessDelivered
			return next, []mapping.Event{event("msg-001-2", mapping.EventReferralUpdated, sub1)}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	r := get(t, s, "ref-001")
	if r.Record.Version != 2 || r.BusinessStatus != mapping.BusinessDelivered || !r.Record.UpdatedAt.Equal(now) {
		t.Errorf("referral after delivery: version %d business %q updated %v", r.Record.Version, r.BusinessStatus, r.Record.UpdatedAt)
	}
	if d := message(t, s, "msg-001-1"); d.Message.State != outbox.StateDelivered || len(d.Attempts) != 1 ||
		!d.Attempts[0].StartedAt.Equal(now) {
		t.Errorf("message after delivery: %+v", d)
	}
	diff(t, "messages", ids(list(t, s, outbox.MessageQuery{ReferralID: "ref-001"})), []string{"msg-001-1", "msg-001-2"})
	entries, err := s.Timeline(ctx, "ref-001")
	if err != nil || len(entries) != 2 || entries[1].Cause != outbox.CauseAttempt {
		t.Errorf("timeline: %+v %v", entries, err)
	}
}

// claimedReferrals opens a store with n referrals created, their messages claimed by "a" at the time it
// returns.
func claimedReferrals(t *testing.T, open Opener, n int) (outbox.Store, time.Time) {
	s := open(t, Options{})
	for i := range n {
		create(t, s, intake(i+1))
	}
	now := at(time.Minute)
	claim(t, s, "a", now, lease, 10)
	return s, now
}

// delivered is the update a delivery to a service applies: businessStatus delivered.
func delivered(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
	next := cur.Referral
	next.BusinessStatus = mapping.BusinessDelivered
	return next, nil, nil
}

// testCompleteAttempts: a batch records each completion as CompleteAttempt would, in one transaction, and one
// completion's failure (a refused update, a lost lease, an unknown message, an invalid state) is its own: the
// others are recorded all the same.
func testCompleteAttempts(t *testing.T, open Opener) {
	s, now := claimedReferrals(t, open, 5)
	ctx := t.Context()
	errBoom := errors.New("boom")
	errs := s.CompleteAttempts(ctx, []outbox.Completion{
		{ID: "msg-001-1", Now: now, Result: outbox.AttemptResult{Owner: "a", State: outbox.StateDelivered,
			Attempt: outbox.Attempt{StatusCode: 200}, Update: delivered}},
		{ID: "msg-002-1", Now: now, Result: outbox.AttemptResult{Owner: "a", State: outbox.StateDelivered,
			Update: func(outbox.Referral) (mapping.Referral, []mapping.Event, error) {
				return mapping.Referral{}, nil, errBoom
			}}},
		{ID: "msg-003-1", Now: now, Result: outbox.AttemptResult{Owner: "b", State: outbox.StateDelivered, Update: delivered}},
		{ID: "msg-004-1", Now: now, Result: outbox.AttemptResult{Owner: "a", State: outbox.StatePending,
			NextAttemptAt: now.Add(time.Minute), Attempt: outbox.Attempt{StatusCode: 503, Error: "HTTP 503"}}},
		{ID: "nope", Now: now, Result: outbox.AttemptResult{Owner: "a", State: outbox.StateDelivered}},
		{ID: "msg-005-1", Now: now, Result: outbox.AttemptResult{Owner: "a", State: "bogus"}},
	})
	if len(errs) != 6 {
		t.Fatalf("CompleteAttempts returned %d results for 6 completions", len(errs))
	}
	if errs[0] != nil || errs[3] != nil {
		t.Errorf("the good completions failed: %v, %v", errs[0], errs[3])
	}
	if !errors.Is(errs[1], errBoom) {
		t.Errorf("refused update: %v, want %v", errs[1], errBoom)
	}
	wantErr(t, "another owner's completion in a batch", errs[2], outbox.ErrLeaseLost)
	wantErr(t, "an unknown message in a batch", errs[4], outbox.ErrNotFound)
	if errs[5] == nil {
		t.Error("an invalid state in a batch: no error")
	}
	if r := get(t, s, "ref-001"); r.Record.Version != 2 || r.BusinessStatus != mapping.BusinessDelivered {
		t.Errorf("ref-001 after the batch: version %d business %q", r.Record.Version, r.BusinessStatus)
	}
	if d := message(t, s, "msg-001-1"); d.Message.State != outbox.StateDelivered || len(d.Attempts) != 1 {
		t.Errorf("msg-001-1 after the batch: %+v", d)
	}
	if d := message(t, s, "msg-002-1"); d.Message.State != outbox.StateInflight || len(d.Attempts) != 0 {
		t.Errorf("the refused update wrote: %+v", d)
	}
	if d := message(t, s, "msg-003-1"); d.Message.State != outbox.StateInflight || len(d.Attempts) != 1 {
		t.Errorf("the lost lease: %+v (want still a's, the attempt alone recorded)", d)
	}
	if r := get(t, s, "ref-003"); r.Record.Version != 1 {
		t.Errorf("the lost lease's update applied: version %d", r.Record.Version)
	}
	if m := message(t, s, "msg-004-1").Message; m.State != outbox.StatePending || m.Attempts != 1 || m.LastError != "HTTP 503" {
		t.Errorf("the retry: %+v", m)
	}
	if d := message(t, s, "msg-005-1"); d.Message.State != outbox.StateInflight || len(d.Attempts) != 0 {
		t.Errorf("the invalid state wrote: %+v", d)
	}
	if errs := s.CompleteAttempts(ctx, nil); len(errs) != 0 {
		t.Errorf("an empty batch: %v", errs)
	}
}

// testCompleteAttemptsBatch: a batch in which every completion is valid records each as CompleteAttempt
// would, whatever its outcome (delivered with a Task version, retry, dead, lease lost), in the one
// transaction; a message's later attempt in a later batch is numbered after its first.
func testCompleteAttemptsBatch(t *testing.T, open Opener) {
	s, now := claimedReferrals(t, open, 4)
	ctx := t.Context()
	ok := func(id, owner string) outbox.Completion {
		return outbox.Completion{ID: id, Now: now, Result: outbox.AttemptResult{Owner: owner, State: outbox.StateDelivered,
			Attempt: outbox.Attempt{StatusCode: 200, Response: "thanks"}, Update: delivered}}
	}
	errs := s.CompleteAttempts(ctx, []outbox.Completion{
		ok("msg-001-1", "a"),
		{ID: "msg-002-1", Now: now, Result: outbox.AttemptResult{Owner: "a", State: outbox.StatePending,
			NextAttemptAt: now.Add(time.Minute), Attempt: outbox.Attempt{StatusCode: 503, Error: "HTTP 503"}}},
		ok("msg-003-1", "b"),
		{ID: "msg-004-1", Now: now, Result: outbox.AttemptResult{Owner: "a", State: outbox.StateDead,
			Attempt: outbox.Attempt{StatusCode: 410, Error: "HTTP 410"}}},
	})
	if len(errs) != 4 || errs[0] != nil || errs[1] != nil || errs[3] != nil {
		t.Fatalf("a batch of valid completions: %v", errs)
	}
	wantErr(t, "another owner's completion in a valid batch", errs[2], outbox.ErrLeaseLost)
	if r := get(t, s, "ref-001"); r.Record.Version != 2 || r.BusinessStatus != mapping.BusinessDelivered {
		t.Errorf("ref-001 after the batch: version %d business %q", r.Record.Version, r.BusinessStatus)
	}
	if d := message(t, s, "msg-001-1"); d.Message.State != outbox.StateDelivered || len(d.Attempts) != 1 ||
		d.Attempts[0].StatusCode != 200 || d.Attempts[0].Response != "thanks" {
		t.Errorf("msg-001-1 after the batch: %+v", d)
	}
	if m := message(t, s, "msg-002-1").Message; m.State != outbox.StatePending || m.Attempts != 1 || m.LastError != "HTTP 503" ||
		!m.NextAttemptAt.Equal(now.Add(time.Minute)) {
		t.Errorf("the retry: %+v", m)
	}
	if d := message(t, s, "msg-003-1"); d.Message.State != outbox.StateInflight || d.Message.LeaseOwner != "a" || len(d.Attempts) != 1 {
		t.Errorf("the lost lease: %+v (want still a's, the attempt alone recorded)", d)
	}
	if r := get(t, s, "ref-003"); r.Record.Version != 1 {
		t.Errorf("the lost lease's update applied: version %d", r.Record.Version)
	}
	if m := message(t, s, "msg-004-1").Message; m.State != outbox.StateDead || m.LastError != "HTTP 410" {
		t.Errorf("the dead message: %+v", m)
	}
	now = now.Add(lease + time.Minute) // msg-002-1 due again, a's lease of msg-003-1 expired
	diff(t, "the second claim", slices.Sorted(slices.Values(ids(claim(t, s, "c", now, lease, 10)))), []string{"msg-002-1", "msg-003-1"})
	errs = s.CompleteAttempts(ctx, []outbox.Completion{ok("msg-002-1", "c"), ok("msg-003-1", "c")})
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("the second batch: %v", errs)
	}
	for _, id := range []string{"msg-002-1", "msg-003-1"} {
		d := message(t, s, id)
		if d.Message.State != outbox.StateDelivered || len(d.Attempts) != 2 || d.Attempts[0].N != 1 || d.Attempts[1].N != 2 {
			t.Errorf("%s after its second attempt: %+v", id, d)
		}
	}
	for _, id := range []string{"ref-002", "ref-003"} {
		if r := get(t, s, id); r.Record.Version != 2 || r.BusinessStatus != mapping.BusinessDelivered {
			t.Errorf("%s after the second batch: version %d business %q", id, r.Record.Version, r.BusinessStatus)
		}
		vs, err := s.ReferralVersions(ctx, id)
		if err != nil || len(vs) != 2 || vs[1].Record.Version != 2 || vs[1].BusinessStatus != mapping.BusinessDelivered ||
			vs[0].BusinessStatus == mapping.BusinessDelivered {
			t.Errorf("%s's versions after the second batch: %d, %v; want version 1 as created, version 2 delivered", id, len(vs), err)
		}
	}
}

// testCompleteAttemptsVersions: the Task versions of a batch's deliveries, written together, are what each
// completion alone would write: stamped in the batch's order (one transaction: SQLite may give them one
// stamp), each with its timeline entry, each fanned out to
// its own practice's subscriptions only; and a move into an open status is checked against the versions
// before it in the batch (a service with room for one accepts one of two, and the other's completion fails
// alone, writing nothing).
func testCompleteAttemptsVersions(t *testing.T, open Opener) {
	s := open(t, Options{Notify: testNotify})
	ctx := t.Context()
	for i := 1; i <= 7; i++ {
		in := intake(i)
		if i%3 == 2 {
			in.Referral.PracticeODS = "B82002"
		}
		create(t, s, in)
	}
	createSub(t, s, subscription("sub-a", "A81001", at(10*time.Second)))
	if _, _, err := s.SetCapacity(ctx, mapping.Capacity{ServiceID: walks.ID, Status: mapping.CapacityOpen, MaxOpen: 1,
		UpdatedAt: at(0)}, false); err != nil {
		t.Fatal(err)
	}
	now := at(time.Minute)
	claim(t, s, "a", now, lease, 10)
	done := func(id string, update outbox.ReferralUpdate) outbox.Completion {
		return outbox.Completion{ID: id, Now: now, Result: outbox.AttemptResult{Owner: "a", State: outbox.StateDelivered,
			Attempt: outbox.Attempt{StatusCode: 200}, Update: update}}
	}
	// Five deliveries, one batch, every one of them fine: their versions go together.
	for i, err := range s.CompleteAttempts(ctx, []outbox.Completion{done("msg-003-1", delivered),
		done("msg-002-1", delivered), done("msg-001-1", delivered), done("msg-006-1", delivered),
		done("msg-007-1", delivered)}) {
		if err != nil {
			t.Errorf("delivery %d of the batch: %v", i, err)
		}
	}
	var last time.Time
	for _, id := range []string{"ref-003", "ref-002", "ref-001", "ref-006", "ref-007"} {
		r := get(t, s, id)
		if r.Record.Version != 2 || r.BusinessStatus != mapping.BusinessDelivered {
			t.Errorf("%s after the batch: version %d, %s; want 2, delivered", id, r.Record.Version, r.BusinessStatus)
		}
		if r.Record.UpdatedAt.Before(last) {
			t.Errorf("%s stamped %v, before the completion before it in the batch (%v)", id, r.Record.UpdatedAt, last)
		}
		last = r.Record.UpdatedAt
		vs, err := s.ReferralVersions(ctx, id)
		if err != nil || len(vs) != 2 || !vs[1].Record.UpdatedAt.Equal(r.Record.UpdatedAt) ||
			vs[1].BusinessStatus != mapping.BusinessDelivered {
			t.Errorf("%s's versions: %d, %v; want 2, the second as read", id, len(vs), err)
		}
	}
	got, _ := notices(t, s, "sub-a")
	var notified []string
	for _, n := range got {
		notified = append(notified, fmt.Sprintf("%s v%d #%d", n.Referral, n.Version, n.N))
	}
	diff(t, "notifications of A81001's subscription", notified,
		[]string{"ref-003 v2 #1", "ref-001 v2 #2", "ref-006 v2 #3", "ref-007 v2 #4"})
	// Two accepts of a service with room for one, in one batch.
	errs := s.CompleteAttempts(ctx, []outbox.Completion{done("msg-004-1", moveTo(mapping.StatusAccepted)),
		done("msg-005-1", moveTo(mapping.StatusAccepted))})
	if errs[0] != nil {
		t.Errorf("the first accept: %v", errs[0])
	}
	wantErr(t, "the second accept of a service with room for one, in the same batch", errs[1], outbox.ErrCapacityFull)
	if r := get(t, s, "ref-004"); r.Record.Version != 2 || r.Record.Status != mapping.StatusAccepted {
		t.Errorf("the first accept: %s v%d", r.Record.Status, r.Record.Version)
	}
	if r := get(t, s, "ref-005"); r.Record.Version != 1 || r.Record.Status != mapping.StatusRequested {
		t.Errorf("the refused accept wrote: %s v%d", r.Record.Status, r.Record.Version)
	}
	if c, _, err := s.GetCapacity(ctx, walks.ID); err != nil || c.Open != 1 {
		t.Errorf("open referrals after the accepts: %d, %v; want 1", c.Open, err)
	}
}

func testReleaseMessages(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	for i := 1; i <= 3; i++ {
		create(t, s, intake(i))
	}
	now := at(time.Minute)
	claim(t, s, "a", now, lease, 2)
	claim(t, s, "b", now, lease, 2)
	drain(s)
	later := now.Add(10 * time.Second)
	n, err := s.ReleaseMessages(ctx, "a", later)
	if err != nil || n != 2 {
		t.Fatalf("ReleaseMessages(a) = %d, %v; want 2", n, err)
	}
	if !signalled(s) {
		t.Error("Changes not signalled after a release")
	}
	for _, m := range list(t, s, outbox.MessageQuery{}) {
		switch m.ID {
		case "msg-001-1", "msg-002-1":
			if m.State != outbox.StatePending || m.LeaseOwner != "" || !m.LeaseUntil.IsZero() || m.NextAttemptAt.After(later) {
				t.Errorf("released %s: %+v", m.ID, m)
			}
		default:
			if m.State != outbox.StateInflight || m.LeaseOwner != "b" {
				t.Errorf("b's %s: %+v", m.ID, m)
			}
		}
	}
	diff(t, "released are claimable at once", ids(claim(t, s, "c", later, lease, 10)), []string{"msg-001-1", "msg-002-1"})
	if n, err := s.ReleaseMessages(ctx, "a", later); err != nil || n != 0 {
		t.Errorf("second release = %d, %v; want 0", n, err)
	}
}

func testReplayMessages(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	create(t, s, intake(1))
	create(t, s, intake(2))
	create(t, s, intake(3))
	addEvents(t, s, "ref-001", at(time.Minute), event("msg-001-2", mapping.EventReferralUpdated, sub1))
	now := at(2 * time.Minute)
	kill(t, s, "msg-001-1", now)
	kill(t, s, "msg-001-2", now)
	claim(t, s, "a", now, lease, 10)
	complete(t, s, "msg-002-1", "a", now, outbox.StateDelivered, time.Time{}, 200, "")
	complete(t, s, "msg-003-1", "a", now, outbox.StatePending, now.Add(time.Hour), 503, "HTTP 503")
	_, err := s.UpdateReferral(ctx, "ref-001", 2, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.BusinessStatus = mapping.BusinessDeliveryFailed
		return next, nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	before := message(t, s, "msg-001-1").Message

	replayAt := now.Add(time.Minute)
	setBusiness := func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.BusinessStatus = mapping.BusinessQueued
		next.Record.Version++ // the store owns the version: this must not leak through
		return next, nil, nil
	}
	drain(s)

	// Dry run: reports, writes nothing.
	req := outbox.ReplayRequest{IDs: []string{"msg-001-1", "msg-001-2", "msg-002-1"}, Reason: "receiver fixed",
		Actor: "ops@example", DryRun: true, Update: setBusiness}
	got, err := s.ReplayMessages(ctx, replayAt, req)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "dry run", ids(got), []string{"msg-001-1", "msg-001-2"})
	diff(t, "dry run leaves the message", message(t, s, "msg-001-1"), outbox.MessageDetail{Message: before,
		Attempts: message(t, s, "msg-001-1").Attempts})
	if d := message(t, s, "msg-001-1"); len(d.Replays) != 0 || d.Message.State != outbox.StateDead {
		t.Errorf("dry run wrote: %+v", d)
	}
	if r := get(t, s, "ref-001"); r.Record.Version != 3 {
		t.Errorf("dry run applied the update: version %d", r.Record.Version)
	}
	if signalled(s) {
		t.Error("dry run signalled Changes")
	}

	// The real thing: dead → pending, same id, due now, new budget, replay recorded, update applied once.
	req.DryRun = false
	got, err = s.ReplayMessages(ctx, replayAt, req)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "replayed", ids(got), []string{"msg-001-1", "msg-001-2"})
	for _, m := range got {
		if m.State != outbox.StatePending || !m.NextAttemptAt.Equal(replayAt) || !m.BudgetFrom.Equal(replayAt) {
			t.Errorf("replayed %s: %+v", m.ID, m)
		}
	}
	d := message(t, s, "msg-001-1")
	want := before
	want.State, want.NextAttemptAt, want.BudgetFrom = outbox.StatePending, replayAt, replayAt
	diff(t, "replayed message", d.Message, want)
	diff(t, "replay record", d.Replays, []outbox.Replay{{MessageID: "msg-001-1", At: replayAt, Actor: "ops@example",
		Reason: "receiver fixed", FromState: outbox.StateDead}})
	if len(got) > 0 {
		diff(t, "returned message", got[0], d.Message)
	}
	if r := get(t, s, "ref-001"); r.Record.Version != 4 || !r.Record.UpdatedAt.Equal(replayAt) ||
		r.BusinessStatus != mapping.BusinessQueued {
		t.Errorf("replay update: version %d updated %v business %q; want 4 (once per referral)", r.Record.Version,
			r.Record.UpdatedAt, r.BusinessStatus)
	}
	if !signalled(s) {
		t.Error("Changes not signalled after a replay")
	}
	diff(t, "claim after replay", ids(claim(t, s, "b", replayAt, lease, 10)), []string{"msg-001-1", "msg-001-2"})

	// A pending message whose retry is far off is replayed when named; delivered and inflight are not.
	got, err = s.ReplayMessages(ctx, replayAt, outbox.ReplayRequest{IDs: []string{"msg-003-1", "msg-002-1", "msg-001-1"},
		Reason: "now please", Actor: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "replay of pending/delivered/inflight", ids(got), []string{"msg-003-1"})
	d = message(t, s, "msg-003-1")
	if d.Message.State != outbox.StatePending || !d.Message.NextAttemptAt.Equal(replayAt) || len(d.Replays) != 1 ||
		d.Replays[0].FromState != outbox.StatePending {
		t.Errorf("replayed pending message: %+v", d)
	}

	_, err = s.ReplayMessages(ctx, replayAt, outbox.ReplayRequest{IDs: []string{"msg-003-1", "nope"}, Reason: "x", Actor: "ops"})
	wantErr(t, "replay of an unknown id", err, outbox.ErrNotFound)
	if d := message(t, s, "msg-003-1"); len(d.Replays) != 1 {
		t.Errorf("failed replay wrote replays: %+v", d.Replays)
	}
}

func testReplayByFilter(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	create(t, s, intake(1))
	create(t, s, toService(intake(2), debt))
	create(t, s, intake(3))
	create(t, s, intake(4))
	now := at(time.Minute)
	kill(t, s, "msg-001-1", now)
	kill(t, s, "msg-002-1", now)
	kill(t, s, "msg-003-1", now)
	// msg-004-1 stays pending.

	q := &outbox.MessageQuery{States: []outbox.MessageState{outbox.StateDead}, ServiceID: walks.ID}
	got, err := s.ReplayMessages(ctx, now, outbox.ReplayRequest{Filter: q, Reason: "walks back up", Actor: "ops", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "dry run by filter", ids(got), []string{"msg-001-1", "msg-003-1"})
	got, err = s.ReplayMessages(ctx, now, outbox.ReplayRequest{Filter: q, Reason: "walks back up", Actor: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "replay by filter", ids(got), []string{"msg-001-1", "msg-003-1"})
	if m := message(t, s, "msg-002-1").Message; m.State != outbox.StateDead {
		t.Errorf("other service's dead message: %s", m.State)
	}
	// A filter never replays anything but dead messages.
	got, err = s.ReplayMessages(ctx, now, outbox.ReplayRequest{Filter: &outbox.MessageQuery{States: []outbox.MessageState{outbox.StatePending}},
		Reason: "x", Actor: "ops"})
	if err != nil || len(got) != 0 {
		t.Errorf("replay of pending by filter: %v, %v", ids(got), err)
	}
	got, err = s.ReplayMessages(ctx, now, outbox.ReplayRequest{Filter: &outbox.MessageQuery{}, Reason: "all dead", Actor: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "replay of every dead message", ids(got), []string{"msg-002-1"})
	counts, _, err := s.CountMessages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[outbox.StateDead] != 0 || counts[outbox.StatePending] != 4 {
		t.Errorf("counts after replays: %v", counts)
	}
}

func testListMessages(t *testing.T, open Opener) {
	s := open(t, Options{})
	for i := 1; i <= 6; i++ {
		in := intake(i)
		if i%2 == 0 {
			in = toService(in, debt)
		}
		create(t, s, in)
	}
	addEvents(t, s, "ref-001", at(time.Minute), event("msg-001-2", mapping.EventReferralUpdated, sub1))
	now := at(2 * time.Minute)
	kill(t, s, "msg-002-1", now)
	claim(t, s, "a", now, lease, 1) // msg-001-1

	all := []string{"msg-001-1", "msg-002-1", "msg-003-1", "msg-004-1", "msg-005-1", "msg-006-1", "msg-001-2"}
	for _, tc := range []struct {
		name string
		q    outbox.MessageQuery
		want []string
	}{
		{"all", outbox.MessageQuery{}, all},
		{"pending", outbox.MessageQuery{States: []outbox.MessageState{outbox.StatePending}},
			[]string{"msg-003-1", "msg-004-1", "msg-005-1", "msg-006-1", "msg-001-2"}},
		{"dead or inflight", outbox.MessageQuery{States: []outbox.MessageState{outbox.StateDead, outbox.StateInflight}},
			[]string{"msg-001-1", "msg-002-1"}},
		{"destination", outbox.MessageQuery{Destination: &sub1}, []string{"msg-001-2"}},
		{"service", outbox.MessageQuery{ServiceID: debt.ID}, []string{"msg-002-1", "msg-004-1", "msg-006-1"}},
		{"referral", outbox.MessageQuery{ReferralID: "ref-001"}, []string{"msg-001-1", "msg-001-2"}},
		{"created before", outbox.MessageQuery{CreatedBefore: at(3 * time.Second)}, []string{"msg-001-1", "msg-002-1"}},
		{"limit", outbox.MessageQuery{Limit: 3}, all[:3]},
		{"service and state", outbox.MessageQuery{ServiceID: debt.ID, States: []outbox.MessageState{outbox.StatePending}},
			[]string{"msg-004-1", "msg-006-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			diff(t, "ids", ids(list(t, s, tc.q)), tc.want)
		})
	}

	// Seq paging visits every message once.
	var got []string
	q := outbox.MessageQuery{Limit: 2}
	for range 10 {
		page := list(t, s, q)
		if len(page) == 0 {
			break
		}
		got = append(got, ids(page)...)
		q.AfterSeq = page[len(page)-1].Seq
	}
	diff(t, "paged", got, all)
}

func testCountAndNextDue(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	zero := map[outbox.MessageState]int{outbox.StatePending: 0, outbox.StateInflight: 0, outbox.StateDelivered: 0,
		outbox.StateDead: 0, outbox.StateCancelled: 0, outbox.StateDiscarded: 0}
	counts, oldest, err := s.CountMessages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "empty counts", counts, zero)
	if !oldest.IsZero() {
		t.Errorf("oldest pending of none: %v", oldest)
	}
	if due, err := s.NextDue(ctx); err != nil || !due.IsZero() {
		t.Errorf("NextDue of none: %v, %v", due, err)
	}

	for i := 1; i <= 4; i++ {
		create(t, s, intake(i))
	}
	addEvents(t, s, "ref-001", at(time.Minute), event("msg-001-2", mapping.EventReferralUpdated, walks))
	now := at(2 * time.Minute)
	kill(t, s, "msg-001-1", now) // msg-001-2 is now blocked behind a dead head
	claim(t, s, "a", now, lease, 1)
	complete(t, s, "msg-002-1", "a", now, outbox.StateDelivered, time.Time{}, 200, "")
	claim(t, s, "a", now, lease, 1)
	complete(t, s, "msg-003-1", "a", now, outbox.StatePending, now.Add(time.Hour), 500, "HTTP 500")
	claim(t, s, "a", now, lease, 1) // msg-004-1 inflight until now+lease

	counts, oldest, err = s.CountMessages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "counts", counts, map[outbox.MessageState]int{outbox.StatePending: 2, outbox.StateInflight: 1,
		outbox.StateDelivered: 1, outbox.StateDead: 1, outbox.StateCancelled: 0, outbox.StateDiscarded: 0})
	if !oldest.Equal(at(3 * time.Second)) {
		t.Errorf("oldest pending created %v, want %v (msg-003-1)", oldest, at(3*time.Second))
	}
	// Blocked msg-001-2 (due at 1m) does not count; the lease expiry of msg-004-1 comes before msg-003-1's retry.
	if due, err := s.NextDue(ctx); err != nil || !due.Equal(now.Add(lease)) {
		t.Errorf("NextDue = %v, %v; want the lease expiry %v", due, err, now.Add(lease))
	}
	complete(t, s, "msg-004-1", "a", now, outbox.StateDelivered, time.Time{}, 200, "")
	if due, err := s.NextDue(ctx); err != nil || !due.Equal(now.Add(time.Hour)) {
		t.Errorf("NextDue = %v, %v; want the retry %v", due, err, now.Add(time.Hour))
	}
	create(t, s, intake(5)) // due at t0+5s, in the past: due now
	if due, err := s.NextDue(ctx); err != nil || !due.Equal(at(5*time.Second)) {
		t.Errorf("NextDue = %v, %v; want %v", due, err, at(5*time.Second))
	}
}

func testChanges(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	drain(s)
	create(t, s, intake(1))
	create(t, s, intake(2))
	if !signalled(s) {
		t.Fatal("Changes not signalled after creates")
	}
	if signalled(s) {
		t.Error("Changes did not coalesce two signals")
	}
	if res, err := s.CreateReferral(ctx, intake(1)); err != nil || res.Created {
		t.Fatalf("resend: %v %v", res.Created, err)
	}
	now := at(time.Minute)
	got := claim(t, s, "a", now, lease, 10)
	if !slices.Equal(ids(got), []string{"msg-001-1", "msg-002-1"}) {
		t.Fatalf("claimed %v", ids(got))
	}
	drain(s)
	complete(t, s, got[0].ID, "a", now, outbox.StateDelivered, time.Time{}, 200, "")
	if signalled(s) {
		t.Error("Changes signalled after a delivery that frees nothing (no later message waits behind it): a dispatcher would claim for nothing")
	}
	complete(t, s, got[1].ID, "a", now, outbox.StatePending, now.Add(time.Minute), 503, "HTTP 503")
	if !signalled(s) {
		t.Error("Changes not signalled after a retry was scheduled")
	}
	addEvents(t, s, "ref-001", now, event("msg-001-2", mapping.EventReferralUpdated, walks),
		event("msg-001-3", mapping.EventReferralUpdated, walks))
	if !signalled(s) {
		t.Error("Changes not signalled after an update with events")
	}
	// A delivery with a later message of its referral and destination behind it lets that one be claimed.
	next := claim(t, s, "a", now, lease, 10)
	if !slices.Equal(ids(next), []string{"msg-001-2"}) {
		t.Fatalf("claimed %v, want msg-001-2 (msg-001-3 waits behind it, msg-002-1 is not due)", ids(next))
	}
	drain(s)
	complete(t, s, "msg-001-2", "a", now, outbox.StateDelivered, time.Time{}, 200, "")
	if !signalled(s) {
		t.Error("Changes not signalled after a delivery that released the next message of its chain")
	}
	// The same, for deliveries recorded in one batch: two that free nothing are quiet; one that releases the
	// next message of its chain signals, whatever the others in its batch.
	addEvents(t, s, "ref-001", now, event("msg-001-4", mapping.EventReferralUpdated, walks))
	create(t, s, intake(3))
	create(t, s, intake(4))
	if got := slices.Sorted(slices.Values(ids(claim(t, s, "a", now, lease, 10)))); !slices.Equal(got,
		[]string{"msg-001-3", "msg-003-1", "msg-004-1"}) {
		t.Fatalf("claimed %v, want msg-001-3, msg-003-1 and msg-004-1", got)
	}
	delivered := func(ids ...string) {
		t.Helper()
		var cs []outbox.Completion
		for _, id := range ids {
			cs = append(cs, outbox.Completion{ID: id, Now: now, Result: outbox.AttemptResult{Owner: "a",
				State: outbox.StateDelivered, Attempt: outbox.Attempt{StatusCode: 200}}})
		}
		for i, err := range s.CompleteAttempts(ctx, cs) {
			if err != nil {
				t.Fatalf("delivery %d of %v: %v", i, ids, err)
			}
		}
	}
	drain(s)
	delivered("msg-003-1", "msg-004-1")
	if signalled(s) {
		t.Error("Changes signalled after a batch of deliveries that free nothing")
	}
	create(t, s, intake(5))
	if got := ids(claim(t, s, "a", now, lease, 10)); !slices.Equal(got, []string{"msg-005-1"}) {
		t.Fatalf("claimed %v, want msg-005-1", got)
	}
	drain(s)
	delivered("msg-005-1", "msg-001-3")
	if !signalled(s) {
		t.Error("Changes not signalled after a batch with a delivery that released the next message of its chain")
	}
	if cap(s.Changes()) != 1 {
		t.Errorf("Changes capacity %d, want 1", cap(s.Changes()))
	}
}

func testPing(t *testing.T, open Opener) {
	s := open(t, Options{})
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func testClaimFiltered(t *testing.T, open Opener) {
	s := open(t, Options{})
	for i := 1; i <= 7; i++ {
		in := intake(i)
		switch {
		case i >= 4 && i <= 6:
			in = toService(in, debt)
		case i == 7:
			in = toService(in, sub1)
		}
		create(t, s, in)
	}
	addEvents(t, s, "ref-004", at(time.Minute), event("msg-004-2", mapping.EventReferralUpdated, debt))
	now := at(2 * time.Minute)
	fclaim := func(limit int, f outbox.ClaimFilter) []string {
		t.Helper()
		ms, err := s.ClaimMessages(t.Context(), "a", now, lease, limit, f)
		if err != nil {
			t.Fatalf("ClaimMessages(%+v): %v", f, err)
		}
		for _, m := range ms {
			if m.State != outbox.StateInflight || m.LeaseOwner != "a" {
				t.Errorf("claimed %s: %+v", m.ID, m)
			}
		}
		return ids(ms)
	}
	// One per destination: the scan moves past a destination as soon as it is full.
	diff(t, "one per destination", fclaim(10, outbox.ClaimFilter{PerDestination: 1}), []string{"msg-001-1", "msg-004-1", "msg-007-1"})
	for _, id := range []string{"msg-002-1", "msg-003-1", "msg-005-1", "msg-006-1", "msg-004-2"} {
		if m := message(t, s, id).Message; m.State != outbox.StatePending {
			t.Errorf("skipped %s: %s, want pending", id, m.State)
		}
	}
	// No room for walks; debt unlimited, but msg-004-2 still waits behind its inflight head.
	diff(t, "no room for walks", fclaim(10, outbox.ClaimFilter{Room: map[mapping.Destination]int{walks: 0}}),
		[]string{"msg-005-1", "msg-006-1"})
	// Room overrides PerDestination.
	diff(t, "room for one of walks", fclaim(10, outbox.ClaimFilter{PerDestination: 5, Room: map[mapping.Destination]int{walks: 1}}),
		[]string{"msg-002-1"})
	diff(t, "limit", fclaim(1, outbox.ClaimFilter{}), []string{"msg-003-1"})
	diff(t, "nothing left", fclaim(10, outbox.ClaimFilter{}), []string{})
}

func testErrNoChange(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	created := create(t, s, intake(1))
	noChange := func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		return cur.Referral, nil, outbox.ErrNoChange
	}
	got, err := s.UpdateReferral(ctx, "ref-001", 1, at(time.Hour), noChange)
	if err != nil {
		t.Fatalf("UpdateReferral returning ErrNoChange: %v, want nil", err)
	}
	diff(t, "no-change update", got, created)
	diff(t, "after no-change update", get(t, s, "ref-001"), created)

	// The rest of the operation commits: the delivery is recorded, the referral left alone.
	now := at(time.Minute)
	claim(t, s, "a", now, lease, 10)
	if err := s.CompleteAttempt(ctx, "msg-001-1", now, outbox.AttemptResult{Owner: "a", State: outbox.StateDead,
		Attempt: outbox.Attempt{StatusCode: 400, Error: "HTTP 400"}, Update: noChange}); err != nil {
		t.Fatalf("CompleteAttempt with a no-change update: %v", err)
	}
	if d := message(t, s, "msg-001-1"); d.Message.State != outbox.StateDead || len(d.Attempts) != 1 {
		t.Errorf("message after a no-change update: %+v", d)
	}
	got, err = s.GetReferral(ctx, "ref-001")
	if err != nil || got.Record.Version != 1 {
		t.Errorf("referral after a no-change attempt update: version %d, %v", got.Record.Version, err)
	}
	ms, err := s.ReplayMessages(ctx, now, outbox.ReplayRequest{IDs: []string{"msg-001-1"}, Reason: "x", Actor: "ops", Update: noChange})
	if err != nil || len(ms) != 1 {
		t.Fatalf("replay with a no-change update: %v, %v", ids(ms), err)
	}
	if m := message(t, s, "msg-001-1").Message; m.State != outbox.StatePending {
		t.Errorf("replayed message: %s", m.State)
	}
	diff(t, "after no-change replay", get(t, s, "ref-001"), created)
}

// testClaimFilteredInterleaved: with several destinations' backlogs interleaved in time, a filtered claim
// takes the earliest claimable messages in (NextAttemptAt, Seq) order across destinations, each destination
// up to its room, and the limit cuts that order (a backend that reads each destination apart must merge).
func testClaimFilteredInterleaved(t *testing.T, open Opener) {
	s := open(t, Options{})
	for i := 1; i <= 8; i++ {
		in := intake(i)
		if i%2 == 0 {
			in = toService(in, debt)
		}
		create(t, s, in)
	}
	now := at(time.Hour)
	fclaim := func(limit int, f outbox.ClaimFilter) []string {
		t.Helper()
		ms, err := s.ClaimMessages(t.Context(), "a", now, lease, limit, f)
		if err != nil {
			t.Fatalf("ClaimMessages(%+v): %v", f, err)
		}
		return ids(ms)
	}
	diff(t, "limit across destinations", fclaim(3, outbox.ClaimFilter{PerDestination: 2}),
		[]string{"msg-001-1", "msg-002-1", "msg-003-1"})
	diff(t, "room left", fclaim(10, outbox.ClaimFilter{PerDestination: 2, Room: map[mapping.Destination]int{walks: 0, debt: 1}}),
		[]string{"msg-004-1"})
	diff(t, "the rest in order", fclaim(10, outbox.ClaimFilter{PerDestination: 8}),
		[]string{"msg-005-1", "msg-006-1", "msg-007-1", "msg-008-1"})
}
