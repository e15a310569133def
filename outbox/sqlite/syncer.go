package sqlite

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/socialrx/socialrx/fault"
)

// Durable commits, off the writer (issue 12). With synchronous=FULL SQLite syncs the WAL inside every commit,
// on the one writer: each batch of writes queued behind it waited for that fsync, and a delivery's claim and
// completion each paid one in turn. Here the writer's connection only writes a commit's frames out (walSync
// defers the commit's sync, walvfs.go) and goes on to the next batch, while a syncer goroutine syncs the WAL
// and only then answers the batches committed before that sync began: one fsync for every batch committed
// while the previous one ran. Nothing is answered before it is on disk, so no caller (a GP system told 201,
// a dispatcher told it holds a lease, a read whose audit record was written after it read) acts on a write
// that a power cut could still take back; and a later batch is never answered before an earlier one.
//
// What a cut power can still take back is a commit nobody was answered about, as with SQLite's own NORMAL
// mode, which the WAL on disk then matches: SQLite's recovery keeps the commits whose frames are whole, in
// order. A reader on the read pool may see such a commit for the length of one fsync before it is durable
// (an unaudited read: its answer waits for nothing).
//
// Syncs that protect the file itself stay on SQLite's path: the header of a restarted WAL and the WAL's sync
// before a checkpoint copies frames into the database file (their flags tell them apart: see walSync).
// A failed sync leaves what was written since unknown on disk: the store then refuses every write
// (ErrWALUnsynced, unavailable) and readiness fails; every later sync of the WAL fails too (walApp.lost), so
// that neither a checkpoint (the checkpointer stops) nor the last connection's close copies frames into the
// database file or deletes the WAL. The next open recovers what the disk holds, as after a power cut.

// ErrWALUnsynced is every write's answer once a sync of the WAL has failed (and CheckWrite's).
var ErrWALUnsynced = fault.Sentinel(fault.Unavailable,
	"sqlite: the database's write-ahead log could not be synced to disk: writes are refused until the service restarts")

// answers are a batch's answers: each job's result, given once every batch committed before it, and the
// batch itself when sync is set, is on disk.
type answers struct {
	jobs    []*job
	results []error
	sync    bool // the batch committed frames whose sync was deferred
}

// send gives each job its result, or err if its own result is nil.
func (a answers) send(err error) {
	for i, j := range a.jobs {
		r := a.results[i]
		if r == nil {
			r = err
		}
		j.done <- r
	}
}

// answer hands a batch's answers to the syncer, or gives them at once when neither the batch nor any batch
// before it waits for a sync.
func (s *Store) answer(jobs []*job, results []error) {
	a := answers{jobs: jobs, results: results}
	if s.syncQ == nil {
		a.send(nil)
		return
	}
	a.sync = atomic.SwapInt32(&ptr[walApp](s.wvfs.app).unsynced, 0) == 1
	if !a.sync && s.syncing.Load() == 0 {
		a.send(s.syncFailed())
		return
	}
	s.syncing.Add(1)
	s.syncQ <- a
}

// syncer syncs the WAL for the batches the writer hands it, as many as are queued at once, and answers them
// in order, until the writer closes syncQ.
func (s *Store) syncer() {
	defer close(s.syncDone)
	group := make([]answers, 0, 64)
	for a := range s.syncQ {
		group = append(group[:0], a)
	more:
		for {
			select {
			case b, ok := <-s.syncQ:
				if !ok {
					break more
				}
				group = append(group, b)
			default:
				break more
			}
		}
		sync := false
		for _, g := range group {
			sync = sync || g.sync
		}
		err := s.syncFailed()
		if sync && err == nil {
			err = s.syncWAL()
		}
		for _, g := range group {
			g.send(err)
			s.syncing.Add(-1)
		}
		wake(s.synced)
	}
}

// maxUnsynced is how many committed batches may wait for the syncer before the writer waits too.
const maxUnsynced = 2

// awaitSyncer holds the writer while maxUnsynced batches wait for the syncer: one batch commits while the
// previous ones sync, and the writes that queue meanwhile make the next batch (the batches the writer made
// while each fsync held it, before the syncer) instead of as many small commits, each with its own pages.
func (s *Store) awaitSyncer() {
	for s.syncQ != nil && s.syncing.Load() >= maxUnsynced {
		<-s.synced
	}
}

// syncWAL syncs the writer's WAL, under walApp.guard (see walClose for a WAL closed meanwhile). A failure
// is kept, by the store (every later write fails with ErrWALUnsynced) and by the VFS (walApp.lost: every
// later sync of the WAL fails, so nothing copies or deletes frames whose place on disk is unknown).
func (s *Store) syncWAL() error {
	app := ptr[walApp](s.wvfs.app)
	lockGuard(app)
	var err error
	if fd := atomic.LoadInt32(&app.fd); fd >= 0 {
		err = s.fsync(int(fd))
	}
	switch {
	case err != nil:
		atomic.StoreInt32(&app.lost, 1)
	case atomic.LoadInt32(&app.lost) == 1:
		err = errors.New("a sync of the WAL failed when it was closed")
	}
	unlockGuard(app)
	if err != nil {
		s.log.Error("sqlite: syncing the WAL failed; refusing writes until restarted", "err", err)
		err = fmt.Errorf("%w (%w)", ErrWALUnsynced, err)
		s.syncErr.CompareAndSwap(nil, &err)
	}
	return s.syncFailed()
}

// syncFailed is the error a failed sync left (ErrWALUnsynced), or nil.
func (s *Store) syncFailed() error {
	if p := s.syncErr.Load(); p != nil {
		return *p
	}
	return nil
}
