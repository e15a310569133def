package postgres_test

import (
	"errors"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
)

// TestStoppedServer stops a private PostgreSQL cluster under an open store (pg_ctl stop -m fast, as an
// operator or a crash would): every call fails with fault.Unavailable (never a kindless error that would be a
// 500), readiness fails, nothing is half-written; once the server is started again the store recovers by
// itself (its pool reconnects) and readiness passes on the second check.
func TestStoppedServer(t *testing.T) {
	t.Parallel()
	c := pgtest.NewCluster(t)
	s := openStore(t, c.URL(), postgres.Options{NoListen: true, ConnectTimeout: 2 * time.Second})
	ctx := t.Context()
	now := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	if _, err := s.CreateReferral(ctx, testIntake(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckWrite(ctx, "i1", now); err != nil {
		t.Fatal(err)
	}

	c.Stop()
	unavailable := func(what string, err error) {
		t.Helper()
		if err == nil || fault.KindOf(err) != fault.Unavailable {
			t.Errorf("%s with the server stopped: %v (kind %s), want %s", what, err, fault.KindOf(err), fault.Unavailable)
		}
	}
	_, err := s.CreateReferral(ctx, testIntake(2))
	unavailable("CreateReferral", err)
	_, err = s.GetReferral(ctx, testIntake(1).Referral.Record.ID)
	unavailable("GetReferral", err)
	_, _, err = s.SearchReferrals(ctx, outbox.ReferralQuery{})
	unavailable("SearchReferrals", err)
	_, err = s.ClaimMessages(ctx, "owner", now, time.Minute, 10, outbox.ClaimFilter{})
	unavailable("ClaimMessages", err)
	_, err = s.NextDue(ctx)
	unavailable("NextDue", err)
	unavailable("CheckWrite", s.CheckWrite(ctx, "i1", now))
	unavailable("Ping", s.Ping(ctx))

	c.Start()
	// The pool's connections died with the server; the first calls may meet them. Within a few calls the
	// store answers again, and readiness passes on the second check after writes work.
	var created error
	for range 5 {
		if _, created = s.CreateReferral(ctx, testIntake(2)); created == nil {
			break
		}
		unavailable("CreateReferral just after the restart", created)
	}
	if created != nil {
		t.Fatalf("the store did not recover after the restart: %v", created)
	}
	var ready error
	for range 3 {
		if ready = s.CheckWrite(ctx, "i1", now); ready == nil {
			break
		}
		unavailable("CheckWrite just after the restart", ready)
	}
	if ready != nil {
		t.Fatalf("readiness did not recover: %v", ready)
	}
	if _, err := s.GetReferral(ctx, testIntake(2).Referral.Record.ID); err != nil {
		t.Errorf("the referral created after the restart: %v", err)
	}
	if _, err := s.GetReferral(ctx, "nope"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("a missing referral after the restart: %v", err)
	}
}
