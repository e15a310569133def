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
	"github.com/socialrx/socialrx/referral"
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
	exec := execOn(t, conn)
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

// TestFindingIdentifiersReadsOnlyTheirs: intake's lookup of a create's identifiers, run on a generic plan
// made while referral_identifiers held one row (a new deployment, or any schema before autovacuum analyzes
// it) and kept while the practice's identifiers grow to 5,000 and 5,000 other practices come to hold an
// identifier with the same system and value, reads one key a looked-up identifier and finds the referral
// that holds them. Before migration 99 that plan read every identifier of the practice for each lookup
// (30,003 rows for the three lookups here; about 1,500 a lookup after 3,000 referrals in the 8-client intake
// benchmark); a probe by the value alone reads the other practices' 5,000 (5,002 rows here).
func TestFindingIdentifiersReadsOnlyTheirs(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, conn := oneReferral(t)
	exec := execOn(t, conn)
	var practice, system, value, referral string
	if err := conn.QueryRowContext(ctx, `SELECT practice_ods, system, value, referral_id FROM referral_identifiers`).
		Scan(&practice, &system, &value, &referral); err != nil {
		t.Fatal(err)
	}
	type found struct{ first, last sql.NullString }
	find := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}, values ...string) found {
		t.Helper()
		systems := make([]string, len(values))
		for i := range systems {
			systems[i] = system
		}
		// EXECUTE takes no parameters: the arguments are literals (the test's own values, without quotes,
		// commas or backslashes).
		array := func(xs []string) string { return `'{"` + strings.Join(xs, `","`) + `"}'` }
		var xid string
		var f found
		if err := q.QueryRowContext(ctx, `EXECUTE find('`+practice+`', `+array(systems)+`, `+array(values)+`)`).
			Scan(&xid, &f.first, &f.last); err != nil {
			t.Fatal(err)
		}
		return f
	}
	// The statistics stay those of one row: no autovacuum ANALYZE may make the plan again.
	exec(`ALTER TABLE referral_identifiers SET (autovacuum_enabled = off)`)
	exec(`ANALYZE referral_identifiers`)
	exec(`SET plan_cache_mode = force_generic_plan`)
	exec(`PREPARE find (text, text[], text[]) AS ` + postgres.FindIdentifiersStatement)
	find(conn, "absent")
	exec(`INSERT INTO referral_identifiers (practice_ods, system, value, referral_id)
		SELECT $1, $2, 'bulk-' || g, $3 FROM generate_series(1, 5000) g`, practice, system, referral)
	exec(`INSERT INTO referral_identifiers (practice_ods, system, value, referral_id)
		SELECT 'OTHER' || g, $1, 'elsewhere', $2 FROM generate_series(1, 5000) g`, system, referral)
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	// pg_stat_xact_user_tables: this session's reads not yet reported, which include this transaction's;
	// nothing is reported while the transaction runs, so the difference is the lookups'.
	read := func() int64 {
		t.Helper()
		var seqRead, idxFetched int64
		if err := tx.QueryRowContext(ctx, `SELECT seq_tup_read, COALESCE(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
			WHERE relid = 'referral_identifiers'::regclass`).Scan(&seqRead, &idxFetched); err != nil {
			t.Fatal(err)
		}
		return seqRead + idxFetched
	}
	before := read()
	if f := find(tx, "absent"); f.first.Valid || f.last.Valid {
		t.Errorf("an identifier no referral holds: found %v", f)
	}
	if f := find(tx, "elsewhere"); f.first.Valid || f.last.Valid {
		t.Errorf("an identifier only other practices hold: found %v", f)
	}
	if f := find(tx, value, "bulk-7", "absent"); f.first.String != referral || f.last.String != referral {
		t.Errorf("identifiers one referral holds: found %v, want %s", f, referral)
	}
	if n := read() - before; n > 5 {
		t.Errorf("three lookups of five identifiers read %d rows of referral_identifiers; want at most 5", n)
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
	_, conn := oneReferral(t)
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
		plan := explainPrepared(t, conn, fmt.Sprintf("plan%d", i), c.query, c.args)
		if !strings.Contains(plan, "using "+c.index+" on referrals") {
			t.Errorf("%s\ngeneric plan:\n%s\nwant it to use %s", c.query, plan, c.index)
		}
	}
}

// oneReferral is a store on a fresh schema holding one referral (testIntake(1)), and a connection of its own
// to that schema.
func oneReferral(t *testing.T) (*postgres.Store, *sql.Conn) {
	t.Helper()
	dsn := freshSchema(t)
	s := openStore(t, dsn, postgres.Options{})
	if _, err := s.CreateReferral(t.Context(), testIntake(1)); err != nil {
		t.Fatal(err)
	}
	return s, rawConn(t, dsn)
}

// explain is the plan of stmt on conn (EXPLAIN's lines, joined).
func explain(t *testing.T, conn *sql.Conn, stmt string) string {
	t.Helper()
	rows, err := conn.QueryContext(t.Context(), `EXPLAIN `+stmt)
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
	return strings.Join(plan, "\n")
}

// explainPrepared prepares query (with ? placeholders) on conn as name and returns the plan of its execution
// with args, written as literals (the tests' own values, without quotes).
func explainPrepared(t *testing.T, conn *sql.Conn, name, query string, args []any) string {
	t.Helper()
	execOn(t, conn)(`PREPARE ` + name + ` AS ` + sqlstore.RebindDollar(query))
	params := make([]string, len(args))
	for j, a := range args {
		params[j] = fmt.Sprintf("'%v'", a)
	}
	return explain(t, conn, `EXECUTE `+name+`(`+strings.Join(params, ", ")+`)`)
}

// execOn runs a statement on conn for t, failing t if it fails.
func execOn(t *testing.T, conn *sql.Conn) func(q string, args ...any) {
	return func(q string, args ...any) {
		t.Helper()
		if _, err := conn.ExecContext(t.Context(), q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
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

// TestMessageIndexEntries: a delivery's two updates of its message are not HOT updates (state is indexed), so
// each writes an entry in every index of outbox_messages whose predicate holds for the new row. Since
// migration 97 a claimed message is in 8 of them and a delivered one in 6 (10 and 8 before). The two readers
// of the indexes it dropped still read one index, with 5,000 messages pending, on generic plans with
// sequential scans off: the oldest pending message's age (outbox_pending_created) and the overview's count by
// destination and state (from outbox_destination_seq alone).
func TestMessageIndexEntries(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, conn := oneReferral(t)
	entries := func(id string) int { return indexEntries(t, conn, "outbox_messages", id) }
	now := time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)
	ms, err := s.ClaimMessages(ctx, "owner", now, time.Minute, 10, outbox.ClaimFilter{PerDestination: 8})
	if err != nil || len(ms) != 1 {
		t.Fatalf("claim: %d messages, %v", len(ms), err)
	}
	if n := entries(ms[0].ID); n != 8 {
		t.Errorf("a claimed message is in %d indexes, want 8", n)
	}
	if err := s.CompleteAttempt(ctx, ms[0].ID, now, outbox.AttemptResult{Owner: "owner", State: outbox.StateDelivered,
		Attempt: outbox.Attempt{StatusCode: 204}, Update: outbox.MarkDelivered}); err != nil {
		t.Fatal(err)
	}
	if n := entries(ms[0].ID); n != 6 {
		t.Errorf("a delivered message is in %d indexes, want 6", n)
	}
	// 5,000 pending messages over 50 destinations beside it, analysed, so that the planner chooses as it
	// would on a real backlog (on one row every index costs the same).
	for _, q := range []string{`INSERT INTO outbox_messages (id, referral_id, referral_version, destination_kind,
			destination_id, type, payload, state, created_at, next_attempt_at, budget_from, payload_sha256)
		SELECT id || '-' || g, referral_id, referral_version, destination_kind, destination_id || (g % 50), type,
			payload, 'pending', created_at + g, next_attempt_at + g, budget_from, payload_sha256
		FROM outbox_messages, generate_series(1, 5000) g`,
		`ANALYZE outbox_messages`, `SET enable_seqscan = off`, `SET plan_cache_mode = force_generic_plan`} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ query, want string }{
		{sqlstore.OldestPending, "using outbox_pending_created on outbox_messages"},
		{sqlstore.CountByDestination, "Index Only Scan using outbox_destination_seq on outbox_messages"},
	} {
		if plan := explain(t, conn, c.query); !strings.Contains(plan, c.want) {
			t.Errorf("%s\nplan:\n%s\nwant %q", c.query, plan, c.want)
		}
	}
}

// indexEntries counts the indexes of table that hold its row id (by primary key id) as it is now: every
// index without a predicate, and each partial index whose predicate the row meets. A non-HOT update writes
// an entry in each of them.
func indexEntries(t *testing.T, conn *sql.Conn, table, id string) int {
	t.Helper()
	ctx := t.Context()
	var preds []sql.NullString
	rows, err := conn.QueryContext(ctx, `SELECT pg_get_expr(indpred, indrelid) FROM pg_index
		WHERE indrelid = $1::regclass`, table)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p sql.NullString
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		preds = append(preds, p)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range preds {
		if !p.Valid {
			n++
			continue
		}
		var holds bool
		if err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+table+` WHERE id = $1 AND (`+p.String+`))`,
			id).Scan(&holds); err != nil {
			t.Fatal(err)
		}
		if holds {
			n++
		}
	}
	return n
}

// TestReferralIndexEntries: a delivery's Task version of a requested referral is not a HOT update (its
// updated_at is in most indexes of referrals), so it writes an entry in every index of referrals that holds
// the row: 12 since migration 100 dropped referrals_status_created (13 before), and so does a create.
func TestReferralIndexEntries(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, conn := oneReferral(t)
	id := testIntake(1).Referral.Record.ID
	if n := indexEntries(t, conn, "referrals", id); n != 12 {
		t.Errorf("a new referral is in %d indexes, want 12", n)
	}
	now := time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)
	ms, err := s.ClaimMessages(ctx, "owner", now, time.Minute, 10, outbox.ClaimFilter{PerDestination: 8})
	if err != nil || len(ms) != 1 {
		t.Fatalf("claim: %d messages, %v", len(ms), err)
	}
	if err := s.CompleteAttempt(ctx, ms[0].ID, now, outbox.AttemptResult{Owner: "owner", State: outbox.StateDelivered,
		Attempt: outbox.Attempt{StatusCode: 204}, Update: outbox.MarkDelivered}); err != nil {
		t.Fatal(err)
	}
	var version int
	if err := conn.QueryRowContext(ctx, `SELECT version FROM referrals WHERE id = $1`, id).Scan(&version); err != nil || version != 2 {
		t.Fatalf("the referral after its delivery: version %d, %v; want 2", version, err)
	}
	if n := indexEntries(t, conn, "referrals", id); n != 12 {
		t.Errorf("a delivered requested referral is in %d indexes, want 12", n)
	}
}

// TestOverdueSweepReadsTheDeadlineIndex: each search the overdue sweep reads its candidates with
// (referral.OverdueSweeper.OverdueSearches) reads referrals_deadline (status, deadline_step, created_at)
// when few referrals are overdue among many requested (5,000, analysed), on the plan made for its values
// (the first executions of a prepared statement, and every later one whose generic plan costs more), not
// every requested referral in another index's order. Migration 100 dropped the (status, created_at) index
// the sweep's single search read; that search, without a rung, reads every requested referral's entry of
// referrals_deadline.
func TestOverdueSweepReadsTheDeadlineIndex(t *testing.T) {
	t.Parallel()
	_, conn := oneReferral(t)
	exec := execOn(t, conn)
	// 5,000 requested referrals created a second apart after the first, analysed.
	exec(`INSERT INTO referrals (id, task_id, service_request_id, practice_ods, service_id, status,
			business_status, patient_ref, patient_nhs_number, requester_ref, version, created_at, updated_at,
			fingerprint, identifiers, referral, service_request, service_request_status, deadline_step, parent_task_id)
		SELECT id || '-' || g, task_id || '-' || g, service_request_id || '-' || g, practice_ods, service_id, status,
			business_status, patient_ref, patient_nhs_number, requester_ref, version, created_at + g * 1000000::bigint,
			updated_at + g * 1000000::bigint, fingerprint, identifiers, referral, service_request, service_request_status,
			deadline_step, parent_task_id
		FROM referrals, generate_series(1, 5000) g`)
	exec(`ANALYZE referrals`)
	var first int64
	if err := conn.QueryRowContext(t.Context(), `SELECT min(created_at) FROM referrals`).Scan(&first); err != nil {
		t.Fatal(err)
	}
	// The sweep when the first 50 are overdue.
	now := time.UnixMicro(first).Add(72*time.Hour + 50*time.Second)
	for i, q := range (referral.OverdueSweeper{Deadline: 72 * time.Hour}).OverdueSearches(now) {
		search, args, _, _ := sqlstore.ReferralSearch(q)
		plan := explainPrepared(t, conn, fmt.Sprintf("overdue%d", i), search, args)
		if !strings.Contains(plan, "referrals_deadline on referrals") || !strings.Contains(plan, "deadline_step = ") {
			t.Errorf("the overdue search on rung %q:\n%s\nwant it to read one range of referrals_deadline (status, rung, created before)", q.DeadlineSteps, plan)
		}
	}
}

// TestIdentifierSearchReadsTheValueIndex: a search by identifier, with a system or without, reads
// referral_identifiers_value (value) among 5,000 identifiers of five systems (analysed), on the plan made
// for its values, and an identifier is in three indexes: the primary key (practice_ods, system, value), that
// one and the referral's. Before migration 101 the search with a system read
// referral_identifiers_system_value (system, value), and every identifier a create added was in four.
func TestIdentifierSearchReadsTheValueIndex(t *testing.T) {
	t.Parallel()
	_, conn := oneReferral(t)
	exec := execOn(t, conn)
	exec(`INSERT INTO referral_identifiers (practice_ods, system, value, referral_id)
		SELECT i.practice_ods, 'https://fhir.example.org/system-' || (g % 5), 'value-' || g, i.referral_id
		FROM referral_identifiers i, generate_series(1, 5000) g`)
	exec(`ANALYZE referral_identifiers`)
	for i, id := range []mapping.Identifier{{System: "https://fhir.example.org/system-1", Value: "value-11"}, {Value: "value-11"}} {
		search, args, _, _ := sqlstore.ReferralSearch(outbox.ReferralQuery{Identifier: &id})
		plan := explainPrepared(t, conn, fmt.Sprintf("identifier%d", i), search, args)
		if !strings.Contains(plan, "using referral_identifiers_value on referral_identifiers") {
			t.Errorf("the search by identifier %+v:\n%s\nwant it to read referral_identifiers_value", id, plan)
		}
	}
	var n int
	if err := conn.QueryRowContext(t.Context(), `SELECT count(*) FROM pg_index
		WHERE indrelid = 'referral_identifiers'::regclass`).Scan(&n); err != nil || n != 3 {
		t.Errorf("referral_identifiers has %d indexes (%v), want 3: the primary key, value and referral_id", n, err)
	}
}
