package fault

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	base := New(RateLimited, "rate_limited", "", "slow down")
	err := fmt.Errorf("wrapped: %w", WithRetryAfter(base, 1500*time.Millisecond))
	if KindOf(err) != RateLimited || !errors.Is(err, base) {
		t.Fatalf("kind %s, is %v", KindOf(err), errors.Is(err, base))
	}
	if d, ok := RetryAfterOf(err); !ok || d != 1500*time.Millisecond {
		t.Errorf("RetryAfterOf = %s %v", d, ok)
	}
	for _, tc := range []struct {
		err  error
		def  time.Duration
		want int
	}{
		{err, 5 * time.Second, 2},                                 // rounded up
		{base, 5 * time.Second, 5},                                // the default
		{WithRetryAfter(base, 0), 5 * time.Second, 1},             // at least one second
		{WithRetryAfter(base, 3*time.Second), time.Second, 3},     // exact
		{WithRetryAfter(base, 30*time.Millisecond), time.Hour, 1}, // sub-second: one
	} {
		if got := RetryAfterSeconds(tc.err, tc.def); got != tc.want {
			t.Errorf("RetryAfterSeconds(%v, %s) = %d, want %d", tc.err, tc.def, got, tc.want)
		}
	}
	if WithRetryAfter(nil, time.Second) != nil {
		t.Error("WithRetryAfter(nil) must be nil")
	}
}
