package main

import (
	"database/sql"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
)

// TestParseStat reads the command name and CPU ticks of /proc/PID/stat lines, including a name that holds
// parentheses and spaces, and refuses lines cut short.
func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		line  string
		comm  string
		ticks int64
		ok    bool
	}{
		{"4242 (postgres) S 4100 4242 4242 0 -1 4194560 612 0 0 0 37 12 0 0 20 0 1 0 813 227000000 6000 rest", "postgres", 49, true},
		{"77 (a) (b c)) R 1 77 77 0 -1 0 0 0 0 0 5 7 0 0 20 0 1 0 1 1 1", "a) (b c)", 12, true},
		{"77 (postgres) S 1 77 77 0 -1 0 0 0 0 0 5", "", 0, false},
		{"77 postgres S 1 77 77 0 -1 0 0 0 0 0 5 7 0 0", "", 0, false},
		{"77 (postgres) S 1 77 77 0 -1 0 0 0 0 0 x 7 0 0", "", 0, false},
	} {
		comm, ticks, ok := parseStat([]byte(tc.line))
		if comm != tc.comm || ticks != tc.ticks || ok != tc.ok {
			t.Errorf("parseStat(%q) = %q, %d, %v; want %q, %d, %v", tc.line, comm, ticks, ok, tc.comm, tc.ticks, tc.ok)
		}
	}
}

// TestProcessCPUFindsThisProcess: the test binary is one of the processes processCPU sums (by its command
// name, as the kernel has it), and selfCPU is never less than what /proc said a moment before.
func TestProcessCPUFindsThisProcess(t *testing.T) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatalf("the bench reads /proc (Linux): %v", err)
	}
	comm, ticks, ok := parseStat(b)
	if !ok {
		t.Fatalf("/proc/self/stat not parsed: %q", b)
	}
	for i := 0; i < 2_000_000; i++ {
		_ = strconv.Itoa(i) // use some CPU
	}
	total, found := processCPU(comm)
	if !found || total < time.Duration(ticks)*clockTick {
		t.Errorf("processCPU(%q) = %s, %v; want at least this process's %d ticks", comm, total, found, ticks)
	}
	if self := selfCPU(); self < time.Duration(ticks)*clockTick {
		t.Errorf("selfCPU() = %s; /proc said %d ticks before", self, ticks)
	}
	if _, found := processCPU("no-such-command-" + strconv.Itoa(os.Getpid())); found {
		t.Errorf("processCPU found a process with a made-up name")
	}
}

// TestWALPositionCountsWrites: the WAL position read on a real PostgreSQL server moves by at least the bytes
// of what a transaction wrote (1,000 rows of 1 KB: 1 MB and more), and without a database nothing is read.
func TestWALPositionCountsWrites(t *testing.T) {
	ctx := t.Context()
	db, err := sql.Open("pgx", pgtest.FreshSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE w (b text)`); err != nil {
		t.Fatal(err)
	}
	before, ok := walPosition(ctx, db)
	if !ok {
		t.Fatal("no WAL position")
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO w SELECT repeat(md5(g::text), 32) FROM generate_series(1, 1000) g`); err != nil {
		t.Fatal(err)
	}
	after, ok := walPosition(ctx, db)
	if !ok || after-before < 1_000_000 {
		t.Errorf("the WAL moved %d bytes for 1,000 rows of 1 KB (ok %v); want at least 1,000,000", after-before, ok)
	}
	if _, ok := walPosition(ctx, nil); ok {
		t.Error("a WAL position read without a database")
	}
}

// TestSettleTakesACheckpoint: settling before a measurement makes the real PostgreSQL server checkpoint (its
// requested checkpoints count up), and a settler without a server only syncs.
func TestSettleTakesACheckpoint(t *testing.T) {
	ctx := t.Context()
	s := newSettler(pgtest.ServerURL())
	defer s.close()
	pgtest.FreshSchema(t) // skips without a server (fails under CI)
	requested := func() int64 {
		var n int64
		if err := s.db.QueryRowContext(ctx, `SELECT checkpoints_req FROM pg_stat_bgwriter`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := requested()
	s.settle(ctx)
	if after := requested(); after <= before {
		t.Errorf("requested checkpoints %d before settling, %d after; want more", before, after)
	}
	newSettler("").settle(ctx) // the kernel's pages alone: must not fail or block
}
