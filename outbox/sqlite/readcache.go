package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// readStmts is the read pool as the shared scripts query it (sqlstore.Querier): each statement text is
// prepared once and kept (database/sql prepares it again on each pool connection it runs on, once), so a
// read that runs on every claim wakeup or every intake (the next due time, a service's open referrals) is
// not parsed and planned each time. SQLite parses a statement in the caller's CPU: in a delivery profile
// under backlog, preparing the same few reads again and again took about 7% of the process (issue 12).
type readStmts struct {
	db    *sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// maxReadStmts caps the cache: statements built from a filter (a list of paused destinations, a search's
// parameters) vary in shape; past the cap a new text is prepared for its one use, as before.
const maxReadStmts = 256

func newReadStmts(db *sql.DB) *readStmts {
	return &readStmts{db: db, stmts: make(map[string]*sql.Stmt)}
}

// stmt returns q's kept statement, preparing and keeping it on first use; nil when the cache is full or q
// does not prepare (the caller then runs q directly, which reports the error).
func (c *readStmts) stmt(ctx context.Context, q string) *sql.Stmt {
	c.mu.Lock()
	st, ok := c.stmts[q]
	full := len(c.stmts) >= maxReadStmts
	c.mu.Unlock()
	if ok || full {
		return st
	}
	st, err := c.db.PrepareContext(ctx, q) // outside the lock: it may wait for a pool connection
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if kept, ok := c.stmts[q]; ok { // prepared meanwhile by another reader
		_ = st.Close()
		return kept
	}
	c.stmts[q] = st
	return st
}

// ExecContext runs q on the read pool (sqlstore.Querier; the shared scripts write only through the writer).
func (c *readStmts) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := c.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return c.db.ExecContext(ctx, q, args...)
}

// QueryContext runs q with its kept statement.
func (c *readStmts) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := c.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return c.db.QueryContext(ctx, q, args...)
}

// QueryRowContext runs q with its kept statement.
func (c *readStmts) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if st := c.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return c.db.QueryRowContext(ctx, q, args...)
}

// close closes every kept statement.
func (c *readStmts) close() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for q, st := range c.stmts {
		errs = append(errs, st.Close())
		delete(c.stmts, q)
	}
	return errs
}
