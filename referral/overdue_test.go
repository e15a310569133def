package referral_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/referral"
)

func TestOverdueSweep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "o.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	mk := func(id string, bs mapping.BusinessStatus) { createIntake(t, st, waitingIntake(id, "walks", t0, bs)) }
	for i, bs := range []mapping.BusinessStatus{mapping.BusinessDelivered, mapping.BusinessAwaitingPickup, mapping.BusinessDeliveryFailed, mapping.BusinessDelivered} {
		mk(fmt.Sprintf("r%d", i), bs)
	}
	// r3 is acknowledged by its service.
	if _, err := st.UpdateReferral(ctx, "r3", 0, t0.Add(time.Hour), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		return mapping.ApplyStatus(cur.Referral, mapping.StatusChange{To: mapping.StatusReceived, By: mapping.ActorCommunity}, t0.Add(time.Hour))
	}); err != nil {
		t.Fatal(err)
	}
	// r4 stands on a deadline rung (its service was reminded): the sweep searches each rung apart, and marks
	// it as it marks r0.
	mk("r4", mapping.BusinessDelivered)
	if _, err := st.UpdateReferral(ctx, "r4", 0, t0.Add(time.Hour), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.DeadlineStep = mapping.DeadlineReminded
		return next, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	deadline := 72 * time.Hour
	sweep := func(at time.Time) int {
		n, err := referral.OverdueSweeper{Store: st, Deadline: deadline, Clock: func() time.Time { return at }}.SweepOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := sweep(t0.Add(deadline - time.Second)); n != 0 {
		t.Fatalf("before the deadline: marked %d", n)
	}
	if n := sweep(t0.Add(deadline)); n != 3 {
		t.Fatalf("at the deadline: want r0, r1 and r4 marked, got %d", n)
	}
	if n := sweep(t0.Add(deadline + time.Minute)); n != 0 {
		t.Fatalf("second sweep must change nothing, changed %d", n)
	}
	want := map[string]struct {
		bs      mapping.BusinessStatus
		version int
	}{
		"r0": {mapping.BusinessOverdue, 2}, "r1": {mapping.BusinessOverdue, 2},
		"r2": {mapping.BusinessDeliveryFailed, 1}, "r3": {mapping.BusinessDelivered, 2},
		"r4": {mapping.BusinessOverdue, 3},
	}
	for id, w := range want {
		r, err := st.GetReferral(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.BusinessStatus != w.bs || r.Record.Version != w.version {
			t.Errorf("%s: businessStatus %q version %d, want %q version %d", id, r.BusinessStatus, r.Record.Version, w.bs, w.version)
		}
	}
	if _, err := (referral.OverdueSweeper{Store: st}).SweepOnce(ctx); err == nil {
		t.Error("a zero deadline must be refused")
	}
}

// countingStore counts the referrals SearchReferrals hands back (what a caller decodes).
type countingStore struct {
	outbox.Store
	read int
}

func (c *countingStore) SearchReferrals(ctx context.Context, q outbox.ReferralQuery) ([]outbox.Referral, *outbox.Cursor, error) {
	rs, next, err := c.Store.SearchReferrals(ctx, q)
	c.read += len(rs)
	return rs, next, err
}

// TestOverdueSweepReadsOnlyCandidates: the sweep reads the referrals it may mark, not every open one (a
// backlog of young referrals costs it nothing to decode).
func TestOverdueSweepReadsOnlyCandidates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "o.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	deadline := 72 * time.Hour
	mk := func(id string, created time.Time, bs mapping.BusinessStatus) {
		createIntake(t, st, waitingIntake(id, "walks", created, bs))
	}
	for i := range 40 {
		mk(fmt.Sprintf("young%d", i), t0.Add(time.Hour), mapping.BusinessQueued)
	}
	mk("old-queued", t0, mapping.BusinessQueued)
	mk("old-delivered", t0, mapping.BusinessDelivered)
	mk("old-failed", t0, mapping.BusinessDeliveryFailed)
	cs := &countingStore{Store: st}
	n, err := referral.OverdueSweeper{Store: cs, Deadline: deadline, Clock: func() time.Time { return t0.Add(deadline) }}.SweepOnce(ctx)
	if err != nil || n != 2 || cs.read != 2 {
		t.Fatalf("sweep: marked %d, read %d, %v; want 2 marked, 2 read", n, cs.read, err)
	}
	cs.read = 0
	if n, err := (referral.OverdueSweeper{Store: cs, Deadline: deadline, Clock: func() time.Time { return t0.Add(deadline + time.Minute) }}).SweepOnce(ctx); err != nil || n != 0 || cs.read != 0 {
		t.Fatalf("second sweep: marked %d, read %d, %v; want nothing", n, cs.read, err)
	}
}

// waitingIntake is a referral id to service, created at created and still requested, with transport fact bs.
func waitingIntake(id, service string, created time.Time, bs mapping.BusinessStatus) mapping.Intake {
	return mapping.Intake{
		Referral: mapping.Referral{
			Record: mapping.Record{ID: id, ServiceRequestID: "sr-" + id, TaskID: "task-" + id, Status: mapping.StatusRequested,
				Version: 1, CreatedAt: created, UpdatedAt: created, Service: mapping.ServiceRef{ID: service, Name: service}},
			PracticeODS: "A81001", BusinessStatus: bs, ServiceRequestStatus: "active",
		},
		ServiceRequest: []byte(`{"resourceType":"ServiceRequest","id":"sr-` + id + `"}`),
		Identifiers:    []mapping.Identifier{{System: "urn:test", Value: id}},
		Fingerprint:    "fp-" + id,
	}
}

// createIntake writes in to st.
func createIntake(t *testing.T, st outbox.Store, in mapping.Intake) {
	t.Helper()
	if _, err := st.CreateReferral(t.Context(), in); err != nil {
		t.Fatal(err)
	}
}
