package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/socialrx/socialrx/outbox/postgres"
)

// listenOn opens a connection of its own that LISTENs on s's channel, as another instance's listener does.
func listenOn(t *testing.T, dsn string, s *postgres.Store) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(t.Context(), `LISTEN `+pgx.Identifier{postgres.Channel(s)}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return conn
}

// announcerRig opens a store on a fresh schema, a listener on its channel (listenOn) and takes the store's
// announcer connection (postgres.AnnouncerConn): nothing is announced until the test closes it.
func announcerRig(t *testing.T) (*postgres.Store, *pgx.Conn, *sql.Conn) {
	t.Helper()
	dsn := freshSchema(t)
	s := openStore(t, dsn, postgres.Options{NoListen: true})
	ln := listenOn(t, dsn, s)
	conn, err := postgres.AnnouncerConn(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	return s, ln, conn
}

// notifications counts the notifications conn receives within d.
func notifications(t *testing.T, conn *pgx.Conn, d time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	n := 0
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			if !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				t.Fatal(err)
			}
			return n
		}
		n++
	}
}

// TestAnnouncementsFollowCommits: a write that queues messages does not NOTIFY inside its transaction
// (PostgreSQL would hold its cluster-wide notification lock through the commit, so that every such write of
// every instance committed one at a time); the other instances are told after the commit, by the
// announcer, and announcements asked for while one is held back become one. With the announcer's
// connection taken, 20 creates commit and nobody is told; once it is free, the listener is told once or
// twice, not 20 times, and what it is told about is committed.
func TestAnnouncementsFollowCommits(t *testing.T) {
	t.Parallel()
	s, ln, held := announcerRig(t)
	const creates = 20
	for n := 1; n <= creates; n++ {
		if _, err := s.CreateReferral(t.Context(), testIntake(n)); err != nil {
			t.Fatal(err)
		}
	}
	if got := notifications(t, ln, 300*time.Millisecond); got != 0 {
		t.Fatalf("%d notifications while the announcer was held back, want 0 (a NOTIFY inside the writes)", got)
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.WaitForNotification(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("no announcement within 10s of the announcer's connection coming back: %v", err)
	}
	if more := notifications(t, ln, 500*time.Millisecond); more > 1 {
		t.Errorf("%d announcements for %d creates made while one was held back, want 1 or 2", 1+more, creates)
	}
	var committed int
	if err := ln.QueryRow(t.Context(), `SELECT count(*) FROM outbox_messages WHERE state = 'pending'`).Scan(&committed); err != nil {
		t.Fatal(err)
	}
	if committed != creates {
		t.Errorf("the listener sees %d pending messages, want %d", committed, creates)
	}
}

// TestAnnouncerReconnects: the announcer's connection is terminated (a server restart, an administrator):
// writes go on, and the next announcements reach the other instances on a new connection.
func TestAnnouncerReconnects(t *testing.T) {
	t.Parallel()
	s, ln, conn := announcerRig(t)
	var pid int
	if err := conn.QueryRowContext(t.Context(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	var killed bool
	if err := ln.QueryRow(t.Context(), `SELECT pg_terminate_backend($1)`, pid).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the announcer's session %d: %v %v", pid, killed, err)
	}
	for n := 1; ; n++ {
		if _, err := s.CreateReferral(t.Context(), testIntake(n)); err != nil {
			t.Fatalf("create %d after the announcer's session was terminated: %v", n, err)
		}
		if notifications(t, ln, 2*time.Second) > 0 {
			return
		}
		if n == 3 {
			t.Fatal("no announcement after 3 creates since the announcer's session was terminated")
		}
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
