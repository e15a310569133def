package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
)

// headOnly keeps a message only if no earlier message of its referral and destination is unfinished (not
// delivered and not cancelled), and, for a subscription destination, no earlier unfinished message of that
// destination at all (whatever its referral): a Subscription's notifications are numbered across referrals
// and must arrive in that order. The term e.state <> 'delivered' is spelled exactly as the partial indexes'
// WHERE so that SQLite uses them.
const headOnly = `NOT EXISTS (SELECT 1 FROM outbox_messages e
	WHERE e.referral_id = m.referral_id AND e.destination_kind = m.destination_kind
	AND e.destination_id = m.destination_id AND e.state <> 'delivered' AND e.state <> 'cancelled' AND e.seq < m.seq)
	AND (m.destination_kind <> 'subscription' OR NOT EXISTS (SELECT 1 FROM outbox_messages e
	WHERE e.destination_kind = m.destination_kind AND e.destination_id = m.destination_id
	AND e.state <> 'delivered' AND e.state <> 'cancelled' AND e.seq < m.seq))`

// maxErrorLen caps stored error texts (they are short by contract; this keeps a bad caller from bloating rows).
const maxErrorLen = 512

// ClaimMessages leases up to limit deliverable messages to owner until now+lease, returned in
// (NextAttemptAt, Seq) order: inflight messages whose lease has expired (taken first: they are the oldest
// work) and pending messages due at now, each only if it is the oldest undelivered message of its referral
// and destination (for subscription destinations: the oldest undelivered message of the destination), within
// f's per-destination limits: a message whose destination has no room left is skipped and stays pending.
// Destinations without room are excluded in the query itself, so a large backlog for a full destination
// costs index steps, not row reads.
func (s *Store) ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, f outbox.ClaimFilter) ([]outbox.Message, error) {
	return s.claim(ctx, owner, now, lease, limit, f)
}

// heads reads up to limit claimable messages of one kind (pending and due, or inflight with an expired
// lease) in index order, taking room as it goes: the shared scan (sqlstore.Dialect.Heads) as headScan
// spells it for this backend.
func heads(w *wtx, state outbox.MessageState, nowUS int64, limit int, r *sqlstore.Room) ([]outbox.Message, error) {
	return dialect().Heads(w.ctx, w, headScan(), state, nowUS, limit, r)
}

func (s *Store) claim(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, f outbox.ClaimFilter) ([]outbox.Message, error) {
	if owner == "" || lease <= 0 {
		return nil, errors.New("sqlite: claim: owner and a positive lease are required")
	}
	if limit <= 0 {
		return nil, nil
	}
	limit = min(limit, sqlstore.MaxLimit)
	nowUS, until := sqlstore.Micros(now), sqlstore.Micros(now.Add(lease))
	var out []outbox.Message
	err := s.write(ctx, func(w *wtx) error {
		r := sqlstore.NewRoom(f)
		expired, err := heads(w, outbox.StateInflight, nowUS, limit, r)
		if err != nil {
			return err
		}
		pending, err := heads(w, outbox.StatePending, nowUS, limit-len(expired), r)
		if err != nil {
			return err
		}
		all := append(expired, pending...)
		slices.SortFunc(all, func(a, b outbox.Message) int {
			return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), cmp.Compare(a.Seq, b.Seq))
		})
		for i := range all {
			if _, err := w.ExecContext(w.ctx, `UPDATE outbox_messages SET state = 'inflight', lease_owner = ?,
				lease_until = ? WHERE id = ?`, owner, until, all[i].ID); err != nil {
				return driverErr("claim", err)
			}
			all[i].State = outbox.StateInflight
			all[i].LeaseOwner = owner
			all[i].LeaseUntil = sqlstore.FromMicros(until)
		}
		out = all
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CompleteAttempt records the attempt (numbered after every earlier one of the message, across replays;
// res.Attempt.N is ignored) and, if res.Owner still holds the lease, moves the message to res.State, counts
// the attempt in Attempts, keeps its error as LastError and applies res.Update to the referral, all in one
// transaction. A lease is held until another claim takes it, even past LeaseUntil. Otherwise the attempt
// alone is recorded and ErrLeaseLost returned. If res.Update fails (other than with ErrNoChange), nothing
// is written and its error is returned.
func (s *Store) CompleteAttempt(ctx context.Context, id string, now time.Time, res outbox.AttemptResult) error {
	if !sqlstore.ValidNext(res.State) {
		return fmt.Errorf("sqlite: complete attempt: invalid next state %q", res.State)
	}
	if res.State == outbox.StatePending && res.NextAttemptAt.IsZero() {
		return errors.New("sqlite: complete attempt: pending needs NextAttemptAt")
	}
	a := res.Attempt
	started := a.StartedAt
	if started.IsZero() {
		started = now
	}
	errText := truncate(a.Error)
	leaseLost := false
	err := s.write(ctx, func(w *wtx) error {
		leaseLost = false
		var state, owner, referralID string
		err := w.QueryRowContext(w.ctx, `SELECT state, lease_owner, referral_id FROM outbox_messages WHERE id = ?`,
			id).Scan(&state, &owner, &referralID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: complete attempt: %w", outbox.ErrNotFound)
		}
		if err != nil {
			return driverErr("complete attempt", err)
		}
		if _, err := w.ExecContext(w.ctx, `INSERT INTO outbox_attempts (message_id, n, started_at, latency_us,
			status_code, error) VALUES (?1, (SELECT COALESCE(MAX(n), 0) + 1 FROM outbox_attempts WHERE message_id = ?1),
			?2, ?3, ?4, ?5)`, id, sqlstore.Micros(started), a.Latency.Microseconds(), a.StatusCode, errText); err != nil {
			return driverErr("record attempt", err)
		}
		if outbox.MessageState(state) != outbox.StateInflight || owner != res.Owner {
			leaseLost = true
			return nil
		}
		nowUS := sqlstore.Micros(now)
		var next, delivered any = nil, nil
		switch res.State {
		case outbox.StatePending:
			next = sqlstore.Micros(res.NextAttemptAt)
		case outbox.StateDelivered:
			delivered = nowUS
		case outbox.StateDead, outbox.StateInflight, outbox.StateCancelled:
		}
		if _, err := w.ExecContext(w.ctx, `UPDATE outbox_messages SET state = ?, attempts = attempts + 1,
			last_error = ?, lease_owner = '', lease_until = 0,
			next_attempt_at = COALESCE(?, next_attempt_at), delivered_at = COALESCE(?, delivered_at)
			WHERE id = ?`, string(res.State), errText, next, delivered, id); err != nil {
			return driverErr("complete attempt", err)
		}
		w.changed = true
		if res.Update != nil {
			cur, err := dialect().ReadReferral(w.ctx, w, "id = ?", referralID)
			if err != nil {
				return err
			}
			if _, err := s.applyUpdate(w, cur, now, res.Update, outbox.CauseAttempt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if leaseLost {
		return fmt.Errorf("sqlite: complete attempt: %w", outbox.ErrLeaseLost)
	}
	return nil
}

// truncate caps an error text at maxErrorLen bytes without cutting a rune.
func truncate(s string) string {
	if len(s) <= maxErrorLen {
		return s
	}
	return strings.ToValidUTF8(s[:maxErrorLen], "")
}

// ReleaseMessages returns owner's inflight messages to pending, due at the latest now, and says how many.
func (s *Store) ReleaseMessages(ctx context.Context, owner string, now time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(w *wtx) error {
		res, err := w.ExecContext(w.ctx, `UPDATE outbox_messages SET state = 'pending', lease_owner = '',
			lease_until = 0, next_attempt_at = MIN(next_attempt_at, ?)
			WHERE state = 'inflight' AND lease_owner = ?`, sqlstore.Micros(now), owner)
		if err != nil {
			return driverErr("release", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return driverErr("release", err)
		}
		if n > 0 {
			w.changed = true
		}
		return nil
	})
	return int(n), err
}

// ListMessages returns messages matching q in Seq order (default limit 100, at most 1000).
func (s *Store) ListMessages(ctx context.Context, q outbox.MessageQuery) ([]outbox.Message, error) {
	return dialect().ListMessages(ctx, s.db, q)
}

// GetMessage returns one message with its attempts (by number) and replays (oldest first).
func (s *Store) GetMessage(ctx context.Context, id string) (outbox.MessageDetail, error) {
	return dialect().GetMessage(ctx, s.db, id)
}

// ReplayMessages moves the selected messages (see ReplayRequest) back to pending, keeping their ids:
// due at now, with a new retry budget from now, a Replay row recording actor, reason and the state left,
// and req.Update applied once to each referral with a replayed service message, all in one transaction. It returns the replayed
// messages as they now are; with DryRun, the messages that would be replayed as they are, writing nothing.
func (s *Store) ReplayMessages(ctx context.Context, now time.Time, req outbox.ReplayRequest) ([]outbox.Message, error) {
	if len(req.IDs) == 0 && req.Filter == nil {
		return nil, errors.New("sqlite: replay: name message ids or give a filter")
	}
	if req.DryRun {
		return dialect().SelectReplay(ctx, s.db, now, req, false)
	}
	var out []outbox.Message
	err := s.write(ctx, func(w *wtx) error {
		ms, err := dialect().SelectReplay(w.ctx, w, now, req, true)
		if err != nil {
			return err
		}
		referrals, err := dialect().MarkReplayed(w.ctx, w, ms, now, req)
		if err != nil {
			return err
		}
		if len(ms) > 0 {
			w.changed = true
		}
		if req.Update != nil {
			for _, rid := range referrals {
				cur, err := dialect().ReadReferral(w.ctx, w, "id = ?", rid)
				if err != nil {
					return err
				}
				if _, err := s.applyUpdate(w, cur, now, req.Update, outbox.CauseReplay); err != nil {
					return err
				}
			}
		}
		out = ms
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CountMessages returns the number of messages in every state (zeros included) and the creation time of
// the oldest pending message (zero when none).
func (s *Store) CountMessages(ctx context.Context) (map[outbox.MessageState]int, time.Time, error) {
	return dialect().CountMessages(ctx, s.db)
}

// NextDue returns when the next claim can succeed: the earliest due time of a pending message that heads its
// referral and destination, or the earliest lease expiry of an inflight one, whichever is first (zero when
// there is neither). Pending messages blocked behind an earlier undelivered one are not counted, so a
// dispatcher sleeping until NextDue never spins on a message it cannot claim.
func (s *Store) NextDue(ctx context.Context) (time.Time, error) {
	var pending, lease sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT m.next_attempt_at FROM outbox_messages m
		INDEXED BY outbox_pending_due WHERE m.state = 'pending' AND `+headOnly+` ORDER BY m.next_attempt_at, m.seq LIMIT 1`).Scan(&pending)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, driverErr("next due", err)
	}
	err = s.db.QueryRowContext(ctx, `SELECT m.lease_until FROM outbox_messages m
		INDEXED BY outbox_inflight_lease WHERE m.state = 'inflight' AND `+headOnly+` ORDER BY m.lease_until, m.seq LIMIT 1`).Scan(&lease)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, driverErr("next due", err)
	}
	switch {
	case !pending.Valid && !lease.Valid:
		return time.Time{}, nil
	case !lease.Valid:
		return sqlstore.FromMicros(pending.Int64), nil
	case !pending.Valid:
		return sqlstore.FromMicros(lease.Int64), nil
	}
	return sqlstore.FromMicros(min(pending.Int64, lease.Int64)), nil
}

// headScan is SQLite's spelling of the claim scan: the partial index named, so that SQLite uses it.
func headScan() sqlstore.HeadScan {
	return sqlstore.HeadScan{HeadOnly: headOnly, From: func(index string) string {
		return ` FROM outbox_messages m INDEXED BY ` + index
	}}
}

// UseNonce records a single-use value for every instance sharing the database (outbox.Nonces).
func (s *Store) UseNonce(ctx context.Context, nonce string, expiresAt, now time.Time) (bool, error) {
	var fresh bool
	err := s.write(ctx, func(w *wtx) error {
		var err error
		fresh, err = dialect().UseNonce(w.ctx, w, nonce, expiresAt, now)
		return err
	})
	return fresh, err
}
