package sqlite

import (
	"context"
	"database/sql"
	"sync/atomic"
	"time"
	"unsafe"
)

// Checkpoints (issue 12). SQLite copies the pages a WAL holds back into the database file in a checkpoint.
// Left to itself it runs one inside the COMMIT that takes the WAL past 1,000 frames, on the committing
// connection: here the one writer, so every write queued behind that commit waited for it (reading the
// frames, writing each page into the database file, two fsyncs). The store runs them instead on a
// connection of their own, from a goroutine the writer wakes after each commit: a PASSIVE checkpoint, which
// never blocks the writer nor readers, once the frames not yet copied reach Options.CheckpointFrames. The
// writer keeps SQLite's automatic checkpoint only as a backstop, at checkpointBackstop times that many
// frames, should the checkpointer fall behind. The checkpointer learns the backlog from the writer's
// wal-index, where walVFS records it mapped (walvfs.go).

// checkpointFallback is how often the checkpointer checkpoints when it cannot read the backlog.
const checkpointFallback = 250 * time.Millisecond

// checkpointBackstop is how many times Options.CheckpointFrames the WAL may grow before the writer's own
// automatic checkpoint runs.
const checkpointBackstop = 8

// walIndexVersion is the iVersion of the wal-index header SQLite has written since 3.7.0.
const walIndexVersion = 3007000

// walBacklog reads, from a wal-index header (https://www.sqlite.org/walformat.html, in native byte order),
// how many frames of the WAL are not yet copied into the database: mxFrame (offset 16 of the first header
// copy) minus nBackfill (offset 96, the checkpoint information after the two 48-byte header copies). It reads
// without SQLite's locks, the two counters atomically: a stale value only moves one checkpoint a little. ok
// is false when hdr is not a wal-index of the version this reads, or not yet initialised.
func walBacklog(hdr *[34]uint32) (frames int64, ok bool) {
	if atomic.LoadUint32(&hdr[0]) != walIndexVersion || (*[136]byte)(unsafe.Pointer(hdr))[12] != 1 {
		return 0, false
	}
	return int64(atomic.LoadUint32(&hdr[4])) - int64(atomic.LoadUint32(&hdr[24])), true
}

// checkpointed is what one checkpoint reported (PRAGMA wal_checkpoint): whether it was blocked, the WAL's
// frames and how many of them the database file now holds.
type checkpointed struct {
	backlog                int64 // frames not yet copied, as walBacklog read them before
	busy, log, checkpoints int
}

// kickCheckpointer tells the checkpointer, if there is one, that a commit added frames (see wake).
func (s *Store) kickCheckpointer() { wake(s.ckptKick) }

// checkpointer runs PASSIVE checkpoints on its own connection when the writer's commits have left at least
// Options.CheckpointFrames frames to copy (see Checkpoints above), until the store closes. It reads the
// backlog from the writer's wal-index as mapped (walApp.shm); should that not be a wal-index it can read, it
// checkpoints at most every checkpointFallback instead.
func (s *Store) checkpointer(cdb *sql.DB) {
	defer close(s.ckptDone)
	defer cdb.Close()
	ctx := context.Background()
	app := ptr[walApp](s.wvfs.app)
	failing, unreadable := false, false
	var last time.Time
	for {
		select {
		case <-s.closing:
			return
		case <-s.ckptKick:
		}
		if s.syncFailed() != nil {
			continue // frames whose place on disk is unknown are never copied (syncer.go)
		}
		var backlog int64
		shm := atomic.LoadUintptr(&app.shm) // mapped at the writer's first transaction
		ok := shm != 0
		if ok {
			backlog, ok = walBacklog(ptr[[34]uint32](shm))
		}
		switch {
		case !ok && !unreadable:
			s.log.Warn("sqlite: cannot read the WAL index; checkpoints run on a timer")
			unreadable = true
			fallthrough
		case !ok:
			if time.Since(last) < checkpointFallback {
				continue
			}
		case backlog < int64(s.opts.CheckpointFrames):
			continue
		}
		last = time.Now()
		c := checkpointed{backlog: backlog}
		err := cdb.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&c.busy, &c.log, &c.checkpoints)
		switch {
		case err != nil && !failing:
			// Once per spell of failures (a full disk fails every one): the WAL keeps every frame meanwhile,
			// and the writer's backstop tries too.
			s.log.Warn("sqlite: checkpoint failed", "err", err)
			failing = true
		case err == nil:
			failing = false
		}
		if s.afterCheckpoint != nil {
			s.afterCheckpoint(c, err)
		}
	}
}
