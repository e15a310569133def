package outbox

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
)

func TestStorePauseFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		base time.Duration
		n    int
		want time.Duration
	}{
		{2 * time.Second, 1, 2 * time.Second},
		{2 * time.Second, 2, 4 * time.Second},
		{2 * time.Second, 3, 8 * time.Second},
		{2 * time.Second, 5, 32 * time.Second},
		{2 * time.Second, 6, maxStorePause},
		{2 * time.Second, 1000, maxStorePause},
		{time.Hour, 1, maxStorePause},
	} {
		if got := storePauseFor(tc.base, tc.n); got != tc.want {
			t.Errorf("storePauseFor(%s, %d) = %s, want %s", tc.base, tc.n, got, tc.want)
		}
	}
}

// failingStore is a store whose first fail claims fail as a stopped database's do; every claim is reported
// on claims.
type failingStore struct {
	nopStore
	mu      sync.Mutex
	fail    int
	claims  chan int
	n       int
	changes chan struct{}
}

var errDatabaseDown = fault.Sentinel(fault.Unavailable, "connection refused")

func (s *failingStore) ClaimMessages(context.Context, string, time.Time, time.Duration, int, ClaimFilter) ([]Message, error) {
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	s.claims <- n
	if n <= s.fail {
		return nil, errDatabaseDown
	}
	return nil, nil
}

func (s *failingStore) Changes() <-chan struct{} { return s.changes }

// logBuffer is a log sink safe for the dispatcher's goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDispatcherBacksOffFailingStore: a store that fails (a database that is down) costs one error line for
// the whole run of failures, the dispatcher keeps looking with backoff, and says once when the store answers
// again.
func TestDispatcherBacksOffFailingStore(t *testing.T) {
	t.Parallel()
	const failures = 4
	st := &failingStore{fail: failures, claims: make(chan int, 100), changes: make(chan struct{}, 1)}
	var logs logBuffer
	d := NewDispatcher(st, DirectoryEndpoints(mapping.Directory{}), DispatcherOptions{SafetyPoll: time.Millisecond, Logger: testLogger(&logs)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	for want := 1; want <= failures+1; want++ {
		select {
		case n := <-st.claims:
			if n != want {
				t.Fatalf("claim %d, want %d", n, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the dispatcher stopped looking for work after %d failed claims", want-1)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if n := strings.Count(out, "level=ERROR msg=\"outbox: the store does not answer"); n != 1 {
		t.Errorf("%d error lines for one run of store failures, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "level=INFO msg=\"outbox: the store answers again; deliveries resume\" owner="); n != 1 ||
		!strings.Contains(out, "failed_looks=4") {
		t.Errorf("want one recovery line naming the 4 failed looks:\n%s", out)
	}
}

// TestDispatcherPauseEndsOnCommit: after a failed look the dispatcher pauses (here for an hour: SafetyPoll is
// an hour), but a commit in this process (Store.Changes) proves the database is back and ends the pause at
// once.
func TestDispatcherPauseEndsOnCommit(t *testing.T) {
	t.Parallel()
	st := &failingStore{fail: 1, claims: make(chan int, 100), changes: make(chan struct{}, 1)}
	d := NewDispatcher(st, DirectoryEndpoints(mapping.Directory{}), DispatcherOptions{SafetyPoll: time.Hour,
		Logger: testLogger(&logBuffer{})})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = d.Run(ctx) }()
	if n := <-st.claims; n != 1 {
		t.Fatalf("first claim %d", n)
	}
	st.changes <- struct{}{}
	select {
	case n := <-st.claims:
		if n != 2 {
			t.Fatalf("claim %d, want 2", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a commit did not end the dispatcher's pause")
	}
}
