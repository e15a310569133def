package postgres

import (
	"database/sql"
	"encoding/json"
	"io/fs"
	"log/slog"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
	"github.com/socialrx/socialrx/outbox/outboxtest"
	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
)

// TestMigration20 upgrades a version-2 schema holding a revoked referral at version 2 of a lower-case
// practice, a dead notification and a subscription (as outbox/sqlite's TestMigration20): the current version is
// kept for vread, the ServiceRequest status is a searchable column, the practice upper case, subscriptions take
// error, messages may have no referral; going down undoes it.
func TestMigration20(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.FreshSchema(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO referrals VALUES ('ref-1', 'task-1', 'sr-1', 'a81001', 'walks', 'cancelled', 'queued', '', '', '',
			2, 1, 2, 'fp', '[]', convert_to('{"Record":{"id":"ref-1","task_id":"task-1","service_request_id":"sr-1","status":"cancelled"},"PracticeODS":"a81001","ServiceRequestStatus":"revoked"}', 'UTF8'), '{}')`,
		`INSERT INTO referral_events VALUES ('ref-1', 1, 1, 'create', 'requested', 'queued', '')`,
		`INSERT INTO referral_events VALUES ('ref-1', 2, 2, 'update', 'cancelled', 'queued', 'withdrawn')`,
		`INSERT INTO outbox_messages (id, referral_id, referral_version, destination_kind, destination_id, type,
			payload, state, attempts, created_at, next_attempt_at, last_error, budget_from)
			VALUES ('msg-1', 'ref-1', 1, 'subscription', 'sub-1', 'subscription.notification', '{}', 'dead', 1, 1, 1, 'HTTP 404', 1)`,
		`INSERT INTO subscriptions VALUES ('sub-1', 'gp', 'A81001', 'Task?x', 'https://gp.example/hook', '[]', 'id-only',
			'active', 1, 'https://socialrx.example/fhir', 1, 1, '{}')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	s, err := Open(ctx, dsn, Options{Logger: slog.New(slog.DiscardHandler), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := s.ReferralVersions(ctx, "task-1")
	if err != nil || len(vs) != 1 || vs[0].Record.Version != 2 || vs[0].Record.Status != mapping.StatusCancelled {
		t.Errorf("versions after migration: %+v, %v; want the current version 2 only", vs, err)
	}
	for name, q := range map[string]outbox.ReferralQuery{
		"revoked":      {ServiceRequestStatuses: []string{"revoked"}},
		"upper A81001": {Practices: []string{"A81001"}},
		"lower a81001": {Practices: []string{"a81001"}},
	} {
		if refs, _, err := s.SearchReferrals(ctx, q); err != nil || len(refs) != 1 {
			t.Errorf("%s after migration: %d found, %v", name, len(refs), err)
		}
	}
	if refs, _, _ := s.SearchReferrals(ctx, outbox.ReferralQuery{ServiceRequestStatuses: []string{"active"}}); len(refs) != 0 {
		t.Errorf("active after migration: %d found, want 0", len(refs))
	}
	sub, err := s.GetSubscription(ctx, "sub-1")
	if err != nil || sub.Status != outbox.SubscriptionActive || sub.EventsSinceStart != 1 || sub.Error != "" || sub.Topic != "" {
		t.Errorf("subscription after migration: %+v, %v", sub, err)
	}
	if _, err := s.UpdateSubscriptionStatus(ctx, "sub-1", outbox.SubscriptionError, time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSubscription(ctx, outbox.Subscription{ID: "sub-2", OwnerClientID: "gp", PracticeODS: "A81001",
		Criteria: "Task?x", Endpoint: "https://gp.example/hook", Payload: mapping.PayloadIDOnly,
		CreatedAt: time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC), Resource: json.RawMessage(`{}`),
		Handshake: json.RawMessage(`{"handshake":true}`)}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := p.DownTo(ctx, 2); err != nil {
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

// TestMigration98DownRestoresCopies: going down from migration 98 writes every timeline entry's copy back
// (outboxtest.RunTimelineCopiesDown).
func TestMigration98DownRestoresCopies(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("pgx", pgtest.FreshSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p := gooseOn(t, db)
	if _, err := p.UpTo(t.Context(), 98); err != nil {
		t.Fatal(err)
	}
	outboxtest.RunTimelineCopiesDown(t, db, sqlstore.RebindDollar, func() error {
		_, err := p.DownTo(t.Context(), 97)
		return err
	})
}
