package postgres

import (
	"database/sql"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore/sqlstoretest"
	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
)

// TestOpenExistingCreatesNothing: in Existing mode (the CLI's) an empty schema is outbox.ErrNoDatabase and
// stays empty; a schema short of a migration is ErrSchemaBehind naming it, and is not migrated; a current
// schema opens.
func TestOpenExistingCreatesNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	quiet := slog.New(slog.DiscardHandler)
	dsn := pgtest.FreshSchema(t)
	if _, err := Open(ctx, dsn, Options{Existing: true, Logger: quiet, NoListen: true}); !errors.Is(err, outbox.ErrNoDatabase) {
		t.Errorf("empty schema: %v, want ErrNoDatabase", err)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema()`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("the empty schema now has %d tables (%v)", tables, err)
	}

	p := gooseOn(t, db)
	if _, err := p.UpTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, dsn, Options{Existing: true, Logger: quiet, NoListen: true})
	if !errors.Is(err, outbox.ErrSchemaBehind) || !strings.Contains(err.Error(), "40") {
		t.Errorf("schema at version 2: %v, want ErrSchemaBehind naming 40", err)
	}
	if v, err := p.GetDBVersion(ctx); err != nil || v != 2 {
		t.Errorf("after the check the schema is at %d (%v), want 2: it must not be migrated", v, err)
	}
	if err := Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, dsn, Options{Existing: true, Logger: quiet, NoListen: true})
	if err != nil {
		t.Fatalf("current schema: %v", err)
	}
	defer s.Close()
	if _, err := s.ListPauses(ctx); err != nil {
		t.Errorf("store opened in Existing mode: %v", err)
	}
}

// TestMigration40DownAndUp: migration 40 goes down (a discarded message back to dead, a discard version to
// an update) and up again on PostgreSQL.
func TestMigration40DownAndUp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	quiet := slog.New(slog.DiscardHandler)
	dsn := pgtest.FreshSchema(t)
	s, err := Open(ctx, dsn, Options{Logger: quiet, NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	walks := mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}
	if _, err := s.CreateReferral(ctx, sqlstoretest.Intake(1, now, walks, json.RawMessage(`{}`))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DiscardMessages(ctx, now, outbox.DiscardRequest{IDs: []string{"msg-1"}, Reason: "never", Actor: "ops",
		Update: outbox.MarkDeliveryFailed}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p := gooseOn(t, db)
	if _, err := p.DownTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	var state, cause string
	if err := db.QueryRowContext(ctx, `SELECT state FROM outbox_messages WHERE id = 'msg-1'`).Scan(&state); err != nil || state != "dead" {
		t.Errorf("message after down: %q, %v", state, err)
	}
	if err := db.QueryRowContext(ctx, `SELECT cause FROM referral_events WHERE version = 2`).Scan(&cause); err != nil || cause != "update" {
		t.Errorf("discard version after down: %q, %v", cause, err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Errorf("up again: %v", err)
	}
}

// gooseOn is a goose provider of the embedded migrations over db.
func gooseOn(t *testing.T, db *sql.DB) *goose.Provider {
	t.Helper()
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
