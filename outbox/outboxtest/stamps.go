package outboxtest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// reason returns an update that sets the referral's status reason to text and enqueues the given events.
func reason(text string, events ...mapping.Event) outbox.ReferralUpdate {
	return func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.StatusReason = text
		return next, events, nil
	}
}

// testUpdatedAtFollowsCommitOrder: UpdatedAt strictly increases in commit order, whatever time the caller
// passes, so that polling with UpdatedAfter (a GP's _lastUpdated=gt…) sees every change; and message Seq
// follows commit order too, so that paging messages with AfterSeq (the admin API) misses none.
func testUpdatedAtFollowsCommitOrder(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()

	// Sequential writes whose callers' clocks go backwards or stand still.
	a := create(t, s, intake(1)) // at t0+1s
	older := intake(2)
	older.Referral.Record.CreatedAt = at(-time.Hour)
	older.Referral.Record.UpdatedAt = time.Time{}
	res, err := s.CreateReferral(ctx, older)
	if err != nil {
		t.Fatal(err)
	}
	b := res.Referral
	if !b.Record.UpdatedAt.After(a.Record.UpdatedAt) || !b.Record.CreatedAt.Equal(at(-time.Hour)) {
		t.Errorf("second create: created %v updated %v; want created %v and updated after the first's %v",
			b.Record.CreatedAt, b.Record.UpdatedAt, at(-time.Hour), a.Record.UpdatedAt)
	}
	diff(t, "the create's answer and the stored referral", get(t, s, "ref-002"), b)

	then := at(-2 * time.Hour)
	u, err := s.UpdateReferral(ctx, "ref-001", 0, then, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.StatusReason = "late clock"
		return next, []mapping.Event{event("msg-001-2", mapping.EventReferralUpdated, walks)}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !u.Record.UpdatedAt.After(b.Record.UpdatedAt) {
		t.Errorf("update with an earlier clock: UpdatedAt %v, want after %v", u.Record.UpdatedAt, b.Record.UpdatedAt)
	}
	diff(t, "the update's answer and the stored referral", get(t, s, "ref-001"), u)
	if tl, err := s.Timeline(ctx, "ref-001"); err != nil || len(tl) != 2 || !tl[1].At.Equal(u.Record.UpdatedAt) {
		t.Errorf("timeline %+v, %v; want version 2 at %v", tl, err, u.Record.UpdatedAt)
	}
	// The update's message is due at the caller's time, not held back by the stamp.
	if m := message(t, s, "msg-001-2").Message; !m.NextAttemptAt.Equal(then) {
		t.Errorf("msg-001-2 due %v, want %v", m.NextAttemptAt, then)
	}

	// Concurrent writers all reading the same clock while a poller follows UpdatedAfter, as a GP does.
	const writers, updates = 6, 15
	for i := 3; i < 3+writers; i++ {
		create(t, s, intake(i))
	}
	same := at(time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		id := fmt.Sprintf("ref-%03d", 3+w)
		wg.Go(func() {
			for k := range updates {
				ev := event(fmt.Sprintf("msg-%s-%d", id, k), mapping.EventReferralUpdated, walks)
				if _, err := s.UpdateReferral(ctx, id, 0, same, reason(fmt.Sprintf("step %d", k), ev)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	seen := map[string]int{} // referral id → highest version seen
	var last time.Time
	poll := func() {
		rs, _, err := s.SearchReferrals(ctx, outbox.ReferralQuery{UpdatedAfter: last, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if v := r.Record.Version; v <= seen[r.Record.ID] {
				t.Errorf("%s version %d seen again after version %d", r.Record.ID, v, seen[r.Record.ID])
			}
			seen[r.Record.ID] = r.Record.Version
			if !r.Record.UpdatedAt.After(last) {
				t.Errorf("%s version %d at %v, not after the poll's bound %v", r.Record.ID, r.Record.Version, r.Record.UpdatedAt, last)
			}
			last = r.Record.UpdatedAt
		}
	}
	msgs := map[string]bool{}
	var afterSeq int64
	page := func() {
		ms, err := s.ListMessages(ctx, outbox.MessageQuery{AfterSeq: afterSeq, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if msgs[m.ID] {
				t.Errorf("message %s listed twice", m.ID)
			}
			msgs[m.ID] = true
			afterSeq = m.Seq
		}
	}
	for polling := true; polling; {
		select {
		case <-done:
			polling = false
		default:
		}
		poll()
		page()
	}
	poll()
	page()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := 1; i < 3+writers; i++ {
		id := fmt.Sprintf("ref-%03d", i)
		if r := get(t, s, id); seen[id] != r.Record.Version {
			t.Errorf("%s: the poller saw version %d; the referral is at version %d (a change was missed)", id, seen[id], r.Record.Version)
		}
	}
	all := list(t, s, outbox.MessageQuery{Limit: 1000})
	for _, m := range all {
		if !msgs[m.ID] {
			t.Errorf("message %s (seq %d) was never listed while paging by AfterSeq", m.ID, m.Seq)
		}
	}
	if len(all) != 2+writers*(1+updates)+1 {
		t.Errorf("%d messages, want %d", len(all), 2+writers*(1+updates)+1)
	}
}
