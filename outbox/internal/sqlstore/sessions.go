package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// The community inbox page's sessions and failed sign-ins (outbox.Sessions), and the per-status counts of
// its tabs. Times are stored as unix microseconds, like every other time.

const (
	insertSession = `INSERT INTO inbox_sessions (id_hash, client_id, token_hash, created_at, last_seen_at,
			idle_until, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`
	// endSessions removes the sessions ended at a time: IdleUntil is never after ExpiresAt, so it alone decides.
	endSessions  = `DELETE FROM inbox_sessions WHERE idle_until <= ?`
	touchSession = `UPDATE inbox_sessions SET last_seen_at = ?,
			idle_until = CASE WHEN ? < expires_at THEN ? ELSE expires_at END
			WHERE id_hash = ? AND idle_until > ?
			RETURNING client_id, token_hash, created_at, last_seen_at, idle_until, expires_at`
	endSession    = `DELETE FROM inbox_sessions WHERE id_hash = ? AND idle_until <= ?`
	deleteSession = `DELETE FROM inbox_sessions WHERE id_hash = ?`
	pruneFailures = `DELETE FROM sign_in_failures WHERE at <= ?`
	insertFailure = `INSERT INTO sign_in_failures (key, at) VALUES (?, ?)`
	countFailures = `SELECT COUNT(*), COALESCE(MIN(at), 0) FROM sign_in_failures WHERE key = ? AND at > ?`
	countByStatus = `SELECT status, COUNT(*) FROM referrals WHERE service_id = ? GROUP BY status`
)

// sessionStatements lists the statements of this file, for Dialect.Compile.
func sessionStatements() []string {
	return []string{insertSession, endSessions, touchSession, endSession, deleteSession, pruneFailures,
		insertFailure, countFailures, countByStatus}
}

// CreateSession stores a new inbox session, removing the sessions ended by its start (outbox.Sessions).
func (s *Store) CreateSession(ctx context.Context, in outbox.Session) error {
	d := s.d
	if in.IDHash == "" || in.ClientID == "" || in.TokenHash == "" || in.CreatedAt.IsZero() || in.IdleUntil.IsZero() ||
		in.ExpiresAt.IsZero() {
		return fmt.Errorf("%s: create session: id hash, client, token hash, creation, idle end and expiry are required", d.Name)
	}
	if in.IdleUntil.After(in.ExpiresAt) || !in.IdleUntil.After(in.CreatedAt) {
		return fmt.Errorf("%s: create session: the idle end must be after the start and not after the expiry", d.Name)
	}
	if in.LastSeenAt.IsZero() {
		in.LastSeenAt = in.CreatedAt
	}
	args := []any{in.IDHash, in.ClientID, in.TokenHash, Micros(in.CreatedAt), Micros(in.LastSeenAt),
		Micros(in.IdleUntil), Micros(in.ExpiresAt)}
	return s.b.Write(ctx, func(ctx context.Context, w *Tx) error {
		w.Quiet = true
		if _, err := w.ExecContext(ctx, d.rebind(endSessions), Micros(in.CreatedAt)); err != nil {
			return d.DriverErr("end sessions", err)
		}
		if _, err := w.ExecContext(ctx, d.rebind(insertSession), args...); err != nil {
			if d.IsUnique(err) {
				return fmt.Errorf("%s: create session: id already exists: %w", d.Name, err)
			}
			return d.DriverErr("create session", err)
		}
		return nil
	})
}

// TouchSession returns a live session and extends its idle end (outbox.Sessions).
func (s *Store) TouchSession(ctx context.Context, idHash string, now time.Time, idle time.Duration) (outbox.Session, error) {
	d := s.d
	if idle <= 0 {
		return outbox.Session{}, fmt.Errorf("%s: touch session: the idle timeout must be positive", d.Name)
	}
	at, until := Micros(now), Micros(now.Add(idle))
	var out outbox.Session
	found := false
	err := s.b.Write(ctx, func(ctx context.Context, w *Tx) error {
		w.Quiet = true
		out, found = outbox.Session{}, false
		var created, seen, idleUntil, expires int64
		err := w.QueryRowContext(ctx, d.rebind(touchSession), at, until, until, idHash, at).
			Scan(&out.ClientID, &out.TokenHash, &created, &seen, &idleUntil, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			// Gone, or ended: an ended session is removed now (committed) rather than at the next prune.
			if _, err := w.ExecContext(ctx, d.rebind(endSession), idHash, at); err != nil {
				return d.DriverErr("end session", err)
			}
			return nil
		}
		if err != nil {
			return d.DriverErr("touch session", err)
		}
		found = true
		out.IDHash = idHash
		out.CreatedAt, out.LastSeenAt = FromMicros(created), FromMicros(seen)
		out.IdleUntil, out.ExpiresAt = FromMicros(idleUntil), FromMicros(expires)
		return nil
	})
	if err != nil {
		return outbox.Session{}, err
	}
	if !found {
		return outbox.Session{}, fmt.Errorf("%s: session: %w", d.Name, outbox.ErrNotFound)
	}
	return out, nil
}

// DeleteSession removes one session (outbox.Sessions).
func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	d := s.d
	return s.b.Write(ctx, func(ctx context.Context, w *Tx) error {
		w.Quiet = true
		if _, err := w.ExecContext(ctx, d.rebind(deleteSession), idHash); err != nil {
			return d.DriverErr("delete session", err)
		}
		return nil
	})
}

// PruneSessions removes ended sessions and old failed sign-ins (outbox.Sessions).
func (s *Store) PruneSessions(ctx context.Context, now, failuresUpTo time.Time) (int, error) {
	d := s.d
	var n int64
	err := s.b.Write(ctx, func(ctx context.Context, w *Tx) error {
		w.Quiet = true
		res, err := w.ExecContext(ctx, d.rebind(endSessions), Micros(now))
		if err != nil {
			return d.DriverErr("prune sessions", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return d.DriverErr("prune sessions", err)
		}
		if _, err := w.ExecContext(ctx, d.rebind(pruneFailures), Micros(failuresUpTo)); err != nil {
			return d.DriverErr("prune sign-in failures", err)
		}
		return nil
	})
	return int(n), err
}

// RecordSignInFailure records a failed sign-in under each key and counts each key's recent failures
// (outbox.Sessions).
func (s *Store) RecordSignInFailure(ctx context.Context, keys []string, now, since time.Time) ([]outbox.FailureCount, error) {
	d := s.d
	for _, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("%s: record sign-in failure: empty key", d.Name)
		}
	}
	var out []outbox.FailureCount
	err := s.b.Write(ctx, func(ctx context.Context, w *Tx) error {
		w.Quiet = true
		if _, err := w.ExecContext(ctx, d.rebind(pruneFailures), Micros(since)); err != nil {
			return d.DriverErr("prune sign-in failures", err)
		}
		for _, k := range keys {
			if _, err := w.ExecContext(ctx, d.rebind(insertFailure), k, Micros(now)); err != nil {
				return d.DriverErr("record sign-in failure", err)
			}
		}
		var err error
		out, err = d.countFailures(ctx, w, keys, since)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SignInFailures counts each key's failed sign-ins after since (outbox.Sessions).
func (s *Store) SignInFailures(ctx context.Context, keys []string, since time.Time) ([]outbox.FailureCount, error) {
	return s.d.countFailures(ctx, s.read, keys, since)
}

// countFailures counts each key's failures recorded after since, in the order of keys.
func (d Dialect) countFailures(ctx context.Context, q Querier, keys []string, since time.Time) ([]outbox.FailureCount, error) {
	out := make([]outbox.FailureCount, 0, len(keys))
	for _, k := range keys {
		var n int
		var earliest int64
		if err := q.QueryRowContext(ctx, d.rebind(countFailures), k, Micros(since)).Scan(&n, &earliest); err != nil {
			return nil, d.DriverErr("count sign-in failures", err)
		}
		out = append(out, outbox.FailureCount{Key: k, N: n, Earliest: FromMicros(earliest)})
	}
	return out, nil
}

// CountByStatus counts a service's referrals in each status (outbox.Referrals).
func (s *Store) CountByStatus(ctx context.Context, serviceID string) (map[mapping.TaskStatus]int, error) {
	d := s.d
	rows, err := s.read.QueryContext(ctx, d.rebind(countByStatus), serviceID)
	if err != nil {
		return nil, d.DriverErr("count referrals", err)
	}
	defer rows.Close()
	out := map[mapping.TaskStatus]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, d.DriverErr("count referrals", err)
		}
		out[mapping.TaskStatus(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, d.DriverErr("count referrals", err)
	}
	return out, nil
}
