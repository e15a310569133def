package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"io"
	"os"
)

// Checkpoints (issue 12). SQLite copies the pages a WAL holds back into the database file in a checkpoint.
// Left to itself it runs one inside the COMMIT that takes the WAL past 1,000 frames, on the committing
// connection: here the one writer, so every write queued behind that commit waited for it (reading the
// frames, writing each page into the database file, two fsyncs). The store runs them instead on a
// connection of their own, from a goroutine the writer wakes after each commit: a PASSIVE checkpoint, which
// never blocks the writer nor readers, once the frames not yet copied reach Options.CheckpointFrames. The
// writer keeps SQLite's automatic checkpoint only as a backstop, at checkpointBackstop times that many
// frames, should the checkpointer fall behind.

// checkpointBackstop is how many times Options.CheckpointFrames the WAL may grow before the writer's own
// automatic checkpoint runs.
const checkpointBackstop = 8

// walIndexVersion is the iVersion of the wal-index header SQLite has written since 3.7.0.
const walIndexVersion = 3007000

// walBacklog reads, from the wal-index (the -shm file, https://www.sqlite.org/walformat.html), how many
// frames of the WAL are not yet copied into the database: mxFrame (offset 16 of the first header copy)
// minus nBackfill (offset 96, the checkpoint information after the two 48-byte header copies), both in
// native byte order. It is read without SQLite's locks: a torn or stale value only moves one checkpoint a
// little. ok is false when the file does not hold a wal-index of the version this reads.
func walBacklog(shm io.ReaderAt) (frames int64, ok bool) {
	var b [100]byte
	if _, err := shm.ReadAt(b[:], 0); err != nil {
		return 0, false
	}
	if binary.NativeEndian.Uint32(b[0:]) != walIndexVersion || b[12] != 1 {
		return 0, false // not a wal-index of this version, or not initialised
	}
	return int64(binary.NativeEndian.Uint32(b[16:])) - int64(binary.NativeEndian.Uint32(b[96:])), true
}

// checkpointed is what one checkpoint reported (PRAGMA wal_checkpoint): whether it was blocked, the WAL's
// frames and how many of them the database file now holds.
type checkpointed struct {
	backlog                int64 // frames not yet copied, as walBacklog read them before
	busy, log, checkpoints int
}

// kickCheckpointer tells the checkpointer that a commit added frames, without blocking (and without effect
// when there is none: a send on a nil channel is never ready).
func (s *Store) kickCheckpointer() {
	select {
	case s.ckptKick <- struct{}{}:
	default:
	}
}

// checkpointer runs PASSIVE checkpoints on its own connection when the writer's commits have left at least
// Options.CheckpointFrames frames to copy (see Checkpoints above), until the store closes.
func (s *Store) checkpointer(cdb *sql.DB) {
	defer close(s.ckptDone)
	defer cdb.Close()
	ctx := context.Background()
	var shm *os.File
	defer func() {
		if shm != nil {
			_ = shm.Close()
		}
	}()
	failing := false
	for {
		select {
		case <-s.closing:
			return
		case <-s.ckptKick:
		}
		if shm == nil {
			f, err := os.Open(s.path + "-shm")
			if err != nil {
				s.log.Warn("sqlite: cannot read the WAL index; the writer's automatic checkpoint takes over", "err", err)
				return
			}
			shm = f
		}
		backlog, ok := walBacklog(shm)
		if !ok {
			s.log.Warn("sqlite: the WAL index is not in the format expected; the writer's automatic checkpoint takes over")
			return
		}
		if backlog < int64(s.opts.CheckpointFrames) {
			continue
		}
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
