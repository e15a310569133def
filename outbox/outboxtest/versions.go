package outboxtest

import (
	"errors"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// testReferralVersions: every version a transaction writes (create, update, an attempt's update, a replay's
// update) is kept as it was, found by referral, task or ServiceRequest id, oldest first; one version reads
// alone; an unknown version or referral is ErrNotFound; a change that writes nothing keeps no version.
func testReferralVersions(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	in := intake(1)
	v1 := create(t, s, in)

	v2, err := s.UpdateReferral(ctx, "task-001", 1, at(10*time.Second), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.Status = mapping.StatusReceived
		next.TaskNotes = append(next.TaskNotes, mapping.TaskNote{Author: "Frome Walking for Health", Time: at(10 * time.Second), Text: "Called her"})
		return next, nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A change that changes nothing writes no version.
	if _, err := s.UpdateReferral(ctx, "ref-001", 0, at(11*time.Second), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		return cur.Referral, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	// A delivery's update writes version 3 (businessStatus delivered).
	ms := claim(t, s, "d1", at(12*time.Second), time.Minute, 10)
	if len(ms) != 1 {
		t.Fatalf("claimed %v", ids(ms))
	}
	if err := s.CompleteAttempt(ctx, ms[0].ID, at(13*time.Second), outbox.AttemptResult{
		Attempt: outbox.Attempt{StartedAt: at(12 * time.Second)}, Owner: "d1", State: outbox.StateDelivered,
		Update: func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			next := cur.Referral
			next.BusinessStatus = mapping.BusinessDelivered
			return next, nil, nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	v3 := get(t, s, "ref-001")
	if v3.Record.Version != 3 {
		t.Fatalf("after the delivery: version %d, want 3", v3.Record.Version)
	}

	for _, id := range []string{"ref-001", "task-001", "sr-001"} {
		got, err := s.ReferralVersions(ctx, id)
		if err != nil {
			t.Fatalf("ReferralVersions(%s): %v", id, err)
		}
		diff(t, "versions by "+id, got, []outbox.Referral{v1, v2, v3})
	}
	for _, want := range []outbox.Referral{v1, v2, v3} {
		got, err := s.ReferralVersion(ctx, "task-001", want.Record.Version)
		if err != nil {
			t.Fatalf("ReferralVersion(%d): %v", want.Record.Version, err)
		}
		diff(t, "version", got, want)
	}
	if v1.Record.Status != mapping.StatusRequested || len(v1.TaskNotes) != 0 || v2.Record.Status != mapping.StatusReceived ||
		len(v2.TaskNotes) != 1 || v3.BusinessStatus != mapping.BusinessDelivered || v2.BusinessStatus != mapping.BusinessQueued {
		t.Errorf("versions are not as written: %+v / %+v / %+v", v1.Referral, v2.Referral, v3.Referral)
	}
	for _, c := range []struct {
		id      string
		version int
	}{{"ref-001", 4}, {"ref-001", 0}, {"ref-001", -1}, {"nope", 1}, {"", 1}} {
		if _, err := s.ReferralVersion(ctx, c.id, c.version); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("ReferralVersion(%q, %d): %v, want ErrNotFound", c.id, c.version, err)
		}
	}
	if _, err := s.ReferralVersions(ctx, "nope"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("ReferralVersions(nope): %v, want ErrNotFound", err)
	}
	// A resend writes no version.
	if res, err := s.CreateReferral(ctx, renamed(in, "-again")); err != nil || res.Created {
		t.Fatalf("resend: %+v %v", res, err)
	}
	if got, _ := s.ReferralVersions(ctx, "ref-001"); len(got) != 3 {
		t.Errorf("after a resend: %d versions, want 3", len(got))
	}
}
