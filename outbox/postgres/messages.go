package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
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

// heads reads up to limit claimable messages of one kind (pending and due, or inflight with an expired
// lease) in index order, taking room as it goes: the shared scan (sqlstore.Dialect.Heads) as headScan
// spells it for this backend.
func (s *Store) heads(ctx context.Context, w *sqlstore.Tx, state outbox.MessageState, nowUS int64, limit int, r *sqlstore.Room) ([]outbox.Message, error) {
	return s.d.Heads(ctx, w, headScan(), state, nowUS, limit, r)
}

// pendingByDestination leases up to limit claimable pending messages (due, heads of their chains) to owner
// until until when destinations are limited, and returns them as leased. One statement: it finds the
// destinations holding pending messages with a skip scan of outbox_pending_destination, gives a paused one
// no room (outbox_pauses_active), takes, for each destination with room, its first claimable messages up to
// that room (FOR UPDATE SKIP LOCKED), keeps the
// earliest limit of those in (NextAttemptAt, Seq) order and leases them. This is the set a scan of all due
// messages in order would take, but a destination without room costs nothing, where such a scan would read
// its whole backlog on every claim.
//
// With guard, it leases nothing if any lease has expired (expired leases are claimed first, and take room:
// the caller then claims in a transaction) and says so.
//
// The scan's limit is written into the statement, not bound: the queue pool plans its statements
// generically (queueSettings), and a generic plan made without the limit cost 3.6–4.3 ms a claim against
// 0.5 ms (pg_stat_statements) in 2 of 8 20,000-message drains, which then ran at 600–700 msg/s instead of
// 1,400–1,600. None of 12 drains showed it with the limit written in (issue 12). What is written is the
// limit's bucket (sqlstore.Padded: the least power of two at least limit, so that the claims of a
// dispatcher with 32 places share 6 statements), and the rows it keeps are numbered in order so that only
// the first limit are leased: the dispatcher asks for as many as it has free places (up to its concurrency, 32 by default; every
// limit from 1 to 31 was seen at 200 referrals/s), and one text per limit made each queue session plan up to
// 32 statements, 8–17 ms each on a small server, in its first seconds, on the path of a delivery.
func (s *Store) pendingByDestination(ctx context.Context, q sqlstore.Querier, nowUS int64, limit int, r *sqlstore.Room, owner string, until int64, guard bool) (ms []outbox.Message, expired bool, err error) {
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
		sentinel = ` UNION ALL SELECT '', 0, '', '', '', '', ''::bytea, '', 0, 0, 0, '', 0, 0, '', 0, '' WHERE ` + anyExpired
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
		SELECT d.dkind, d.did, CASE WHEN `+pausedNow("d.dkind", "d.did")+` THEN 0 ELSE COALESCE(x.n, $4) END
		FROM dests d
		LEFT JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS x (kind, id, n)
			ON x.kind = d.dkind AND x.id = d.did
	), picked (pid, k) AS (
		SELECT top.id, row_number() OVER (ORDER BY top.next_attempt_at, top.seq) FROM (
			SELECT m.id, m.next_attempt_at, m.seq FROM room CROSS JOIN LATERAL (
				SELECT m.id, m.next_attempt_at, m.seq FROM outbox_messages m
				WHERE m.state = 'pending' AND m.destination_kind = room.rkind AND m.destination_id = room.rid
					AND m.next_attempt_at <= $5 AND `+headOnly+`
				ORDER BY m.next_attempt_at, m.seq LIMIT room.rn FOR UPDATE OF m SKIP LOCKED) m
			WHERE room.rn > 0`+guardTerm+`
			ORDER BY m.next_attempt_at, m.seq LIMIT `+strconv.Itoa(sqlstore.Padded(limit))+`) top
	), leased AS (
		UPDATE outbox_messages SET state = 'inflight', lease_owner = $6, lease_until = $7
		FROM picked WHERE id = picked.pid AND picked.k <= $8
		RETURNING `+sqlstore.MessageCols+`
	)
	SELECT `+sqlstore.MessageCols+`, `+sqlstore.PracticeCol("leased")+` FROM leased`+sentinel, kinds, ids, ns, def, nowUS, owner, until, limit)
	if err != nil {
		return nil, false, s.d.DriverErr("claim", err)
	}
	all, err := s.d.CollectMessagesWithPractice(rows, "claim")
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

// claim leases up to limit (in (0, sqlstore.MaxLimit]) deliverable messages to owner until now+lease, on
// the queue pool, returned in (NextAttemptAt, Seq) order: inflight messages whose lease has expired (taken
// first: they are the oldest work) and pending messages due at now, each only if it is the oldest
// unfinished message of its referral and destination (for subscription destinations: of the destination),
// within f's per-destination limits. With limits and no expired lease (the usual case) it is one autocommit
// statement (pendingByDestination); otherwise one transaction that reads with FOR UPDATE SKIP LOCKED and
// leases what it read.
func (s *Store) claim(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, f outbox.ClaimFilter) ([]outbox.Message, error) {
	if s.closed() {
		return nil, ErrClosed
	}
	nowUS, until := sqlstore.Micros(now), sqlstore.Micros(now.Add(lease))
	limited := f.PerDestination > 0 || len(f.Room) > 0
	if limited {
		// The usual case, one autocommit statement: no lease has expired.
		for attempt := 0; ; attempt++ {
			r := sqlstore.NewRoom(f)
			ms, expired, err := s.pendingByDestination(ctx, s.qdb, nowUS, limit, r, owner, until, true)
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
	// The rare way (expired leases, or no limits): the shared scan, which reads the pauses from f.
	paused, err := s.PausedDestinations(ctx)
	if err != nil {
		return nil, err
	}
	f = sqlstore.HoldPaused(f, paused)
	limited = f.PerDestination > 0 || len(f.Room) > 0
	var out []outbox.Message
	err = s.writeWith(ctx, s.qdb, func(ctx context.Context, w *sqlstore.Tx) error {
		r := sqlstore.NewRoom(f)
		toLease, err := s.heads(ctx, w, outbox.StateInflight, nowUS, limit, r) // read, still to be leased
		if err != nil {
			return err
		}
		var leased []outbox.Message
		if limited {
			leased, _, err = s.pendingByDestination(ctx, w, nowUS, limit-len(toLease), r, owner, until, false)
		} else {
			var pending []outbox.Message
			pending, err = s.heads(ctx, w, outbox.StatePending, nowUS, limit-len(toLease), r)
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
			if _, err := w.ExecContext(ctx, `UPDATE outbox_messages SET state = 'inflight', lease_owner = $1,
				lease_until = $2 WHERE id = ANY($3)`, owner, until, claimed); err != nil {
				return s.d.DriverErr("claim", err)
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

// successorTerm, in a RETURNING of outbox_messages o, says whether a later unfinished message waits behind o
// (its chain, or its subscription destination): only then can a delivery make work for another instance
// (Recorded.Successor).
const successorTerm = `EXISTS (SELECT 1 FROM outbox_messages e WHERE e.chain_key = o.chain_key
						AND e.state IN ('pending', 'inflight', 'dead') AND e.seq > o.seq)
					OR (o.destination_kind = 'subscription' AND EXISTS (SELECT 1 FROM outbox_messages e
						WHERE e.destination_kind = o.destination_kind AND e.destination_id = o.destination_id
						AND e.state IN ('pending', 'inflight', 'dead') AND e.seq > o.seq))`

// recordAttemptsStatement records a batch of attempts (the arrays $1 to $11, one element per attempt: message
// id, started, latency, status code, error, response, next state, next attempt, delivered, lease owner, with
// referral) in one statement, as recordAttempt does one: it locks the referrals asked for, then the messages,
// each in id order (the order UpdateReferral takes a referral and its messages in; in id order, two batches
// never wait for each other in a cycle), records every attempt (numbered by one call of
// socialrx_next_attempts for the batch, migration 96), moves on the messages whose lease is still held, and
// returns one row per message found: its id, lease state and owner as locked, whether it moved,
// whether a successor waits, and its referral's columns (NULL unless asked for).
var recordAttemptsStatement = `WITH v AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[],
				$5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::bool[])
			AS v(message_id, started_at, latency_us, status_code, error, response, state, next_at, delivered_at,
				owner, with_referral)),
		r AS MATERIALIZED (SELECT id AS rid, ` + sqlstore.ReferralCols + ` FROM referrals
			WHERE id IN (SELECT o.referral_id FROM outbox_messages o JOIN v ON o.id = v.message_id WHERE v.with_referral)
			ORDER BY id FOR UPDATE),
		m AS MATERIALIZED (SELECT o.id, o.state, o.lease_owner, o.referral_id FROM outbox_messages o
			WHERE o.id IN (SELECT message_id FROM v) AND (SELECT count(*) FROM r) >= 0
			ORDER BY o.id FOR UPDATE),
		a AS (INSERT INTO outbox_attempts (message_id, n, started_at, latency_us, status_code, error, response)
			SELECT v.message_id, x.next, v.started_at, v.latency_us, v.status_code, v.error, v.response
			FROM v JOIN m ON m.id = v.message_id
				JOIN socialrx_next_attempts(ARRAY(SELECT id FROM m)) AS x ON x.message = v.message_id),
		u AS (UPDATE outbox_messages o SET state = v.state, attempts = o.attempts + 1, last_error = v.error,
				lease_owner = '', lease_until = 0, next_attempt_at = COALESCE(v.next_at, o.next_attempt_at),
				delivered_at = COALESCE(v.delivered_at, o.delivered_at)
			FROM v JOIN m ON m.id = v.message_id
			WHERE o.id = v.message_id AND m.state = 'inflight' AND m.lease_owner = v.owner
			RETURNING o.id, ` + successorTerm + ` AS succ)
	SELECT m.id, m.state, m.lease_owner, u.id IS NOT NULL, COALESCE(u.succ, false), r.rid IS NOT NULL,
		pg_current_xact_id()::text, ` + strings.ReplaceAll(sqlstore.ReferralCols, ", ", ", r.") + `
	FROM v JOIN m ON m.id = v.message_id LEFT JOIN u ON u.id = v.message_id
		LEFT JOIN r ON v.with_referral AND r.rid = m.referral_id`

// recordAttempts is sqlstore.Backend.RecordAttempts: one attempt in recordAttempt's statement, a batch in
// recordAttemptsStatement (one round trip for all). A batch naming a message twice, or a referral twice
// among the attempts that read theirs, is recorded one attempt at a time, in order (never seen from the
// dispatcher, whose leases are its own; kept exact all the same).
func (s *Store) recordAttempts(ctx context.Context, w *sqlstore.Tx, as []sqlstore.AttemptRow) ([]sqlstore.Recorded, error) {
	if len(as) == 1 || !sqlstore.DistinctMessages(as) {
		recs := make([]sqlstore.Recorded, len(as))
		for i, a := range as {
			var err error
			if recs[i], err = s.recordAttempt(ctx, w, a); err != nil {
				return nil, err
			}
		}
		return recs, nil
	}
	n := len(as)
	var (
		ids, errs, resps, states, owners = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		started, latency                 = make([]int64, n), make([]int64, n)
		codes                            = make([]int32, n)
		next, delivered                  = make([]*int64, n), make([]*int64, n)
		withRef                          = make([]bool, n)
	)
	for i, a := range as {
		ids[i], errs[i], resps[i], states[i], owners[i] = a.MessageID, a.Error, a.Response, string(a.State), a.Owner
		started[i], latency[i], codes[i], withRef[i] = a.StartedUS, a.LatencyUS, int32(a.StatusCode), a.WithReferral
		next[i], delivered[i] = optMicros(a.Next), optMicros(a.Delivered)
	}
	rows, err := w.QueryContext(ctx, recordAttemptsStatement, ids, started, latency, codes, errs, resps, states, next,
		delivered, owners, withRef)
	if err != nil {
		return nil, s.d.DriverErr("complete attempts", err)
	}
	defer rows.Close()
	found := make(map[string]sqlstore.Recorded, n)
	refOf := make(map[string]string, n) // message id → its referral's id, when read
	for rows.Next() {
		var id, state, owner, xid string
		var rec sqlstore.Recorded
		var hasRef bool
		ref, err := scanOptionalReferral(s.d, rows, &hasRef, []any{&id, &state, &owner, &rec.Moved, &rec.Successor, &hasRef, &xid})
		if err != nil {
			return nil, err
		}
		noteWriter(w, xid)
		if hasRef {
			rec.Referral = ref
			if other, dup := refOf[ref.Record.ID]; dup {
				return nil, fmt.Errorf("postgres: complete attempts: messages %s and %s read one referral", other, id)
			}
			refOf[ref.Record.ID] = id
		}
		found[id] = rec
	}
	if err := rows.Err(); err != nil {
		return nil, s.d.DriverErr("complete attempts", err)
	}
	recs := make([]sqlstore.Recorded, n)
	for i, a := range as {
		rec, ok := found[a.MessageID]
		if !ok {
			return nil, fmt.Errorf("postgres: complete attempt: %w", outbox.ErrNotFound)
		}
		if a.WithReferral && rec.Moved && rec.Referral.Record.ID == "" {
			return nil, fmt.Errorf("postgres: complete attempt: message %s: its referral was not read", a.MessageID)
		}
		recs[i] = rec
	}
	return recs, nil
}

// optMicros is an AttemptRow's optional time (nil, or unix microseconds) as a nullable array element.
func optMicros(v any) *int64 {
	if us, ok := v.(int64); ok {
		return &us
	}
	return nil
}

// recordAttempt is sqlstore.Backend.RecordAttempt in one statement: lock the message, record the attempt
// and, if the owner still holds the lease, move the message to its next state. succ says whether a later
// unfinished message waits behind it (its chain, or its subscription destination): only then can a delivery
// make work for another instance (Recorded.Successor). With a.WithReferral, it first locks and reads the
// referral (r, which m's one-time filter evaluates before m locks anything): the order UpdateReferral takes
// them in.
func (s *Store) recordAttempt(ctx context.Context, w *sqlstore.Tx, a sqlstore.AttemptRow) (sqlstore.Recorded, error) {
	var state, owner string
	var rec sqlstore.Recorded
	withReferral, lockFirst, referralOut := "", "", ""
	if a.WithReferral {
		withReferral = `r AS MATERIALIZED (SELECT ` + sqlstore.ReferralCols + ` FROM referrals
				WHERE id = (SELECT referral_id FROM outbox_messages WHERE id = $1) FOR UPDATE),`
		lockFirst = ` AND (SELECT count(*) FROM r) >= 0`
		referralOut = strings.ReplaceAll(", "+sqlstore.ReferralCols, ", ", ", r.") + ` FROM m CROSS JOIN r`
	} else {
		referralOut = ` FROM m`
	}
	row := w.QueryRowContext(ctx, `WITH `+withReferral+` m AS (
				SELECT id, state, lease_owner FROM outbox_messages WHERE id = $1`+lockFirst+` FOR UPDATE),
			a AS (INSERT INTO outbox_attempts (message_id, n, started_at, latency_us, status_code, error, response)
				SELECT $1, socialrx_next_attempt($1),
					$2, $3, $4, $5, $10 FROM m),
			u AS (UPDATE outbox_messages o SET state = $6, attempts = o.attempts + 1, last_error = $5,
					lease_owner = '', lease_until = 0, next_attempt_at = COALESCE($7::bigint, o.next_attempt_at),
					delivered_at = COALESCE($8::bigint, o.delivered_at)
				FROM m WHERE o.id = m.id AND m.state = 'inflight' AND m.lease_owner = $9
				RETURNING EXISTS (SELECT 1 FROM outbox_messages e WHERE e.chain_key = o.chain_key
						AND e.state IN ('pending', 'inflight', 'dead') AND e.seq > o.seq)
					OR (o.destination_kind = 'subscription' AND EXISTS (SELECT 1 FROM outbox_messages e
						WHERE e.destination_kind = o.destination_kind AND e.destination_id = o.destination_id
						AND e.state IN ('pending', 'inflight', 'dead') AND e.seq > o.seq)) AS succ)
			SELECT m.state, m.lease_owner, EXISTS (SELECT 1 FROM u), COALESCE((SELECT succ FROM u), false),
				pg_current_xact_id()::text`+referralOut,
		a.MessageID, a.StartedUS, a.LatencyUS, a.StatusCode, a.Error, string(a.State), a.Next, a.Delivered, a.Owner,
		a.Response)
	var err error
	var xid string
	if a.WithReferral {
		rec.Referral, err = s.d.ScanReferral(prefixScanner{row, []any{&state, &owner, &rec.Moved, &rec.Successor, &xid}})
	} else {
		err = row.Scan(&state, &owner, &rec.Moved, &rec.Successor, &xid)
	}
	if err == nil {
		noteWriter(w, xid)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return sqlstore.Recorded{}, fmt.Errorf("postgres: complete attempt: %w", outbox.ErrNotFound)
	}
	if err != nil {
		return sqlstore.Recorded{}, s.d.DriverErr("complete attempt", err)
	}
	return rec, nil
}

// noteWriter keeps xid, read by a statement of w, as w's transaction id for its stamps (stamp), so that a
// completion's Task version does not ask for it in a round trip of its own.
func noteWriter(w *sqlstore.Tx, xid string) {
	if w.Stamps.Writer == "" {
		w.Stamps.Writer = xid
	}
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

// due reads when the next claim can succeed (sqlstore.Backend.Due) in one statement on the queue pool (see
// queueSettings): the ordered index scans, whatever the statistics, leaving out the paused destinations.
func (s *Store) due(ctx context.Context, paused []mapping.Destination) (pending, lease sql.NullInt64, err error) {
	skip, args := sqlstore.ExcludeDestinations(paused)
	skip += ` AND NOT ` + pausedNow("m.destination_kind", "m.destination_id")
	err = s.qdb.QueryRowContext(ctx, sqlstore.RebindDollar(`SELECT
		(SELECT m.next_attempt_at FROM outbox_messages m WHERE m.state = 'pending'`+skip+` AND `+headOnly+`
			ORDER BY m.next_attempt_at, m.seq LIMIT 1),
		(SELECT m.lease_until FROM outbox_messages m WHERE m.state = 'inflight'`+skip+` AND `+headOnly+`
			ORDER BY m.lease_until, m.seq LIMIT 1)`), append(args, args...)...).Scan(&pending, &lease)
	if err != nil {
		return pending, lease, s.d.DriverErr("next due", err)
	}
	return pending, lease, nil
}

// pausedNow is true when the destination (kind, id: the columns of the statement's row) is paused now
// (served by outbox_pauses_active): NextDue and the claim read the pauses in their own statement
// (sqlstore.PauseHolder).
func pausedNow(kind, id string) string {
	return `EXISTS (SELECT 1 FROM outbox_pauses p WHERE p.resumed_at = 0
		AND p.destination_kind = ` + kind + ` AND p.destination_id = ` + id + `)`
}

// headScan is PostgreSQL's spelling of the claim scan. SKIP LOCKED: rows another claim (or a withdrawal, a
// completion, a replay) holds are left to it; a row changed and committed since the statement's snapshot is
// re-checked against the WHERE.
func headScan() sqlstore.HeadScan {
	return sqlstore.HeadScan{HeadOnly: headOnly, From: func(string) string { return ` FROM outbox_messages m` },
		Suffix: ` FOR UPDATE OF m SKIP LOCKED`, Limit: sqlstore.ExactLimit}
}

// scanOptionalReferral scans a row of pre followed by sqlstore.ReferralCols, which are NULL unless *has (one
// of pre) is true: the referral when it is, the zero Referral when not.
func scanOptionalReferral(d sqlstore.Dialect, rows *sql.Rows, has *bool, pre []any) (outbox.Referral, error) {
	var version, created, updated sql.NullInt64
	var fingerprint sql.NullString
	var c sqlstore.ReferralColumns
	if err := rows.Scan(append(pre, &version, &created, &updated, &fingerprint, &c.Identifiers, &c.Referral,
		&c.ServiceRequest)...); err != nil {
		return outbox.Referral{}, d.DriverErr("complete attempts", err)
	}
	if !*has {
		return outbox.Referral{}, nil
	}
	c.Version, c.CreatedUS, c.UpdatedUS, c.Fingerprint = int(version.Int64), created.Int64, updated.Int64, fingerprint.String
	return d.DecodeReferral(c)
}
