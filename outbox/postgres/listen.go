package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// channel is the LISTEN/NOTIFY channel of the store's schema: instances on other schemas (or databases)
// never wake each other.
func channel(schema string) string {
	return fmt.Sprintf("socialrx_outbox_%016x", uint64(lockKey("socialrx outbox channel", schema)))
}

// announce asks the announcer to tell the other instances on the schema that this Store committed a change
// they may claim from (a Changes signal of theirs), without blocking: announcements asked for while one is
// being sent become one more, sent after it.
//
// A write does not NOTIFY inside its own transaction. PostgreSQL takes one cluster-wide lock for every
// transaction that has notified (PreCommit_Notify: the notification queue's lock on object 0 of
// pg_database) and holds it until its commit is over, WAL flush included, so that notifications are queued
// in commit order. Notifying inside every intake and completion therefore made all of them, of every
// instance and every database of the cluster, commit one at a time: during a paced run's first second,
// log_lock_waits showed commits queueing 20–36 ms for that lock, five at a time (issue 12).
func (s *Store) announce() {
	select {
	case s.announcing <- struct{}{}:
	default:
	}
}

// announcer sends the announcements asked for (announce) until ctx ends, each as one autocommit NOTIFY on
// its own connection (ndb). That session commits with synchronous_commit off (the stamp pool's settings), so
// the queue's lock is held while the commit record is written, not while it is flushed: an announcement lost
// with a crash is one that no instance needed (they find work on their safety poll, as after a lost LISTEN
// connection). The payload is this instance's id, so that its own listener ignores it (Changes is signalled
// locally after each commit). A failed announcement is logged, once until one succeeds again: the database
// is down or going, and the writes that would ask for the next one fail on their own.
func (s *Store) announcer(ctx context.Context) {
	defer close(s.announcerDone)
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.announcing:
		}
		_, err := s.ndb.ExecContext(ctx, `SELECT pg_notify($1, $2)`, s.channel, s.instance)
		s.announced.Add(1)
		switch {
		case err == nil:
			failing = false
		case ctx.Err() != nil:
			return
		case !failing:
			failing = true
			s.log.Warn("postgres: cannot tell the other instances of a change; they find it on their safety poll",
				"err", s.d.DriverErr("notify", err))
		}
	}
}

// startListening opens a dedicated connection (outside the pool) and LISTENs on the store's channel.
func (s *Store) startListening(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: listen: %w", err)
	}
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("postgres: listen: %w", err)
	}
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx) // a connection we are done with: nothing left to report
}

// listen signals Changes for every notification from another instance until ctx ends (Close). After a lost
// connection it reconnects with a capped backoff and signals once (a notification may have been missed
// while it was away).
func (s *Store) listen(ctx context.Context, conn *pgx.Conn) {
	defer close(s.listenDone)
	backoff := time.Duration(0)
	for {
		if conn != nil {
			err := s.wait(ctx, conn)
			closeConn(conn)
			conn = nil
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("postgres: change listener lost its connection; reconnecting", "err", err)
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		c, err := s.startListening(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("postgres: change listener cannot reconnect", "err", err)
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		conn = c
		s.signal()
	}
}

// wait relays notifications from conn until it fails or ctx ends.
func (s *Store) wait(ctx context.Context, conn *pgx.Conn) error {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Payload != s.instance {
			s.signal()
		}
	}
}
