package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"slices"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
)

// headOnly keeps a message only if no earlier message of its referral and destination is unfinished (not
// delivered, cancelled or discarded), and, for a subscription destination, no earlier unfinished message of that
// destination at all (whatever its referral): a Subscription's notifications are numbered across referrals
// and must arrive in that order. The chain is read from the referral's messages (outbox_referral_seq, named:
// a referral has a few), whose entries a claim or a delivery never moves; an index of the unfinished
// messages by referral (outbox_undelivered_chain, dropped by migration 89) had an entry rewritten by every
// claim and removed by every delivery, each on a page of its own. For the subscription's chain, the term
// e.state <> 'delivered' is spelled exactly as outbox_undelivered_destination's WHERE so that SQLite uses it.
const headOnly = `NOT EXISTS (SELECT 1 FROM outbox_messages e INDEXED BY outbox_referral_seq
	WHERE e.referral_id = m.referral_id AND e.destination_kind = m.destination_kind
	AND e.destination_id = m.destination_id AND e.state <> 'delivered' AND e.state <> 'cancelled'
	AND e.state <> 'discarded' AND e.seq < m.seq)
	AND (m.destination_kind <> 'subscription' OR NOT EXISTS (SELECT 1 FROM outbox_messages e
	WHERE e.destination_kind = m.destination_kind AND e.destination_id = m.destination_id
	AND e.state <> 'delivered' AND e.state <> 'cancelled' AND e.state <> 'discarded' AND e.seq < m.seq))`

// heads reads up to limit claimable messages of one kind (pending and due, or inflight with an expired
// lease) in index order, taking room as it goes: the shared scan (sqlstore.Dialect.Heads) as headScan
// spells it for this backend.
func (s *Store) heads(w *wtx, state outbox.MessageState, nowUS int64, limit int, r *sqlstore.Room) ([]outbox.Message, error) {
	return s.d.Heads(w.ctx, w, headScan(), state, nowUS, limit, r)
}

// claim leases up to limit (in (0, sqlstore.MaxLimit]) deliverable messages to owner until now+lease in one
// write through the writer, returned in (NextAttemptAt, Seq) order: inflight messages whose lease has
// expired (taken first: they are the oldest work) and pending messages due at now, each only if it is the
// oldest unfinished message of its referral and destination (for subscription destinations: of the
// destination), within f's per-destination limits. Destinations without room are excluded in the query
// itself, so a large backlog for a full destination costs index steps, not row reads.
func (s *Store) claim(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, f outbox.ClaimFilter) ([]outbox.Message, error) {
	nowUS, until := sqlstore.Micros(now), sqlstore.Micros(now.Add(lease))
	var out []outbox.Message
	err := s.write(ctx, func(w *wtx) error {
		r := sqlstore.NewRoom(f)
		expired, err := s.heads(w, outbox.StateInflight, nowUS, limit, r)
		if err != nil {
			return err
		}
		var pending []outbox.Message
		if f.PerDestination > 0 || len(f.Room) > 0 {
			pending, err = s.pendingByDestination(w, nowUS, limit-len(expired), r)
		} else {
			pending, err = s.heads(w, outbox.StatePending, nowUS, limit-len(expired), r)
		}
		if err != nil {
			return err
		}
		all := append(expired, pending...)
		slices.SortFunc(all, func(a, b outbox.Message) int {
			return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), cmp.Compare(a.Seq, b.Seq))
		})
		if len(all) == 0 {
			return nil
		}
		// One statement leases them all, its ids padded with NULLs to a power of two (a few texts for claims
		// of every size): one statement a message cost as much as the claim's reads (issue 12).
		k := sqlstore.Padded(len(all))
		args := make([]any, 0, k+2)
		args = append(args, owner, until)
		for i := range all {
			args = append(args, all[i].ID)
			all[i].State = outbox.StateInflight
			all[i].LeaseOwner = owner
			all[i].LeaseUntil = sqlstore.FromMicros(until)
		}
		args = append(args, make([]any, k-len(all))...)
		if _, err := w.ExecContext(w.ctx, `UPDATE outbox_messages SET state = 'inflight', lease_owner = ?,
			lease_until = ? WHERE id IN (`+sqlstore.Placeholders(k)+`)`, args...); err != nil {
			return s.d.DriverErr("claim", err)
		}
		out = all
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// pendingByDestination reads up to limit claimable pending messages (due, heads of their chains) inside the
// claim's write transaction w when destinations are limited, taking room as it goes. It finds the
// destinations holding pending messages by stepping through outbox_pending_destination (one index descent
// each), takes, for each destination with room, its first claimable messages up to that room from its own
// index range, and keeps the earliest limit of those in (NextAttemptAt, Seq) order. That is the set a scan
// of all due messages in order would take (Heads), but a destination without room costs nothing, where such
// a scan reads its whole backlog (with the destination excluded) on every claim: the claim's cost followed
// the backlog (issue 12). PostgreSQL's claim does the same in one statement.
func (s *Store) pendingByDestination(w *wtx, nowUS int64, limit int, r *sqlstore.Room) ([]outbox.Message, error) {
	if limit <= 0 {
		return nil, nil
	}
	dests, err := s.pendingDestinations(w)
	if err != nil {
		return nil, err
	}
	var all []outbox.Message
	for _, dest := range dests {
		n := r.Left(dest)
		if n == 0 {
			continue
		}
		if n < 0 || n > limit {
			n = limit
		}
		rows, err := w.QueryContext(w.ctx, `SELECT `+sqlstore.MessageCols+`, `+sqlstore.PracticeCol("m")+`
			FROM outbox_messages m INDEXED BY outbox_pending_destination WHERE m.state = 'pending'
			AND m.destination_kind = ? AND m.destination_id = ? AND m.next_attempt_at <= ? AND `+headOnly+`
			ORDER BY m.next_attempt_at, m.seq`+sqlstore.LimitLiteral(n), string(dest.Kind), dest.ID, nowUS)
		if err != nil {
			return nil, s.d.DriverErr("claim", err)
		}
		ms, err := s.d.CollectMessagesWithPractice(rows, "claim")
		if err != nil {
			return nil, err
		}
		all = append(all, ms[:min(n, len(ms))]...)
	}
	slices.SortFunc(all, func(a, b outbox.Message) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), cmp.Compare(a.Seq, b.Seq))
	})
	if len(all) > limit {
		all = all[:limit]
	}
	for _, m := range all {
		r.Used[m.Destination]++
	}
	return all, nil
}

// pendingDestinations lists the destinations holding pending messages, in order, one index descent of
// outbox_pending_destination each: the next destination after (kind, id) is the next id of the same kind or
// else the first of a later kind (SQLite seeks a row-value range on its first column only, which would read
// a whole destination's backlog).
func (s *Store) pendingDestinations(w *wtx) ([]mapping.Destination, error) {
	const head = `SELECT destination_kind, destination_id FROM outbox_messages INDEXED BY outbox_pending_destination
		WHERE state = 'pending'`
	const tail = ` ORDER BY destination_kind, destination_id LIMIT 1`
	var out []mapping.Destination
	next := func(q string, args ...any) (bool, error) {
		var d mapping.Destination
		var kind string
		err := w.QueryRowContext(w.ctx, q, args...).Scan(&kind, &d.ID)
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, s.d.DriverErr("claim", err)
		}
		d.Kind = mapping.DestinationKind(kind)
		out = append(out, d)
		return true, nil
	}
	found, err := next(head + tail)
	for found && err == nil {
		last := out[len(out)-1]
		found, err = next(head+` AND destination_kind = ? AND destination_id > ?`+tail, string(last.Kind), last.ID)
		if !found && err == nil {
			found, err = next(head+` AND destination_kind > ?`+tail, string(last.Kind))
		}
	}
	return out, err
}

// due reads when the next claim can succeed (sqlstore.Backend.Due), on the read pool: each scan names its
// partial index, whose destination columns leave out the paused destinations without reading rows.
func (s *Store) due(ctx context.Context, paused []mapping.Destination) (pending, lease sql.NullInt64, err error) {
	skip, args := sqlstore.ExcludeDestinations(paused)
	err = s.reads.QueryRowContext(ctx, `SELECT m.next_attempt_at FROM outbox_messages m
		INDEXED BY outbox_pending_due WHERE m.state = 'pending'`+skip+` AND `+headOnly+` ORDER BY m.next_attempt_at, m.seq LIMIT 1`, args...).Scan(&pending)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return pending, lease, s.d.DriverErr("next due", err)
	}
	err = s.reads.QueryRowContext(ctx, `SELECT m.lease_until FROM outbox_messages m
		INDEXED BY outbox_inflight_lease WHERE m.state = 'inflight'`+skip+` AND `+headOnly+` ORDER BY m.lease_until, m.seq LIMIT 1`, args...).Scan(&lease)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return pending, lease, s.d.DriverErr("next due", err)
	}
	return pending, lease, nil
}

// headScan is SQLite's spelling of the claim scan: the partial index named, so that SQLite uses it.
func headScan() sqlstore.HeadScan {
	return sqlstore.HeadScan{HeadOnly: headOnly, Limit: sqlstore.LimitLiteral, From: func(index string) string {
		return ` FROM outbox_messages m INDEXED BY ` + index
	}}
}
