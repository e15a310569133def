package sqlite

import (
	"bytes"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
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

// readBack checks, through the default VFS, that docs holds rows 0 to want-1, each id's body intact (10 KB
// of the id's byte), and that the database is sound.
func readBack(t *testing.T, db *sql.DB, want int) {
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
		if id != n || !bytes.Equal(body, bytes.Repeat([]byte{byte(id)}, 10_000)) {
			t.Errorf("row %d (want %d) reads back different (%d bytes)", id, n, len(body))
		}
		n++
	}
	if err := rows.Err(); err != nil || n != want {
		t.Fatalf("read %d rows, %v; want %d", n, err, want)
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
	readBack(t, plainDB(t, filepath.Join(dir, "direct")), 20)
	readBack(t, plainDB(t, filepath.Join(dir, "gathered")), 20)

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
// intact, by a connection of the default VFS, also when every transaction overflows the buffer: what is
// buffered reaches the file at the shared-memory barrier that publishes it, not only at a sync.
func TestWALCommitReadableWithoutSync(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "db")
	db, app := walDB(t, path, false, "synchronous(OFF)")
	app.bufBytes = 3 * (24 + 4096) // 3 frames: every transaction here has more
	var mode int
	if err := db.QueryRow(`PRAGMA synchronous`).Scan(&mode); err != nil || mode != 0 {
		t.Fatalf("synchronous = %d, %v; want 0 (OFF)", mode, err)
	}
	fillWAL(t, db)
	readBack(t, plainDB(t, path), 20)
	if app.calls >= app.writes/4 {
		t.Errorf("%d calls for %d writes: the writes were not gathered", app.calls, app.writes)
	}
}

// TestWALRollbackWritesNothingOverOthers: a transaction too large for its page cache spills frames into the
// WAL before it ends (into walVFS's buffer, which still holds them), then rolls back. Another writer (a
// connection of the default VFS, as another process would be) then commits frames at the same place in the
// WAL, and the first connection writes again: every row reads back intact. Without the drop at the write
// lock's release, the first connection's next call wrote the rolled-back frames over the other's: "file is
// not a database".
func TestWALRollbackWritesNothingOverOthers(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "db")
	a, app := walDB(t, path, false, "cache_size(8)")
	if _, err := a.Exec(`CREATE TABLE docs (id INTEGER PRIMARY KEY, body BLOB)`); err != nil {
		t.Fatal(err)
	}
	// Everything in the database file, so that the rollback reads what it needs from there, not the WAL.
	if _, err := a.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	tx, err := a.Begin()
	if err != nil {
		t.Fatal(err)
	}
	// One row of 600 KB through a cache of 8 pages: its overflow pages spill into the WAL as they are made.
	if _, err := tx.Exec(`INSERT INTO docs (id, body) VALUES (?, ?)`, 1000, bytes.Repeat([]byte{0xEE}, 600_000)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if app.dropped == 0 {
		t.Fatal("nothing was buffered when the transaction rolled back: the test needs it to be")
	}

	b, err := openDBMode(path, true, true, time.Second, nil) // the default VFS
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.SetMaxOpenConns(1)
	for i := range 20 {
		if _, err := b.Exec(`INSERT INTO docs (id, body) VALUES (?, ?)`, i, bytes.Repeat([]byte{byte(i)}, 10_000)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Exec(`INSERT INTO docs (id, body) VALUES (?, ?)`, 20, bytes.Repeat([]byte{20}, 10_000)); err != nil {
		t.Fatal(err)
	}

	readBack(t, plainDB(t, path), 21)
}

// standIn is, in libc memory, a database file's head and its WAL's, linked as walOpen links them, over
// stand-ins for the default VFS's write and shared-memory lock calls (writes fail with SQLITE_FULL while
// full), with a frame to write: what SQLite would pass, without SQLite.
type standIn struct {
	tls           *libc.TLS
	db, wal, page uintptr
	w             *walFile
	full          bool
	writes, locks int
}

func newStandIn(t *testing.T) *standIn {
	t.Helper()
	s := &standIn{tls: libc.NewTLS()}
	alloc := func(n uintptr) uintptr {
		p := libc.Xcalloc(s.tls, 1, lib.Tsize_t(n))
		if p == 0 {
			t.Fatal("out of memory")
		}
		t.Cleanup(func() { libc.Xfree(s.tls, p) })
		return p
	}
	t.Cleanup(s.tls.Close) // after the frees, registered later
	write := func(tls *libc.TLS, pFile, zBuf uintptr, iAmt int32, iOfst int64) int32 {
		s.writes++
		if s.full {
			return lib.SQLITE_FULL
		}
		return lib.SQLITE_OK
	}
	lock := func(tls *libc.TLS, pFile uintptr, offset, n, flags int32) int32 {
		s.locks++
		return lib.SQLITE_OK
	}
	// Only libc memory refers to the two functions while the test runs, which the collector does not see.
	t.Cleanup(func() { runtime.KeepAlive(write); runtime.KeepAlive(lock) })
	rm := alloc(unsafe.Sizeof(lib.Tsqlite3_io_methods{}))
	*ptr[lib.Tsqlite3_io_methods](rm) = lib.Tsqlite3_io_methods{FiVersion: 3, FxWrite: fn(write), FxShmLock: fn(lock)}
	app := alloc(unsafe.Sizeof(walApp{}))
	*ptr[walApp](app) = walApp{bufBytes: walBufferBytes}
	s.db, s.wal, s.page = alloc(unsafe.Sizeof(walFile{})), alloc(unsafe.Sizeof(walFile{})), alloc(4120)
	*ptr[walFile](s.db) = walFile{app: app, rm: rm, peer: s.wal}
	*ptr[walFile](s.wal) = walFile{app: app, rm: rm, peer: s.db, wal: 1, buf: alloc(walBufferBytes)}
	s.w = ptr[walFile](s.wal)
	return s
}

const (
	lockWrite   = lib.SQLITE_SHM_LOCK | lib.SQLITE_SHM_EXCLUSIVE
	unlockWrite = lib.SQLITE_SHM_UNLOCK | lib.SQLITE_SHM_EXCLUSIVE
)

// TestWALDropsWhatIsBufferedAtUnlock: when a database file's connection releases the WAL's write lock (slot
// 0 of its shared memory) while the WAL still buffers frames, which only a transaction that did not commit
// can have left, the frames are dropped, not written later over what another writer may have committed;
// other locks and unlocks leave the buffer alone, and every lock call reaches the default VFS.
func TestWALDropsWhatIsBufferedAtUnlock(t *testing.T) {
	t.Parallel()
	s := newStandIn(t)
	if rc := walWrite(s.tls, s.wal, s.page, 4120, 32); rc != lib.SQLITE_OK || s.w.n != 4120 || s.writes != 0 {
		t.Fatalf("a frame written: rc %d, %d bytes buffered, %d writes; want it buffered", rc, s.w.n, s.writes)
	}
	for _, c := range []struct{ offset, flags int32 }{
		{0, lockWrite},
		{3, lib.SQLITE_SHM_UNLOCK | lib.SQLITE_SHM_SHARED}, // a read lock released
		{0, lib.SQLITE_SHM_UNLOCK | lib.SQLITE_SHM_SHARED}, // slot 0 shared (a read-only wal-index)
		{1, unlockWrite}, // the checkpointer lock released
	} {
		if rc := walShmLock(s.tls, s.db, c.offset, 1, c.flags); rc != lib.SQLITE_OK || s.w.n != 4120 {
			t.Errorf("lock call (slot %d, flags %d): rc %d, buffer %d bytes; want it kept", c.offset, c.flags, rc, s.w.n)
		}
	}
	if rc := walShmLock(s.tls, s.db, 0, 1, unlockWrite); rc != lib.SQLITE_OK {
		t.Fatalf("write lock released: rc %d", rc)
	}
	if dropped := ptr[walApp](s.w.app).dropped; s.w.n != 0 || s.writes != 0 || dropped != 4120 {
		t.Errorf("write lock released: buffer %d bytes, %d writes, dropped %d; want 0, 0, 4120", s.w.n, s.writes, dropped)
	}
	if s.locks != 5 {
		t.Errorf("the default VFS got %d lock calls; want all 5", s.locks)
	}
}

// TestWALFailedFlushFailsTheTransaction: once writing the buffer out fails (a full disk), the frames it held
// are gone, so every later write, sync or flush of the WAL fails too (SQLITE_IOERR_WRITE, which makes SQLite
// roll the whole transaction back) even when the disk has room again, until the write lock is released;
// then writes go through again.
func TestWALFailedFlushFailsTheTransaction(t *testing.T) {
	t.Parallel()
	s := newStandIn(t)
	if rc := walWrite(s.tls, s.wal, s.page, 4120, 32); rc != lib.SQLITE_OK {
		t.Fatalf("a frame written: rc %d", rc)
	}
	s.full = true
	if _, rc := flushed(s.tls, s.wal); rc != lib.SQLITE_FULL {
		t.Errorf("flush on a full disk: rc %d; want SQLITE_FULL (%d)", rc, lib.SQLITE_FULL)
	}
	s.full = false
	if rc := walWrite(s.tls, s.wal, s.page, 4120, 4152); rc != lib.SQLITE_IOERR_WRITE {
		t.Errorf("a write after the failed flush: rc %d; want SQLITE_IOERR_WRITE (%d)", rc, lib.SQLITE_IOERR_WRITE)
	}
	if _, rc := flushed(s.tls, s.wal); rc != lib.SQLITE_IOERR_WRITE {
		t.Errorf("a flush after the failed flush: rc %d; want SQLITE_IOERR_WRITE", rc)
	}
	if s.writes != 1 {
		t.Errorf("%d writes reached the default VFS; want 1, the failed one", s.writes)
	}
	if rc := walShmLock(s.tls, s.db, 0, 1, unlockWrite); rc != lib.SQLITE_OK || s.w.failed != 0 {
		t.Fatalf("write lock released: rc %d, failed %d", rc, s.w.failed)
	}
	if rc := walWrite(s.tls, s.wal, s.page, 4120, 32); rc != lib.SQLITE_OK {
		t.Errorf("a write in the next transaction: rc %d", rc)
	}
	if _, rc := flushed(s.tls, s.wal); rc != lib.SQLITE_OK || s.writes != 2 {
		t.Errorf("a flush in the next transaction: rc %d, %d writes; want OK, 2", rc, s.writes)
	}
}

// TestOpenInParallel: stores opened at the same time in one process each register their VFS (a copy of the
// default one) while the others do: copying the default VFS read its pNext, which SQLite writes on every
// registration, and the race detector reported it (make test-race, outbox's parallel tests).
func TestOpenInParallel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 2 {
				s, err := Open(t.Context(), filepath.Join(dir, fmt.Sprintf("db-%d-%d", i, j)), Options{Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Error(err)
					return
				}
				if err := s.Close(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
