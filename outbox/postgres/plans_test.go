package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
	"github.com/socialrx/socialrx/outbox/postgres"
)

// TestRecordingAttemptsNeverScansAttempts: the statement that records a batch of attempts, run on a generic
// plan (what each connection's prepared statement runs on after a few executions) made while outbox_attempts
// was small, and kept as it grew (a backlog draining faster than statistics catch up), numbers each attempt
// from the attempts' primary key: no sequential scan of outbox_attempts, which reads every attempt ever made
// for every attempt recorded. Before migration 93 that plan scanned the table (max(n) in a subquery): four
// sequential scans here, and 99 ms to 2.9 s per batch late in a 20,000-message drain.
func TestRecordingAttemptsNeverScansAttempts(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := freshSchema(t)
	s := openStore(t, dsn, postgres.Options{})
	var msgs []string
	for i := 1; i <= 100; i++ {
		in := testIntake(i)
		if _, err := s.CreateReferral(ctx, in); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, in.Events[0].ID)
	}
	msg := msgs[0]
	conn := rawConn(t, dsn)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	attempts := func(from, to int) {
		t.Helper()
		exec(`INSERT INTO outbox_attempts (message_id, n, started_at, latency_us, status_code, error, response)
			SELECT $1, g, 0, 0, 503, 'HTTP 503', '' FROM generate_series($2::int, $3::int) g`, msg, from, to)
	}
	record := func(q interface {
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	}) {
		t.Helper()
		rows, err := q.QueryContext(ctx, `EXECUTE record('{`+msg+`}', '{0}', '{0}', '{200}', '{""}', '{""}',
			'{delivered}', '{NULL}', '{1}', '{a}', '{false}')`)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Close(); err != nil || n != 1 {
			t.Fatalf("recording one attempt answered %d rows, %v", n, err)
		}
	}
	// The plan is made when each of 100 messages has had an attempt, and the statistics say so; it is kept
	// while one message has 2,000 more.
	exec(`INSERT INTO outbox_attempts (message_id, n, started_at, latency_us, status_code, error, response)
		SELECT m, 1, 0, 0, 503, 'HTTP 503', '' FROM unnest($1::text[]) m`, msgs)
	exec(`ANALYZE outbox_attempts`)
	exec(`SET plan_cache_mode = force_generic_plan`)
	exec(`PREPARE record AS ` + postgres.RecordAttemptsStatement)
	record(conn)
	attempts(3, 2002)
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	for range 3 {
		record(tx)
	}
	// pg_stat_xact_user_tables: this transaction's own scans, read at once.
	var seq, idx int64
	if err := tx.QueryRowContext(ctx, `SELECT seq_scan, COALESCE(idx_scan, 0) FROM pg_stat_xact_user_tables
		WHERE relid = 'outbox_attempts'::regclass`).Scan(&seq, &idx); err != nil {
		t.Fatal(err)
	}
	if seq != 0 || idx == 0 {
		t.Errorf("recording attempts read outbox_attempts with %d sequential and %d index scans; want none and some", seq, idx)
	}
	var last int
	if err := tx.QueryRowContext(ctx, `SELECT max(n) FROM outbox_attempts WHERE message_id = $1`, msg).Scan(&last); err != nil || last != 2005 {
		t.Errorf("after 2,002 attempts and 3 more recorded: last attempt %d, %v; want 2005", last, err)
	}
}

// TestPartialIndexesServeTheirReaders: since migration 95, referrals_unscrubbed holds only closed
// referrals and referrals_parent only forwarded ones; retention's scan and the GP's Task?part-of= search can
// still use them, on generic plans too (the query spells each predicate; a parameter alone proves nothing).
// Sequential scans are disabled so that the test asks whether the index can serve, not whether a few rows
// are cheaper to read without it.
func TestPartialIndexesServeTheirReaders(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := freshSchema(t)
	s := openStore(t, dsn, postgres.Options{})
	if _, err := s.CreateReferral(ctx, testIntake(1)); err != nil {
		t.Fatal(err)
	}
	conn := rawConn(t, dsn)
	for _, q := range []string{`SET enable_seqscan = off`, `SET plan_cache_mode = force_generic_plan`} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	search, args, _, _ := sqlstore.ReferralSearch(outbox.ReferralQuery{ParentTaskID: "task-1"})
	for i, c := range []struct {
		query, index string
		args         []any
	}{
		{postgres.SelectDueClosed, "referrals_unscrubbed", []any{int64(1), 100}},
		{search, "referrals_parent", args},
	} {
		name := fmt.Sprintf("plan%d", i)
		if _, err := conn.ExecContext(ctx, `PREPARE `+name+` AS `+sqlstore.RebindDollar(c.query)); err != nil {
			t.Fatal(err)
		}
		params := make([]string, len(c.args))
		for j, a := range c.args {
			params[j] = fmt.Sprintf("'%v'", a)
		}
		rows, err := conn.QueryContext(ctx, `EXPLAIN EXECUTE `+name+`(`+strings.Join(params, ", ")+`)`)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(plan, "\n"), "using "+c.index+" on referrals") {
			t.Errorf("%s\ngeneric plan:\n%s\nwant it to use %s", c.query, strings.Join(plan, "\n"), c.index)
		}
	}
}

// rawConn is one connection of its own to dsn (session settings and prepared statements stay on it), closed
// when t ends.
func rawConn(t *testing.T, dsn string) *sql.Conn {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestClaimsRunOnOneGenericPlan: the queue pool's statements run on generic plans from their first
// execution (plan_cache_mode on the pool). The pool's settings choose a claim's scans and its limit is
// written into its text, so the five custom plans PostgreSQL would otherwise make for each statement text on
// each connection before settling on the generic one only cost planning: 2.7 ms each for a claim, 261 of them
// (0.7 s of the server's time) in a 20,000-message drain. Seven claims of one message each, on a pool of one
// connection, are planned once.
func TestClaimsRunOnOneGenericPlan(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, q := oneQueueSession(t)
	for i := 0; i < 7; i++ {
		if _, err := s.CreateReferral(ctx, testIntake(7*i)); err != nil { // one destination: svc-0
			t.Fatal(err)
		}
	}
	now := time.Now()
	for i := 0; i < 7; i++ {
		ms, err := s.ClaimMessages(ctx, "owner", now, time.Minute, 1, outbox.ClaimFilter{PerDestination: 8})
		if err != nil || len(ms) != 1 {
			t.Fatalf("claim %d: %d messages, %v; want 1", i, len(ms), err)
		}
	}
	var custom, generic int64
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(sum(custom_plans), 0), COALESCE(sum(generic_plans), 0)
		FROM pg_prepared_statements WHERE statement LIKE 'WITH RECURSIVE dests%'`).Scan(&custom, &generic); err != nil {
		t.Fatal(err)
	}
	if custom != 0 || generic != 7 {
		t.Errorf("7 claims ran on %d custom and %d generic plans; want 0 and 7", custom, generic)
	}
	// Once their leases have expired, claims take the other way (a transaction scanning the expired leases
	// first): its scans' limits are written into their text too, so no generic plan is made without one.
	ms, err := s.ClaimMessages(ctx, "other", now.Add(2*time.Minute), time.Minute, 2, outbox.ClaimFilter{PerDestination: 8})
	if err != nil || len(ms) != 2 {
		t.Fatalf("claim of expired leases: %d messages, %v; want 2", len(ms), err)
	}
	var scans, bound int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE statement LIKE '%lease_until <=%SKIP LOCKED%'),
		count(*) FILTER (WHERE statement ~ 'LIMIT \$[0-9]') FROM pg_prepared_statements`).Scan(&scans, &bound); err != nil {
		t.Fatal(err)
	}
	if scans == 0 || bound != 0 {
		t.Errorf("%d scans of expired leases prepared, %d statements with a bound LIMIT; want some and none", scans, bound)
	}
}

// TestClaimsShareTheirBuckets: a dispatcher asks for as many messages as it has free places (1 to 31 with
// the default 32), and each limit written into a claim's text was a statement of its own, prepared and
// planned on each queue session at its first use. The limit written is now the limit's bucket (a power of
// two), so that claims of every limit from 1 to 31 prepare 6 statements on a session; each claim still
// leases exactly the earliest messages it asked for, across destinations, within each destination's room.
func TestClaimsShareTheirBuckets(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, q := oneQueueSession(t)
	const messages = 14 // two for each of 7 destinations
	for n := range messages {
		if _, err := s.CreateReferral(ctx, testIntake(n)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)
	// One place a destination: a claim of 9 (written as 16) takes the first message of each of the 7.
	ms, err := s.ClaimMessages(ctx, "owner", now, time.Minute, 9, outbox.ClaimFilter{PerDestination: 1})
	if err != nil || len(ms) != 7 {
		t.Fatalf("a claim of 9 with one place for each of 7 destinations: %d messages, %v; want 7", len(ms), err)
	}
	dests := map[mapping.Destination]bool{}
	for i, m := range ms {
		dests[m.Destination] = true
		if want := int64(i + 1); m.Seq != want {
			t.Errorf("claimed #%d has seq %d, want %d", i, m.Seq, want)
		}
	}
	if len(dests) != 7 {
		t.Errorf("a claim with one place a destination took messages of %d destinations, want 7", len(dests))
	}
	// Then claims of 5 (written as 8) and 3 (written as 4) take the next 5 and the last 2, in order.
	var all []outbox.Message
	for _, c := range []struct{ limit, want int }{{5, 5}, {3, 2}} {
		ms, err := s.ClaimMessages(ctx, "owner", now, time.Minute, c.limit, outbox.ClaimFilter{PerDestination: 8})
		if err != nil || len(ms) != c.want {
			t.Fatalf("a claim of %d: %d messages, %v; want %d", c.limit, len(ms), err, c.want)
		}
		all = append(all, ms...)
	}
	for i, m := range all {
		if want := int64(8 + i); m.Seq != want {
			t.Errorf("claimed #%d has seq %d, want %d (the earliest, in order, across destinations)", i, m.Seq, want)
		}
	}
	// Claims of every limit find nothing left, and prepare their statements all the same.
	left := 0
	for limit := 1; limit <= 31; limit++ {
		ms, err := s.ClaimMessages(ctx, "owner", now, time.Minute, limit, outbox.ClaimFilter{PerDestination: 8})
		if err != nil {
			t.Fatal(err)
		}
		if want := min(limit, left); len(ms) != want {
			t.Errorf("a claim of %d with %d due: %d messages, want %d", limit, left, len(ms), want)
		}
		left -= len(ms)
	}
	if texts := preparedLike(t, holdAll(t, q, 1)[0], "WITH RECURSIVE dests%"); texts != 6 {
		t.Errorf("claims of every limit from 1 to 31 prepared %d statements, want 6 (1, 2, 4, 8, 16, 32)", texts)
	}
}

// oneQueueSession opens a store on a fresh schema whose queue pool has one session (its prepared statements
// are then all on it), and returns the store and that pool.
func oneQueueSession(t *testing.T) (*postgres.Store, *sql.DB) {
	t.Helper()
	s := openStore(t, freshSchema(t), postgres.Options{})
	q := postgres.QueuePool(s)
	q.SetMaxOpenConns(1)
	return s, q
}
