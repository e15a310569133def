package sqlite

import (
	"bytes"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"
)

// walDB opens a database file through a fresh registration of walVFS (in WAL mode, with the write pragmas
// plus extra ones), closed and unregistered when t ends.
func walDB(t *testing.T, path string, direct bool, pragmas ...string) (*sql.DB, *walApp) {
	t.Helper()
	v, err := registerWALVFS()
	if err != nil {
		t.Fatal(err)
	}
	app := ptr[walApp](v.app)
	if direct {
		app.direct = 1
	}
	db, err := openDBMode(path, true, false, time.Second, url.Values{"vfs": {v.name}, "_pragma": pragmas})
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
		if err := v.unregister(); err != nil {
			t.Error(err)
		}
	})
	return db, app
}

// plainDB opens path for reading with SQLite's default VFS, as the store's read pool does.
func plainDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := openDBMode(path, false, true, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fillWAL runs 22 transactions: the table, its index, then 20 of a row of 10 KB each (three overflow pages)
// and its index entry.
func fillWAL(t *testing.T, db *sql.DB) {
	t.Helper()
	if _, err := db.Exec(`CREATE TABLE docs (id INTEGER PRIMARY KEY, k TEXT, body BLOB); CREATE INDEX docs_k ON docs (k)`); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := db.Exec(`INSERT INTO docs (id, k, body) VALUES (?, ?, ?)`, i, fmt.Sprint("k", i*7919%101),
			bytes.Repeat([]byte{byte(i)}, 10_000)); err != nil {
			t.Fatal(err)
		}
	}
}

// readBack checks, through the default VFS, that path holds fillWAL's 20 rows intact.
func readBack(t *testing.T, db *sql.DB) {
	t.Helper()
	var ok string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check: %q, %v", ok, err)
	}
	rows, err := db.Query(`SELECT id, body FROM docs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, bytes.Repeat([]byte{byte(id)}, 10_000)) {
			t.Errorf("row %d reads back different (%d bytes)", id, len(body))
		}
		n++
	}
	if err := rows.Err(); err != nil || n != 20 {
		t.Fatalf("read %d rows, %v; want 20", n, err)
	}
}

// TestWALWritesGathered: the same 20 transactions, written through walVFS passing each write straight on
// (as the default VFS alone) and gathering them: SQLite makes the same writes to the WAL either way (two a
// frame), the default VFS gets one call a transaction instead of every one of them, and the database read
// back through the default VFS is the same, intact.
func TestWALWritesGathered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	direct, directApp := walDB(t, filepath.Join(dir, "direct"), true)
	gathered, gatheredApp := walDB(t, filepath.Join(dir, "gathered"), false)
	fillWAL(t, direct)
	fillWAL(t, gathered)
	readBack(t, plainDB(t, filepath.Join(dir, "direct")))
	readBack(t, plainDB(t, filepath.Join(dir, "gathered")))

	if directApp.writes != gatheredApp.writes || directApp.calls != directApp.writes {
		t.Errorf("SQLite wrote the WAL %d times directly (%d calls), %d times gathered; want the same, every one a call",
			directApp.writes, directApp.calls, gatheredApp.writes)
	}
	// 20 transactions of 5 or more frames each: at least 200 writes directly.
	if directApp.writes < 200 {
		t.Errorf("SQLite wrote the WAL %d times for 22 transactions; want two a frame, more than 200", directApp.writes)
	}
	// Gathered, each transaction is one call (its frames are well under walMaxWrite), plus the WAL's header
	// (written and synced before the first transaction's frames).
	if gatheredApp.calls > 22+1 {
		t.Errorf("gathered: %d calls for %d writes of 22 transactions; want one a transaction, the header apart",
			gatheredApp.calls, gatheredApp.writes)
	}
}

// TestWALCommitReadableWithoutSync: a transaction committed with synchronous=OFF (SQLite then syncs
// nothing, and publishes the new frames in the wal-index straight after writing them) is read, at once and
// intact, by a connection of the default VFS: the buffer reaches the file at the commit frame, not only at
// a sync.
func TestWALCommitReadableWithoutSync(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "db")
	db, app := walDB(t, path, false, "synchronous(OFF)")
	var mode int
	if err := db.QueryRow(`PRAGMA synchronous`).Scan(&mode); err != nil || mode != 0 {
		t.Fatalf("synchronous = %d, %v; want 0 (OFF)", mode, err)
	}
	fillWAL(t, db)
	readBack(t, plainDB(t, path))
	if app.calls > 22+1 {
		t.Errorf("%d calls for 22 transactions: the writes were not gathered", app.calls)
	}
}
