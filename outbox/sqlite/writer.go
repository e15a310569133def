package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// job is one write waiting for the writer goroutine.
type job struct {
	ctx  context.Context
	run  func(w *wtx) error // nil error: keep what it wrote
	done chan error         // buffered 1; the job's result after COMMIT
	// state decides, once, between the writer taking the job (jobTaken) and its caller giving up on it
	// (jobAbandoned): a taken job's caller always waits for the true result.
	state atomic.Int32
}

const (
	jobQueued int32 = iota
	jobTaken
	jobAbandoned
)

// wtx is the writer's transaction as the write functions see it: a querier whose static statements are
// prepared once on the write connection and reused by every transaction.
type wtx struct {
	s       *Store
	ctx     context.Context // the writer's: never a caller's (an interrupted statement would roll back the batch)
	tx      *sql.Tx
	changed bool // a job wrote messages or changed their state: signal Changes after COMMIT
}

// stmt returns q's statement prepared on the write connection, bound to the transaction, or nil when it is
// not prepared yet. A statement cannot be prepared on the DB while the transaction holds its only
// connection, so a miss is remembered and prepared after the transaction ends (see prepareMissed).
func (w *wtx) stmt(q string) *sql.Stmt {
	st, ok := w.s.stmts[q]
	if !ok {
		if len(w.s.stmts)+len(w.s.missed) < maxStmts {
			w.s.missed[q] = true
		}
		return nil
	}
	return w.tx.StmtContext(w.ctx, st)
}

// maxStmts caps the statement cache (statements built from a filter vary a little in shape). The batched
// claim and completions write one text per power of two of rows (up to about 45 texts in all: issue 12), so
// the cap leaves them room beside the static statements.
const maxStmts = 256

// prepareMissed prepares, on the idle write connection, the statements the last transaction missed.
func (s *Store) prepareMissed(ctx context.Context) {
	for q := range s.missed {
		delete(s.missed, q)
		st, err := s.wdb.PrepareContext(ctx, q)
		if err != nil {
			s.log.Warn("sqlite: prepare failed", "err", err)
			continue
		}
		s.stmts[q] = st
	}
}

// ExecContext runs q with a cached statement. ctx is ignored in favour of the writer's (see wtx.ctx).
func (w *wtx) ExecContext(_ context.Context, q string, args ...any) (sql.Result, error) {
	if st := w.stmt(q); st != nil {
		return st.ExecContext(w.ctx, args...)
	}
	return w.tx.ExecContext(w.ctx, q, args...)
}

// QueryContext runs q with a cached statement.
func (w *wtx) QueryContext(_ context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := w.stmt(q); st != nil {
		return st.QueryContext(w.ctx, args...)
	}
	return w.tx.QueryContext(w.ctx, q, args...)
}

// QueryRowContext runs q with a cached statement.
func (w *wtx) QueryRowContext(_ context.Context, q string, args ...any) *sql.Row {
	if st := w.stmt(q); st != nil {
		return st.QueryRowContext(w.ctx, args...)
	}
	return w.tx.QueryRowContext(w.ctx, q, args...)
}

// write queues run for the writer goroutine and waits for its result after COMMIT. If ctx ends while the
// write is still queued, the write is abandoned (it will not run) and ctx's error returned; once the writer
// has taken it, the caller waits for the true outcome (one batch, at most busy_timeout), so that a caller
// never hears "failed" about a write that committed (a claim whose leases nobody would know about).
func (s *Store) write(ctx context.Context, run func(w *wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	j := &job{ctx: ctx, run: run, done: make(chan error, 1)}
	select {
	case <-s.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	case s.jobs <- j:
	}
	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		if j.state.CompareAndSwap(jobQueued, jobAbandoned) {
			return ctx.Err()
		}
		select {
		case err := <-j.done:
			return err
		case <-s.writerDone:
			return s.lastWord(j)
		}
	case <-s.writerDone:
		return s.lastWord(j)
	}
}

// lastWord is a job's result once the writer has stopped: its answer if it ran, else ErrClosed.
func (s *Store) lastWord(j *job) error {
	select {
	case err := <-j.done:
		return err
	default:
		return ErrClosed
	}
}

// writer is the writer goroutine: it commits batches of queued writes until Close, then finishes what
// is queued and returns.
func (s *Store) writer() {
	defer close(s.writerDone)
	if s.syncQ != nil {
		defer func() { // after the last batch: the syncer answers what it holds, then stops
			close(s.syncQ)
			<-s.syncDone
		}()
	}
	ctx := context.Background()
	batch := make([]*job, 0, s.opts.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case j := <-s.jobs:
			batch = append(batch, j)
		case <-s.closing:
			for {
				select {
				case j := <-s.jobs:
					s.commit(ctx, []*job{j})
					s.prepareMissed(ctx)
				default:
					return
				}
			}
		}
		s.awaitSyncer()
	collect:
		for len(batch) < s.opts.MaxBatch {
			select {
			case j := <-s.jobs:
				batch = append(batch, j)
			default:
				break collect
			}
		}
		s.commit(ctx, batch)
		s.prepareMissed(ctx)
	}
}

// commit runs the batch in one transaction, each job in its own savepoint, and answers every job (answer:
// once the commit is on disk).
func (s *Store) commit(ctx context.Context, batch []*job) {
	live := batch[:0:0]
	for _, j := range batch {
		if !j.state.CompareAndSwap(jobQueued, jobTaken) {
			continue // abandoned by its caller
		}
		if err := j.ctx.Err(); err != nil {
			j.done <- err
			continue
		}
		live = append(live, j)
	}
	if len(live) == 0 {
		return
	}
	results := make([]error, len(live))
	fail := func(err error) {
		for i := range results {
			results[i] = err
		}
		s.answer(live, results)
	}
	if err := s.syncFailed(); err != nil {
		fail(err)
		return
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		fail(s.d.DriverErr("begin", err))
		return
	}
	w := &wtx{s: s, ctx: ctx, tx: tx}
	if len(live) == 1 {
		if results[0] = safeRun(live[0], w); results[0] != nil {
			if rerr := tx.Rollback(); rerr != nil {
				s.log.Error("sqlite: rollback failed", "err", rerr)
			}
			s.answer(live, results)
			return
		}
	} else {
		for i, j := range live {
			if _, err := w.ExecContext(ctx, "SAVEPOINT job"); err != nil {
				_ = tx.Rollback()
				fail(s.d.DriverErr("savepoint", err))
				return
			}
			results[i] = safeRun(j, w)
			if results[i] != nil {
				if _, err := w.ExecContext(ctx, "ROLLBACK TO job"); err != nil {
					// The transaction is unusable: nobody's write survives it.
					_ = tx.Rollback()
					fail(s.d.DriverErr("rollback to savepoint", err))
					return
				}
			}
			if _, err := w.ExecContext(ctx, "RELEASE job"); err != nil {
				_ = tx.Rollback()
				fail(s.d.DriverErr("release savepoint", err))
				return
			}
		}
	}
	if err := tx.Commit(); err != nil {
		fail(s.d.DriverErr("commit", err))
		return
	}
	if s.afterBatch != nil {
		s.afterBatch(len(live))
	}
	s.kickCheckpointer()
	if w.changed {
		s.signal()
	}
	s.answer(live, results)
}

// safeRun runs a job, turning a panic (in a caller's ReferralUpdate, say) into that job's error.
func safeRun(j *job, w *wtx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sqlite: write panicked: %v", r)
		}
	}()
	return j.run(w)
}

// isUnique reports a UNIQUE or PRIMARY KEY constraint violation.
func isUnique(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code()
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}
