package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// The statements of the engineers' operations (outbox.Operations), written with ? placeholders.
const (
	selectDiscard = `SELECT at, actor, reason, from_state FROM outbox_discards WHERE message_id = ?`
	// discardMessage retires a message; the state term makes it a no-op for a message that moved on.
	discardMessage = `UPDATE outbox_messages SET state = 'discarded', lease_owner = '', lease_until = 0
		WHERE id = ? AND state IN ('pending', 'dead')`
	insertDiscard = `INSERT INTO outbox_discards (message_id, at, actor, reason, from_state) VALUES (?, ?, ?, ?, ?)`

	pauseCols         = `id, destination_kind, destination_id, paused_at, paused_by, reason, resumed_at, resumed_by`
	selectActivePause = `SELECT ` + pauseCols + ` FROM outbox_pauses
		WHERE destination_kind = ? AND destination_id = ? AND resumed_at = 0`
	insertPause = `INSERT INTO outbox_pauses (destination_kind, destination_id, paused_at, paused_by, reason)
		VALUES (?, ?, ?, ?, ?)`
	endPause = `UPDATE outbox_pauses SET resumed_at = ?, resumed_by = ? WHERE id = ?`
	// resumeMessages gives the destination's waiting messages their paused time back (arguments: paused at,
	// the shift, resumed at twice for the budget; resumed at twice for the due time; the destination). A
	// budget that started before the pause moves on by the paused time; one that started during it (created
	// or replayed while paused) starts at the resume. Pending messages are due at once.
	resumeMessages = `UPDATE outbox_messages SET
		budget_from = CASE WHEN budget_from < ? THEN budget_from + ? WHEN budget_from < ? THEN ? ELSE budget_from END,
		next_attempt_at = CASE WHEN state = 'pending' AND next_attempt_at > ? THEN ? ELSE next_attempt_at END
		WHERE destination_kind = ? AND destination_id = ? AND state IN ('pending', 'inflight')`
	selectPauses = `SELECT ` + pauseCols + ` FROM outbox_pauses WHERE resumed_at = 0
		ORDER BY paused_at, destination_kind, destination_id`

	// CountByDestination counts the messages of each destination by state (the operations overview;
	// exported for the backends' plan tests).
	CountByDestination = `SELECT destination_kind, destination_id, state, COUNT(*) FROM outbox_messages
		GROUP BY destination_kind, destination_id, state ORDER BY destination_kind, destination_id, state`
	countDelivered = `SELECT COUNT(*) FROM outbox_attempts WHERE started_at >= ? AND status_code >= 200 AND status_code < 300`
	inboxStats     = `SELECT service_id, COUNT(*), SUM(CASE WHEN business_status = 'overdue' THEN 1 ELSE 0 END),
		MIN(created_at) FROM referrals WHERE status = 'requested' GROUP BY service_id ORDER BY service_id`
)

// readDiscard reads the discard record of message id (nil when there is none).
func (d Dialect) readDiscard(ctx context.Context, q Querier, id string) (*outbox.Discard, error) {
	dc := outbox.Discard{MessageID: id}
	var at int64
	err := q.QueryRowContext(ctx, d.rebind(selectDiscard), id).Scan(&at, &dc.Actor, &dc.Reason, &dc.FromState)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, d.DriverErr("read discard", err)
	}
	dc.At = FromMicros(at)
	return &dc, nil
}

// selectDiscards reads the named messages (each once, in Seq order), locking them (d.Lock) when lock is set,
// and keeps the discardable ones. An id that does not exist is ErrNotFound.
func (d Dialect) selectDiscards(ctx context.Context, q Querier, ids []string, lock bool) ([]outbox.Message, error) {
	var out []outbox.Message
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		m, err := d.ReadMessage(ctx, q, id, lock)
		if err != nil {
			return nil, err
		}
		if outbox.Discardable(m.State) {
			out = append(out, m)
		}
	}
	return SortBySeq(out), nil
}

// DiscardMessages moves the named pending or dead messages to discarded, recording actor, reason and the
// state left, and applies req.Update once to each referral with a discarded service message, all in one
// transaction; it returns the discarded messages as they now are (with DryRun: those it would discard, as
// they are, writing nothing). Named messages in other states are skipped; an unknown id is ErrNotFound.
func (s *Store) DiscardMessages(ctx context.Context, now time.Time, req outbox.DiscardRequest) ([]outbox.Message, error) {
	d := s.d
	if len(req.IDs) == 0 {
		return nil, fmt.Errorf("%s: discard: name message ids", d.Name)
	}
	if req.DryRun {
		return d.selectDiscards(ctx, s.read, req.IDs, false)
	}
	actor, reason := d.storableError(req.Actor), d.storableText(req.Reason)
	var out []outbox.Message
	err := s.b.Write(ctx, func(ctx context.Context, w *Tx) error {
		ms, err := d.selectDiscards(ctx, w, req.IDs, true)
		if err != nil {
			return err
		}
		nowUS := Micros(now)
		var referrals []string
		for i, m := range ms {
			if _, err := w.ExecContext(ctx, d.rebind(discardMessage), m.ID); err != nil {
				return d.DriverErr("discard", err)
			}
			if _, err := w.ExecContext(ctx, d.rebind(insertDiscard), m.ID, nowUS, actor, reason, string(m.State)); err != nil {
				return d.DriverErr("record discard", err)
			}
			ms[i].State = outbox.StateDiscarded
			ms[i].LeaseOwner, ms[i].LeaseUntil = "", time.Time{}
			if m.Destination.Kind == mapping.DestinationService && !slices.Contains(referrals, m.ReferralID) {
				referrals = append(referrals, m.ReferralID)
			}
		}
		if len(ms) > 0 {
			w.Changed = true // a discarded head lets the messages behind it be claimed
		}
		if err := s.updateEach(ctx, w, referrals, now, req.Update, outbox.CauseDiscard); err != nil {
			return err
		}
		out = ms
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// scanPause reads the pauseCols of one row, and the row id.
func scanPause(sc Scanner) (outbox.Pause, int64, error) {
	var (
		p                  outbox.Pause
		id, paused, resume int64
		kind               string
	)
	if err := sc.Scan(&id, &kind, &p.Destination.ID, &paused, &p.PausedBy, &p.Reason, &resume, &p.ResumedBy); err != nil {
		return outbox.Pause{}, 0, err
	}
	p.Destination.Kind = mapping.DestinationKind(kind)
	p.PausedAt, p.ResumedAt = FromMicros(paused), FromMicros(resume)
	return p, id, nil
}

// activePause reads dest's pause in force, locking it (d.Lock) when lock is set; ok false when there is none.
func (d Dialect) activePause(ctx context.Context, q Querier, dest mapping.Destination, lock bool) (p outbox.Pause, id int64, ok bool, err error) {
	query := d.rebind(selectActivePause)
	if lock {
		query += d.Lock
	}
	p, id, err = scanPause(q.QueryRowContext(ctx, query, string(dest.Kind), dest.ID))
	if errors.Is(err, sql.ErrNoRows) {
		return outbox.Pause{}, 0, false, nil
	}
	if err != nil {
		return outbox.Pause{}, 0, false, d.DriverErr("read pause", err)
	}
	return p, id, true, nil
}

// PauseDestination starts p unless its destination is already paused; it returns the pause in force and
// whether this call started it. With several writers, a concurrent pause of the same destination makes the
// unique index refuse one insert; that transaction runs again and finds the other's pause.
func (s *Store) PauseDestination(ctx context.Context, p outbox.Pause) (outbox.Pause, bool, error) {
	d := s.d
	if p.Destination.Kind == "" || p.Destination.ID == "" || p.PausedAt.IsZero() {
		return outbox.Pause{}, false, fmt.Errorf("%s: pause: destination and time are required", d.Name)
	}
	p.PausedAt = Norm(p.PausedAt)
	p.PausedBy, p.Reason = d.storableError(p.PausedBy), d.storableText(p.Reason)
	p.ResumedAt, p.ResumedBy = time.Time{}, ""
	var out outbox.Pause
	var started bool
	err := s.b.Write(ctx, func(ctx context.Context, w *Tx) error {
		cur, _, ok, err := d.activePause(ctx, w, p.Destination, true)
		if err != nil || ok {
			out, started = cur, false
			return err
		}
		if _, err := w.ExecContext(ctx, d.rebind(insertPause), string(p.Destination.Kind), p.Destination.ID,
			Micros(p.PausedAt), p.PausedBy, p.Reason); err != nil {
			if d.IsUnique(err) && d.Concurrent {
				return fmt.Errorf("%s: pause: %w: %w", d.Name, ErrRetry, err)
			}
			return d.DriverErr("pause", err)
		}
		out, started = p, true
		return nil
	})
	if err != nil {
		return outbox.Pause{}, false, err
	}
	return out, started, nil
}

// ResumeDestination ends dest's pause at now (ErrNotFound when it is not paused) and gives its waiting
// messages their paused time back (see resumeMessages), in one transaction that wakes the dispatchers.
func (s *Store) ResumeDestination(ctx context.Context, dest mapping.Destination, now time.Time, actor string) (outbox.Resumed, error) {
	d := s.d
	var out outbox.Resumed
	err := s.b.Write(ctx, func(ctx context.Context, w *Tx) error {
		p, id, ok, err := d.activePause(ctx, w, dest, true)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s: resume %s: not paused: %w", d.Name, dest, outbox.ErrNotFound)
		}
		resumed := Norm(now)
		if resumed.Before(p.PausedAt) { // another instance's clock ran ahead: no negative pause
			resumed = p.PausedAt
		}
		by := d.storableError(actor)
		if _, err := w.ExecContext(ctx, d.rebind(endPause), Micros(resumed), by, id); err != nil {
			return d.DriverErr("resume", err)
		}
		pausedUS, resumedUS := Micros(p.PausedAt), Micros(resumed)
		res, err := w.ExecContext(ctx, d.rebind(resumeMessages), pausedUS, resumedUS-pausedUS, resumedUS, resumedUS,
			resumedUS, resumedUS, string(dest.Kind), dest.ID)
		if err != nil {
			return d.DriverErr("resume messages", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return d.DriverErr("resume messages", err)
		}
		w.Changed = true
		p.ResumedAt, p.ResumedBy = resumed, by
		out = outbox.Resumed{Pause: p, Messages: int(n)}
		return nil
	})
	if err != nil {
		return outbox.Resumed{}, err
	}
	return out, nil
}

// ListPauses returns the pauses in force, oldest first.
func (s *Store) ListPauses(ctx context.Context) ([]outbox.Pause, error) {
	return s.d.listPauses(ctx, s.read)
}

func (d Dialect) listPauses(ctx context.Context, q Querier) ([]outbox.Pause, error) {
	rows, err := q.QueryContext(ctx, d.rebind(selectPauses))
	if err != nil {
		return nil, d.DriverErr("list pauses", err)
	}
	defer rows.Close()
	var out []outbox.Pause
	for rows.Next() {
		p, _, err := scanPause(rows)
		if err != nil {
			return nil, d.DriverErr("list pauses", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, d.DriverErr("list pauses", err)
	}
	return out, nil
}

// PausedDestinations lists the destinations paused now (what HoldPaused takes; a PauseHolder backend's rare
// claim reads them itself).
func (s *Store) PausedDestinations(ctx context.Context) ([]mapping.Destination, error) {
	ps, err := s.d.listPauses(ctx, s.read)
	if err != nil {
		return nil, err
	}
	out := make([]mapping.Destination, len(ps))
	for i, p := range ps {
		out[i] = p.Destination
	}
	return out, nil
}

// HoldPaused returns f with no room for the paused destinations, so that a claim leases none of their
// messages (f itself is left as it is).
func HoldPaused(f outbox.ClaimFilter, paused []mapping.Destination) outbox.ClaimFilter {
	if len(paused) == 0 {
		return f
	}
	room := make(map[mapping.Destination]int, len(f.Room)+len(paused))
	maps.Copy(room, f.Room)
	for _, d := range paused {
		room[d] = 0
	}
	f.Room = room
	return f
}

// ExcludeDestinations is the WHERE term (over outbox_messages m, ? placeholders) that leaves out the
// messages of dests, and its arguments: "" when dests is empty. It names the destination columns only, so
// an index holding them filters without reading rows.
func ExcludeDestinations(dests []mapping.Destination) (string, []any) {
	var b strings.Builder
	args := make([]any, 0, 2*len(dests))
	for _, dest := range dests {
		b.WriteString(` AND NOT (m.destination_kind = ? AND m.destination_id = ?)`)
		args = append(args, string(dest.Kind), dest.ID)
	}
	return b.String(), args
}

// CountByDestination returns the number of messages of every (destination, state) that has any.
func (s *Store) CountByDestination(ctx context.Context) ([]outbox.DestinationCount, error) {
	d := s.d
	rows, err := s.read.QueryContext(ctx, d.rebind(CountByDestination))
	if err != nil {
		return nil, d.DriverErr("count by destination", err)
	}
	defer rows.Close()
	var out []outbox.DestinationCount
	for rows.Next() {
		var c outbox.DestinationCount
		var kind, state string
		if err := rows.Scan(&kind, &c.Destination.ID, &state, &c.Count); err != nil {
			return nil, d.DriverErr("count by destination", err)
		}
		c.Destination.Kind, c.State = mapping.DestinationKind(kind), outbox.MessageState(state)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, d.DriverErr("count by destination", err)
	}
	return out, nil
}

// CountDelivered returns the number of successful delivery attempts (2xx) started at or after since: the
// messages delivered since then.
func (s *Store) CountDelivered(ctx context.Context, since time.Time) (int, error) {
	var n int
	if err := s.read.QueryRowContext(ctx, s.d.rebind(countDelivered), Micros(since)).Scan(&n); err != nil {
		return 0, s.d.DriverErr("count delivered", err)
	}
	return n, nil
}

// InboxStats returns, per community service with referrals still requested, how many wait, how many of them
// are overdue, and the creation of the oldest.
func (s *Store) InboxStats(ctx context.Context) ([]outbox.InboxStat, error) {
	d := s.d
	rows, err := s.read.QueryContext(ctx, d.rebind(inboxStats))
	if err != nil {
		return nil, d.DriverErr("inbox stats", err)
	}
	defer rows.Close()
	var out []outbox.InboxStat
	for rows.Next() {
		var st outbox.InboxStat
		var oldest int64
		if err := rows.Scan(&st.ServiceID, &st.Waiting, &st.Overdue, &oldest); err != nil {
			return nil, d.DriverErr("inbox stats", err)
		}
		st.OldestWaiting = FromMicros(oldest)
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, d.DriverErr("inbox stats", err)
	}
	return out, nil
}

// maxTextLen caps stored free texts of engineers (reasons): the operator checks them first; this keeps a bad
// caller from bloating rows.
const maxTextLen = 4096

// storableText caps a text at maxTextLen bytes without cutting a rune, and makes it storable.
func (d Dialect) storableText(s string) string { return d.capText(s, maxTextLen) }

// storableResponse makes a receiver's answer storable: the dispatcher already keeps it short and textual
// (outbox.ResponseText); this caps it at twice outbox.MaxResponseBytes, as valid UTF-8 without NUL (on
// every backend alike), so that a bad caller cannot bloat rows or store what is not text.
func (d Dialect) storableResponse(s string) string {
	if n := 2 * outbox.MaxResponseBytes; len(s) > n {
		s = s[:n]
	}
	s = strings.ReplaceAll(strings.ToValidUTF8(s, ""), "\x00", "")
	if d.CleanText != nil {
		s = d.CleanText(s)
	}
	return s
}
