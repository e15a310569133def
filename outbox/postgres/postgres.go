// Package postgres is the production outbox.Store backend: PostgreSQL through database/sql and the pgx
// driver (github.com/jackc/pgx/v5/stdlib), with the schema of outbox/sqlite mirrored in embedded goose
// migrations.
//
// Several Store instances (several adapter processes) may share one database:
//   - CreateReferral looks its ServiceRequest.identifiers up (one statement) and takes no lock on them:
//     of two concurrent creates of one identifier, the second to insert it waits on the unique index of
//     referral_identifiers for the first, fails there if the first commits, and runs its transaction again,
//     which then finds the first's referral (identifiers are inserted in one order: no waiting in a cycle).
//   - Every writer locks the referral row (SELECT … FOR UPDATE) before changing it, so versions and the
//     messages of one referral follow commit order; the fan-out numbers subscription events with
//     UPDATE … RETURNING, holding the subscription's row lock until commit (gap-free, commit-ordered).
//   - Referral changes commit in parallel, and polling stays exact: each change reserves its UpdatedAt
//     (socialrx_reserve_stamp, migration 60: a short autocommit call on the stamp pool that holds the
//     per-schema stamp lock only while it chooses, never over the writer's commit) together with its
//     transaction id, and every referral search and message listing shows only what no transaction still
//     running could precede (visibleStamps, visibleSeqs). A GP polling _lastUpdated=gt… therefore never
//     misses a change that commits late with an earlier time, while writers no longer queue behind each
//     other's fsync.
//   - ClaimMessages selects with FOR UPDATE SKIP LOCKED and leases what it selected: two instances never
//     lease the same message at once, and neither waits for the other. Claims and NextDue run on a small
//     second pool whose sessions pin the queue's plans (see queueSettings).
//   - Serialization failures, deadlocks and a create's identifier taken meanwhile are retried a bounded
//     number of times (Options.MaxRetries).
//
// Changes signals after this Store's own commits, and (LISTEN/NOTIFY on one dedicated connection outside the
// pool, unless Options.NoListen) when another instance on the same schema commits a change to messages: a
// dispatcher wakes for a replay made with the CLI, or for messages another instance released.
//
// Times are stored as BIGINT unix microseconds, UTC (0 means none), so a stored time reads back Equal to the
// value written after truncation to the microsecond.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrClosed is returned by calls made after Close (the process is shutting down: fault.Unavailable).
var ErrClosed = fault.Sentinel(fault.Unavailable, "postgres: store closed")

// Options tune a Store. The zero value is a good default.
type Options struct {
	// SkipMigrations leaves the schema alone (run Migrate, or `socialrx migrate`, first).
	SkipMigrations bool
	// Existing opens an existing, migrated schema only, changing nothing on the way (the CLI's mode): the
	// schema is checked, not migrated (outbox.ErrNoDatabase when it holds no socialrx tables,
	// outbox.ErrSchemaBehind when a migration is missing).
	Existing bool
	// MaxConns caps the connection pool (default 16).
	MaxConns int
	// MaxRetries caps how many times a transaction that failed with a serialization failure, a deadlock or
	// (a create) an identifier another transaction took meanwhile is run again (default 8).
	MaxRetries int
	// LockTimeout is how long a statement waits for a lock (PostgreSQL's lock_timeout) before it gives up
	// and the call fails with fault.Unavailable (503 + Retry-After, not a request that hangs): the database
	// locked by a migration or maintenance, say. Default 10 s; a lock_timeout in the URL wins.
	LockTimeout time.Duration
	// ConnectTimeout bounds opening a connection (connect_timeout), so that an unreachable server is a
	// prompt fault.Unavailable. Default 5 s; a connect_timeout in the URL wins.
	ConnectTimeout time.Duration
	// NewID makes outbox message ids for events that come without one (default: UUIDv7).
	NewID func() string
	// Logger receives migration logs (default: slog.Default()).
	Logger *slog.Logger
	// Notify renders subscription notifications in the fan-out (see outbox.Subscriptions). Default:
	// outbox.RenderNotification.
	Notify outbox.NotifyFunc
	// NoListen turns off the LISTEN connection: Changes then signals only this Store's own commits (other
	// instances' messages are found when NextDue says so). NOTIFY is still sent for the instances that listen.
	NoListen bool
	// FailAfter, if set, is called after each step of CreateReferral's transaction with the step's name
	// ("referral", "identifiers", "messages", "events") and the intake; a non-nil error fails that intake as
	// if the database had, rolling back everything it wrote. For tests only.
	FailAfter func(stage string, in mapping.Intake) error
	// Warm opens sessions of every pool in Open (of the writers', as many as warmWriterCount allows), and has
	// each load what its first statements need (warmUp), so that the first requests after a start do not each
	// wait for a new, cold session. For a server (serve sets it); a CLI command or a test has no use for it.
	Warm bool
	// VacuumEvery is how many recorded attempts pass between two vacuums of the queue's tables, run in the
	// background by this Store (see noteAttempt). Default DefaultVacuumEvery; negative: never (autovacuum
	// alone).
	VacuumEvery int
}

// Store is the PostgreSQL outbox.Store. It is safe for concurrent use, and several Stores (in one process
// or many) may share a database.
//
// It implements outbox.Store: the transaction scripts and reads are the shared ones (outbox/internal/sqlstore,
// whose methods it promotes), run in this backend's retried transactions (write); this package adds those,
// the claim and NextDue queries, the one-round-trip attempt and version writes, the advisory locks,
// LISTEN/NOTIFY, Changes, Ping and Close.
type Store struct {
	*sqlstore.Store

	d      sqlstore.Dialect
	db     *sql.DB
	qdb    *sql.DB // the queue pool: claims and NextDue, with queueSettings
	sdb    *sql.DB // the stamp pool: socialrx_reserve_stamp, autocommit, outside the writers' transactions
	ndb    *sql.DB // the announcer's one connection (announce), with the stamp pool's settings
	opts   Options
	log    *slog.Logger
	schema string // current_schema() of the connections: scopes advisory lock keys and the channel
	dsn    string

	channel  string // LISTEN/NOTIFY channel of the schema
	instance string // this Store's id: the NOTIFY payload its own listener ignores
	version  string // the statement of writeVersion

	changes    chan struct{}
	closing    chan struct{}
	attempts   atomic.Int64       // attempts recorded (noteAttempt)
	vacuuming  atomic.Bool        // a vacuum of the queue is running
	upkeep     sync.WaitGroup     // the running vacuum
	upkeepCtx  context.Context    // cancelled by Close
	stopUpkeep context.CancelFunc // cancels upkeepCtx
	stopListen context.CancelFunc
	listenDone chan struct{}
	// announcing holds an announcement asked for and not sent yet (announce); announcerDone is closed when
	// the announcer, stopped with upkeepCtx, has returned.
	announcing    chan struct{}
	announcerDone chan struct{}
	announced     atomic.Int64 // announcements sent or failed (for tests)
	closeOnce     sync.Once
	closeErr      error
}

var _ outbox.Store = (*Store)(nil)

func openDB(dsn string) (*sql.DB, error) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return nil, errors.New("postgres: the database URL must start with postgres:// or postgresql://")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	return db, nil
}

// Migrate brings the database at dsn to the latest schema (the embedded goose migrations) and returns.
// Running it again is a no-op, and several instances may run it at once (a session advisory lock, per
// schema, serialises them). It is what `socialrx migrate` runs; Open runs it too unless told not to.
func Migrate(ctx context.Context, dsn string) error {
	db, err := openDB(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	schema, err := currentSchema(ctx, db)
	if err != nil {
		return err
	}
	return migrate(ctx, db, schema, slog.Default())
}

func currentSchema(ctx context.Context, db *sql.DB) (string, error) {
	var schema sql.NullString
	if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return "", dialect().DriverErr("connect", err)
	}
	if !schema.Valid {
		return "", errors.New("postgres: no current schema (check search_path)")
	}
	return schema.String, nil
}

func migrate(ctx context.Context, db *sql.DB, schema string, log *slog.Logger) error {
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockKey("goose", schema)),
		lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	return dialect().Migrate(ctx, db, migrationFiles, goose.DialectPostgres, log, goose.WithSessionLocker(locker))
}

// lockKey hashes parts into an advisory lock key (parts are length-prefixed, so no two lists collide by
// concatenation).
func lockKey(parts ...string) int64 {
	h := fnv.New64a()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s|", len(p), p)
	}
	return int64(h.Sum64())
}

// queueSettings are the session settings of the queue pool, which runs the dispatcher's claims and NextDue:
// they make those queries plan as the queue's partial indexes intend whatever the statistics say (this is
// PostgreSQL's counterpart of SQLite's INDEXED BY). On a fresh or just-filled outbox_messages the planner
// believes few rows are pending and picks a bitmap scan and a sort, reading, sorting and head-checking the
// whole backlog on every claim instead of stopping at the first heads. JIT goes off too: a disabled path's
// penalty cost would otherwise trip jit_above_cost and compile each statement (hundreds of milliseconds).
// The pool's statements run on generic plans from the first execution (plan_cache_mode): the settings above
// already choose their scans, and every value that shapes a claim's plan, its limit, is written into its text
// (the parameters left are the time, the owner and the destinations' room), so PostgreSQL's five custom
// plans per statement text and connection before it settles on the generic one only cost planning: 2.7 ms
// each for a claim, 261 plans (0.7 s of the server's time) in a 20,000-message drain.
// A claim's commit need not wait for its WAL flush: a lease lost in a server crash leaves its message pending
// (or its old lease expiring), to be claimed and delivered again, which at-least-once delivery allows;
// completions, on the main pool, stay synchronous.
var queueSettings = [][2]string{
	{"enable_seqscan", "off"}, {"enable_bitmapscan", "off"}, {"enable_sort", "off"}, {"jit", "off"},
	{"plan_cache_mode", "force_generic_plan"}, {"synchronous_commit", "off"},
}

// withTimeouts is dsn with lock_timeout and connect_timeout set unless it sets them itself.
func withTimeouts(dsn string, lock, connect time.Duration) (string, error) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn, nil // openDB says what is wrong
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", errors.New("postgres: the database URL does not parse") // the URL may hold a password
	}
	q := u.Query()
	if !q.Has("lock_timeout") {
		q.Set("lock_timeout", strconv.FormatInt(lock.Milliseconds(), 10))
	}
	if !q.Has("connect_timeout") {
		q.Set("connect_timeout", strconv.FormatInt(max(int64(connect/time.Second), 1), 10))
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// queueDSN is dsn with queueSettings as connection parameters (pgx sends unknown ones as session settings).
func queueDSN(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", errors.New("postgres: the database URL does not parse") // the URL may hold a password
	}
	q := u.Query()
	for _, kv := range queueSettings {
		q.Set(kv[0], kv[1])
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// hasTable counts the tables named ? in the current schema (CheckSchema).
const hasTable = `SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = ?`

// Open connects to the database at dsn (a postgres:// URL; search_path may be given as a parameter),
// migrates it unless opts.SkipMigrations, and returns the store.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.MaxConns <= 0 {
		opts.MaxConns = 16
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 8
	}
	if opts.VacuumEvery == 0 {
		opts.VacuumEvery = DefaultVacuumEvery
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 10 * time.Second
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	dsn, err := withTimeouts(dsn, opts.LockTimeout, opts.ConnectTimeout)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	db, err := openDB(dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(opts.MaxConns)
	db.SetMaxIdleConns(opts.MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	schema, err := currentSchema(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	switch {
	case opts.Existing:
		if err := dialect().CheckSchema(ctx, db, migrationFiles, hasTable); err != nil {
			db.Close()
			return nil, err
		}
	case !opts.SkipMigrations:
		if err := migrate(ctx, db, schema, log); err != nil {
			db.Close()
			return nil, err
		}
	}
	qdsn, err := queueDSN(dsn)
	if err != nil {
		db.Close()
		return nil, err
	}
	qdb, err := openDB(qdsn)
	if err != nil {
		db.Close()
		return nil, err
	}
	qdb.SetMaxOpenConns(min(opts.MaxConns, 4))
	qdb.SetMaxIdleConns(min(opts.MaxConns, 4))
	qdb.SetConnMaxIdleTime(5 * time.Minute)
	sdsn, err := stampDSN(dsn)
	if err != nil {
		db.Close()
		qdb.Close()
		return nil, err
	}
	sdb, err := openDB(sdsn)
	if err != nil {
		db.Close()
		qdb.Close()
		return nil, err
	}
	sdb.SetMaxOpenConns(min(opts.MaxConns, 4))
	sdb.SetMaxIdleConns(min(opts.MaxConns, 4))
	sdb.SetConnMaxIdleTime(5 * time.Minute)
	ndb, err := openDB(sdsn)
	if err != nil {
		db.Close()
		qdb.Close()
		sdb.Close()
		return nil, err
	}
	ndb.SetMaxOpenConns(1)
	ndb.SetMaxIdleConns(1)
	ndb.SetConnMaxIdleTime(5 * time.Minute)
	upkeepCtx, stopUpkeep := context.WithCancel(context.WithoutCancel(ctx))
	s := &Store{
		d:          dialect().Compile(),
		db:         db,
		qdb:        qdb,
		sdb:        sdb,
		ndb:        ndb,
		opts:       opts,
		log:        log,
		schema:     schema,
		dsn:        dsn,
		channel:    channel(schema),
		instance:   uuid.NewString(),
		changes:    make(chan struct{}, 1),
		closing:    make(chan struct{}),
		upkeepCtx:  upkeepCtx,
		stopUpkeep: stopUpkeep,
		listenDone: make(chan struct{}),
		version:    versionStatement(),

		announcing:    make(chan struct{}, 1),
		announcerDone: make(chan struct{}),
	}
	go s.announcer(upkeepCtx)
	s.d.Stamper = s.stamp
	s.Store = sqlstore.New(s.d, backend{s}, db, sqlstore.Config{NewID: opts.NewID, Notify: opts.Notify,
		FailAfter: opts.FailAfter})
	// The listening connection first: a warm-up that met a server short of connections must not cost the
	// store the one it cannot run without.
	if opts.NoListen {
		close(s.listenDone)
		s.stopListen = func() {}
	} else {
		conn, err := s.startListening(ctx)
		if err != nil {
			stopUpkeep()
			<-s.announcerDone
			db.Close()
			qdb.Close()
			sdb.Close()
			ndb.Close()
			return nil, err
		}
		lctx, stop := context.WithCancel(context.Background())
		s.stopListen = stop
		go s.listen(lctx, conn)
	}
	if opts.Warm {
		if err := s.warmUp(ctx); err != nil {
			log.Warn("postgres: sessions not opened ahead of the first requests; they open when needed", "err", err)
		}
	}
	return s, nil
}

// Changes signals (buffered, size 1, never blocking) after every commit of this Store that wrote or released
// messages or changed their state so that a claim could take something sooner (a completion signals when it
// scheduled a retry or released a later message, not when it freed nothing), before the writing call
// returns.
func (s *Store) Changes() <-chan struct{} { return s.changes }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed() {
		return ErrClosed
	}
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return s.d.DriverErr("ping", err)
	}
	return nil
}

// Close stops the listener and closes the connection pool. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.stopListen()
		<-s.listenDone
		s.stopUpkeep()
		s.upkeep.Wait()
		<-s.announcerDone
		if err := errors.Join(s.db.Close(), s.qdb.Close(), s.sdb.Close(), s.ndb.Close()); err != nil {
			s.closeErr = fmt.Errorf("postgres: close: %w", err)
		}
	})
	return s.closeErr
}

func (s *Store) closed() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// signal wakes a dispatcher waiting on Changes, without blocking.
func (s *Store) signal() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// write runs fn in a READ COMMITTED transaction and commits it, running it again (at most
// Options.MaxRetries times) after a serialization failure, a deadlock or a sqlstore.ErrRetry. fn's own
// errors are returned unchanged; a panic in fn becomes an error. A commit in which fn set Changed signals
// Changes and, unless Quiet, tells the other instances after the commit (announce).
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, w *sqlstore.Tx) error) error {
	return s.writeWith(ctx, s.db, fn)
}

// writeWith is write on the pool db.
func (s *Store) writeWith(ctx context.Context, db *sql.DB, fn func(ctx context.Context, w *sqlstore.Tx) error) error {
	if s.closed() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		w, err := s.writeOnce(ctx, db, fn)
		if err == nil {
			if w.Changed {
				s.signal()
				if !w.Quiet {
					s.announce()
				}
			}
			return nil
		}
		if attempt < s.opts.MaxRetries && retryable(err) && ctx.Err() == nil {
			continue
		}
		return err
	}
}

// writeOnce runs fn in one transaction and commits it, returning the transaction's flags (Changed, Quiet)
// once committed.
func (s *Store) writeOnce(ctx context.Context, db *sql.DB, fn func(ctx context.Context, w *sqlstore.Tx) error) (*sqlstore.Tx, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		if s.closed() {
			return nil, ErrClosed
		}
		return nil, s.d.DriverErr("begin", err)
	}
	w := &sqlstore.Tx{Querier: tx}
	if err := safeRun(ctx, fn, w); err != nil {
		_ = tx.Rollback() // the error that matters is fn's
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, s.d.DriverErr("commit", err)
	}
	return w, nil
}

// safeRun runs fn, turning a panic (in a caller's ReferralUpdate, say) into an error.
func safeRun(ctx context.Context, fn func(ctx context.Context, w *sqlstore.Tx) error, w *sqlstore.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("postgres: write panicked: %v", r)
		}
	}()
	return fn(ctx, w)
}

// retryable reports a transient failure worth running the transaction again for.
func retryable(err error) bool {
	if errors.Is(err, sqlstore.ErrRetry) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return true
		}
	}
	return false
}

// isUnique reports a unique or primary key violation.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// stampDSN is dsn for the stamp pool: its reservations are in an UNLOGGED table, so its commits have nothing
// to wait for (synchronous_commit off makes that explicit).
func stampDSN(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", errors.New("postgres: the database URL does not parse") // the URL may hold a password
	}
	q := u.Query()
	q.Set("synchronous_commit", "off")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// reserveStamps reserves $3 stamps from $1 on for writer $2 (stamp, and the warm-up).
const reserveStamps = `SELECT socialrx_reserve_stamps($1, $2::xid8, $3)`

// stamp is the dialect's Stamper: it reserves the UpdatedAt of a referral change written in transaction w
// (socialrx_reserve_stamps, migrations 60 and 90) with w's transaction id, in an autocommit call on the stamp
// pool. The call holds the per-schema stamp lock only while it chooses (after every stamp chosen before, at
// least nowUS); w commits whenever it is ready, in parallel with other writers, and visibleStamps keeps its
// change from polls that could otherwise move past it. A transaction expecting several changes
// (Tx.StampHint, a batch of completions) reserves a block of that many stamps in the one call, starting no
// earlier than the latest now among them (Tx.StampFloor), and takes its later stamps from the block, in
// order, without a round trip. The block's first stamp bounds the polls until the transaction ends, so each
// of its stamps stays hidden as long as a stamp reserved alone would.
func (s *Store) stamp(ctx context.Context, w *sqlstore.Tx, nowUS int64) (int64, error) {
	b := &w.Stamps
	if b.Next > 0 && b.Next <= b.Last && b.Next >= nowUS {
		b.Next++
		return b.Next - 1, nil
	}
	if b.Writer == "" {
		if err := w.QueryRowContext(ctx, `SELECT pg_current_xact_id()::text`).Scan(&b.Writer); err != nil {
			return 0, s.d.DriverErr("stamp", err)
		}
	}
	n := max(w.StampHint, 1)
	var at int64
	if err := s.sdb.QueryRowContext(ctx, reserveStamps, max(nowUS, w.StampFloor), b.Writer, n).Scan(&at); err != nil {
		if s.closed() {
			return 0, ErrClosed
		}
		return 0, s.d.DriverErr("stamp", err)
	}
	b.Next, b.Last = at+1, at+int64(n)-1
	return at, nil
}

// unfinished is the stamp reservations of transactions still running in the statement's snapshot (a
// transaction that reserved a stamp before the snapshot was taken is either visible in it, finished, or one
// of these).
const unfinished = `FROM stamp_reservations sr WHERE NOT pg_visible_in_snapshot(sr.xid, pg_current_snapshot())`

// visibleStamps is the dialect's VisibleStamps: a referral search shows the changes stamped before the
// earliest stamp still reserved by a running transaction. A change committed after the search's snapshot
// either reserved its stamp before it (then it is running in the snapshot, and its stamp bounds the search)
// or after it (then its stamp is later than every stamp the snapshot shows: stamps are reserved one at a
// time, each reservation committed before the next is chosen).
const visibleStamps = `updated_at < (SELECT COALESCE(min(sr.stamp), 9223372036854775807) ` + unfinished + `)`

// visibleSeqs is the dialect's VisibleSeqs: a message listing shows seqs up to the smallest seq floor of the
// running transactions that reserved a stamp (each inserts its messages after its reservation, so with seqs
// above its floor).
const visibleSeqs = `seq <= (SELECT COALESCE(min(sr.seq_floor), 9223372036854775807) ` + unfinished + `)`

// dialect is this backend's spelling of the shared SQL (outbox/internal/sqlstore): $n placeholders, rows
// read in a write transaction locked FOR UPDATE, what polls may see of parallel writers, seq from the identity column, practices
// matched on lower() (the index subscriptions_practice_status), text without NUL, several writers.
func dialect() sqlstore.Dialect {
	return sqlstore.Dialect{
		Name:          "postgres",
		Rebind:        sqlstore.RebindDollar,
		Lock:          " FOR UPDATE",
		VisibleStamps: visibleStamps,
		VisibleSeqs:   visibleSeqs,
		IsUnique:      isUnique,
		NextSeq:       "DEFAULT",
		Subscribers:   `lower(practice_ods) = lower(?) AND status IN ('active', 'error')`,
		CleanText:     storableText,
		OwnerLock:     `SELECT pg_advisory_xact_lock(hashtext(current_schema()), hashtext(?))`,
		Classify:      classify,
		Concurrent:    true,
	}
}

// storableText makes s storable as PostgreSQL text: valid UTF-8, no NUL.
func storableText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, ""), "\x00", "")
}

// backend is this Store as the shared scripts see it (sqlstore.Backend).
type backend struct{ s *Store }

// Write runs fn in a transaction of the main pool (see write).
func (b backend) Write(ctx context.Context, fn func(ctx context.Context, w *sqlstore.Tx) error) error {
	return b.s.write(ctx, fn)
}

// Claim leases messages on the queue pool (see claim).
func (b backend) Claim(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, f outbox.ClaimFilter) ([]outbox.Message, error) {
	return b.s.claim(ctx, owner, now, lease, limit, f)
}

// Due reads when the next claim can succeed (see due).
func (b backend) Due(ctx context.Context, paused []mapping.Destination) (pending, lease sql.NullInt64, err error) {
	return b.s.due(ctx, paused)
}

// FindIdentifiers looks a create's identifiers up in one round trip (see findIdentifiers).
func (b backend) FindIdentifiers(ctx context.Context, w *sqlstore.Tx, practice string, ids []mapping.Identifier) ([]string, error) {
	return b.s.findIdentifiers(ctx, w, practice, ids)
}

// RecordAttempts records a batch of attempts in one round trip (see recordAttempts).
func (b backend) RecordAttempts(ctx context.Context, w *sqlstore.Tx, as []sqlstore.AttemptRow) ([]sqlstore.Recorded, error) {
	recs, err := b.s.recordAttempts(ctx, w, as)
	if err == nil {
		b.s.noteAttempts(len(as))
	}
	return recs, err
}

// HoldsPauses says that claims and NextDue read the pauses in their own statements (sqlstore.PauseHolder).
func (backend) HoldsPauses() bool { return true }

// AppendAudit appends records to an existing chain in one round trip (see appendAudit).
func (b backend) AppendAudit(ctx context.Context, recs []outbox.AuditRecord) error {
	return b.s.appendAudit(ctx, b.s.db, recs)
}

// AppendAuditIn appends records to a chain in the write transaction w, in one round trip (see appendAudit).
func (b backend) AppendAuditIn(ctx context.Context, w *sqlstore.Tx, recs []outbox.AuditRecord) error {
	return b.s.appendAudit(ctx, w, recs)
}

// WriteCreation writes a new referral's rows, and its audit record when it can, in one round trip (see
// writeCreation).
func (b backend) WriteCreation(ctx context.Context, w *sqlstore.Tx, c sqlstore.Creation, v sqlstore.Version) (subscribed, audited bool, err error) {
	return b.s.writeCreation(ctx, w, c, v)
}

// WriteVersions writes a batch of versions in one round trip (see writeVersions).
func (b backend) WriteVersions(ctx context.Context, w *sqlstore.Tx, vs []sqlstore.Version) (updated, subscribed []bool, err error) {
	return b.s.writeVersions(ctx, w, vs)
}

// WriteVersion writes a new version in one round trip (see writeVersion).
func (b backend) WriteVersion(ctx context.Context, w *sqlstore.Tx, v sqlstore.Version) (updated, subscribed bool, err error) {
	return b.s.writeVersion(ctx, w, v)
}
