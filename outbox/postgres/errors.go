package postgres

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/socialrx/socialrx/fault"
)

// classify gives PostgreSQL's errors their kind at this backend's edge (sqlstore.Dialect.Classify).
//
// fault.Unavailable, the database cannot serve now (clients get 503 with Retry-After, never 500): no
// connection (refused, reset, closed, timed out, a server that is starting or shutting down: SQLSTATE class 08,
// 57P01-57P03), insufficient resources (class 53: disk full, out of memory, too many connections), a system
// or I/O error (class 58), a statement cancelled or timed out (57014), lock contention that outlasted the
// retries (40001, 40P01, 55P03), and a read-only server (25006: a standby after a failover).
//
// fault.Invalid: a value PostgreSQL cannot store as text (22021 invalid UTF-8 or a NUL byte, 22P05 an untranslatable character).
// The adapters refuse NUL and invalid UTF-8 before any query; this is the backstop that keeps a value that
// slipped through a 400, never a 500.
func classify(err error) fault.Kind {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "53"), strings.HasPrefix(pe.Code, "58"):
			return fault.Unavailable
		}
		switch pe.Code {
		case "57P01", "57P02", "57P03", "57014", "40001", "40P01", "55P03", "25006":
			return fault.Unavailable
		case "22021", "22P05":
			return fault.Invalid
		}
		return ""
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.As(err, &ce), errors.As(err, &oe), errors.As(err, &ne),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		pgconn.Timeout(err), pgconn.SafeToRetry(err):
		return fault.Unavailable
	}
	if strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "sql: database is closed") {
		// pgx's and database/sql's "closed" errors have no exported value to match.
		return fault.Unavailable
	}
	return ""
}
