package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
)

// headOnly keeps a message only if no earlier message of its referral and destination is unfinished (not
// delivered and not cancelled), and, for a subscription destination, no earlier unfinished message of that
// destination at all (whatever its referral): a Subscription's notifications are numbered across referrals
// and must arrive in that order. The state term is spelled exactly as the partial indexes' WHERE so that
// the planner uses them, and the chain is matched on chain_key alone so that only outbox_unfinished_chain
// can serve the probe (one index descent per candidate, whatever the table's history or statistics).
const headOnly = `NOT EXISTS (SELECT 1 FROM outbox_messages e
	WHERE e.chain_key = m.chain_key AND e.state IN ('pending', 'inflight', 'dead') AND e.seq < m.seq)
	AND (m.destination_kind <> 'subscription' OR NOT EXISTS (SELECT 1 FROM outbox_messages e
	WHERE e.destination_kind = m.destination_kind AND e.destination_id = m.destination_id
	AND e.state IN ('pending', 'inflight', 'dead') AND e.seq < m.seq))`

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

// pendingByDestination leases up to limit claimable pending messages (due, heads of their chains) to owner
// until until when destinations are limited, and returns them as leased. One statement: it finds the
// destinations holding pending messages with a skip scan of outbox_pending_destination, takes, for each
// destination with room, its first claimable messages up to that room (FOR UPDATE SKIP LOCKED), keeps the
// earliest limit of those in (NextAttemptAt, Seq) order and leases them. This is the set a scan of all due
// messages in order would take, but a destination without room costs nothing, where such a scan would read
// its whole backlog on every claim.
//
// With guard, it leases nothing if any lease has expired (expired leases are claimed first, and take room:
// the caller then claims in a transaction) and says so.
func pendingByDestination(ctx context.Context, q sqlstore.Querier, nowUS int64, limit int, r *sqlstore.Room, owner string, until int64, guard bool) (ms []outbox.Message, expired bool, err error) {
	if limit <= 0 {
		return nil, false, nil
	}
	def := limit
	if r.Filter.PerDestination > 0 {
		def = min(r.Filter.PerDestination, limit)
	}
	var kinds, ids []string
	var ns []int64
	seen := map[mapping.Destination]bool{}
	add := func(d mapping.Destination) {
		if seen[d] {
			return
		}
		seen[d] = true
		n := r.Left(d)
		if n < 0 || n > limit {
			n = limit
		}
		kinds, ids, ns = append(kinds, string(d.Kind)), append(ids, d.ID), append(ns, int64(n))
	}
	for d := range r.Filter.Room {
		add(d)
	}
	for d := range r.Used {
		add(d)
	}
	guardTerm, sentinel := "", ""
	if guard {
		const anyExpired = `EXISTS (SELECT 1 FROM outbox_messages WHERE state = 'inflight' AND lease_until <= $5)`
		guardTerm = ` AND NOT ` + anyExpired
		// seq 0 marks the sentinel: real seqs start at 1.
		sentinel = ` UNION ALL SELECT '', 0, '', '', '', '', ''::bytea, '', 0, 0, 0, '', 0, 0, '', 0 WHERE ` + anyExpired
	}
	rows, err := q.QueryContext(ctx, `WITH RECURSIVE dests (dkind, did) AS (
		(SELECT destination_kind, destination_id FROM outbox_messages WHERE state = 'pending'
			ORDER BY destination_kind, destination_id LIMIT 1)
		UNION ALL
		SELECT n.destination_kind, n.destination_id FROM dests d CROSS JOIN LATERAL (
			SELECT destination_kind, destination_id FROM outbox_messages WHERE state = 'pending'
				AND (destination_kind, destination_id) > (d.dkind, d.did)
			ORDER BY destination_kind, destination_id LIMIT 1) n
	), room (rkind, rid, rn) AS (
		SELECT d.dkind, d.did, COALESCE(x.n, $4) FROM dests d
		LEFT JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS x (kind, id, n)
			ON x.kind = d.dkind AND x.id = d.did
	), picked (pid) AS (
		SELECT m.id FROM room CROSS JOIN LATERAL (
			SELECT m.id, m.next_attempt_at, m.seq FROM outbox_messages m
			WHERE m.state = 'pending' AND m.destination_kind = room.rkind AND m.destination_id = room.rid
				AND m.next_attempt_at <= $5 AND `+headOnly+`
			ORDER BY m.next_attempt_at, m.seq LIMIT room.rn FOR UPDATE OF m SKIP LOCKED) m
		WHERE room.rn > 0`+guardTerm+`
		ORDER BY m.next_attempt_at, m.seq LIMIT $6
	), leased AS (
		UPDATE outbox_messages SET state = 'inflight', lease_owner = $7, lease_until = $8
		FROM picked WHERE id = picked.pid
		RETURNING `+sqlstore.MessageCols+`
	)
	SELECT `+sqlstore.MessageCols+` FROM leased`+sentinel, kinds, ids, ns, def, nowUS, limit, owner, until)
	if err != nil {
		return nil, false, driverErr("claim", err)
	}
	all, err := dialect().CollectMessages(rows, "claim")
	if err != nil {
		return nil, false, err
	}
	for _, m := range all {
		if m.Seq == 0 {
			expired = true
			continue
		}
		ms = append(ms, m)
		r.Used[m.Destination]++
	}
	return ms, expired, nil
}

func (s *Store) claim(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, f outbox.ClaimFilter) ([]outbox.Message, error) {
	if owner == "" || lease <= 0 {
		return nil, errors.New("postgres: claim: owner and a positive lease are required")
	}
	if limit <= 0 {
		return nil, nil
	}
	if s.closed() {
		return nil, ErrClosed
	}
	limit = min(limit, sqlstore.MaxLimit)
	nowUS, until := sqlstore.Micros(now), sqlstore.Micros(now.Add(lease))
	limited := f.PerDestination > 0 || len(f.Room) > 0
	if limited {
		// The usual case, one autocommit statement: no lease has expired.
		for attempt := 0; ; attempt++ {
			r := sqlstore.NewRoom(f)
			ms, expired, err := pendingByDestination(ctx, s.qdb, nowUS, limit, r, owner, until, true)
			if err == nil && !expired {
				return sortClaimed(ms, owner, until), nil
			}
			if err == nil {
				break // expired leases: claim them first, in a transaction
			}
			if attempt < s.opts.MaxRetries && retryable(err) && ctx.Err() == nil {
				continue
			}
			return nil, err
		}
	}
	var out []outbox.Message
	err := s.writeWith(ctx, s.qdb, func(w *wtx) error {
		r := sqlstore.NewRoom(f)
		toLease, err := heads(w, outbox.StateInflight, nowUS, limit, r) // read, still to be leased
		if err != nil {
			return err
		}
		var leased []outbox.Message
		if limited {
			leased, _, err = pendingByDestination(w.ctx, w, nowUS, limit-len(toLease), r, owner, until, false)
		} else {
			var pending []outbox.Message
			pending, err = heads(w, outbox.StatePending, nowUS, limit-len(toLease), r)
			toLease = append(toLease, pending...)
		}
		if err != nil {
			return err
		}
		if len(toLease) > 0 {
			claimed := make([]string, len(toLease))
			for i, m := range toLease {
				claimed[i] = m.ID
			}
			if _, err := w.ExecContext(w.ctx, `UPDATE outbox_messages SET state = 'inflight', lease_owner = $1,
				lease_until = $2 WHERE id = ANY($3)`, owner, until, claimed); err != nil {
				return driverErr("claim", err)
			}
		}
		out = sortClaimed(append(toLease, leased...), owner, until)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sortClaimed puts claimed messages in (NextAttemptAt, Seq) order, as leased to owner until until.
func sortClaimed(ms []outbox.Message, owner string, until int64) []outbox.Message {
	slices.SortFunc(ms, func(a, b outbox.Message) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), cmp.Compare(a.Seq, b.Seq))
	})
	for i := range ms {
		ms[i].State = outbox.StateInflight
		ms[i].LeaseOwner = owner
		ms[i].LeaseUntil = sqlstore.FromMicros(until)
	}
	return ms
}

// CompleteAttempt records the attempt (numbered after every earlier one of the message, across replays;
// res.Attempt.N is ignored) and, if res.Owner still holds the lease, moves the message to res.State, counts
// the attempt in Attempts, keeps its error as LastError and applies res.Update to the referral, all in one
// transaction. A lease is held until another claim takes it, even past LeaseUntil. Otherwise the attempt
// alone is recorded and ErrLeaseLost returned. If res.Update fails (other than with ErrNoChange), nothing
// is written and its error is returned.
func (s *Store) CompleteAttempt(ctx context.Context, id string, now time.Time, res outbox.AttemptResult) error {
	if !sqlstore.ValidNext(res.State) {
		return fmt.Errorf("postgres: complete attempt: invalid next state %q", res.State)
	}
	if res.State == outbox.StatePending && res.NextAttemptAt.IsZero() {
		return errors.New("postgres: complete attempt: pending needs NextAttemptAt")
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
		// One statement: lock the message, record the attempt and, if owner still holds the lease, move the
		// message to its next state. succ says whether a later unfinished message waits behind it (its chain,
		// or its subscription destination): only then can a delivery make work for another instance. With an
		// Update, it first locks and reads the referral (r, which m's one-time filter evaluates before m
		// locks anything): the order UpdateReferral takes them in.
		nowUS := sqlstore.Micros(now)
		var next, delivered any = nil, nil
		switch res.State {
		case outbox.StatePending:
			next = sqlstore.Micros(res.NextAttemptAt)
		case outbox.StateDelivered:
			delivered = nowUS
		case outbox.StateDead, outbox.StateInflight, outbox.StateCancelled:
		}
		var state, owner string
		var updated, successor bool
		withReferral, lockFirst, referralOut := "", "", ""
		if res.Update != nil {
			withReferral = `r AS MATERIALIZED (SELECT ` + sqlstore.ReferralCols + ` FROM referrals
				WHERE id = (SELECT referral_id FROM outbox_messages WHERE id = $1) FOR UPDATE),`
			lockFirst = ` AND (SELECT count(*) FROM r) >= 0`
			referralOut = strings.ReplaceAll(", "+sqlstore.ReferralCols, ", ", ", r.") + ` FROM m CROSS JOIN r`
		} else {
			referralOut = ` FROM m`
		}
		row := w.QueryRowContext(w.ctx, `WITH `+withReferral+` m AS (
				SELECT id, state, lease_owner FROM outbox_messages WHERE id = $1`+lockFirst+` FOR UPDATE),
			a AS (INSERT INTO outbox_attempts (message_id, n, started_at, latency_us, status_code, error)
				SELECT $1, (SELECT COALESCE(MAX(n), 0) + 1 FROM outbox_attempts WHERE message_id = $1),
					$2, $3, $4, $5 FROM m),
			u AS (UPDATE outbox_messages o SET state = $6, attempts = o.attempts + 1, last_error = $5,
					lease_owner = '', lease_until = 0, next_attempt_at = COALESCE($7::bigint, o.next_attempt_at),
					delivered_at = COALESCE($8::bigint, o.delivered_at)
				FROM m WHERE o.id = m.id AND m.state = 'inflight' AND m.lease_owner = $9
				RETURNING EXISTS (SELECT 1 FROM outbox_messages e WHERE e.chain_key = o.chain_key
						AND e.state IN ('pending', 'inflight', 'dead') AND e.seq > o.seq)
					OR (o.destination_kind = 'subscription' AND EXISTS (SELECT 1 FROM outbox_messages e
						WHERE e.destination_kind = o.destination_kind AND e.destination_id = o.destination_id
						AND e.state IN ('pending', 'inflight', 'dead') AND e.seq > o.seq)) AS succ)
			SELECT m.state, m.lease_owner, EXISTS (SELECT 1 FROM u), COALESCE((SELECT succ FROM u), false)`+referralOut,
			id, sqlstore.Micros(started), a.Latency.Microseconds(), a.StatusCode, errText,
			string(res.State), next, delivered, res.Owner)
		var cur outbox.Referral
		var err error
		if res.Update != nil {
			cur, err = dialect().ScanReferral(prefixScanner{row, []any{&state, &owner, &updated, &successor}})
		} else {
			err = row.Scan(&state, &owner, &updated, &successor)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("postgres: complete attempt: %w", outbox.ErrNotFound)
		}
		if err != nil {
			return driverErr("complete attempt", err)
		}
		if !updated {
			leaseLost = true
			return nil
		}
		// Other instances are told (NOTIFY) when the outcome may let them claim something: a retry (due
		// again, maybe before they would look) or a delivery unblocking a later message; a dead message
		// keeps its successors blocked, and one without successors frees nothing. NOTIFY serialises commits
		// cluster-wide (its queue lock is held through the WAL flush), so a drain of independent messages
		// must not pay it on every completion. This instance's dispatcher is signalled in every case.
		tell := res.State == outbox.StatePending || (res.State == outbox.StateDelivered && successor)
		w.changed = false
		if res.Update != nil {
			if _, err := s.applyUpdate(w, cur, now, res.Update, outbox.CauseAttempt); err != nil {
				return err
			}
		}
		// applyUpdate sets changed when it wrote or withdrew messages: those always need telling.
		w.quiet = !tell && !w.changed
		w.changed = true
		return nil
	})
	if err != nil {
		return err
	}
	if leaseLost {
		return fmt.Errorf("postgres: complete attempt: %w", outbox.ErrLeaseLost)
	}
	return nil
}

// prefixScanner scans a row whose first columns go to pre and the rest to the caller's destinations.
type prefixScanner struct {
	row *sql.Row
	pre []any
}

// Scan scans the row into pre followed by dest.
func (p prefixScanner) Scan(dest ...any) error {
	return p.row.Scan(append(slices.Clip(p.pre), dest...)...)
}

// truncate caps an error text at maxErrorLen bytes without cutting a rune, and makes it storable as
// PostgreSQL text (valid UTF-8, no NUL).
func truncate(s string) string {
	if len(s) > maxErrorLen {
		s = s[:maxErrorLen]
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, ""), "\x00", "")
}

// ReleaseMessages returns owner's inflight messages to pending, due at the latest now, and says how many.
func (s *Store) ReleaseMessages(ctx context.Context, owner string, now time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(w *wtx) error {
		res, err := w.ExecContext(w.ctx, `UPDATE outbox_messages SET state = 'pending', lease_owner = '',
			lease_until = 0, next_attempt_at = LEAST(next_attempt_at, $1)
			WHERE state = 'inflight' AND lease_owner = $2`, sqlstore.Micros(now), owner)
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
		return nil, errors.New("postgres: replay: name message ids or give a filter")
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
				cur, err := dialect().ReadReferral(w.ctx, w, "id = $1 FOR UPDATE", rid)
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
	// On the queue pool (see queueSettings): the ordered index scans, whatever the statistics.
	var pending, lease sql.NullInt64
	err := s.qdb.QueryRowContext(ctx, `SELECT
		(SELECT m.next_attempt_at FROM outbox_messages m WHERE m.state = 'pending' AND `+headOnly+`
			ORDER BY m.next_attempt_at, m.seq LIMIT 1),
		(SELECT m.lease_until FROM outbox_messages m WHERE m.state = 'inflight' AND `+headOnly+`
			ORDER BY m.lease_until, m.seq LIMIT 1)`).Scan(&pending, &lease)
	if err != nil {
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

// headScan is PostgreSQL's spelling of the claim scan. SKIP LOCKED: rows another claim (or a withdrawal, a
// completion, a replay) holds are left to it; a row changed and committed since the statement's snapshot is
// re-checked against the WHERE.
func headScan() sqlstore.HeadScan {
	return sqlstore.HeadScan{HeadOnly: headOnly, From: func(string) string { return ` FROM outbox_messages m` },
		Suffix: ` FOR UPDATE OF m SKIP LOCKED`}
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
