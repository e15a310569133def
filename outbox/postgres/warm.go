package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
)

// warmTables are the tables whose catalog entries (the table's and every index's) a writer's first
// statements load: intake, versions, deliveries' completions, audit appends, capacity reads.
var warmTables = []string{"referrals", "referral_identifiers", "referral_events", "outbox_messages",
	"outbox_attempts", "audit_records", "audit_chains", "subscriptions", "service_capacity", "stamp_reservations"}

// warmShare is the share of the server's free connections the warm-up takes at most for the writers'
// sessions (warmWriterCount): one instance starting must leave room for others, and for their warm-ups.
const warmShare = 4

// warmTimeout bounds Open's warm-up: a server too slow for it starts cold rather than late.
const warmTimeout = 10 * time.Second

// warmUp opens every pool's sessions before the first request (Options.Warm). A new PostgreSQL session
// loads the catalog entries of each table and index its statements touch, plans the foreign-key checks of
// its first inserts and the SQL inside the stamp and identifier-lookup functions, and (pgx) prepares each
// statement, all on first use: a cold session's first intake took 35–60 ms instead of 5–10. A service
// started under load opened its sessions one by one as requests queued, each request waiting for a cold
// session, and the first stamp reservations held the stamp lock while they planned. In the paced 200/s
// benchmark, the first second's deliveries took 100–700 ms from commit to arrival, which made the run's p99
// (issue 12).
//
// So each session the writers' pool may open (warmWriterCount) reads every table once and writes a referral's
// creation (the intake's statements, warmCreation) in a transaction it rolls back; each session of the
// queue's pool runs the claim once for each limit it is written with (warmClaims); each stamp session
// reserves a stamp in a transaction it rolls back.
// Nothing is kept but the sessions, idle in their pools (and the identity numbers the rolled-back messages
// took). A failure is returned for the caller to log: a session that could not be warmed is opened cold when
// needed.
func (s *Store) warmUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, warmTimeout)
	defer cancel()
	reads := make([]string, len(warmTables))
	for i, t := range warmTables {
		reads[i] = `SELECT 1 FROM ` + t + ` LIMIT 0`
	}
	stamp := func(ctx context.Context, c *sql.Conn) error {
		return rolledBack(ctx, c, func(tx *sql.Tx) error {
			var xid string
			if err := tx.QueryRowContext(ctx, `SELECT pg_current_xact_id()::text`).Scan(&xid); err != nil {
				return err
			}
			var at int64
			return tx.QueryRowContext(ctx, reserveStamps, 0, xid, 1).Scan(&at)
		})
	}
	create := func(ctx context.Context, c *sql.Conn) error {
		if err := runAll(reads)(ctx, c); err != nil {
			return err
		}
		return s.warmCreation(ctx, c)
	}
	writers, countErr := s.warmWriterCount(ctx)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i, p := range []struct {
		db   *sql.DB
		n    int
		warm func(ctx context.Context, c *sql.Conn) error
	}{
		{s.db, writers, create},
		{s.qdb, min(s.opts.MaxConns, 4), s.warmClaims},
		{s.sdb, min(s.opts.MaxConns, 4), stamp},
		{s.ndb, 1, runAll([]string{`SELECT 1`})},
	} {
		wg.Go(func() { errs[i] = warmPool(ctx, p.db, p.n, p.warm) })
	}
	wg.Wait()
	if err := errors.Join(append(errs, countErr)...); err != nil {
		return s.d.DriverErr("warm-up", err)
	}
	return nil
}

// warmWriterCount is how many of the writers' sessions the warm-up opens: every session the pool may open
// (Options.MaxConns), unless that is more than a quarter of the connections the server has free, counted
// now (its client sessions against max_connections less the slots reserved for superusers and, from
// PostgreSQL 16, for reserved_connections' roles); at least one. In the paced 200/s benchmark, a start with 8
// of the 16 warmed still opened the others cold in its first second, as requests queued behind the first
// slow commits, and its p99 from commit to arrival was 99–160 ms; with all 16 it was 5–9 ms.
func (s *Store) warmWriterCount(ctx context.Context) (int, error) {
	var free int
	if err := s.db.QueryRowContext(ctx, `SELECT current_setting('max_connections')::int
		- current_setting('superuser_reserved_connections')::int
		- COALESCE(current_setting('reserved_connections', true)::int, 0)
		- (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')`).Scan(&free); err != nil {
		return 1, fmt.Errorf("count the server's free connections: %w", err)
	}
	return min(s.opts.MaxConns, max(free/warmShare, 1)), nil
}

// runAll runs stmts on a session, in order.
func runAll(stmts []string) func(ctx context.Context, c *sql.Conn) error {
	return func(ctx context.Context, c *sql.Conn) error {
		for _, q := range stmts {
			if _, err := c.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
}

// warmPool takes n sessions of db at once (so that they are n different sessions), runs warm on each and
// returns them to the pool, where they stay idle until used.
func warmPool(ctx context.Context, db *sql.DB, n int, warm func(ctx context.Context, c *sql.Conn) error) error {
	conns := make([]*sql.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := db.Conn(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			conns[i] = c
			errs[i] = warm(ctx, c)
		})
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			_ = c.Close() // back to the pool
		}
	}
	return errors.Join(errs...)
}

// warmClaims runs, on a queue session c, the claim as the dispatcher makes it (pendingByDestination) once
// for each limit it writes into the statement up to outbox.DefaultConcurrency (sqlstore.Padded), as of the
// earliest time there is, in a transaction it rolls back: nothing is due then and no lease has expired, and
// whatever a claim took would be given back. Each statement stays prepared and planned on the session. A
// dispatcher asks for 1 to 32 places; unprepared, each claim bucket's first use on a session planned for
// 8–17 ms on the path of a delivery.
func (s *Store) warmClaims(ctx context.Context, c *sql.Conn) error {
	return rolledBack(ctx, c, func(tx *sql.Tx) error {
		for limit := 1; limit <= sqlstore.Padded(outbox.DefaultConcurrency); limit *= 2 {
			r := sqlstore.NewRoom(outbox.ClaimFilter{PerDestination: 1})
			if _, _, err := s.pendingByDestination(ctx, tx, math.MinInt64, limit, r, "warm-up", 0, true); err != nil {
				return err
			}
		}
		return nil
	})
}

// warmCreation runs an intake's statements (the identifiers' lookup, the creation of a referral with one
// identifier and one message, without and with an audit record) on c, in a transaction it rolls back. The
// referrals are made up: no patient, no practice that exists, ids no other row has.
func (s *Store) warmCreation(ctx context.Context, c *sql.Conn) error {
	return rolledBack(ctx, c, func(tx *sql.Tx) error {
		w := &sqlstore.Tx{Querier: tx}
		if _, err := s.findIdentifiers(ctx, w, warmPractice,
			[]mapping.Identifier{{System: "urn:socialrx:warm-up", Value: "warm-up-" + uuid.NewString()}}); err != nil {
			return err
		}
		// Two creations: without an audit record, and with one (auditedCreationStatement: serve's creates),
		// whose made-up chain has no head to move, so it appends nothing.
		for _, audit := range [][]outbox.AuditRecord{nil, {{Chain: "warm-up", ChainSeq: 2, Hash: "warm-up"}}} {
			id := "warm-up-" + uuid.NewString()
			ids := []mapping.Identifier{{System: "urn:socialrx:warm-up", Value: id}}
			row := sqlstore.ReferralRow{ID: id, TaskID: id, SRID: id, Practice: warmPractice, Service: "warm-up",
				Status: "requested", Business: "queued", SRStatus: "active", Version: 1,
				Identifiers: []byte("[]"), Referral: []byte("{}"), ServiceRequest: []byte("{}")}
			if _, _, err := s.writeCreation(ctx, w, sqlstore.Creation{Row: row, Practice: warmPractice, Identifiers: ids,
				Events: []sqlstore.EventRow{{ID: id, Kind: string(mapping.DestinationService), Dest: "warm-up",
					Type: "warm-up", Payload: []byte("{}")}}, Audit: audit}, sqlstore.Version{Row: row, Cause: outbox.CauseCreate}); err != nil {
				return err
			}
		}
		return nil
	})
}

// rolledBack runs fn in a transaction on c and rolls it back, whatever fn did: the warm-up's writes are only
// there to be planned and run once.
func rolledBack(ctx context.Context, c *sql.Conn, fn func(tx *sql.Tx) error) error {
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // on purpose: nothing of it is kept
	return fn(tx)
}

// warmPractice is the made-up practice of warmCreation's referral (not an ODS code: those have no dash).
const warmPractice = "WARM-UP"
