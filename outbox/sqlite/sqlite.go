// Package sqlite is the embedded outbox.Store backend: one SQLite file through the pure-Go modernc.org/sqlite
// driver, in WAL mode with synchronous=FULL, foreign keys on and immediate (write-locking) transactions.
//
// Writes go through ONE writer goroutine that owns the only write connection. It takes every write queued
// (up to Options.MaxBatch, or until the queue is momentarily empty) and commits them in one transaction, each
// inside its own SAVEPOINT: a write that fails (an identifier conflict, a version mismatch, an injected
// failure) rolls back only itself, and every caller gets its own result once the COMMIT is durable. One
// fsync then serves a whole batch, which is how intake beats the raw single-writer commit rate. Because all
// writes of a process share the writer, they never contend for SQLite's write lock among themselves; writers
// in other processes (the CLI's replay) take the lock with BEGIN IMMEDIATE and wait up to busy_timeout.
// Reads use a separate pool of query-only connections and see the last committed state (WAL snapshots).
// Checkpoints (the WAL's pages copied back into the database file) run on a connection of their own, off
// the writer's path (checkpoint.go), and the writer's connection gathers each transaction's WAL writes into
// one (walvfs.go).
//
// Times are stored as integer unix microseconds, UTC (0 means none), so a stored time reads back Equal to
// the value written after truncation to the microsecond.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrClosed is returned by calls made after Close (the process is shutting down: fault.Unavailable).
var ErrClosed = fault.Sentinel(fault.Unavailable, "sqlite: store closed")

// Options tune a Store. The zero value is a good default.
type Options struct {
	// SkipMigrations leaves the schema alone (run Migrate, or `socialrx migrate`, first).
	SkipMigrations bool
	// Existing opens an existing, migrated database only, changing nothing on the way (the CLI's mode): the
	// file is opened with mode=rw, so SQLite never creates it (outbox.ErrNoDatabase when it is missing), and
	// the schema is checked, not migrated (outbox.ErrSchemaBehind when a migration is missing).
	Existing bool
	// MaxBatch caps how many writes one group commit takes (default 128).
	MaxBatch int
	// BusyTimeout is how long a write waits for another process's write lock (default 10s).
	BusyTimeout time.Duration
	// ReadConns caps the read pool (default max(4, GOMAXPROCS)).
	ReadConns int
	// CheckpointFrames is how many WAL frames (pages written) a checkpoint waits for: the store's
	// checkpointer copies them into the database file from a connection of its own, off the writer's path
	// (checkpoint.go). Default 1000, SQLite's own threshold; negative: no checkpointer, SQLite's automatic
	// checkpoint on the writer's connection (as before issue 12).
	CheckpointFrames int
	// SyncOnWriter syncs every commit on the writer itself, as SQLite's synchronous=FULL does, instead of
	// on the syncer off the writer's path (syncer.go; the default on Linux, the only way elsewhere). For
	// comparisons.
	SyncOnWriter bool
	// MinFreeBytes is the free space, on the file system that holds the database, below which CheckWrite
	// (readiness) fails even though a small write still fits: a nearly full disk fails referrals before it
	// fails the probe. Default 4 MiB; negative: not checked.
	MinFreeBytes int64
	// NewID makes outbox message ids for events that come without one (default: UUIDv7).
	NewID func() string
	// Logger receives migration logs and writer errors (default: slog.Default()).
	Logger *slog.Logger
	// Notify renders subscription notifications in the fan-out (see outbox.Subscriptions). Default:
	// outbox.RenderNotification.
	Notify outbox.NotifyFunc
	// FailAfter, if set, is called after each step of CreateReferral's transaction with the step's name
	// ("referral", "identifiers", "messages", "events") and the intake; a non-nil error fails that intake as
	// if the database had, rolling back everything it wrote. For tests only.
	FailAfter func(stage string, in mapping.Intake) error
}

// Store is the SQLite outbox.Store. It is safe for concurrent use. Close stops its writer goroutine.
//
// It implements outbox.Store: the transaction scripts and reads are the shared ones (outbox/internal/sqlstore,
// whose methods it promotes), run through this backend's writer; this package adds the writer itself, the
// claim and NextDue queries, Changes, Ping and Close.
type Store struct {
	*sqlstore.Store

	d    sqlstore.Dialect
	path string
	db   *sql.DB // read pool, query_only
	wdb  *sql.DB // the one write connection, used only by the writer goroutine (and migrations)
	wvfs *walVFS // the VFS wdb opens its files with (walvfs.go)
	opts Options
	log  *slog.Logger

	jobs       chan *job
	changes    chan struct{}
	closing    chan struct{}
	writerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error

	stmts  map[string]*sql.Stmt // prepared on wdb; touched only by the writer goroutine
	missed map[string]bool      // statements to prepare once the write connection is idle
	reads  *readStmts           // the read pool with its statements kept (readcache.go)
	// afterBatch, if set, sees the size of every committed batch (internal tests).
	afterBatch func(n int)

	ckptKick chan struct{} // the writer's commits wake the checkpointer (size 1); nil without one
	ckptDone chan struct{} // closed when the checkpointer has stopped
	// afterCheckpoint, if set, sees every checkpoint the checkpointer runs (internal tests).
	afterCheckpoint func(c checkpointed, err error)

	// syncQ carries committed batches' answers to the syncer (syncer.go); nil when the writer syncs its
	// commits itself.
	syncQ    chan answers
	syncDone chan struct{}         // closed when the syncer has answered everything and stopped
	synced   chan struct{}         // the syncer answered a group (size 1; see awaitSyncer)
	syncing  atomic.Int64          // batches handed to the syncer, not yet answered
	syncErr  atomic.Pointer[error] // the failed sync's ErrWALUnsynced, once one failed
	fsync    func(fd int) error    // syncs the WAL's descriptor (fsyncFD; tests replace it before writing)
}

var _ outbox.Store = (*Store)(nil)

// dsn builds the modernc DSN for path: a file: URI with the pragmas applied on every new connection, then
// extra's parameters (more pragmas, a vfs); with existing, mode=rw, so that SQLite opens the file only if it
// is there.
func dsn(path string, write, existing bool, busy time.Duration, extra url.Values) string {
	u := url.URL{Path: path}
	q := url.Values{}
	if existing {
		q.Set("mode", "rw")
	}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	if write {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(FULL)")
		q.Add("_pragma", "temp_store(MEMORY)")
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	for k, vs := range extra {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	return "file:" + u.EscapedPath() + "?" + q.Encode()
}

func openDB(path string, write bool, busy time.Duration) (*sql.DB, error) {
	return openDBMode(path, write, false, busy, nil)
}

func openDBMode(path string, write, existing bool, busy time.Duration, extra url.Values) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	db, err := sql.Open("sqlite", dsn(path, write, existing, busy, extra))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	return db, nil
}

// createPrivate creates the database file, if it does not exist yet, readable and writable by its owner only
// (0600): it holds patient data. SQLite creates the -wal and -shm files with the database file's mode, so they
// are private too. An existing file keeps its mode; one that others may read is logged as a warning.
func createPrivate(path string, log *slog.Logger) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		return f.Close()
	case errors.Is(err, fs.ErrExist):
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			log.Warn("sqlite: the database file may be read by others than its owner; it holds patient data (chmod 600)",
				"path", path, "mode", st.Mode().Perm().String())
		}
		return nil
	}
	return fmt.Errorf("sqlite: create %s: %w", path, err)
}

// Migrate brings the database at path to the latest schema (the embedded goose migrations) and returns.
// Running it again is a no-op. It is what `socialrx migrate` runs; Open runs it too unless told not to.
func Migrate(ctx context.Context, path string) error {
	if err := createPrivate(path, slog.Default()); err != nil {
		return err
	}
	db, err := openDB(path, true, 10*time.Second)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	return migrate(ctx, db, slog.Default())
}

func migrate(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	return dialect().Migrate(ctx, db, migrationFiles, goose.DialectSQLite3, log)
}

// hasTable counts the tables named ? (CheckSchema).
const hasTable = `SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`

// checkExisting checks, through a read-only connection that sets no pragma (so that not even an empty file
// is written to), that path is a socialrx database with every migration applied.
func checkExisting(ctx context.Context, path string, busy time.Duration) error {
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("sqlite: %w (no file %s)", outbox.ErrNoDatabase, path)
	}
	u := url.URL{Path: path}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	db, err := sql.Open("sqlite", "file:"+u.EscapedPath()+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	return dialect().CheckSchema(ctx, db, migrationFiles, hasTable)
}

// Open opens (creating if needed) the database file at path, migrates it unless opts.SkipMigrations, and
// starts the writer goroutine. With opts.Existing it creates and migrates nothing (see Options.Existing).
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 128
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 10 * time.Second
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = max(4, runtime.GOMAXPROCS(0))
	}
	if opts.MinFreeBytes == 0 {
		opts.MinFreeBytes = 4 << 20
	}
	if opts.CheckpointFrames == 0 {
		opts.CheckpointFrames = 1000
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}

	if opts.Existing {
		if err := checkExisting(ctx, path, opts.BusyTimeout); err != nil {
			return nil, err
		}
	} else if err := createPrivate(path, log); err != nil {
		return nil, err
	}
	wvfs, err := registerWALVFS() // the writer's WAL writes gathered (walvfs.go)
	if err != nil {
		return nil, err
	}
	// checkpoint_fullfsync gives a checkpoint's syncs flags of their own, which walSync never defers.
	wq := url.Values{"vfs": {wvfs.name}, "_pragma": {"checkpoint_fullfsync(1)"}}
	if opts.CheckpointFrames > 0 { // the writer's automatic checkpoint, a backstop to the checkpointer's
		wq.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", checkpointBackstop*opts.CheckpointFrames))
	}
	var opened []*sql.DB
	fail := func(err error) (*Store, error) { // closes what was opened, newest first
		for i := len(opened) - 1; i >= 0; i-- {
			opened[i].Close()
		}
		return nil, errors.Join(err, wvfs.unregister())
	}
	wdb, err := openDBMode(path, true, opts.Existing, opts.BusyTimeout, wq)
	if err != nil {
		return fail(err)
	}
	opened = append(opened, wdb)
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := wdb.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("sqlite: open %w", err))
	}
	if !opts.SkipMigrations && !opts.Existing {
		if err := migrate(ctx, wdb, log); err != nil {
			return fail(err)
		}
	}
	db, err := openDBMode(path, false, opts.Existing, opts.BusyTimeout, nil)
	if err != nil {
		return fail(err)
	}
	opened = append(opened, db)
	db.SetMaxOpenConns(opts.ReadConns)
	db.SetMaxIdleConns(opts.ReadConns)
	if err := db.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("sqlite: open: %w", err))
	}
	var cdb *sql.DB
	if opts.CheckpointFrames > 0 {
		if cdb, err = openDBMode(path, true, true, opts.BusyTimeout, nil); err != nil {
			return fail(err)
		}
		cdb.SetMaxOpenConns(1)
	}

	s := &Store{
		d:          dialect().Compile(),
		path:       path,
		db:         db,
		wdb:        wdb,
		wvfs:       wvfs,
		opts:       opts,
		log:        log,
		jobs:       make(chan *job, 4*opts.MaxBatch),
		changes:    make(chan struct{}, 1),
		closing:    make(chan struct{}),
		writerDone: make(chan struct{}),
		stmts:      make(map[string]*sql.Stmt),
		missed:     make(map[string]bool),
		reads:      newReadStmts(db),
	}
	s.Store = sqlstore.New(s.d, backend{s}, s.reads, sqlstore.Config{NewID: opts.NewID, Notify: opts.Notify,
		FailAfter: opts.FailAfter})
	if cdb != nil {
		s.ckptKick, s.ckptDone = make(chan struct{}, 1), make(chan struct{})
		go s.checkpointer(cdb)
	}
	if !opts.SyncOnWriter && canDeferSyncs && ptr[walApp](wvfs.app).unixFiles == 1 {
		// After the migrations, which commit on wdb outside the writer: from here on only the writer
		// commits there, and the syncer answers for it.
		s.syncQ, s.syncDone, s.fsync = make(chan answers, maxUnsynced), make(chan struct{}), fsyncFD
		s.synced = make(chan struct{}, 1)
		atomic.StoreInt32(&ptr[walApp](wvfs.app).deferSync, 1)
		go s.syncer()
	}
	go s.writer()
	return s, nil
}

// Changes signals (buffered, size 1, never blocking) after every commit that wrote or released messages or
// changed their state so that a claim could take something sooner (a completion signals when it scheduled a
// retry or released a later message, not when it freed nothing), before the writing calls return.
func (s *Store) Changes() <-chan struct{} { return s.changes }

// Ping checks that the database answers and that the writer is running.
func (s *Store) Ping(ctx context.Context) error {
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// ErrDiskNearlyFull is CheckWrite's answer when the database's file system has less free space than
// Options.MinFreeBytes.
var ErrDiskNearlyFull = fault.Sentinel(fault.Unavailable, "sqlite: disk nearly full")

// CheckWrite is readiness (outbox.Store.CheckWrite): the shared probe write, after checking that no sync of
// the WAL has failed (ErrWALUnsynced) and that the file system holding the database has at least
// Options.MinFreeBytes free.
func (s *Store) CheckWrite(ctx context.Context, instance string, now time.Time) error {
	if err := s.syncFailed(); err != nil {
		return err
	}
	if s.opts.MinFreeBytes > 0 {
		if free, ok := freeBytes(filepath.Dir(s.path)); ok && free < uint64(s.opts.MinFreeBytes) {
			return fmt.Errorf("%w: %d bytes free where the database is, below the %d bytes readiness needs",
				ErrDiskNearlyFull, free, s.opts.MinFreeBytes)
		}
	}
	return s.Store.CheckWrite(ctx, instance, now)
}

// Close stops accepting writes, lets the writer finish the writes already queued, stops it and closes the
// database. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.writerDone
		if s.ckptDone != nil {
			<-s.ckptDone // its connection closed first: the last to close checkpoints what is left, if it can
		}
		var errs []error
		for _, st := range s.stmts {
			errs = append(errs, st.Close())
		}
		errs = append(errs, s.reads.close()...)
		// The writer's connection last: the last to close checkpoints and deletes the WAL, which through
		// walVFS it cannot do once a sync of the WAL has failed (syncer.go).
		errs = append(errs, s.db.Close(), s.wdb.Close())
		errs = append(errs, s.wvfs.unregister()) // after every connection through it
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", err)
		}
	})
	return s.closeErr
}

// signal wakes a dispatcher waiting on Changes, without blocking.
func (s *Store) signal() { wake(s.changes) }

// wake sends on a wake-up channel of size 1 without blocking: a wake-up already pending covers this one, and
// a nil channel (nobody to wake) is never ready.
func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// dialect is this backend's spelling of the shared SQL (outbox/internal/sqlstore): ? placeholders, no row
// locks and no stamp lock (one writer runs one transaction at a time), seq assigned as one more than the
// largest (commit order, as only the writer inserts), practices matched with COLLATE NOCASE, the statements
// written for one partial index pointed at it (INDEXED BY), a chain's earlier and later messages read from
// the referral's messages (outbox_referral_seq; see headOnly).
func dialect() sqlstore.Dialect {
	return sqlstore.Dialect{
		Name:                "sqlite",
		IsUnique:            isUnique,
		NextSeq:             `(SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox_messages)`,
		Subscribers:         `practice_ods = ? COLLATE NOCASE AND status IN ('active', 'error')`,
		Classify:            classify,
		IndexedBy:           true,
		ChainIndex:          ` INDEXED BY outbox_referral_seq`,
		PendingCreatedIndex: ` INDEXED BY outbox_pending_created`,
	}
}

// backend is this Store as the shared scripts see it (sqlstore.Backend).
type backend struct{ s *Store }

// Write queues fn for the writer goroutine (group commit, fn in its own savepoint) and waits for its
// result after COMMIT; fn runs once, with the writer's context.
func (b backend) Write(ctx context.Context, fn func(ctx context.Context, w *sqlstore.Tx) error) error {
	return b.s.write(ctx, func(w *wtx) error {
		t := sqlstore.Tx{Querier: w}
		err := fn(w.ctx, &t)
		if t.Changed {
			w.changed = true
		}
		return err
	})
}

// Claim leases messages through the writer (see claim).
func (b backend) Claim(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, f outbox.ClaimFilter) ([]outbox.Message, error) {
	return b.s.claim(ctx, owner, now, lease, limit, f)
}

// Due reads when the next claim can succeed (see due).
func (b backend) Due(ctx context.Context, paused []mapping.Destination) (pending, lease sql.NullInt64, err error) {
	return b.s.due(ctx, paused)
}

// RecordAttempts is the plain spelling (sqlstore.Dialect.RecordAttempts): a statement per step for a batch.
func (b backend) RecordAttempts(ctx context.Context, w *sqlstore.Tx, as []sqlstore.AttemptRow) ([]sqlstore.Recorded, error) {
	return b.s.d.RecordAttempts(ctx, w, as)
}

// WriteVersions is the plain spelling (sqlstore.Dialect.WriteVersions): a statement per step for a batch.
func (b backend) WriteVersions(ctx context.Context, w *sqlstore.Tx, vs []sqlstore.Version) (updated, subscribed []bool, err error) {
	return b.s.d.WriteVersions(ctx, w, vs)
}

// WriteVersion is the plain spelling (sqlstore.Dialect.WriteVersion).
func (b backend) WriteVersion(ctx context.Context, w *sqlstore.Tx, v sqlstore.Version) (updated, subscribed bool, err error) {
	return b.s.d.WriteVersion(ctx, w, v)
}
