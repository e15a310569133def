package outbox

import (
	"context"
	"time"
)

// maxCompletionBatch caps how many finished attempts one store transaction records.
const maxCompletionBatch = 64

// recordingAhead is how far beyond its Concurrency the messages a dispatcher holds may go with answered
// attempts waiting to be recorded: one full batch.
const recordingAhead = maxCompletionBatch

// completion is a finished attempt waiting to be recorded, and where its result goes.
type completion struct {
	c    Completion
	done chan error // buffered 1
}

// completer records finished attempts in batches: every attempt that finishes while the previous batch is
// being committed goes into the next one (Store.CompleteAttempts), so that under load a delivery does not
// cost a commit (an fsync) of its own, and alone it waits for no one. Each delivery waits for its own
// attempt's result before it lets its message go: the lease is held until the attempt is recorded.
//
// One batch is recorded at a time. With a second writer, whatever finished while the first wrote its batch
// was taken at once by the second, often alone: in a 20,000-message drain on PostgreSQL about 1,100 of
// 3,000 transactions recorded a single attempt (the one-attempt statement, its own Task version and stamp
// reservation, and a commit). With one writer almost none do, and the server's CPU per message fell by a
// tenth to a fifth (issue 12, fourteenth session; README "Performance"). With four writers, in an earlier
// design, batches held 1.3 attempts.
type completer struct {
	ctx   context.Context // the store calls' (never cancelled: a finished attempt is always recorded)
	store Store
	queue chan completion
}

// newCompleter starts a completer; stop ends it once every delivery that could call record has returned.
func newCompleter(ctx context.Context, store Store, queueLen int) (c *completer, stop func()) {
	c = &completer{ctx: context.WithoutCancel(ctx), store: store, queue: make(chan completion, queueLen)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.run()
	}()
	return c, func() {
		close(c.queue)
		<-done
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
