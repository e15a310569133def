package fault

import (
	"errors"
	"time"
)

// retryAfter is an error that says how long the caller should wait before trying again (a rate limit's refill,
// a database's expected recovery). Each API renders it as a Retry-After header on 429 and 503.
type retryAfter struct {
	err   error
	after time.Duration
}

func (e *retryAfter) Error() string { return e.err.Error() }
func (e *retryAfter) Unwrap() error { return e.err }

// WithRetryAfter returns err carrying a retry delay d (rounded up to whole seconds when rendered; at least one
// second). The error keeps its kind and identity (errors.Is and As see through it).
func WithRetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfter{err: err, after: d}
}

// RetryAfterOf is the retry delay err carries (WithRetryAfter), if any.
func RetryAfterOf(err error) (time.Duration, bool) {
	var ra *retryAfter
	if errors.As(err, &ra) {
		return ra.after, true
	}
	return 0, false
}

// RetryAfterSeconds is the Retry-After header value (whole seconds, at least 1) for err: its own delay when it
// carries one, else def.
func RetryAfterSeconds(err error, def time.Duration) int {
	d, ok := RetryAfterOf(err)
	if !ok {
		d = def
	}
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
