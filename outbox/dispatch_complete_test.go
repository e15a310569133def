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
	// Every writer holds a batch at the gate; the rest queue behind them.
	deadline := time.Now().Add(10 * time.Second)
	for int(store.held.Load())+len(c.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d attempts at the gate and %d queued; want %d in all", store.held.Load(), len(c.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
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
	if recorded != n || len(store.batches) > 2*completionWriters {
		t.Errorf("%d attempts recorded in %d store calls %v; want %d in at most %d", recorded, len(store.batches),
			store.batches, n, 2*completionWriters)
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
