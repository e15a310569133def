package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
)

// channel is the LISTEN/NOTIFY channel of the store's schema: instances on other schemas (or databases)
// never wake each other.
func channel(schema string) string {
	return fmt.Sprintf("socialrx_outbox_%016x", uint64(lockKey("socialrx outbox channel", schema)))
}

// notify queues a NOTIFY on the store's channel inside w's transaction: PostgreSQL delivers it to the
// listening instances when (and only if) the transaction commits. The payload is this instance's id, so that
// its own listener ignores it (Changes is signalled locally after the commit anyway).
func (s *Store) notify(ctx context.Context, w *sqlstore.Tx) error {
	if _, err := w.ExecContext(ctx, `SELECT pg_notify($1, $2)`, s.channel, s.instance); err != nil {
		return s.d.DriverErr("notify", err)
	}
	return nil
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
