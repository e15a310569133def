package sqlite

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// TestMigration40KeepsRows upgrades a version-4 database holding a referral, its timeline, a dead message
// with an attempt and a replay: every row is kept, the foreign keys hold, the new state, cause, tables and
// column work; going down turns a discarded message into a dead one and its discard version into an update.
func TestMigration40KeepsRows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "db")
	db, p := gooseAt(t, path)
	if _, err := p.UpTo(ctx, 4); err != nil {
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
		`INSERT INTO outbox_replays (message_id, at, actor, reason, from_state) VALUES ('msg-1', 2, 'ops', 'try', 'dead')`,
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
	if err != nil || d.Message.State != outbox.StateDead || len(d.Attempts) != 1 || d.Attempts[0].Response != "" ||
		len(d.Replays) != 1 || d.Message.LastError != "HTTP 400" {
		t.Fatalf("after migration: %+v, %v", d, err)
	}
	if tl, err := s.Timeline(ctx, "ref-1"); err != nil || len(tl) != 1 || tl[0].Cause != outbox.CauseCreate {
		t.Fatalf("timeline after migration: %+v, %v", tl, err)
	}
	var fkProblems int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_foreign_key_check`).Scan(&fkProblems); err != nil || fkProblems != 0 {
		t.Errorf("foreign key check: %d problems, %v", fkProblems, err)
	}
	now := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	if _, err := s.DiscardMessages(ctx, now, outbox.DiscardRequest{IDs: []string{"msg-1"}, Reason: "never", Actor: "ops",
		Update: outbox.MarkDeliveryFailed}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PauseDestination(ctx, outbox.Pause{Destination: mapping.Destination{Kind: mapping.DestinationService, ID: "walks"},
		PausedAt: now, PausedBy: "ops", Reason: "down"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	db, p = gooseAt(t, path)
	if _, err := p.DownTo(ctx, 4); err != nil {
		t.Fatal(err)
	}
	var state, cause string
	if err := db.QueryRowContext(ctx, `SELECT state FROM outbox_messages WHERE id = 'msg-1'`).Scan(&state); err != nil || state != "dead" {
		t.Errorf("message after down: %q, %v", state, err)
	}
	if err := db.QueryRowContext(ctx, `SELECT cause FROM referral_events WHERE version = 2`).Scan(&cause); err != nil || cause != "update" {
		t.Errorf("discard version after down: %q, %v", cause, err)
	}
	var fk int
	if err := db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys after down: %d, %v", fk, err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Errorf("up again: %v", err)
	}
}
