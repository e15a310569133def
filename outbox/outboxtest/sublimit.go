package outboxtest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/socialrx/socialrx/outbox"
)

// testSubscriptionLimit: a capped CreateSubscription refuses the owner's subscription beyond the cap
// (ErrSubscriptionLimit, nothing written), counts only active ones (turning one off frees a place), and never
// lets concurrent creates pass the cap; other owners have their own count.
func testSubscriptionLimit(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	const limit = 3
	owned := func(id, owner string) outbox.Subscription {
		sub := subscription(id, "A81001", at(time.Second))
		sub.OwnerClientID = owner
		return sub
	}
	for i := range limit {
		if _, err := s.CreateSubscription(ctx, owned(fmt.Sprint("a-", i), "gp-a"), limit); err != nil {
			t.Fatalf("subscription %d within the cap: %v", i, err)
		}
	}
	_, err := s.CreateSubscription(ctx, owned("a-over", "gp-a"), limit)
	wantErr(t, "a subscription beyond the cap", err, outbox.ErrSubscriptionLimit)
	if _, err := s.GetSubscription(ctx, "a-over"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("the refused subscription was written: %v", err)
	}
	if _, err := s.CreateSubscription(ctx, owned("b-0", "gp-b"), limit); err != nil {
		t.Errorf("another owner: %v", err)
	}
	if _, err := s.UpdateSubscriptionStatus(ctx, "a-0", outbox.SubscriptionOff, at(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSubscription(ctx, owned("a-3", "gp-a"), limit); err != nil {
		t.Errorf("after turning one off: %v", err)
	}
	if _, err := s.CreateSubscription(ctx, owned("a-uncapped", "gp-a"), 0); err != nil {
		t.Errorf("maxActive 0 sets no cap: %v", err)
	}

	// Concurrent creates of one owner: exactly the cap gets in.
	const racers = 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, refused := 0, 0
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.CreateSubscription(ctx, owned(fmt.Sprint("c-", i), "gp-c"), limit)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case errors.Is(err, outbox.ErrSubscriptionLimit):
				refused++
			default:
				t.Errorf("racer %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if created != limit || refused != racers-limit {
		t.Errorf("%d concurrent creates under a cap of %d: %d created, %d refused", racers, limit, created, refused)
	}
	subs, err := s.ListSubscriptions(ctx, outbox.SubscriptionQuery{OwnerClientID: "gp-c"})
	if err != nil || len(subs) != limit {
		t.Errorf("gp-c has %d subscriptions, want %d (%v)", len(subs), limit, err)
	}
}
