package outboxtest

import (
	"errors"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Lockable is a store for RunUnavailable, and a way to lock its database from outside it.
type Lockable struct {
	Store outbox.Store
	// Lock holds the database's write lock from outside the store (another connection, as another process
	// or an operator's maintenance would) until release is called; reads stay possible. The store must give
	// up waiting for the lock within a few seconds (SQLite's busy timeout, PostgreSQL's lock_timeout).
	Lock func(t *testing.T) (release func())
}

// RunUnavailable runs the conformance tests of a database that cannot take writes (issue 9): every write
// fails with kind fault.Unavailable and writes nothing, reads still answer, CheckWrite reports not ready while
// it lasts and recovers by itself (the second check after the lock is gone passes), and writes succeed again.
func RunUnavailable(t *testing.T, open func(t *testing.T) Lockable) {
	t.Run("Locked", func(t *testing.T) {
		t.Parallel()
		l := open(t)
		s, ctx := l.Store, t.Context()
		first := create(t, s, intake(1))
		if err := s.CheckWrite(ctx, "instance-a", at(time.Second)); err != nil {
			t.Fatalf("CheckWrite on a healthy store: %v", err)
		}
		if err := s.CheckWrite(ctx, "", at(time.Second)); err == nil {
			t.Error("CheckWrite without an instance name must fail")
		}

		release := l.Lock(t)
		in := intake(2)
		_, err := s.CreateReferral(ctx, in)
		wantUnavailable(t, "CreateReferral on a locked database", err)
		_, err = s.UpdateReferral(ctx, first.Record.ID, 0, at(time.Minute), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			next := cur.Referral
			next.Record.Status = mapping.StatusReceived
			return next, nil, nil
		})
		wantUnavailable(t, "UpdateReferral on a locked database", err)
		_, err = s.UseNonce(ctx, "nonce-1", at(time.Hour), at(time.Minute))
		wantUnavailable(t, "UseNonce on a locked database", err)
		wantUnavailable(t, "CheckWrite while locked", s.CheckWrite(ctx, "instance-a", at(2*time.Second)))
		// Reads still answer.
		if got, err := s.GetReferral(ctx, first.Record.ID); err != nil || got.Record.Version != 1 {
			t.Errorf("GetReferral while locked: v%d, %v", got.Record.Version, err)
		}
		release()

		assertNoTrace(t, s, in)
		// Writes failed since the last successful check: the first check after the lock is gone says so,
		// the next one passes.
		err = s.CheckWrite(ctx, "instance-a", at(3*time.Second))
		wantUnavailable(t, "the first CheckWrite after the lock", err)
		if err := s.CheckWrite(ctx, "instance-a", at(4*time.Second)); err != nil {
			t.Fatalf("the second CheckWrite after the lock: %v", err)
		}
		create(t, s, intake(2))
		if got, err := s.GetReferral(ctx, first.Record.ID); err != nil || got.Record.Status != mapping.StatusRequested {
			t.Errorf("the failed update must have changed nothing: %s, %v", got.Record.Status, err)
		}
	})
}

// wantUnavailable fails t unless err is of kind fault.Unavailable (503 + Retry-After for a client).
func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil || fault.KindOf(err) != fault.Unavailable {
		t.Fatalf("%s: %v (kind %s), want kind %s", what, err, fault.KindOf(err), fault.Unavailable)
	}
	if errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("%s: %v must not read as not found", what, err)
	}
}
