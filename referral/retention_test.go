package referral_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/referral"
)

// TestRetentionSweeperClock: with an injected clock, a referral completed 10 days ago keeps its data under a
// 1-month period and loses it 31 days later; the metrics hook hears of what was scrubbed, never of a dry run.
func TestRetentionSweeperClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "r.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	in := mapping.Intake{
		Referral: mapping.Referral{
			Record: mapping.Record{ID: "r1", ServiceRequestID: "sr-r1", TaskID: "task-r1", Status: mapping.StatusRequested,
				Version: 1, CreatedAt: t0, UpdatedAt: t0, Service: mapping.ServiceRef{ID: "walks", Name: "Walks"},
				Patient: mapping.Person{NHSNumber: "9999542557", Name: "Margaret Ellis"}},
			PracticeODS: "A81001", BusinessStatus: mapping.BusinessAwaitingPickup, ServiceRequestStatus: "active",
		},
		ServiceRequest: []byte(`{"resourceType":"ServiceRequest","id":"sr-r1"}`),
		Identifiers:    []mapping.Identifier{{System: "urn:test", Value: "r1"}},
		Fingerprint:    "fp-r1",
	}
	if _, err := st.CreateReferral(ctx, in); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateReferral(ctx, "r1", 0, t0, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.Status = mapping.StatusCompleted
		return next, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	now := t0.AddDate(0, 0, 10)
	var heard []outbox.PruneResult
	sw := referral.RetentionSweeper{Store: st, Retention: config.Retention{DeliveredDays: 30, ClosedMonths: 1},
		Clock: func() time.Time { return now }, Scrubbed: func(r outbox.PruneResult) { heard = append(heard, r) }}
	if res, err := sw.PruneOnce(ctx, false, nil); err != nil || res != (outbox.PruneResult{}) {
		t.Fatalf("10 days on: %+v %v, want nothing", res, err)
	}
	now = t0.AddDate(0, 0, 31)
	if res, err := sw.PruneOnce(ctx, true, nil); err != nil || res.Referrals != 1 {
		t.Fatalf("dry, 31 days on: %+v %v", res, err)
	}
	if len(heard) != 0 {
		t.Errorf("the metrics heard of a dry run: %+v", heard)
	}
	if res, err := sw.PruneOnce(ctx, false, nil); err != nil || res.Referrals != 1 {
		t.Fatalf("31 days on: %+v %v", res, err)
	}
	if len(heard) != 1 || heard[0].Referrals != 1 {
		t.Errorf("metrics heard %+v", heard)
	}
	r, err := st.GetReferral(ctx, "r1")
	if err != nil || r.Record.Patient.NHSNumber != "" || r.Record.Patient.Name != "" {
		t.Errorf("after retention: %+v %v", r.Record.Patient, err)
	}
	off := referral.RetentionSweeper{Store: st, Retention: config.Retention{}, Clock: func() time.Time { return now }}
	if res, err := off.PruneOnce(ctx, false, nil); err != nil || res != (outbox.PruneResult{}) {
		t.Errorf("periods 0 (keep for ever): %+v %v", res, err)
	}
}
