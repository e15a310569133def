package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// processCPU sums the CPU time (user and system) used so far by this machine's processes whose command name
// is comm (/proc/PID/stat); ok is false when /proc cannot be read or no such process runs. A process that
// exits between two readings takes its time with it, so the difference of two readings counts the processes
// that ran throughout: a PostgreSQL server's background processes and its pooled connections' backends.
func processCPU(comm string) (total time.Duration, ok bool) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	var ticks int64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone since the listing
		}
		if c, t, parsed := parseStat(b); parsed && c == comm {
			ticks += t
			ok = true
		}
	}
	return time.Duration(ticks) * clockTick, ok
}

// parseStat reads a /proc/PID/stat line's command name (between the first "(" and the last ")": the name may
// hold either) and its user plus system time in clock ticks (utime and stime, the 14th and 15th fields).
func parseStat(b []byte) (comm string, ticks int64, ok bool) {
	open, closing := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return "", 0, false
	}
	fields := bytes.Fields(b[closing+1:]) // from the state, the 3rd field
	if len(fields) < 13 {
		return "", 0, false
	}
	utime, err1 := strconv.ParseInt(string(fields[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(fields[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, false
	}
	return string(b[open+1 : closing]), utime + stime, true
}

// selfCPU is the CPU time (user and system) this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// walPosition is the PostgreSQL server's current WAL position in bytes: the difference of two readings is
// the WAL it wrote in between, every session's. ok is false when it cannot be read, or without a database
// (SQLite).
func walPosition(ctx context.Context, db *sql.DB) (int64, bool) {
	var pos int64
	if db == nil {
		return 0, false
	}
	if err := db.QueryRowContext(ctx, walPositionQuery).Scan(&pos); err != nil {
		return 0, false
	}
	return pos, true
}

// checkpoint asks the PostgreSQL server for a checkpoint (best effort: it needs a privileged role), so that
// a measurement's WAL starts after one: its pages' first changes then carry full-page images, as in any
// run, instead of as many as a checkpoint falling somewhere in the run would add.
func checkpoint(ctx context.Context, db *sql.DB) {
	if db != nil {
		_, _ = db.ExecContext(ctx, `CHECKPOINT`)
	}
}

// settler quiets the disk before each of the table's measurements (settle), so that no row's writes land in
// the next row's: the PostgreSQL server's dirty buffers (a drain leaves hundreds of megabytes of them, which
// its checkpointer would otherwise write during whatever runs next, SQLite's fsyncs included) and the
// kernel's dirty pages (a previous row's SQLite files).
type settler struct{ db *sql.DB }

// newSettler opens a connection pool to server ("": the kernel's pages only).
func newSettler(server string) settler {
	if server == "" {
		return settler{}
	}
	db, err := sql.Open("pgx", server)
	if err != nil {
		return settler{}
	}
	db.SetMaxOpenConns(1)
	return settler{db: db}
}

// settle takes a checkpoint (best effort: see checkpoint) and then writes the kernel's dirty pages out
// (sync(2)), and returns once both are done.
func (s settler) settle(ctx context.Context) {
	checkpoint(ctx, s.db)
	syscall.Sync()
}

func (s settler) close() {
	if s.db != nil {
		_ = s.db.Close()
	}
}

// walPositionQuery reads the server's WAL position in bytes.
const walPositionQuery = `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint`
