package outboxtest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// session is an inbox session opened at start, idle for idle, ending absolutely after max.
func session(idHash string, start time.Time, idle, max time.Duration) outbox.Session {
	return outbox.Session{IDHash: idHash, ClientID: "link-workers", TokenHash: "hash-of-token-1", CreatedAt: start,
		IdleUntil: start.Add(idle), ExpiresAt: start.Add(max)}
}

// touch calls TouchSession and fails the test on any error but ErrNotFound (returned as found false).
func touch(t *testing.T, s outbox.Store, idHash string, now time.Time, idle time.Duration) (outbox.Session, bool) {
	t.Helper()
	got, err := s.TouchSession(t.Context(), idHash, now, idle)
	if errors.Is(err, outbox.ErrNotFound) {
		return outbox.Session{}, false
	}
	if err != nil {
		t.Fatalf("TouchSession(%s): %v", idHash, err)
	}
	return got, true
}

// testSessions: a session is found while it is used within its idle timeout and before its absolute end,
// each use moves the idle end (never past the absolute end), sign-out and expiry end it for every caller.
func testSessions(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	const idle, max = 30 * time.Minute, 8 * time.Hour
	start := at(0)
	if err := s.CreateSession(ctx, session("s1", start, idle, max)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, session("s1", start, idle, max)); err == nil {
		t.Error("a second session with the same id hash was stored")
	}

	got, ok := touch(t, s, "s1", start.Add(10*time.Minute), idle)
	want := session("s1", start, idle, max)
	want.LastSeenAt, want.IdleUntil = start.Add(10*time.Minute), start.Add(40*time.Minute)
	if !ok {
		t.Fatal("a fresh session was not found")
	}
	diff(t, "touched session", got, want)
	// Used every 29 minutes it lives on: the idle end follows each use…
	now := start.Add(10 * time.Minute)
	for range 15 {
		now = now.Add(29 * time.Minute)
		if _, ok := touch(t, s, "s1", now, idle); !ok {
			t.Fatalf("a session used within its idle timeout ended at %s", now.Sub(start))
		}
	}
	// …but never past its absolute end: 7h25m in, the idle end is capped at 8h.
	got, _ = touch(t, s, "s1", start.Add(7*time.Hour+45*time.Minute), idle)
	if !got.IdleUntil.Equal(start.Add(max)) {
		t.Errorf("idle end %s, want the absolute end %s", got.IdleUntil.Sub(start), max)
	}
	if _, ok := touch(t, s, "s1", start.Add(max), idle); ok {
		t.Error("a session was found at its absolute end")
	}

	// Idle timeout: unused for 30 minutes, it has ended (and stays ended).
	if err := s.CreateSession(ctx, session("s2", start, idle, max)); err != nil {
		t.Fatal(err)
	}
	if _, ok := touch(t, s, "s2", start.Add(idle), idle); ok {
		t.Error("a session unused for the idle timeout was found")
	}
	if _, ok := touch(t, s, "s2", start.Add(idle-time.Minute), idle); ok {
		t.Error("an ended session came back (it must be deleted when found ended)")
	}

	// Sign-out: deleted, gone; deleting again is not an error.
	if err := s.CreateSession(ctx, session("s3", start, idle, max)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(ctx, "s3"); err != nil {
		t.Fatal(err)
	}
	if _, ok := touch(t, s, "s3", start.Add(time.Minute), idle); ok {
		t.Error("a deleted session was found")
	}
	if err := s.DeleteSession(ctx, "s3"); err != nil {
		t.Errorf("deleting a deleted session: %v", err)
	}

	// Bad sessions are refused.
	for name, bad := range map[string]outbox.Session{
		"no id hash":               session("", start, idle, max),
		"no token hash":            {IDHash: "x", ClientID: "c", CreatedAt: start, IdleUntil: start.Add(idle), ExpiresAt: start.Add(max)},
		"idle end after expiry":    session("x", start, max+time.Minute, max),
		"idle end before creation": session("x", start, -time.Minute, max),
	} {
		if err := s.CreateSession(ctx, bad); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	if _, err := s.TouchSession(ctx, "s1", start, 0); err == nil {
		t.Error("a zero idle timeout was accepted")
	}
}

// testSessionsPrune: ended sessions are removed by PruneSessions and by the next CreateSession; live ones stay.
func testSessionsPrune(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	const idle, max = 30 * time.Minute, 8 * time.Hour
	for i := range 4 {
		if err := s.CreateSession(ctx, session(fmt.Sprint("old-", i), at(0), idle, max)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateSession(ctx, session("live", at(20*time.Minute), idle, max)); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneSessions(ctx, at(idle), at(0))
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("PruneSessions removed %d sessions, want the 4 ended ones", n)
	}
	if _, ok := touch(t, s, "live", at(idle), idle); !ok {
		t.Error("a live session was pruned")
	}
	if n, err := s.PruneSessions(ctx, at(idle), at(0)); err != nil || n != 0 {
		t.Errorf("second prune: %d, %v; want 0", n, err)
	}
	// CreateSession removes what has ended by its start: "live" was last used at 30m, so it ends at 60m.
	if err := s.CreateSession(ctx, session("new", at(2*time.Hour), idle, max)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneSessions(ctx, at(2*time.Hour), at(0)); err != nil || n != 0 {
		t.Errorf("prune after a create: %d, %v; want 0 (the create already removed the ended session)", n, err)
	}
}

// testSignInFailures: failures are counted per key within the window, old ones drop out and are removed,
// and concurrent failures are all counted.
func testSignInFailures(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	const window = 15 * time.Minute
	record := func(now time.Time, keys ...string) []outbox.FailureCount {
		t.Helper()
		got, err := s.RecordSignInFailure(ctx, keys, now, now.Add(-window))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	counts := func(now time.Time, keys ...string) []outbox.FailureCount {
		t.Helper()
		got, err := s.SignInFailures(ctx, keys, now.Add(-window))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	diff(t, "no failures yet", counts(at(0), "addr:a", "svc:x"),
		[]outbox.FailureCount{{Key: "addr:a"}, {Key: "svc:x"}})
	diff(t, "first failure", record(at(time.Minute), "addr:a", "svc:x"),
		[]outbox.FailureCount{{Key: "addr:a", N: 1, Earliest: at(time.Minute)}, {Key: "svc:x", N: 1, Earliest: at(time.Minute)}})
	record(at(2*time.Minute), "addr:b", "svc:x")
	record(at(3*time.Minute), "addr:a", "svc:y")
	diff(t, "per key", counts(at(4*time.Minute), "addr:a", "addr:b", "svc:x", "svc:y"), []outbox.FailureCount{
		{Key: "addr:a", N: 2, Earliest: at(time.Minute)}, {Key: "addr:b", N: 1, Earliest: at(2 * time.Minute)},
		{Key: "svc:x", N: 2, Earliest: at(time.Minute)}, {Key: "svc:y", N: 1, Earliest: at(3 * time.Minute)}})
	// 16 minutes after the first failure it has left the window: one failure of addr:a remains.
	diff(t, "after the window", counts(at(16*time.Minute), "addr:a"),
		[]outbox.FailureCount{{Key: "addr:a", N: 1, Earliest: at(3 * time.Minute)}})
	// Recording removes what has left the window; pruning removes the rest.
	diff(t, "a failure after the window", record(at(17*time.Minute+time.Second), "svc:x"),
		[]outbox.FailureCount{{Key: "svc:x", N: 1, Earliest: at(17*time.Minute + time.Second)}})
	if _, err := s.PruneSessions(ctx, at(time.Hour), at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Nothing is left, even when counted over all time.
	got, err := s.SignInFailures(ctx, []string{"addr:a", "svc:x", "svc:y"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "after pruning", got, []outbox.FailureCount{{Key: "addr:a"}, {Key: "svc:x"}, {Key: "svc:y"}})
	if _, err := s.RecordSignInFailure(ctx, []string{""}, at(0), at(-window)); err == nil {
		t.Error("an empty key was recorded")
	}

	// Concurrent failures (several instances, several browsers) are each counted.
	const callers, each = 4, 5
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				now := at(2*time.Hour + time.Duration(c*each+i)*time.Microsecond)
				if _, err := s.RecordSignInFailure(ctx, []string{"svc:race"}, now, at(time.Hour)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got := counts(at(2*time.Hour+time.Second), "svc:race"); got[0].N != callers*each {
		t.Errorf("concurrent failures counted %d, want %d", got[0].N, callers*each)
	}
}

// testCountByStatus: a service's referrals counted per status; other services' are not counted.
func testCountByStatus(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	for n := 1; n <= 4; n++ {
		create(t, s, intake(n))
	}
	create(t, s, toService(intake(5), debt))
	accept := func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.Status = mapping.StatusAccepted
		return next, nil, nil
	}
	for _, id := range []string{"ref-002", "ref-003"} {
		if _, err := s.UpdateReferral(ctx, id, 0, at(time.Hour), accept); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.CountByStatus(ctx, walks.ID)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "frome-walks counts", got, map[mapping.TaskStatus]int{mapping.StatusRequested: 2, mapping.StatusAccepted: 2})
	if got, err := s.CountByStatus(ctx, "nobody"); err != nil || len(got) != 0 {
		t.Errorf("a service without referrals: %v, %v", got, err)
	}
}
