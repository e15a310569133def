package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// batchStore records the batches CompleteAttempts is given; each call waits for gate, and a completion whose
// message id starts with "bad" fails.
type batchStore struct {
	nopStore
	gate    chan struct{}
	held    atomic.Int64 // completions waiting at the gate
	mu      sync.Mutex
	batches [][]string
}

var errBad = errors.New("bad completion")

func (s *batchStore) CompleteAttempts(_ context.Context, cs []Completion) []error {
	s.held.Add(int64(len(cs)))
	<-s.gate
	errs := make([]error, len(cs))
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
		if c.ID[:3] == "bad" {
			errs[i] = fmt.Errorf("%s: %w", c.ID, errBad)
		}
	}
	s.mu.Lock()
	s.batches = append(s.batches, ids)
	s.mu.Unlock()
	return errs
}

// waitUntil polls cond until it holds, and fails the test with failure's text after 10 s.
func waitUntil(t *testing.T, cond func() bool, failure func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(failure())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCompleterBatches: attempts that finish while the store is busy are recorded together, in fewer store
// calls than attempts, and each delivery gets its own result.
func TestCompleterBatches(t *testing.T) {
	t.Parallel()
	const n = 40
	store := &batchStore{gate: make(chan struct{})}
	c, stop := newCompleter(t.Context(), store, n)
	results := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		id := fmt.Sprintf("msg-%02d", i)
		if i%10 == 3 {
			id = fmt.Sprintf("bad-%02d", i)
		}
		wg.Go(func() { results[i] = c.record(t.Context(), id, time.Now(), AttemptResult{State: StateDelivered}) })
	}
	// The writer holds a batch at the gate; the rest queue behind it.
	waitUntil(t, func() bool { return int(store.held.Load())+len(c.queue) >= n }, func() string {
		return fmt.Sprintf("%d attempts at the gate and %d queued; want %d in all", store.held.Load(), len(c.queue), n)
	})
	close(store.gate)
	wg.Wait()
	stop()
	for i, err := range results {
		if want := i%10 == 3; errors.Is(err, errBad) != want || (!want && err != nil) {
			t.Errorf("attempt %d: %v (want the bad completion error: %v)", i, err, want)
		}
	}
	recorded := 0
	for _, b := range store.batches {
		recorded += len(b)
	}
	if recorded != n || len(store.batches) > 2 {
		t.Errorf("%d attempts recorded in %d store calls %v; want %d in at most 2", recorded, len(store.batches),
			store.batches, n)
	}
}

// TestCompleterRecordsOneBatchAtATime: while a batch is being recorded, the attempts that finish meanwhile
// wait for it, and then go to the store together: no second batch starts beside the first (with two writers,
// one of them took whatever had just finished, often a single attempt, in a transaction of its own).
func TestCompleterRecordsOneBatchAtATime(t *testing.T) {
	t.Parallel()
	const later = 10
	store := &batchStore{gate: make(chan struct{})}
	c, stop := newCompleter(t.Context(), store, later+1)
	results := make(chan error, later+1)
	go func() { results <- c.record(t.Context(), "first", time.Now(), AttemptResult{State: StateDelivered}) }()
	waitUntil(t, func() bool { return store.held.Load() >= 1 }, func() string { return "the first attempt never reached the store" })
	for i := range later {
		go func() {
			results <- c.record(t.Context(), fmt.Sprintf("msg-%02d", i), time.Now(), AttemptResult{State: StateDelivered})
		}()
	}
	waitUntil(t, func() bool { return len(c.queue) >= later || store.held.Load() != 1 }, func() string {
		return fmt.Sprintf("%d attempts queued; want %d", len(c.queue), later)
	})
	// Time for a second writer, were there one, to take what is queued.
	time.Sleep(50 * time.Millisecond)
	if held := store.held.Load(); held != 1 {
		t.Errorf("%d attempts at the store while the first batch was being recorded; want only that batch's 1", held)
	}
	close(store.gate)
	for range later + 1 {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	stop()
	if len(store.batches) != 2 || len(store.batches[0]) != 1 || len(store.batches[1]) != later {
		t.Errorf("store calls %v; want the first attempt alone, then the %d that finished meanwhile together",
			store.batches, later)
	}
}

// TestCompleterGivesUpWithItsCaller: a delivery whose context ends while its attempt waits is told so (the
// lease decides what happens to the message), and the completer still stops cleanly.
func TestCompleterGivesUpWithItsCaller(t *testing.T) {
	t.Parallel()
	store := &batchStore{gate: make(chan struct{})}
	c, stop := newCompleter(t.Context(), store, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := c.record(ctx, "msg-1", time.Now(), AttemptResult{State: StateDelivered}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("record with an expired context: %v", err)
	}
	close(store.gate)
	stop()
	if len(store.batches) != 1 {
		t.Errorf("batches after the caller gave up: %v (the attempt is still recorded)", store.batches)
	}
}
