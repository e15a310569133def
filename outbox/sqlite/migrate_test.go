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
	var indexes []string
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'outbox_messages' AND sql IS NOT NULL ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		indexes = append(indexes, n)
	}
	rows.Close()
	// Open migrates to the latest schema: migration 40 adds outbox_destination_state.
	want := []string{"outbox_destination_seq", "outbox_destination_state", "outbox_inflight_lease", "outbox_pending_due", "outbox_referral_seq",
		"outbox_state_created", "outbox_state_seq", "outbox_undelivered_chain", "outbox_undelivered_destination"}
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
