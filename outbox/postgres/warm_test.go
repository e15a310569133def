package postgres_test

import (
	"database/sql"
	"testing"

	"github.com/socialrx/socialrx/outbox/postgres"
)

// TestWarmUp: a store opened with Warm has its writers' and stamp pools' sessions open before the first
// request, each writer session with the intake's statement prepared (what a cold session's first intake
// waited for), each queue session with the claim prepared for each of its limits, and nothing written by
// the warm-up is left behind.
//
// Not parallel (nor is TestWarmUpLeavesTheServerRoom): the warm-up takes at most a quarter of the server's free
// connections, and this package's parallel tests would take them.
func TestWarmUp(t *testing.T) {
	dsn := freshSchema(t)
	const conns = 4
	s := openStore(t, dsn, postgres.Options{Warm: true, MaxConns: conns})
	for name, p := range map[string]*sql.DB{"writers'": postgres.WriterPool(s), "stamp": postgres.StampPool(s)} {
		if open := p.Stats().OpenConnections; open != conns {
			t.Errorf("the %s pool has %d sessions open after Open, want %d", name, open, conns)
		}
	}
	// Take every session of the writers' pool at once: each is one the warm-up opened.
	db := postgres.WriterPool(s)
	held := holdAll(t, db, conns)
	if opened := db.Stats().OpenConnections; opened != conns {
		t.Fatalf("%d sessions open while %d are held, want %d (a held session was opened now)", opened, conns, conns)
	}
	for i, c := range held {
		// The creation, and the creation that appends its audit record (serve's creates).
		if n := preparedLike(t, c, "WITH r AS (INSERT INTO referrals %"); n != 2 {
			t.Errorf("writer session %d has %d creation statements prepared, want 2", i, n)
		}
		if n := preparedLike(t, c, "WITH r AS (INSERT INTO referrals %INSERT INTO audit_records%"); n != 1 {
			t.Errorf("writer session %d has %d creation statements with an audit record prepared, want 1", i, n)
		}
	}
	// Each queue session has the claim prepared for every limit it is written with (1 to 32).
	qdb := postgres.QueuePool(s)
	if open := qdb.Stats().OpenConnections; open != conns {
		t.Fatalf("the queue pool has %d sessions open after Open, want %d", open, conns)
	}
	for i, c := range holdAll(t, qdb, conns) {
		if n := preparedLike(t, c, "WITH RECURSIVE dests%"); n != 6 {
			t.Errorf("queue session %d has %d claims prepared, want 6", i, n)
		}
	}
	for _, table := range []string{"referrals", "referral_identifiers", "referral_events", "outbox_messages",
		"stamp_reservations", "audit_records", "audit_chains"} {
		var n int
		if err := held[0].QueryRowContext(t.Context(), `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s holds %d rows after the warm-up, want none", table, n)
		}
	}
}

// holdAll takes n sessions of db at once (released when t ends).
func holdAll(t *testing.T, db *sql.DB, n int) []*sql.Conn {
	t.Helper()
	held := make([]*sql.Conn, n)
	for i := range held {
		c, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		held[i] = c
	}
	return held
}

// preparedLike counts the statements prepared on session c whose text is LIKE pattern.
func preparedLike(t *testing.T, c *sql.Conn, pattern string) int {
	t.Helper()
	var n int
	if err := c.QueryRowContext(t.Context(), `SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE $1`,
		pattern).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWarmUpLeavesTheServerRoom: a pool allowed more sessions than the server could give every instance is
// warmed only up to a quarter of the connections the server had free, so that one instance starting never
// takes the connections the others (and their warm-ups) need.
func TestWarmUpLeavesTheServerRoom(t *testing.T) {
	dsn := freshSchema(t)
	s := openStore(t, dsn, postgres.Options{Warm: true, MaxConns: 10000})
	var limit int
	if err := postgres.WriterPool(s).QueryRowContext(t.Context(), `SELECT current_setting('max_connections')::int
		- current_setting('superuser_reserved_connections')::int`).Scan(&limit); err != nil {
		t.Fatal(err)
	}
	open := postgres.WriterPool(s).Stats().OpenConnections
	if open < 1 || open > limit/4 {
		t.Errorf("the warm-up opened %d writer sessions on a server of %d connections, want 1 to %d", open, limit, limit/4)
	}
}
