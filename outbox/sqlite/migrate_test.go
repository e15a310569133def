package sqlite

import (
	"database/sql"
	"encoding/json"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/outboxtest"
)

// gooseAt opens the file's write connection and a goose provider over the embedded migrations.
func gooseAt(t *testing.T, path string) (*sql.DB, *goose.Provider) {
	t.Helper()
	db, err := openDB(path, true, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	return db, p
}

// TestMigration3KeepsMessages upgrades a version-2 database holding a message with an attempt and a replay:
// the rebuilt outbox_messages keeps every row, its indexes and the foreign keys, and takes cancelled; going
// down turns cancelled messages into dead ones.
func TestMigration3KeepsMessages(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "db")
	db, p := gooseAt(t, path)
	if _, err := p.UpTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO referrals VALUES ('ref-1', 'task-1', 'sr-1', 'A81001', 'walks', 'requested', 'queued', '', '', '',
			1, 1, 1, 'fp', '[]', '{"Record":{"id":"ref-1","task_id":"task-1","service_request_id":"sr-1","status":"requested"}}', '{}')`,
		`INSERT INTO referral_events VALUES ('ref-1', 1, 1, 'create', 'requested', 'queued', '')`,
		`INSERT INTO outbox_messages (id, seq, referral_id, referral_version, destination_kind, destination_id, type,
			payload, state, attempts, created_at, next_attempt_at, last_error, budget_from)
			VALUES ('msg-1', 1, 'ref-1', 1, 'service', 'walks', 'referral.created', '{}', 'dead', 1, 1, 1, 'HTTP 400', 1)`,
		`INSERT INTO outbox_attempts VALUES ('msg-1', 1, 1, 10, 400, 'HTTP 400')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s, err := Open(ctx, path, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.GetMessage(ctx, "msg-1")
	if err != nil || d.Message.State != outbox.StateDead || len(d.Attempts) != 1 || d.Message.LastError != "HTTP 400" {
		t.Fatalf("after migration: %+v, %v", d, err)
	}
	indexes := indexesOf(t, s.db, "outbox_messages", false)
	// Open migrates to the latest schema: migration 40 adds outbox_destination_state, 50 outbox_delivered_unscrubbed,
	// 60 outbox_pending_destination; 89 drops outbox_undelivered_chain; 90 replaces outbox_state_created with
	// outbox_pending_created.
	want := []string{"outbox_delivered_unscrubbed", "outbox_destination_seq", "outbox_destination_state", "outbox_inflight_lease", "outbox_pending_created", "outbox_pending_destination", "outbox_pending_due", "outbox_referral_seq",
		"outbox_state_seq", "outbox_undelivered_destination"}
	if !slices.Equal(indexes, want) {
		t.Errorf("indexes %v, want %v", indexes, want)
	}
	var fkProblems int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_foreign_key_check`).Scan(&fkProblems); err != nil || fkProblems != 0 {
		t.Errorf("foreign key check: %d problems, %v", fkProblems, err)
	}
	// The dead created message is withdrawn by a cancellation (the new state is accepted).
	_, err = s.UpdateReferral(ctx, "ref-1", 0, time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC),
		func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			next := cur.Referral
			next.Record.Status = mapping.StatusCancelled
			return next, []mapping.Event{{ID: "msg-2", Type: mapping.EventReferralCancelled,
				Destination: mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}, Payload: json.RawMessage(`{}`)}}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := s.GetMessage(ctx, "msg-1"); err != nil || d.Message.State != outbox.StateCancelled {
		t.Fatalf("withdrawn: %+v, %v", d.Message, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	db, p = gooseAt(t, path)
	if _, err := p.DownTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	var state string
	if err := db.QueryRowContext(ctx, `SELECT state FROM outbox_messages WHERE id = 'msg-1'`).Scan(&state); err != nil || state != "dead" {
		t.Errorf("after down: %q, %v", state, err)
	}
	var fk int
	if err := db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys after down: %d, %v", fk, err)
	}
}

// TestMigration20 upgrades a version-4 database holding a revoked referral at version 2 of a lower-case
// practice, its messages and a subscription: the current version is kept for vread (the older one predates
// version history), the ServiceRequest status becomes a searchable column, the practice is upper case,
// subscriptions and messages keep every row, indexes and foreign keys; going down undoes it.
func TestMigration20(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "db")
	db, p := gooseAt(t, path)
	if _, err := p.UpTo(ctx, 4); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO referrals VALUES ('ref-1', 'task-1', 'sr-1', 'a81001', 'walks', 'cancelled', 'queued', '', '', '',
			2, 1, 2, 'fp', '[]', '{"Record":{"id":"ref-1","task_id":"task-1","service_request_id":"sr-1","status":"cancelled"},"PracticeODS":"a81001","ServiceRequestStatus":"revoked"}', '{}')`,
		`INSERT INTO referral_events VALUES ('ref-1', 1, 1, 'create', 'requested', 'queued', '')`,
		`INSERT INTO referral_events VALUES ('ref-1', 2, 2, 'update', 'cancelled', 'queued', 'withdrawn')`,
		`INSERT INTO outbox_messages (id, seq, referral_id, referral_version, destination_kind, destination_id, type,
			payload, state, attempts, created_at, next_attempt_at, last_error, budget_from)
			VALUES ('msg-1', 1, 'ref-1', 1, 'subscription', 'sub-1', 'subscription.notification', '{}', 'dead', 1, 1, 1, 'HTTP 404', 1)`,
		`INSERT INTO subscriptions VALUES ('sub-1', 'gp', 'A81001', 'Task?x', 'https://gp.example/hook', '[]', 'id-only',
			'active', 1, 'https://socialrx.example/fhir', 1, 1, '{}')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s, err := Open(ctx, path, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := s.ReferralVersions(ctx, "task-1")
	if err != nil || len(vs) != 1 || vs[0].Record.Version != 2 || vs[0].Record.Status != mapping.StatusCancelled {
		t.Errorf("versions after migration: %+v, %v; want the current version 2 only", vs, err)
	}
	for name, q := range map[string]outbox.ReferralQuery{
		"revoked":       {ServiceRequestStatuses: []string{"revoked"}},
		"upper A81001":  {Practices: []string{"A81001"}},
		"lower a81001":  {Practices: []string{"a81001"}},
		"task id lists": {TaskIDs: []string{"task-1", "task-2"}},
	} {
		if refs, _, err := s.SearchReferrals(ctx, q); err != nil || len(refs) != 1 {
			t.Errorf("%s after migration: %d found, %v", name, len(refs), err)
		}
	}
	if refs, _, _ := s.SearchReferrals(ctx, outbox.ReferralQuery{ServiceRequestStatuses: []string{"active"}}); len(refs) != 0 {
		t.Errorf("active after migration: %d found, want 0", len(refs))
	}
	sub, err := s.GetSubscription(ctx, "sub-1")
	if err != nil || sub.Status != outbox.SubscriptionActive || sub.EventsSinceStart != 1 || sub.Error != "" || sub.Topic != "" || sub.HeartbeatPeriod != 0 {
		t.Errorf("subscription after migration: %+v, %v", sub, err)
	}
	if d, err := s.GetMessage(ctx, "msg-1"); err != nil || d.Message.ReferralID != "ref-1" || d.Message.State != outbox.StateDead {
		t.Errorf("message after migration: %+v, %v", d.Message, err)
	}
	var fkProblems int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_foreign_key_check`).Scan(&fkProblems); err != nil || fkProblems != 0 {
		t.Errorf("foreign key check: %d problems, %v", fkProblems, err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL
		AND tbl_name IN ('outbox_messages', 'subscriptions', 'referrals')`).Scan(&n); err != nil || n != 10+2+9+2+2+1-1-1 { // migration 40 adds outbox_destination_state, 60 outbox_pending_destination and referrals_status_created, 50 two, 80 referrals_deadline, 85 referrals_parent, 86 referrals_open_service; 89 drops outbox_undelivered_chain, 92 referrals_status_created
		t.Errorf("indexes after migration: %d, %v; want 24", n, err)
	}
	// The new subscription status, and a handshake with no referral, are accepted.
	if _, err := s.UpdateSubscriptionStatus(ctx, "sub-1", outbox.SubscriptionError, time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	hs := subscriptionFixture("sub-2")
	if _, err := s.CreateSubscription(ctx, hs, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	db, p = gooseAt(t, path)
	if _, err := p.DownTo(ctx, 4); err != nil {
		t.Fatal(err)
	}
	var status string
	var messages int
	if err := db.QueryRowContext(ctx, `SELECT status FROM subscriptions WHERE id = 'sub-1'`).Scan(&status); err != nil || status != "active" {
		t.Errorf("after down: subscription %q, %v", status, err)
	}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox_messages`).Scan(&messages); err != nil || messages != 1 {
		t.Errorf("after down: %d messages (the handshake must go), %v", messages, err)
	}
}

// subscriptionFixture is a subscription with a handshake.
func subscriptionFixture(id string) outbox.Subscription {
	return outbox.Subscription{ID: id, OwnerClientID: "gp", PracticeODS: "A81001", Criteria: "Task?x", Endpoint: "https://gp.example/hook",
		Payload: mapping.PayloadIDOnly, CreatedAt: time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC), Resource: json.RawMessage(`{}`),
		Handshake: json.RawMessage(`{"handshake":true}`)}
}

// TestMigration30PracticeIdentifiers upgrades a version-4 database holding a referral of practice a81001 (as a
// client spelled it) with an identifier: the identifier keeps its referral under the practice's upper-case key,
// so that an identical resend still finds it after the upgrade and another practice's referral with the same
// identifier is its own; going down keeps the first referral's identifier.
func TestMigration30PracticeIdentifiers(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "db")
	db, p := gooseAt(t, path)
	if _, err := p.UpTo(ctx, 4); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO referrals VALUES ('ref-1', 'task-1', 'sr-1', 'a81001', 'walks', 'requested', 'queued', '', '', '',
			1, 1, 1, 'fp-1', '[{"system":"https://example.nhs.uk/id","value":"REF-1"}]',
			'{"Record":{"id":"ref-1","task_id":"task-1","service_request_id":"sr-1","status":"requested"},"PracticeODS":"a81001"}', '{}')`,
		`INSERT INTO referral_identifiers VALUES ('https://example.nhs.uk/id', 'REF-1', 'ref-1')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s, err := Open(ctx, path, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var practice string
	if err := s.db.QueryRowContext(ctx, `SELECT practice_ods FROM referral_identifiers WHERE referral_id = 'ref-1'`).Scan(&practice); err != nil || practice != "A81001" {
		t.Fatalf("practice after migration: %q, %v", practice, err)
	}
	in := func(id, ods, fp string) mapping.Intake {
		return mapping.Intake{
			Referral: mapping.Referral{Record: mapping.Record{ID: id, TaskID: "task-" + id, ServiceRequestID: "sr-" + id,
				Status: mapping.StatusRequested, CreatedAt: time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)}, PracticeODS: ods},
			Identifiers: []mapping.Identifier{{System: "https://example.nhs.uk/id", Value: "REF-1"}},
			Fingerprint: fp,
		}
	}
	if res, err := s.CreateReferral(ctx, in("ref-2", "A81001", "fp-1")); err != nil || res.Created || res.Referral.Record.ID != "ref-1" {
		t.Errorf("resend after the upgrade: created=%v id %s, %v", res.Created, res.Referral.Record.ID, err)
	}
	if res, err := s.CreateReferral(ctx, in("ref-3", "B82002", "fp-3")); err != nil || !res.Created {
		t.Errorf("another practice's referral under the same identifier: created=%v, %v", res.Created, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, p = gooseAt(t, path)
	if _, err := p.DownTo(ctx, 4); err != nil {
		t.Fatal(err)
	}
	var rid string
	if err := db.QueryRowContext(ctx, `SELECT referral_id FROM referral_identifiers WHERE system = 'https://example.nhs.uk/id' AND value = 'REF-1'`).Scan(&rid); err != nil || rid != "ref-1" {
		t.Errorf("after down: %q, %v", rid, err)
	}
}

// indexesOf returns the names of table's indexes in db, in name order; with auto, also the ones SQLite made
// for the table's PRIMARY KEY and UNIQUE constraints.
func indexesOf(t *testing.T, db *sql.DB, table string, auto bool) []string {
	t.Helper()
	query := `SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?`
	if !auto {
		query += ` AND sql IS NOT NULL`
	}
	rows, err := db.QueryContext(t.Context(), query+` ORDER BY name`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// TestMigration91DownRestoresCopies: going down from migration 91 writes every timeline entry's copy back
// (outboxtest.RunTimelineCopiesDown).
func TestMigration91DownRestoresCopies(t *testing.T) {
	t.Parallel()
	db, p := gooseAt(t, filepath.Join(t.TempDir(), "db"))
	if _, err := p.UpTo(t.Context(), 91); err != nil {
		t.Fatal(err)
	}
	outboxtest.RunTimelineCopiesDown(t, db, func(q string) string { return q }, func() error {
		_, err := p.DownTo(t.Context(), 90)
		return err
	})
}
