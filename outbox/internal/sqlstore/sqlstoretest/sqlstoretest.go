// Package sqlstoretest holds the test helpers that the SQL backends' own tests (outbox/sqlite,
// outbox/postgres) share, beside the conformance suite outbox/outboxtest: fixtures and checks that look
// at one backend's specifics. Only those tests import it.
package sqlstoretest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Intake is the n-th test referral: ids ref-n, task-n, sr-n, message msg-n (a referral.created to dest
// carrying payload), identifier urn:ids|n, fingerprint fpn, created and updated at at, from practice A81001.
func Intake(n int, at time.Time, dest mapping.Destination, payload json.RawMessage) mapping.Intake {
	return mapping.Intake{
		Referral: mapping.Referral{
			Record: mapping.Record{ID: fmt.Sprintf("ref-%d", n), TaskID: fmt.Sprintf("task-%d", n),
				ServiceRequestID: fmt.Sprintf("sr-%d", n), Status: mapping.StatusRequested, Version: 1,
				Service: mapping.ServiceRef{ID: dest.ID}, CreatedAt: at, UpdatedAt: at},
			PracticeODS: "A81001",
		},
		ServiceRequest: json.RawMessage(`{"resourceType":"ServiceRequest"}`),
		Identifiers:    []mapping.Identifier{{System: "urn:ids", Value: fmt.Sprint(n)}},
		Fingerprint:    fmt.Sprint("fp", n),
		Events: []mapping.Event{{ID: fmt.Sprintf("msg-%d", n), Type: mapping.EventReferralCreated,
			Destination: dest, Payload: payload}},
	}
}

// CancelledCreateWritesNothing checks that a create of in (whose referral id is not yet stored) with a
// cancelled context fails with context.Canceled and writes nothing.
func CancelledCreateWritesNothing(t *testing.T, s outbox.Store, in mapping.Intake) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.CreateReferral(ctx, in); !errors.Is(err, context.Canceled) {
		t.Errorf("create with a cancelled context: %v", err)
	}
	if _, err := s.GetReferral(t.Context(), in.Referral.Record.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("cancelled create wrote: %v", err)
	}
}

// Open returns the store open makes (an error fails t), closed when t ends (a Close error fails t too).
func Open[S outbox.Store](t *testing.T, open func() (S, error)) S {
	t.Helper()
	s, err := open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// PauseAcrossInstances checks that a pause is the database's, not the process's: a destination paused
// through store a (the CLI, another instance) is not claimed by store b on the same database, and resumed
// through a it is claimed by b again, its message intact (no attempt was made while paused).
func PauseAcrossInstances(t *testing.T, a, b outbox.Store) {
	t.Helper()
	ctx := t.Context()
	now := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	dest := mapping.Destination{Kind: mapping.DestinationService, ID: "paused-elsewhere"}
	if _, err := b.CreateReferral(ctx, Intake(9001, now, dest, json.RawMessage(`{}`))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.PauseDestination(ctx, outbox.Pause{Destination: dest, PausedAt: now, PausedBy: "cli:ops",
		Reason: "down"}); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Hour)
	if ms, err := b.ClaimMessages(ctx, "b", later, time.Minute, 10, outbox.ClaimFilter{}); err != nil || len(ms) != 0 {
		t.Fatalf("claim on another instance while paused: %d messages, %v", len(ms), err)
	}
	if ps, err := b.ListPauses(ctx); err != nil || len(ps) != 1 || ps[0].Destination != dest {
		t.Fatalf("pauses seen by another instance: %+v, %v", ps, err)
	}
	if _, err := a.ResumeDestination(ctx, dest, later, "cli:ops"); err != nil {
		t.Fatal(err)
	}
	ms, err := b.ClaimMessages(ctx, "b", later, time.Minute, 10, outbox.ClaimFilter{})
	if err != nil || len(ms) != 1 || ms[0].ID != "msg-9001" || ms[0].Attempts != 0 {
		t.Fatalf("claim on another instance after resume: %+v, %v", ms, err)
	}
}
