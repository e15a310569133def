// Package sqlstore holds what the two SQL store backends, outbox/sqlite and outbox/postgres, share: row
// codecs (referral, message, attempt and subscription rows), query builders (the WHERE clauses of
// ReferralQuery and MessageQuery, written with ? placeholders that a backend rebinds), the pure decision
// logic of the store (replay selection, withdrawal before delivery, claim room) and time conversion helpers.
//
// Only outbox/sqlite and outbox/postgres import it (Go's internal rule keeps it inside outbox/). It takes
// *sql.DB, *sql.Tx and *sql.Rows values (through Querier) because it is part of the backend layer: DESIGN's
// rule "*sql.Tx never leaves a backend package" is about the callers of the store, and a transaction handed
// here never leaves the backend that opened it. Dialect-specific SQL (claims, locking, upserts, migrations)
// stays in each backend; what differs in the shared SQL (placeholders, row locks, the error prefix) comes
// in through Dialect.
package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Dialect is what the shared code needs to know of a backend.
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
}

// rebind applies d.Rebind to q.
func (d Dialect) rebind(q string) string {
	if d.Rebind == nil {
		return q
	}
	return d.Rebind(q)
}

// DriverErr wraps a driver error of operation op with the backend's prefix (nil stays nil).
func (d Dialect) DriverErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %s: %w", d.Name, op, err)
}

// Querier is what the shared reads need of a *sql.DB, a *sql.Tx or a backend's write transaction.
type Querier interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// Scanner is a *sql.Row or *sql.Rows.
type Scanner interface{ Scan(...any) error }

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
