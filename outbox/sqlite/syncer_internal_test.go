//go:build linux

package sqlite

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore/sqlstoretest"
)

// openSynced opens a store on a real file in a temporary directory with opts, its syncer's fsync replaced
// by fsync when given (before anything is written). The syncer runs on Linux only, hence these tests.
func openSynced(t *testing.T, opts Options, fsync func(fd int) error) *Store {
	t.Helper()
	opts.Logger = slog.New(slog.DiscardHandler)
	path := filepath.Join(t.TempDir(), "db")
	s := sqlstoretest.Open(t, func() (*Store, error) { return Open(t.Context(), path, opts) })
	if s.syncQ == nil {
		t.Fatal("the store has no syncer: commits are synced on the writer")
	}
	if fsync != nil {
		s.fsync = fsync
	}
	return s
}

// heldSync gives an fsync that signals entered, then waits for release (safe to call more than once; tests
// also call it at cleanup, before the store closes, so that a failing test does not hang).
func heldSync() (fsync func(fd int) error, entered chan int, release func()) {
	entered, ch := make(chan int, 1), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	return func(fd int) error {
		select {
		case entered <- fd:
		default:
		}
		<-ch
		return fsyncFD(fd)
	}, entered, release
}

// intake writes the n-th test referral.
func intake(t *testing.T, s *Store, n int) error {
	t.Helper()
	dest := mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}
	in := sqlstoretest.Intake(n, time.Date(2025, 3, 3, 9, 0, n, 0, time.UTC), dest, json.RawMessage(`{}`))
	_, err := s.CreateReferral(t.Context(), in)
	return err
}

// countReferrals counts the referrals a reader of the read pool sees.
func countReferrals(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.db.QueryRowContext(t.Context(), "SELECT count(*) FROM referrals").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// guard is how long a test waits for something that should happen at once before it fails, so that a hang
// fails rather than blocks: never a measurement.
const guard = 10 * time.Second

// TestAnswersWaitForTheSync: an intake's commit is written before its sync (a reader of the pool sees the
// referral while the sync is held) and synced by the syncer on the WAL's descriptor, and the intake is
// answered only once that sync returns. Before the syncer, SQLite synced on the writer and no sync of ours
// ran.
func TestAnswersWaitForTheSync(t *testing.T) {
	t.Parallel()
	held, entered, release := heldSync()
	s := openSynced(t, Options{}, held)
	t.Cleanup(release)
	var answered atomic.Bool
	done := make(chan error, 1)
	go func() {
		err := intake(t, s, 1)
		answered.Store(true)
		done <- err
	}()
	var fd int
	select {
	case fd = <-entered:
	case <-time.After(guard):
		t.Fatal("no sync of the WAL by the syncer")
	}
	if want := atomic.LoadInt32(&ptr[walApp](s.wvfs.app).fd); int32(fd) != want || fd < 0 {
		t.Errorf("the syncer synced descriptor %d; the writer's WAL is %d", fd, want)
	}
	if runtime.GOOS == "linux" {
		if name, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err != nil || name != s.path+"-wal" {
			t.Errorf("the syncer synced descriptor %d, open as %q (%v); want the WAL, %s-wal", fd, name, err, s.path)
		}
	}
	if n := countReferrals(t, s); n != 1 {
		t.Errorf("during the sync a reader sees %d referrals; want 1 (the commit is written before it is synced)", n)
	}
	if answered.Load() {
		t.Fatal("the intake was answered before its commit was synced")
	}
	release()
	awaitNil(t, done, "the intake")
	if d := ptr[walApp](s.wvfs.app).deferred; d < 1 {
		t.Errorf("%d commit syncs deferred; want at least the intake's", d)
	}
}

// TestALaterBatchWaitsForAnEarlierSync: a write that commits nothing (it only reads) is not answered while
// an earlier batch's sync is under way, although it needs no sync of its own: it may have read what that
// batch wrote. Without the order kept, it was answered at once.
func TestALaterBatchWaitsForAnEarlierSync(t *testing.T) {
	t.Parallel()
	held, entered, release := heldSync()
	s := openSynced(t, Options{}, held)
	t.Cleanup(release)
	first := make(chan error, 1)
	go func() { first <- intake(t, s, 1) }()
	select {
	case <-entered:
	case <-time.After(guard):
		t.Fatal("no sync of the WAL by the syncer")
	}
	var seen atomic.Int64
	second := make(chan error, 1)
	go func() {
		second <- s.write(t.Context(), func(w *wtx) error {
			var n int64
			err := w.QueryRowContext(w.ctx, "SELECT count(*) FROM referrals").Scan(&n)
			seen.Store(n)
			return err
		})
	}()
	// The reading job runs on the writer while the first batch's sync is held (maxUnsynced lets one
	// batch commit meanwhile); wait for it to have run, then check it is still unanswered.
	deadline := time.Now().Add(guard)
	for seen.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reading job did not run while the first batch's sync was held")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-second:
		t.Fatalf("the reading job was answered (%v) before the batch it read was synced", err)
	default:
	}
	release()
	awaitNil(t, first, "the intake")
	awaitNil(t, second, "the reading job")
}

// awaitNil fails unless what is answered on ch (after a sync released) is nil.
func awaitNil(t *testing.T, ch chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(guard):
		t.Fatalf("%s was not answered after the sync", what)
	}
}

// TestAFailedSyncRefusesWrites: when a sync of the WAL fails, the writes it was to make durable fail
// (unavailable: 503), every later write fails without running, and readiness fails; reads go on. Closing
// keeps the WAL, and the store opened again recovers it.
func TestAFailedSyncRefusesWrites(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	s := openSynced(t, Options{}, func(fd int) error {
		if fail.Load() {
			return syscall.EIO
		}
		return fsyncFD(fd)
	})
	if err := intake(t, s, 1); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	err := intake(t, s, 2)
	if !errors.Is(err, ErrWALUnsynced) || fault.KindOf(err) != fault.Unavailable {
		t.Fatalf("intake during a failing sync: %v; want ErrWALUnsynced, unavailable", err)
	}
	fail.Store(false)
	ran := false
	err = s.write(t.Context(), func(*wtx) error { ran = true; return nil })
	if !errors.Is(err, ErrWALUnsynced) || ran {
		t.Errorf("a write after the failed sync: %v (ran: %v); want ErrWALUnsynced without running", err, ran)
	}
	if err := s.CheckWrite(t.Context(), "test", time.Now()); !errors.Is(err, ErrWALUnsynced) {
		t.Errorf("readiness after the failed sync: %v; want ErrWALUnsynced", err)
	}
	if n := countReferrals(t, s); n != 2 {
		t.Errorf("a reader sees %d referrals; want 2 (the second was committed, its durability unknown)", n)
	}
	// Nothing copies frames whose place on disk is unknown into the database file, nor deletes them:
	// closing keeps the WAL (without the failed sync, closing checkpoints it and deletes it), and opening
	// again recovers what it holds.
	_ = s.Close() // whatever SQLite reports of the checkpoint it could not make
	if st, err := os.Stat(s.path + "-wal"); err != nil || st.Size() == 0 {
		t.Fatalf("after a failed sync, closing removed or emptied the WAL (%v)", err)
	}
	again := sqlstoretest.Open(t, func() (*Store, error) {
		return Open(t.Context(), s.path, Options{Logger: slog.New(slog.DiscardHandler)})
	})
	if n := countReferrals(t, again); n != 2 {
		t.Errorf("opened again, the store holds %d referrals; want the 2 the WAL holds", n)
	}
	if err := intake(t, again, 3); err != nil {
		t.Errorf("opened again, an intake failed: %v", err)
	}

	healthy := openSynced(t, Options{}, nil)
	if err := intake(t, healthy, 1); err != nil {
		t.Fatal(err)
	}
	if err := healthy.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(healthy.path + "-wal"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("without a failed sync, closing left the WAL (%v); want it checkpointed and removed", err)
	}
}

// TestOnlyCommitSyncsAreDeferred: the writer's commits leave their syncs to the syncer, while the syncs that
// guard the files themselves still run on SQLite's path: a checkpoint on the writer's own connection syncs
// the WAL before it copies frames into the database file. With SyncOnWriter nothing is deferred and the
// syncer does not run.
func TestOnlyCommitSyncsAreDeferred(t *testing.T) {
	t.Parallel()
	var fsyncs atomic.Int64
	s := openSynced(t, Options{CheckpointFrames: -1}, func(fd int) error {
		fsyncs.Add(1)
		return fsyncFD(fd)
	})
	deferred0, syncs0 := walCounters(t, s)
	for i := 1; i <= 5; i++ {
		if err := intake(t, s, i); err != nil {
			t.Fatal(err)
		}
	}
	deferred, syncs := walCounters(t, s)
	if deferred-deferred0 != 5 {
		t.Errorf("5 intakes (5 commits) deferred %d syncs; want 5", deferred-deferred0)
	}
	if n := fsyncs.Load(); n < 1 || n > 5 {
		t.Errorf("the syncer synced %d times for 5 deferred commits; want between 1 and 5", n)
	}
	// SQLite's automatic checkpoint, here after every commit that leaves a frame in the WAL, runs on the
	// writer's connection right after the commit, outside the transaction.
	if err := s.write(t.Context(), func(w *wtx) error {
		_, err := w.tx.ExecContext(w.ctx, "PRAGMA wal_autocheckpoint(1)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := intake(t, s, 6); err != nil {
		t.Fatal(err)
	}
	if d, after := walCounters(t, s); after <= syncs || d-deferred != 1 {
		t.Errorf("an intake and the checkpoint after it on the writer's connection: %d syncs of the WAL passed on, %d deferred; want at least 1 passed on (%d for the 5 intakes), 1 deferred",
			after-syncs, d-deferred, syncs-syncs0)
	}

	inline := sqlstoretest.Open(t, func() (*Store, error) {
		return Open(t.Context(), filepath.Join(t.TempDir(), "db"), Options{SyncOnWriter: true, Logger: slog.New(slog.DiscardHandler)})
	})
	if inline.syncQ != nil {
		t.Fatal("SyncOnWriter: the store started a syncer")
	}
	_, syncs0 = walCounters(t, inline)
	if err := intake(t, inline, 1); err != nil {
		t.Fatal(err)
	}
	if d, n := walCounters(t, inline); d != 0 || n <= syncs0 {
		t.Errorf("SyncOnWriter: %d commit syncs deferred, %d passed on for an intake; want none deferred, at least 1 passed on", d, n-syncs0)
	}
}

// walCounters reads, on the writer (which alone changes them), how many commit syncs of the WAL its VFS
// deferred and how many syncs of the WAL it passed on.
func walCounters(t *testing.T, s *Store) (deferred, syncs int64) {
	t.Helper()
	app := ptr[walApp](s.wvfs.app)
	if err := s.write(t.Context(), func(*wtx) error {
		deferred, syncs = app.deferred, app.syncs
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return deferred, syncs
}
