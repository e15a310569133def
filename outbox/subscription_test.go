package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/sqlite"
)

// subStore opens a real SQLite store with one referral-less subscription "sub-1" for practice A81001.
func subStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "db"), sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.CreateSubscription(t.Context(), outbox.Subscription{
		ID: "sub-1", OwnerClientID: "gp", PracticeODS: "A81001", Criteria: "Task?requester:identifier=x|A81001",
		Endpoint: "https://gp.example/hook", Header: []string{"Authorization: Bearer s3cret", "X-Correlation-ID:  a b ", "Cookie: stored before the allowlist"},
		Payload: mapping.PayloadIDOnly, BaseURL: "https://socialrx.example/fhir", CreatedAt: base(),
	}, 0); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWithSubscriptionsResolves(t *testing.T) {
	t.Parallel()
	s := subStore(t)
	next := outbox.EndpointFunc(func(d mapping.Destination) (outbox.Endpoint, bool) {
		return outbox.Endpoint{URL: "https://service.example/" + d.ID, Secret: testSecret}, d.ID == "walks"
	})
	r := outbox.WithSubscriptions(s, next, nil)
	ctx := t.Context()
	sub := mapping.Destination{Kind: mapping.DestinationSubscription, ID: "sub-1"}

	ep, err := r.Endpoint(ctx, sub)
	if err != nil || ep.URL != "https://gp.example/hook" || ep.Secret != "" ||
		ep.Header.Get("Authorization") != "Bearer s3cret" || ep.Header.Get("X-Correlation-ID") != "a b" ||
		ep.Header.Get("Content-Type") != outbox.FHIRJSON || ep.Header.Get("Cookie") != "" || !ep.Guarded {
		t.Errorf("active subscription: %+v, %v", ep, err)
	}
	if ep, err := r.Endpoint(context.Background(), sub); err != nil || ep.URL != "https://gp.example/hook" {
		t.Errorf("Endpoint with a background context: %+v %v", ep, err)
	}
	if ep, err := r.Endpoint(ctx, mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}); err != nil || ep.Secret != testSecret {
		t.Errorf("service through next: %+v, %v", ep, err)
	}
	if _, err := r.Endpoint(ctx, mapping.Destination{Kind: mapping.DestinationService, ID: "nope"}); !errors.Is(err, outbox.ErrUnknownDestination) {
		t.Errorf("unknown service: %v", err)
	}
	if _, err := r.Endpoint(ctx, mapping.Destination{Kind: mapping.DestinationSubscription, ID: "nope"}); !errors.Is(err, outbox.ErrUnknownDestination) {
		t.Errorf("unknown subscription: %v", err)
	}
	if _, err := s.UpdateSubscriptionStatus(ctx, "sub-1", outbox.SubscriptionOff, base()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Endpoint(ctx, sub); !errors.Is(err, outbox.ErrDestinationOff) {
		t.Errorf("off subscription: %v", err)
	}
}

// TestOffSubscriptionMessagesGoDead: a notification queued before its subscription was turned off is not
// sent; it goes dead with an error that says why (and can be replayed if the subscription comes back).
func TestOffSubscriptionMessagesGoDead(t *testing.T) {
	t.Parallel()
	s := subStore(t)
	ctx := t.Context()
	in := mapping.Intake{Referral: mapping.Referral{
		Record: mapping.Record{ID: "ref-1", TaskID: "task-1", ServiceRequestID: "sr-1", Status: mapping.StatusRequested,
			Service: mapping.ServiceRef{ID: "walks"}, CreatedAt: base()},
		PracticeODS: "A81001",
	}, Fingerprint: "fp"}
	if _, err := s.CreateReferral(ctx, in); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateSubscriptionStatus(ctx, "sub-1", outbox.SubscriptionOff, base()); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: base().Add(time.Minute)}
	reports := make(chan outbox.AttemptReport, 16)
	d := outbox.NewDispatcher(s, outbox.WithSubscriptions(s, outbox.EndpointFunc(func(mapping.Destination) (outbox.Endpoint, bool) {
		return outbox.Endpoint{}, false
	}), nil), outbox.DispatcherOptions{Clock: clock.Now, SafetyPoll: time.Hour, Logger: slog.New(slog.DiscardHandler),
		Observer: outbox.ObserverFunc(func(r outbox.AttemptReport) { reports <- r })})
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var rep outbox.AttemptReport
	select {
	case rep = <-reports:
	case <-time.After(guard):
		t.Fatal("no attempt reported")
	}
	if rep.Outcome != outbox.OutcomeDead || rep.Destination.ID != "sub-1" || !strings.Contains(rep.Error, "sub-1 is off") {
		t.Errorf("attempt: %+v, want dead because the subscription is off", rep)
	}
	m, err := s.GetMessage(ctx, rep.MessageID)
	if err != nil || m.Message.State != outbox.StateDead || !strings.Contains(m.Message.LastError, "is off") || m.Attempts[0].StatusCode != 0 {
		t.Errorf("stored message: %+v, %v", m, err)
	}
}
