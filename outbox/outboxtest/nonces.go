package outboxtest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testNonces: a single-use value is accepted once until it expires, also when instances race for it.
func testNonces(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	now := at(0)
	use := func(nonce string, expires, now time.Time) bool {
		t.Helper()
		fresh, err := s.UseNonce(ctx, nonce, expires, now)
		if err != nil {
			t.Fatal(err)
		}
		return fresh
	}
	if !use("client-a/jti-1", now.Add(5*time.Minute), now) {
		t.Error("a new nonce was refused")
	}
	if use("client-a/jti-1", now.Add(5*time.Minute), now.Add(time.Minute)) {
		t.Error("a nonce was accepted twice before it expired")
	}
	if !use("client-b/jti-1", now.Add(5*time.Minute), now) {
		t.Error("the same jti of another client was refused")
	}
	// After it expires the record is gone (and the same value is new again).
	if !use("client-a/jti-1", now.Add(20*time.Minute), now.Add(10*time.Minute)) {
		t.Error("an expired nonce was still remembered")
	}
	if _, err := s.UseNonce(ctx, "", now, now); err == nil {
		t.Error("an empty nonce was accepted")
	}

	// Many callers race for the same values: exactly one wins each.
	const callers, values = 8, 5
	var wins [values]atomic.Int32
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for v := range values {
				fresh, err := s.UseNonce(ctx, fmt.Sprintf("race-%d", v), now.Add(time.Hour), now)
				if err != nil {
					t.Error(err)
					return
				}
				if fresh {
					wins[v].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for v := range values {
		if w := wins[v].Load(); w != 1 {
			t.Errorf("race-%d accepted %d times, want once", v, w)
		}
	}
}
