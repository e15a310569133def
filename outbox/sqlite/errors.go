package sqlite

import (
	"errors"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/socialrx/socialrx/fault"
)

// classify gives SQLite's result codes their kind at this backend's edge (sqlstore.Dialect.Classify): a
// database that is busy or locked by another process (beyond busy_timeout), out of memory, read-only, failing
// I/O, full, impossible to open, or in a locking-protocol failure cannot serve now: fault.Unavailable, so that
// clients get 503 with Retry-After, never 500. Anything else (a constraint, a misuse: a bug) keeps no kind.
func classify(err error) fault.Kind {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return ""
	}
	switch se.Code() & 0xff { // the primary code of an extended one (SQLITE_IOERR_WRITE → SQLITE_IOERR)
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY,
		sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL:
		return fault.Unavailable
	}
	return ""
}
