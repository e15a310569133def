package outbox

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// BackoffFunc returns how long to wait before retrying after the given failed attempt (1-based, counted
// across replays, so a replayed message that fails again does not go back to hammering its receiver).
type BackoffFunc func(attempt int) time.Duration

// JitterFunc returns the random extra delay added to a backoff of d (spreading retries of many messages that
// failed together). Tests inject a fixed one.
type JitterFunc func(d time.Duration) time.Duration

// Exponential returns base × 2^(attempt-1), capped at max: with base 10 s and max 4 h the waits are 10 s,
// 20 s, 40 s, … 4 h. Attempts below 1 count as 1; it never overflows.
func Exponential(base, max time.Duration) BackoffFunc {
	return func(attempt int) time.Duration {
		d := base
		for i := 1; i < attempt && d < max; i++ {
			d *= 2
		}
		return min(d, max)
	}
}

// DefaultJitter adds a uniformly random extra delay in [0, d/4].
func DefaultJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d/4 + 1)
}

// ParseRetryAfter reads a Retry-After header value, either delay-seconds ("120") or an HTTP-date
// ("Fri, 31 Dec 1999 23:59:59 GMT", taken relative to now). A date in the past means 0. ok is false when
// the value is absent or malformed.
func ParseRetryAfter(value string, now time.Time) (d time.Duration, ok bool) {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(value, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		const maxSecs = int64((1<<63 - 1) / time.Second)
		return time.Duration(min(secs, maxSecs)) * time.Second, true
	}
	t, err := http.ParseTime(value)
	if err != nil {
		return 0, false
	}
	if !t.After(now) {
		return 0, true
	}
	return t.Sub(now), true
}

// schedule is the durable retry policy (validated options).
type schedule struct {
	backoff       BackoffFunc
	jitter        JitterFunc
	maxRetryAfter time.Duration
	budget        time.Duration
}

// retryPlan is the decision after a retryable failure.
type retryPlan struct {
	dead bool      // the retry budget is spent
	next time.Time // when not dead: the next attempt
}

// plan decides when a message whose attempt number attempt failed retryably at now is tried again:
// now + max(backoff(attempt) + jitter, min(Retry-After, maxRetryAfter)); never after the end of its retry
// budget (budgetFrom + budget), where one last attempt is made; at or past that end it is dead.
func (s schedule) plan(now time.Time, attempt int, retryAfter time.Duration, hasRetryAfter bool, budgetFrom time.Time) retryPlan {
	end := budgetFrom.Add(s.budget)
	if !now.Before(end) {
		return retryPlan{dead: true}
	}
	b := max(s.backoff(attempt), 0)
	wait := b + max(s.jitter(b), 0)
	if hasRetryAfter {
		wait = max(wait, min(retryAfter, s.maxRetryAfter))
	}
	next := now.Add(wait)
	if next.After(end) {
		next = end
	}
	return retryPlan{next: next}
}
