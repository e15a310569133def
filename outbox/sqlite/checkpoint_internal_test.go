package sqlite

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore/sqlstoretest"
)

// TestCheckpointerCopiesTheWALOffTheWriter, on a real database file: with CheckpointFrames 64, intakes
// that leave far fewer frames in the WAL than SQLite's own threshold (1,000) or the writer's backstop (512)
// are checkpointed all the same, by the checkpointer's PASSIVE checkpoint once 64 frames wait: afterwards
// the wal-index says every frame is in the database file (nBackfill = mxFrame). Before the checkpointer,
// nothing was copied until 1,000 frames. The test reads the wal-index where the writer mapped it: opening
// and closing the -shm or the database file would drop the process's POSIX locks on it.
func TestCheckpointerCopiesTheWALOffTheWriter(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "db")
	s := sqlstoretest.Open(t, func() (*Store, error) {
		return Open(ctx, path, Options{CheckpointFrames: 64, Logger: slog.New(slog.DiscardHandler)})
	})
	type report struct {
		c   checkpointed
		err error
	}
	reports := make(chan report, 64)
	s.afterCheckpoint = func(c checkpointed, err error) { reports <- report{c, err} }
	backlog := func() int64 {
		t.Helper()
		shm := atomic.LoadUintptr(&ptr[walApp](s.wvfs.app).shm)
		if shm == 0 {
			t.Fatal("the writer's wal-index is not mapped")
		}
		n, ok := walBacklog(ptr[[34]uint32](shm))
		if !ok {
			t.Fatal("the writer's wal-index is not one walBacklog can read")
		}
		return n
	}
	dest := mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}
	base := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	// Intakes until 64 frames wait: the writer wakes the checkpointer after each commit, before the intake
	// returns, so the commit that passed 64 leads to a checkpoint.
	for created := 1; ; created++ {
		if created > 20 {
			t.Fatalf("20 intakes left fewer than 64 frames in the WAL")
		}
		in := sqlstoretest.Intake(created, base.Add(time.Duration(created)*time.Second), dest, json.RawMessage(`{}`))
		if _, err := s.CreateReferral(ctx, in); err != nil {
			t.Fatal(err)
		}
		if backlog() >= 64 {
			break
		}
	}
	// The intake that passed 64 frames leads to a checkpoint; so may an earlier one, which the checkpointer
	// can finish before that intake is answered (after its sync): every checkpoint reported is checked,
	// until one copies every frame and the wal-index says so. Such an earlier checkpoint can run while the
	// next intake reads on the read pool, and a read that began when every frame was copied reads the
	// database file alone: until it ends, a PASSIVE checkpoint can copy none of the frames written since (CI
	// saw 0 of 90 once). So an earlier checkpoint may copy fewer; one after the last intake copies all.
	guard := time.After(10 * time.Second) // a guard against hanging, not a wait
	for {
		var got report
		select {
		case got = <-reports:
		case <-guard:
			t.Fatalf("64 frames in the WAL and no checkpoint that copied them within 10 s (%d frames to copy)", backlog())
		}
		if got.err != nil {
			t.Fatalf("checkpoint: %v", got.err)
		}
		if got.c.busy != 0 {
			t.Errorf("checkpoint blocked (busy %d, %d of %d frames copied); want none, nothing else writes or checkpoints", got.c.busy, got.c.checkpoints, got.c.log)
		}
		if got.c.backlog < 64 || got.c.backlog > int64(got.c.log) {
			t.Errorf("the checkpoint ran at a backlog of %d frames (WAL %d frames); want 64 or more, at most the WAL", got.c.backlog, got.c.log)
		}
		if got.c.log >= checkpointBackstop*64 {
			t.Errorf("the WAL reached %d frames: the writer's backstop (%d) may have checkpointed, not the checkpointer", got.c.log, checkpointBackstop*64)
		}
		if got.c.checkpoints == got.c.log && backlog() == 0 {
			return
		}
	}
}

// TestWALBacklogReadsOnlyAWALIndex: walBacklog reads mxFrame minus nBackfill from a wal-index of SQLite's
// version, and refuses anything else (the checkpointer then leaves checkpoints to the writer).
func TestWALBacklogReadsOnlyAWALIndex(t *testing.T) {
	t.Parallel()
	index := func(version uint32, init byte, mxFrame, nBackfill uint32) *[34]uint32 {
		var hdr [34]uint32
		hdr[0], hdr[4], hdr[24] = version, mxFrame, nBackfill
		(*[136]byte)(unsafe.Pointer(&hdr))[12] = init
		return &hdr
	}
	for _, tc := range []struct {
		name string
		hdr  *[34]uint32
		want int64
		ok   bool
	}{
		{"frames waiting", index(walIndexVersion, 1, 1500, 1000), 500, true},
		{"all copied", index(walIndexVersion, 1, 700, 700), 0, true},
		{"another version", index(walIndexVersion+1, 1, 1500, 0), 0, false},
		{"not initialised", index(walIndexVersion, 0, 1500, 0), 0, false},
		{"zeroes", new([34]uint32), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := walBacklog(tc.hdr)
			if got != tc.want || ok != tc.ok {
				t.Errorf("walBacklog = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
