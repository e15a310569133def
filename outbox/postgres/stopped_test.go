package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore/sqlstoretest"
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

// TestDispatcherRecoversAfterRestart runs the real dispatcher against a private cluster that is stopped under
// it: it keeps its messages, backs off while the database is gone, and delivers again as soon as the server
// is back and a referral commits (a commit ends its pause), without a restart of socialrx.
func TestDispatcherRecoversAfterRestart(t *testing.T) {
	t.Parallel()
	c := pgtest.NewCluster(t)
	s := openStore(t, c.URL(), postgres.Options{ConnectTimeout: 2 * time.Second})
	got := make(chan string, 16)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get(outbox.HeaderWebhookID)
	}))
	t.Cleanup(recv.Close)
	dest := mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}
	ep := outbox.EndpointFunc(func(mapping.Destination) (outbox.Endpoint, bool) {
		return outbox.Endpoint{URL: recv.URL, Secret: "whsec_c29jaWFscngtdGVzdC13ZWJob29rLXNlY3JldC0zMmI="}, true
	})
	d := outbox.NewDispatcher(s, ep, outbox.DispatcherOptions{SafetyPoll: 50 * time.Millisecond, Logger: quiet})
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan error, 1)
	go func() { stopped <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	now := time.Now().UTC()
	wait := func(want string) {
		t.Helper()
		select {
		case id := <-got:
			if id != want {
				t.Fatalf("delivered %s, want %s", id, want)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s was not delivered", want)
		}
	}
	if _, err := s.CreateReferral(ctx, sqlstoretest.Intake(1, now, dest, json.RawMessage(`{}`))); err != nil {
		t.Fatal(err)
	}
	wait("msg-1")

	c.Stop()
	// The dispatcher's looks for work fail now; the store says why, with the kind a client would get.
	if _, err := s.ClaimMessages(ctx, "probe", now, time.Minute, 1, outbox.ClaimFilter{}); fault.KindOf(err) != fault.Unavailable {
		t.Fatalf("claim with the server stopped: %v", err)
	}
	c.Start()
	var err error
	for range 5 { // the pool's dead connections may fail the first calls after the restart
		if _, err = s.CreateReferral(ctx, sqlstoretest.Intake(2, now, dest, json.RawMessage(`{}`))); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("create after the restart: %v", err)
	}
	wait("msg-2")
}
