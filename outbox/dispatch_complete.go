package outbox

import (
	"context"
	"sync"
	"time"
)

// completionWriters is how many batches may be written at once: a backend with several writers
// (PostgreSQL) overlaps one batch's commit with the next batch's statements; SQLite's single writer
// group-commits them. More writers make smaller batches: with four, a PostgreSQL drain recorded ~1.3
// attempts per transaction, and its commits and per-transaction round trips cost more than the second
// writer's overlap saves (issue 12: a 20,000 drain at 1,000/s with 1 or 2 writers, 670–860 with 4).
const completionWriters = 2

// maxCompletionBatch caps how many finished attempts one store transaction records.
const maxCompletionBatch = 64

// completion is a finished attempt waiting to be recorded, and where its result goes.
type completion struct {
	c    Completion
	done chan error // buffered 1
}

// completer records finished attempts in batches: every attempt that finishes while the previous batch is
// being committed goes into the next one (Store.CompleteAttempts), so that under load a delivery does not
// cost a commit (an fsync) of its own, and alone it waits for no one. Each delivery waits for its own
// attempt's result before it lets its message go: the lease is held until the attempt is recorded.
type completer struct {
	ctx   context.Context // the store calls' (never cancelled: a finished attempt is always recorded)
	store Store
	queue chan completion
}

// newCompleter starts a completer; stop ends it once every delivery that could call record has returned.
func newCompleter(ctx context.Context, store Store, queueLen int) (c *completer, stop func()) {
	c = &completer{ctx: context.WithoutCancel(ctx), store: store, queue: make(chan completion, queueLen)}
	var wg sync.WaitGroup
	for range completionWriters {
		wg.Go(c.run)
	}
	return c, func() {
		close(c.queue)
		wg.Wait()
	}
}

// record records one attempt, in a batch with whatever else finished meanwhile, and returns its result.
func (c *completer) record(ctx context.Context, id string, now time.Time, res AttemptResult) error {
	w := completion{c: Completion{ID: id, Now: now, Result: res}, done: make(chan error, 1)}
	select {
	case c.queue <- w:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return ctx.Err() // the batch still commits or not on its own; the lease decides what happens next
	}
}

func (c *completer) run() {
	batch := make([]completion, 0, maxCompletionBatch)
	cs := make([]Completion, 0, maxCompletionBatch)
	for first := range c.queue {
		batch = append(batch[:0], first)
		for more := true; more && len(batch) < maxCompletionBatch; {
			select {
			case w, ok := <-c.queue:
				if !ok {
					more = false
					break
				}
				batch = append(batch, w)
			default:
				more = false
			}
		}
		cs = cs[:0]
		for _, w := range batch {
			cs = append(cs, w.c)
		}
		ctx, cancel := context.WithTimeout(c.ctx, storeCallTimeout)
		errs := c.store.CompleteAttempts(ctx, cs)
		cancel()
		for i, w := range batch {
			w.done <- errs[i]
		}
	}
}
