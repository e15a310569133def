// Package sqlstore is the one implementation of outbox.Store's transaction scripts over SQL, shared by the
// two backends, outbox/sqlite and outbox/postgres: creating, updating and replaying referrals and messages,
// recording attempts, releasing leases, the subscription writes and the fan-out, single-use values, and every
// read. Each script is written once (Store), over what truly differs between the databases:
//
//   - Dialect: static spelling — placeholders (Rebind), the row-lock suffix, the stamp lock, the unique
//     violation test, how a message gets its seq, how a practice's active subscriptions are matched, what text
//     a column can store, and whether several writers run at once.
//   - Backend: behaviour — how a write transaction runs (SQLite: queued to one writer goroutine and group
//     committed, each write in its savepoint; PostgreSQL: READ COMMITTED, retried after serialization failures
//     and deadlocks, NOTIFY to other instances), the claim, and the two
//     steps PostgreSQL does in fewer round trips (recording a batch of attempts in one statement; writing a new
//     version with its timeline entry and the "practice has subscriptions" probe in one). The plain spelling
//     of those two steps is here (Dialect.RecordAttempts, Dialect.WriteVersions): one statement per step for
//     a whole batch, or per attempt and version when the batch cannot be written together. SQLite's: every
//     statement has a fixed cost, paid in its one writer (issue 12).
//
// The backends keep only what is theirs: opening and migrating the database (their own migration files),
// SQLite's writer goroutine and statement cache, PostgreSQL's queue pool, LISTEN/NOTIFY and advisory locks,
// and the claim and NextDue SQL. The policy the scripts apply is decided in pure code (what a cancellation
// withdraws: mapping.Withdrawal; replay selection, claim room and state moves: the pure helpers here).
//
// Only outbox/sqlite and outbox/postgres import it (Go's internal rule keeps it inside outbox/). It takes
// *sql.DB, *sql.Tx and *sql.Rows values (through Querier) because it is part of the backend layer: the house
// rule "*sql.Tx never leaves a backend package" (docs/design.md#house-style) is about the callers of the store,
// and a transaction handed here never leaves the backend that opened it.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Dialect is how a backend spells the shared SQL. Build it once per store with Compile.
type Dialect struct {
	// Name prefixes every error ("sqlite", "postgres").
	Name string
	// Rebind turns a query written with ? placeholders into the backend's; nil leaves it unchanged.
	Rebind func(string) string
	// Lock is the row-locking suffix of a read inside a write transaction (" FOR UPDATE"), or "".
	Lock string
	// StampLock is run inside a write transaction before it reads the newest referral change (Stamp) and
	// must hold until commit, so that referral changes commit in the order of their UpdatedAt. Empty when
	// the backend already runs one write transaction at a time (SQLite's single writer).
	StampLock string
	// Stamper, if set, chooses the UpdatedAt (unix microseconds) of a referral change written in transaction w
	// instead of StampLock and the newest UpdatedAt (Stamp): at least nowUS, and after every stamp chosen
	// before. A backend whose writers then commit in any order must spell VisibleStamps and VisibleSeqs.
	// It may reserve several stamps at once (Tx.StampHint) and keep them in Tx.Stamps for the transaction's
	// later changes.
	Stamper func(ctx context.Context, w *Tx, nowUS int64) (int64, error)
	// VisibleStamps, if set, is a WHERE term (no placeholders) over referrals that every referral search adds:
	// it leaves out the changes that a transaction still running could precede, so that a poll following
	// UpdatedAt never sees a change before one that commits later with an earlier stamp.
	VisibleStamps string
	// VisibleSeqs, if set, is the WHERE term (no placeholders) over outbox_messages that ListMessages adds for
	// the same reason: paging by seq misses no message that commits late.
	VisibleSeqs string
	// IndexedBy: the backend takes INDEXED BY (SQLite), and the statements written for one partial index name
	// it (Dialect.indexed), as its planner, without statistics, prefers an equality on another index
	// (retention's scan read every closed referral ever scrubbed from referrals_status_updated). INDEXED BY
	// also fails such a statement if the index could not serve it.
	IndexedBy bool
	// IsUnique reports a unique or primary key violation.
	IsUnique func(error) bool
	// NextSeq is the value a new message's seq column is inserted with: an expression (SQLite: one more than
	// the largest, which its single writer makes commit order) or DEFAULT (an identity column).
	NextSeq string
	// Subscribers is the WHERE term, with one ? (a practice's ODS code), that matches the practice's active
	// subscriptions case-insensitively, spelled so that the backend's index serves it.
	Subscribers string
	// OwnerLock, when several writers run at once, is the statement (one ?: a client id) that makes a
	// concurrent capped CreateSubscription of the same owner wait until this transaction ends, so that the
	// count it reads stays true until commit. Empty with one writer.
	OwnerLock string
	// CleanText, if not nil, makes a text storable (PostgreSQL text holds no NUL and only valid UTF-8).
	CleanText func(string) string
	// Classify, if not nil, gives a driver error its kind at the backend's edge (docs/design.md#house-style):
	// fault.Unavailable for a database that is down, busy, locked, full or failing I/O (the caller may retry
	// later), fault.Invalid for a value the database cannot store (a backstop: the adapters refuse NUL and
	// invalid UTF-8 before any query), "" to leave the error as it is (a bug: internal).
	Classify func(error) fault.Kind
	// Concurrent says that several write transactions may run at once (PostgreSQL): a unique violation on a
	// referral identifier then means a concurrent create got there first, and the transaction is run again
	// (ErrRetry) to find it. With one writer (SQLite) it cannot happen; it is reported as ErrConflict.
	Concurrent bool

	// bound are the static statements of this package, rebound once by Compile.
	bound map[string]string
	// ChainIndex, if set, follows "outbox_messages e" in the probe for a delivered message's successor in
	// its referral's chain (an INDEXED BY: SQLite, whose chain probe reads the referral's messages,
	// outbox_referral_seq, as no index of unfinished messages by referral is kept).
	ChainIndex string
	// PendingCreatedIndex, if set, follows outbox_messages in OldestPending (an INDEXED BY: SQLite, whose
	// planner would otherwise read every pending message through outbox_state_seq).
	PendingCreatedIndex string
	// insertMessage, fanOut and selectSuccessor are the statements built from NextSeq, Subscribers and
	// ChainIndex, rebound (Compile).
	insertMessage, fanOut, selectSuccessor string
}

// OldestPending is the statement CountMessages reads the oldest pending message's creation time with.
func (d Dialect) OldestPending() string {
	return oldestPendingHead + d.PendingCreatedIndex + oldestPendingTail
}

// Compile returns d with the static statements of the shared scripts rebound once, so that a hot write
// does not rebind them on every call.
func (d Dialect) Compile() Dialect {
	d.bound = nil
	if d.Rebind != nil {
		static := statements()
		bound := make(map[string]string, len(static))
		for _, q := range static {
			bound[q] = d.Rebind(q)
		}
		d.bound = bound
	}
	d.insertMessage = d.rebind(insertMessageHead + d.NextSeq + insertMessageTail)
	d.fanOut = d.rebind(selectSubscriptions + d.Subscribers + ` ORDER BY id`)
	d.selectSuccessor = d.rebind(selectSuccessor(d.ChainIndex))
	return d
}

// rebind applies d.Rebind to q (a static statement's precomputed form when there is one).
func (d Dialect) rebind(q string) string {
	if d.Rebind == nil {
		return q
	}
	if b, ok := d.bound[q]; ok {
		return b
	}
	return d.Rebind(q)
}

// DriverErr wraps a driver error of operation op with the backend's prefix and the kind Classify gives it
// (nil stays nil). The driver error stays in the chain (errors.As finds it) and in the text, for the log.
func (d Dialect) DriverErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if d.Classify != nil {
		if k := d.Classify(err); k != "" && fault.KindOf(err) != k {
			err = &kindError{kind: k, err: err}
		}
	}
	return fmt.Errorf("%s: %s: %w", d.Name, op, err)
}

// kindError is a driver error with the kind Dialect.Classify gave it.
type kindError struct {
	kind fault.Kind
	err  error
}

func (e *kindError) Error() string         { return e.err.Error() }
func (e *kindError) Unwrap() error         { return e.err }
func (e *kindError) FaultKind() fault.Kind { return e.kind }

// RebindDollar turns the ? placeholders of q into PostgreSQL's $1, $2, … (the queries built here contain
// no ? in literals).
func RebindDollar(q string) string {
	n := strings.Count(q, "?")
	if n == 0 {
		return q
	}
	b := make([]byte, 0, len(q)+2*n)
	k := 0
	for i := 0; i < len(q); i++ {
		if q[i] != '?' {
			b = append(b, q[i])
			continue
		}
		k++
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(k), 10)
	}
	return string(b)
}

// Querier is what the shared reads need of a *sql.DB, a *sql.Tx or a backend's write transaction.
type Querier interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// Scanner is a *sql.Row or *sql.Rows.
type Scanner interface{ Scan(...any) error }

// Tx is one write transaction as the scripts see it: the backend's transaction, and what its commit must
// tell.
type Tx struct {
	Querier
	// Changed: messages were written or changed state; the backend signals Changes after COMMIT.
	Changed bool
	// Quiet: the change cannot let another instance claim anything sooner, so the backend need not tell
	// other instances (PostgreSQL skips its NOTIFY); Changes is signalled all the same.
	Quiet bool
	// StampHint is how many referral changes the transaction expects to stamp (a batch of completions, each
	// a Task version); zero means one. A Dialect.Stamper may reserve that many stamps in one call.
	StampHint int
	// StampFloor is the latest now (unix microseconds) of those changes: a Stamper reserving stamps for all
	// of them at once starts no earlier, so that each stamp is at least its own change's now.
	StampFloor int64
	// Stamps is what the Dialect.Stamper keeps for the rest of the transaction: its stamps reserved and not
	// used yet. A new transaction (a retry too) starts with none.
	Stamps StampBlock
}

// StampBlock is a Dialect.Stamper's reservation within one write transaction.
type StampBlock struct {
	// Next and Last bound the stamps still free (unix microseconds, Next > Last: none).
	Next, Last int64
	// Writer is the transaction's id as the backend records it with its reservations ("" until read).
	Writer string
}

// ErrRetry marks an error after which a backend runs the whole write transaction again (a unique violation
// that a fresh run resolves, e.g. an identifier inserted by a concurrent create).
var ErrRetry = errors.New("retry transaction")

// Backend is what a backend supplies to the shared scripts beyond its Dialect.
type Backend interface {
	// Write runs fn as one write transaction and commits it. fn's error aborts the transaction and is
	// returned unchanged; a panic in fn becomes an error. fn may run more than once (a backend with several
	// writers retries serialization failures, deadlocks and ErrRetry), so it must start afresh each time;
	// ctx is the one its statements must use. After a commit in which fn set Tx.Changed, the backend signals
	// Changes (and, unless Tx.Quiet, tells other instances sharing the database).
	Write(ctx context.Context, fn func(ctx context.Context, w *Tx) error) error
	// Claim is outbox.Store.ClaimMessages with its arguments checked (owner set, lease positive, limit in
	// (0, MaxLimit]) and the paused destinations given no room in f (HoldPaused), unless the backend is a
	// PauseHolder.
	Claim(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, f outbox.ClaimFilter) ([]outbox.Message, error)
	// Due returns, as stored, the earliest due time of a claimable pending message (the head of its chain)
	// and the earliest lease expiry of a claimable inflight one, leaving out the messages of the paused
	// destinations (ExcludeDestinations spells the term; a PauseHolder is given none and reads them
	// itself); NULL when there is none.
	Due(ctx context.Context, paused []mapping.Destination) (pending, lease sql.NullInt64, err error)
	// RecordAttempts records delivery attempts, each on a message of its own, and moves on each message whose
	// lease is still held (see AttemptRow and Recorded): what Dialect.RecordAttempt does for each, in order,
	// but maybe in fewer statements. Its Recorded are in the order of as. An error (ErrNotFound for an
	// unknown message) fails the whole call; the caller's transaction then ends.
	RecordAttempts(ctx context.Context, w *Tx, as []AttemptRow) ([]Recorded, error)
	// WriteVersion writes a referral's new version and its timeline entry (see Version). updated is false
	// when the referral was not at v.From any more (nothing written); subscribed is false only when the
	// referral's practice surely has no active subscription (the fan-out is then skipped).
	// Dialect.WriteVersion is the plain spelling.
	WriteVersion(ctx context.Context, w *Tx, v Version) (updated, subscribed bool, err error)
	// WriteVersions writes several versions, each as WriteVersion writes it, in order, but maybe in fewer
	// statements; its results are in the order of vs. A batch naming a referral twice is written one version
	// at a time. Dialect.WriteVersions is the plain spelling.
	WriteVersions(ctx context.Context, w *Tx, vs []Version) (updated, subscribed []bool, err error)
}

// PauseHolder is a Backend whose Claim and Due leave out the messages of the paused destinations in their
// own statements (reading outbox_pauses there), so that the scripts read no pauses before them: one round
// trip less per claim and per NextDue. They are then given no pauses.
type PauseHolder interface {
	HoldsPauses() bool
}

// holdsPauses reports whether b reads the pauses in its own claims (PauseHolder).
func holdsPauses(b Backend) bool {
	h, ok := b.(PauseHolder)
	return ok && h.HoldsPauses()
}

// CreationWriter is a Backend that writes a new referral's rows in fewer round trips than the shared
// script's statement per row. WriteCreation writes, in w, c's referral row (c.Row, stamped), its
// identifiers (under c.Practice), its messages (c.Events: pending, due at the row's CreatedAt, version 1,
// each with a seq above every seq committed or reserved before: inserted after the stamp), and v's
// timeline entry; subscribed is false only when the practice surely has no subscription that gets
// notifications (the fan-out is then skipped). Its errors are the script's: a referral, task or
// ServiceRequest id that exists, an identifier taken (ErrRetry on a backend with several writers), a
// duplicate message id, or the driver's error with its kind.
//
// With c.Audit (one chain's records, numbered and hashed after a head), it also moves that chain's head to
// the last record and inserts them, in the same round trip, when the head is at the first record's
// predecessor (audited); when it is not, it writes none of them and the rest stands, for the caller to append
// them the script's way. A record's number already taken fails the whole write with an error wrapping
// outbox.ErrAuditHead and ErrAuditNumberTaken.
type CreationWriter interface {
	WriteCreation(ctx context.Context, w *Tx, c Creation, v Version) (subscribed, audited bool, err error)
}

// IdentifierFinder is a Backend with several writers that looks a create's identifiers up in one round
// trip, taking no lock on them (one writer needs none: a concurrent create runs after this one and finds
// it, Dialect.ExistingByIdentifiers). FindIdentifiers returns, as the transaction w sees them, the id of the
// referral holding any of ids under practice, or two of them when several do (that is a conflict), or none.
// A concurrent create of the same identifier is caught by the identifiers' unique key instead: the second
// to insert it waits there for the first and, if the first commits, fails with ErrRetry (CreationWriter);
// its fresh run finds the first's referral, as it would have after waiting for a lock. A create writes its
// identifiers in one order (see WriteCreation), so two creates never wait for each other in a cycle.
type IdentifierFinder interface {
	FindIdentifiers(ctx context.Context, w *Tx, practice string, ids []mapping.Identifier) ([]string, error)
}

// Micros converts a time to stored microseconds (0 for the zero time).
func Micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// FromMicros converts stored microseconds back to a UTC time (the zero time for 0).
func FromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

// Norm is t as it will read back: UTC, truncated to the microsecond.
func Norm(t time.Time) time.Time { return FromMicros(Micros(t)) }

// Search limits: the default and the largest page.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// ClampLimit is n within (0, MaxLimit], DefaultLimit for n <= 0.
func ClampLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}

// Placeholders is n comma-separated ? placeholders.
func Placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// NewUUIDv7 is the backends' default message id: a UUID v7 (time-ordered), or a v4 if the random source
// fails v7.
func NewUUIDv7() string {
	id, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only when the random source does; fall back to a v4 (which panics only likewise).
		return uuid.NewString()
	}
	return id.String()
}
