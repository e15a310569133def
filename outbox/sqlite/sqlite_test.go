package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore/sqlstoretest"
	"github.com/socialrx/socialrx/outbox/outboxtest"
	"github.com/socialrx/socialrx/outbox/sqlite"
)

func openStore(t *testing.T, path string, opts sqlite.Options) *sqlite.Store {
	t.Helper()
	opts.Logger = quiet
	return sqlstoretest.Open(t, func() (*sqlite.Store, error) { return sqlite.Open(t.Context(), path, opts) })
}

var quiet = slog.New(slog.DiscardHandler)

func TestConformance(t *testing.T) {
	t.Parallel()
	outboxtest.Run(t, func(t *testing.T, opts outboxtest.Options) outbox.Store {
		return openStore(t, filepath.Join(t.TempDir(), "socialrx.db"), sqlite.Options{FailAfter: opts.FailAfter, Notify: opts.Notify})
	})
}

// rawDB opens the file directly, for checks beneath the Store API.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func count(t *testing.T, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func testIntake(n int) mapping.Intake {
	return sqlstoretest.Intake(n, time.Date(2025, 3, 3, 9, 0, n, 0, time.UTC),
		mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}, json.RawMessage(`{}`))
}

var tables = []string{"referrals", "referral_identifiers", "referral_events", "outbox_messages", "outbox_attempts", "outbox_replays"}

// TestFailedCreateLeavesNoRow checks every table directly after a failure injected after the referral insert.
func TestFailedCreateLeavesNoRow(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "db")
	injected := errors.New("disk on fire")
	s := openStore(t, path, sqlite.Options{FailAfter: func(stage string, _ mapping.Intake) error {
		if stage == "referral" {
			return injected
		}
		return nil
	}})
	if _, err := s.CreateReferral(t.Context(), testIntake(1)); !errors.Is(err, injected) {
		t.Fatalf("create: %v, want the injected error", err)
	}
	db := rawDB(t, path)
	for _, table := range tables {
		if n := count(t, db, table); n != 0 {
			t.Errorf("%s: %d rows after a failed create, want 0", table, n)
		}
	}
}

func TestPragmas(t *testing.T) {
	t.Parallel()
	s := openStore(t, filepath.Join(t.TempDir(), "db"), sqlite.Options{})
	got, err := s.Pragmas(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1", "busy_timeout": "10000"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("pragma %s = %q, want %q", k, got[k], v)
		}
	}
}

func TestReopenKeepsDataAndMigrationsAreIdempotent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "db")
	s, err := sqlite.Open(ctx, path, sqlite.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	in := testIntake(1)
	created, err := s.CreateReferral(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.CreateReferral(ctx, testIntake(2)); !errors.Is(err, sqlite.ErrClosed) {
		t.Errorf("create after Close: %v, want ErrClosed", err)
	}
	if err := sqlite.Migrate(ctx, path); err != nil {
		t.Fatalf("Migrate on a migrated file: %v", err)
	}

	s2 := openStore(t, path, sqlite.Options{})
	got, err := s2.GetReferral(ctx, "ref-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Record.Version != 1 || string(got.ServiceRequest) != string(in.ServiceRequest) ||
		!got.Record.CreatedAt.Equal(created.Referral.Record.CreatedAt) {
		t.Errorf("after reopen: %+v", got)
	}
	ms, err := s2.ListMessages(ctx, outbox.MessageQuery{})
	if err != nil || len(ms) != 1 || ms[0].ID != "msg-1" {
		t.Errorf("messages after reopen: %v %v", ms, err)
	}
	// The resend is still recognised, and seq continues after reopening.
	if res, err := s2.CreateReferral(ctx, testIntake(1)); err != nil || res.Created {
		t.Errorf("resend after reopen: %v %v", res.Created, err)
	}
	if _, err := s2.CreateReferral(ctx, testIntake(2)); err != nil {
		t.Fatal(err)
	}
	ms, _ = s2.ListMessages(ctx, outbox.MessageQuery{})
	if len(ms) != 2 || ms[1].Seq <= ms[0].Seq {
		t.Errorf("messages after reopen: %+v", ms)
	}
}

func TestSkipMigrations(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "db")
	s := openStore(t, path, sqlite.Options{SkipMigrations: true})
	if _, err := s.GetReferral(ctx, "x"); err == nil || errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("read of an unmigrated file: %v, want a schema error", err)
	}
	if err := sqlite.Migrate(ctx, path); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetReferral(ctx, "x"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("after Migrate: %v, want ErrNotFound", err)
	}
}

func TestCancelledContext(t *testing.T) {
	t.Parallel()
	sqlstoretest.CancelledCreateWritesNothing(t, openStore(t, filepath.Join(t.TempDir(), "db"), sqlite.Options{}), testIntake(1))
}

func TestOpenBadPath(t *testing.T) {
	t.Parallel()
	if _, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "missing", "dir", "db"), sqlite.Options{}); err == nil {
		t.Error("Open in a missing directory: no error")
	}
	if _, err := sqlite.Open(t.Context(), "", sqlite.Options{}); err == nil {
		t.Error("Open of an empty path: no error")
	}
}

// TestPathNeedsEscaping opens a file whose name has URI metacharacters.
func TestPathNeedsEscaping(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "odd ?name#%.db")
	s := openStore(t, path, sqlite.Options{})
	if _, err := s.CreateReferral(t.Context(), testIntake(1)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, rawDB(t, path), "referrals"); n != 1 {
		t.Errorf("%d referrals in %q", n, path)
	}
}

// TestUnavailable: another connection holds the database's write lock (BEGIN IMMEDIATE, as a second process
// or an operator's sqlite3 shell would): writes fail with fault.Unavailable after the busy timeout and write
// nothing, readiness says so, and everything recovers when the lock goes (outboxtest.RunUnavailable).
func TestUnavailable(t *testing.T) {
	t.Parallel()
	outboxtest.RunUnavailable(t, func(t *testing.T) outboxtest.Lockable {
		path := filepath.Join(t.TempDir(), "socialrx.db")
		s := openStore(t, path, sqlite.Options{BusyTimeout: 300 * time.Millisecond})
		return outboxtest.Lockable{Store: s, Lock: func(t *testing.T) func() {
			db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_pragma=busy_timeout(5000)")
			if err != nil {
				t.Fatal(err)
			}
			conn, err := db.Conn(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
				t.Fatal(err)
			}
			return func() {
				if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
					t.Error(err)
				}
				conn.Close()
				db.Close()
			}
		}}
	})
}

// TestFilesArePrivate: a new database file and its -wal and -shm files are created readable and writable by
// their owner only (0600), whatever the umask: they hold patient data.
func TestFilesArePrivate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "socialrx.db")
	s := openStore(t, path, sqlite.Options{})
	if _, err := s.CreateReferral(t.Context(), testIntake(1)); err != nil { // a write: the WAL exists
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %s, want -rw-------", filepath.Base(p), st.Mode().Perm())
		}
	}
	mig := filepath.Join(t.TempDir(), "migrated.db")
	if err := sqlite.Migrate(t.Context(), mig); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(mig); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("a database created by migrate: %v %v", st.Mode().Perm(), err)
	}
}

// TestPauseAcrossInstances: a pause made through another Store on the same file (as the CLI is) holds this
// one's claims (sqlstoretest).
func TestPauseAcrossInstances(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "socialrx.db")
	b := openStore(t, path, sqlite.Options{})
	a := openStore(t, path, sqlite.Options{Existing: true})
	sqlstoretest.PauseAcrossInstances(t, a, b)
}

// TestAuditTamper: the audit trail's verification finds records changed, deleted, inserted and reordered by
// SQL on a SQLite file (outboxtest.RunAuditTamper).
func TestAuditTamper(t *testing.T) {
	t.Parallel()
	outboxtest.RunAuditTamper(t, func(t *testing.T) (outbox.Store, outboxtest.Exec) {
		r := openWritableRaw(t)
		return r.Store, func(ctx context.Context, q string, args ...any) error {
			_, err := r.DB.ExecContext(ctx, q, args...)
			return err
		}
	})
}

// openWritableRaw opens a store on a new SQLite file and a second connection to the file that may write to
// it behind the store's back.
func openWritableRaw(t *testing.T) outboxtest.Raw {
	path := filepath.Join(t.TempDir(), "socialrx.db")
	s := openStore(t, path, sqlite.Options{})
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return outboxtest.Raw{Store: s, DB: db}
}
