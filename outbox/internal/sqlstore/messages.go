package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// MessageCols are the columns ScanMessage reads, in order.
const MessageCols = `id, seq, referral_id, destination_kind, destination_id, type, payload, state, attempts,
	created_at, next_attempt_at, lease_owner, lease_until, delivered_at, last_error, budget_from`

// PracticeCol, after MessageCols in a row of outbox_messages (or of a CTE returning its columns) named
// table, is the referring practice of the message's referral (empty for none): a claim that reads it saves the
// dispatcher a round trip per delivery (Message.PracticeODS). CollectMessagesWithPractice reads it.
func PracticeCol(table string) string {
	return `COALESCE((SELECT pr.practice_ods FROM referrals pr WHERE pr.id = ` + table + `.referral_id), '')`
}

// ScanMessage reads the MessageCols of one row.
func ScanMessage(sc Scanner) (outbox.Message, error) {
	return scanMessage(sc, false)
}

// scanMessage reads the MessageCols of one row, and PracticeCol after them when practice is set.
func scanMessage(sc Scanner, practice bool) (outbox.Message, error) {
	var (
		m                                         outbox.Message
		referral                                  sql.NullString // NULL: a Subscription's handshake or heartbeat
		kind, dest, typ, state                    string
		payload                                   []byte
		created, next, leaseUntil, delivered, bud int64
	)
	dst := []any{&m.ID, &m.Seq, &referral, &kind, &dest, &typ, &payload, &state, &m.Attempts,
		&created, &next, &m.LeaseOwner, &leaseUntil, &delivered, &m.LastError, &bud}
	if practice {
		dst = append(dst, &m.PracticeODS)
	}
	if err := sc.Scan(dst...); err != nil {
		return outbox.Message{}, err
	}
	m.ReferralID = referral.String
	m.Destination = mapping.Destination{Kind: mapping.DestinationKind(kind), ID: dest}
	m.Type = mapping.EventType(typ)
	m.Payload = payload
	m.State = outbox.MessageState(state)
	m.CreatedAt = FromMicros(created)
	m.NextAttemptAt = FromMicros(next)
	m.LeaseUntil = FromMicros(leaseUntil)
	m.DeliveredAt = FromMicros(delivered)
	m.BudgetFrom = FromMicros(bud)
	return m, nil
}

// CollectMessages reads and closes rows of MessageCols; op names the operation in errors.
func (d Dialect) CollectMessages(rows *sql.Rows, op string) ([]outbox.Message, error) {
	return d.collectMessages(rows, op, false)
}

// CollectMessagesWithPractice reads and closes rows of MessageCols and PracticeCol; op names the operation
// in errors.
func (d Dialect) CollectMessagesWithPractice(rows *sql.Rows, op string) ([]outbox.Message, error) {
	return d.collectMessages(rows, op, true)
}

func (d Dialect) collectMessages(rows *sql.Rows, op string, practice bool) ([]outbox.Message, error) {
	defer rows.Close()
	var out []outbox.Message
	for rows.Next() {
		m, err := scanMessage(rows, practice)
		if err != nil {
			return nil, d.DriverErr(op, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, d.DriverErr(op, err)
	}
	return out, nil
}

// ReadMessage reads one message by id (ErrNotFound if none), locking its row (d.Lock) when lock is set.
func (d Dialect) ReadMessage(ctx context.Context, q Querier, id string, lock bool) (outbox.Message, error) {
	query := d.rebind(selectMessage)
	if lock {
		query += d.Lock
	}
	m, err := ScanMessage(q.QueryRowContext(ctx, query, id))
	if errors.Is(err, sql.ErrNoRows) {
		return outbox.Message{}, fmt.Errorf("%s: message: %w", d.Name, outbox.ErrNotFound)
	}
	if err != nil {
		return outbox.Message{}, d.DriverErr("read message", err)
	}
	return m, nil
}

// Room tracks how many more messages of each destination a claim may take.
type Room struct {
	// Filter is the claim's per-destination limits.
	Filter outbox.ClaimFilter
	// Used counts the messages of each destination taken so far.
	Used map[mapping.Destination]int
}

// NewRoom is an empty Room for f.
func NewRoom(f outbox.ClaimFilter) *Room {
	return &Room{Filter: f, Used: map[mapping.Destination]int{}}
}

// Left is how many more messages of d may be taken (-1: no limit).
func (r *Room) Left(d mapping.Destination) int {
	capacity := -1
	if n, ok := r.Filter.Room[d]; ok {
		capacity = max(n, 0)
	} else if r.Filter.PerDestination > 0 {
		capacity = r.Filter.PerDestination
	}
	if capacity < 0 {
		return -1
	}
	return max(capacity-r.Used[d], 0)
}

// Full lists the destinations with no room left, in a stable order.
func (r *Room) Full() []mapping.Destination {
	set := map[mapping.Destination]bool{}
	for d, n := range r.Filter.Room {
		if n <= 0 {
			set[d] = true
		}
	}
	for d := range r.Used {
		if r.Left(d) == 0 {
			set[d] = true
		}
	}
	out := slices.Collect(maps.Keys(set))
	slices.SortFunc(out, func(a, b mapping.Destination) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// HeadScan is a backend's spelling of the claim scan Heads runs.
type HeadScan struct {
	// HeadOnly is the term over m that keeps the heads of their chains only.
	HeadOnly string
	// From is the FROM clause over outbox_messages m that scans the named partial index.
	From func(index string) string
	// Suffix follows the ORDER BY … LIMIT of the scan (row locks), or "".
	Suffix string
	// Limit is the scan's LIMIT clause for n rows, written into the statement rather than bound (a bound
	// limit is re-planned on every execution by SQLite, and planned without its value by PostgreSQL's generic
	// plans): LimitLiteral on SQLite, whose scan stops reading once it has what it needs; ExactLimit on
	// PostgreSQL, whose scan locks every row it returns.
	Limit func(n int) string
}

// ExactLimit is " LIMIT n".
func ExactLimit(n int) string { return " LIMIT " + strconv.Itoa(n) }

// LimitLiteral is " LIMIT n" with n rounded up to a power of two: a limit written into the statement instead
// of bound to it. SQLite reads a bound LIMIT while planning a statement and marks the statement to be
// prepared again whenever that parameter is bound again — on every execution, so a cached statement is
// parsed and planned each time (in a delivery profile under backlog, re-preparing the claim's scans took
// about 4% of the process; issue 12). A literal from a handful of values keeps each statement text prepared
// once. The caller reads no more rows than it needs.
func LimitLiteral(n int) string {
	return " LIMIT " + strconv.Itoa(Padded(n))
}

// Heads reads up to limit claimable messages of one kind (pending and due, or inflight with an expired
// lease) in index order, inside the claim's write transaction w, taking room as it goes, each with its
// referral's practice (PracticeCol). When a destination runs out of room, the scan restarts after the last
// row with that destination excluded, so each restart is bounded by the destinations.
func (d Dialect) Heads(ctx context.Context, w Querier, hs HeadScan, state outbox.MessageState, nowUS int64, limit int, r *Room) ([]outbox.Message, error) {
	key, index := "next_attempt_at", "outbox_pending_due"
	if state == outbox.StateInflight {
		key, index = "lease_until", "outbox_inflight_lease"
	}
	var out []outbox.Message
	var after *[2]int64
	for len(out) < limit {
		q := `SELECT ` + MessageCols + `, ` + PracticeCol("m") + hs.From(index) +
			` WHERE m.state = '` + string(state) + `' AND m.` + key + ` <= ?` // a literal: the partial index needs it
		args := []any{nowUS}
		for _, dest := range r.Full() {
			q += ` AND NOT (m.destination_kind = ? AND m.destination_id = ?)`
			args = append(args, string(dest.Kind), dest.ID)
		}
		if after != nil {
			q += ` AND (m.` + key + `, m.seq) > (?, ?)`
			args = append(args, after[0], after[1])
		}
		q += ` AND ` + hs.HeadOnly + ` ORDER BY m.` + key + `, m.seq`
		q += hs.Limit(limit-len(out)) + hs.Suffix
		rows, err := w.QueryContext(ctx, d.rebind(q), args...)
		if err != nil {
			return nil, d.DriverErr("claim", err)
		}
		restart := false
		for len(out) < limit && rows.Next() { // a literal limit may let the scan return more rows than needed
			m, err := scanMessage(rows, true)
			if err != nil {
				rows.Close()
				return nil, d.DriverErr("claim", err)
			}
			k := Micros(m.NextAttemptAt)
			if state == outbox.StateInflight {
				k = Micros(m.LeaseUntil)
			}
			after = &[2]int64{k, m.Seq}
			if r.Left(m.Destination) == 0 {
				continue
			}
			out = append(out, m)
			r.Used[m.Destination]++
			if r.Left(m.Destination) == 0 && len(out) < limit {
				restart = true
				break
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, d.DriverErr("claim", err)
		}
		if !restart {
			break
		}
	}
	return out, nil
}

// ValidNext reports whether a delivery attempt may move a message to st.
func ValidNext(st outbox.MessageState) bool {
	switch st {
	case outbox.StateDelivered, outbox.StatePending, outbox.StateDead:
		return true
	case outbox.StateInflight, outbox.StateCancelled, outbox.StateDiscarded:
	}
	return false
}

// MessageWhere turns a MessageQuery into a WHERE clause (without the keyword, ? placeholders) and its
// arguments.
func MessageWhere(q outbox.MessageQuery) (string, []any) {
	where := []string{"1 = 1"}
	var args []any
	if len(q.States) > 0 {
		where = append(where, "state IN ("+Placeholders(len(q.States))+")")
		for _, st := range q.States {
			args = append(args, string(st))
		}
	}
	if q.Destination != nil {
		where = append(where, "destination_kind = ? AND destination_id = ?")
		args = append(args, string(q.Destination.Kind), q.Destination.ID)
	}
	if q.ServiceID != "" {
		where = append(where, "destination_kind = ? AND destination_id = ?")
		args = append(args, string(mapping.DestinationService), q.ServiceID)
	}
	if q.ReferralID != "" {
		where = append(where, "referral_id = ?")
		args = append(args, q.ReferralID)
	}
	if len(q.Types) > 0 {
		where = append(where, "type IN ("+Placeholders(len(q.Types))+")")
		for _, t := range q.Types {
			args = append(args, string(t))
		}
	}
	if !q.CreatedBefore.IsZero() {
		where = append(where, "created_at < ?")
		args = append(args, Micros(q.CreatedBefore))
	}
	if q.AfterSeq > 0 {
		where = append(where, "seq > ?")
		args = append(args, q.AfterSeq)
	}
	return strings.Join(where, " AND "), args
}

// ListMessages returns messages matching q in Seq order (default limit 100, at most 1000).
func (d Dialect) ListMessages(ctx context.Context, db Querier, q outbox.MessageQuery) ([]outbox.Message, error) {
	where, args := MessageWhere(q)
	if d.VisibleSeqs != "" {
		where += " AND " + d.VisibleSeqs
	}
	rows, err := db.QueryContext(ctx, d.rebind(selectMessages+where+` ORDER BY seq LIMIT ?`), append(args, ClampLimit(q.Limit))...)
	if err != nil {
		return nil, d.DriverErr("list messages", err)
	}
	return d.CollectMessages(rows, "list messages")
}

// GetMessage returns one message with its attempts (by number) and replays (oldest first).
func (d Dialect) GetMessage(ctx context.Context, db Querier, id string) (outbox.MessageDetail, error) {
	m, err := d.ReadMessage(ctx, db, id, false)
	if err != nil {
		return outbox.MessageDetail{}, err
	}
	md := outbox.MessageDetail{Message: m}
	rows, err := db.QueryContext(ctx, d.rebind(selectAttempts), id)
	if err != nil {
		return outbox.MessageDetail{}, d.DriverErr("read attempts", err)
	}
	defer rows.Close()
	for rows.Next() {
		a := outbox.Attempt{MessageID: id}
		var started, latency int64
		if err := rows.Scan(&a.N, &started, &latency, &a.StatusCode, &a.Error, &a.Response); err != nil {
			return outbox.MessageDetail{}, d.DriverErr("read attempts", err)
		}
		a.StartedAt = FromMicros(started)
		a.Latency = time.Duration(latency) * time.Microsecond
		md.Attempts = append(md.Attempts, a)
	}
	if err := rows.Err(); err != nil {
		return outbox.MessageDetail{}, d.DriverErr("read attempts", err)
	}
	rows.Close()
	rrows, err := db.QueryContext(ctx, d.rebind(selectReplays), id)
	if err != nil {
		return outbox.MessageDetail{}, d.DriverErr("read replays", err)
	}
	defer rrows.Close()
	for rrows.Next() {
		r := outbox.Replay{MessageID: id}
		var at int64
		if err := rrows.Scan(&at, &r.Actor, &r.Reason, &r.FromState); err != nil {
			return outbox.MessageDetail{}, d.DriverErr("read replays", err)
		}
		r.At = FromMicros(at)
		md.Replays = append(md.Replays, r)
	}
	if err := rrows.Err(); err != nil {
		return outbox.MessageDetail{}, d.DriverErr("read replays", err)
	}
	rrows.Close()
	if m.State == outbox.StateDiscarded {
		if md.Discard, err = d.readDiscard(ctx, db, id); err != nil {
			return outbox.MessageDetail{}, err
		}
	}
	return md, nil
}

// Replayable reports whether m may be replayed: dead, or (when named by id) pending but not yet due.
func Replayable(m outbox.Message, now time.Time, byID bool) bool {
	switch m.State {
	case outbox.StateDead:
		return true
	case outbox.StatePending:
		return byID && m.NextAttemptAt.After(now)
	case outbox.StateInflight, outbox.StateDelivered, outbox.StateCancelled, outbox.StateDiscarded:
	}
	return false
}

// SelectReplay picks the messages req replays, in Seq order, locking them (d.Lock) when lock is set. A
// named id that does not exist is ErrNotFound; named messages in other states are skipped. A filter selects
// dead messages only; its Limit 0 means all.
func (d Dialect) SelectReplay(ctx context.Context, q Querier, now time.Time, req outbox.ReplayRequest, lock bool) ([]outbox.Message, error) {
	var out []outbox.Message
	seen := map[string]bool{}
	for _, id := range req.IDs {
		if seen[id] {
			continue
		}
		seen[id] = true
		m, err := d.ReadMessage(ctx, q, id, lock)
		if err != nil {
			return nil, err
		}
		if Replayable(m, now, true) {
			out = append(out, m)
		}
	}
	if req.Filter != nil {
		f := *req.Filter
		if len(f.States) > 0 && !slices.Contains(f.States, outbox.StateDead) {
			return SortBySeq(out), nil
		}
		f.States = []outbox.MessageState{outbox.StateDead}
		where, args := MessageWhere(f)
		query := selectMessages + where + ` ORDER BY seq`
		if f.Limit > 0 {
			query += " LIMIT ?"
			args = append(args, f.Limit)
		}
		query = d.rebind(query)
		if lock {
			query += d.Lock
		}
		rows, err := q.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, d.DriverErr("select replay", err)
		}
		ms, err := d.CollectMessages(rows, "select replay")
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if !seen[m.ID] {
				seen[m.ID] = true
				out = append(out, m)
			}
		}
	}
	return SortBySeq(out), nil
}

// SortBySeq sorts ms by Seq, in place, and returns it.
func SortBySeq(ms []outbox.Message) []outbox.Message {
	slices.SortFunc(ms, func(a, b outbox.Message) int { return cmp.Compare(a.Seq, b.Seq) })
	return ms
}

// ReplayDue is when the i-th message (0-based) of a replay at now becomes due: now, or with req.Pace,
// max(now, req.DueFrom) + i × req.Pace.
func ReplayDue(now time.Time, req outbox.ReplayRequest, i int) time.Time {
	if req.Pace <= 0 {
		return now
	}
	from := now
	if req.DueFrom.After(now) {
		from = req.DueFrom
	}
	return from.Add(time.Duration(i) * req.Pace)
}

// MarkReplayed moves the selected messages ms back to pending inside the replay's write transaction w: due
// at now (or paced, ReplayDue), with a new retry budget from now and a Replay row recording req's actor and
// reason and the state left. It updates ms to match and returns the referrals with a replayed service
// message, in order (the ones req.Update applies to).
func (d Dialect) MarkReplayed(ctx context.Context, w Querier, ms []outbox.Message, now time.Time, req outbox.ReplayRequest) ([]string, error) {
	nowUS := Micros(now)
	var referrals []string
	for i, m := range ms {
		dueUS := Micros(ReplayDue(now, req, i))
		if _, err := w.ExecContext(ctx, d.rebind(replayMessage), dueUS, nowUS, m.ID); err != nil {
			return nil, d.DriverErr("replay", err)
		}
		if _, err := w.ExecContext(ctx, d.rebind(insertReplay), m.ID, nowUS, req.Actor, req.Reason, string(m.State)); err != nil {
			return nil, d.DriverErr("record replay", err)
		}
		ms[i].State = outbox.StatePending
		ms[i].NextAttemptAt = FromMicros(dueUS)
		ms[i].BudgetFrom = FromMicros(nowUS)
		ms[i].LeaseOwner, ms[i].LeaseUntil = "", time.Time{}
		// Update (businessStatus: the community delivery) concerns service messages only: replaying a
		// GP notification (subscription destination) leaves its referral as it is.
		if m.Destination.Kind == mapping.DestinationService && !slices.Contains(referrals, m.ReferralID) {
			referrals = append(referrals, m.ReferralID)
		}
	}
	return referrals, nil
}

// CountMessages returns the number of messages in every state (zeros included) and the creation time of
// the oldest pending message (zero when none).
func (d Dialect) CountMessages(ctx context.Context, db Querier) (map[outbox.MessageState]int, time.Time, error) {
	counts := make(map[outbox.MessageState]int, len(outbox.AllStates()))
	for _, st := range outbox.AllStates() {
		counts[st] = 0
	}
	rows, err := db.QueryContext(ctx, countMessages)
	if err != nil {
		return nil, time.Time{}, d.DriverErr("count messages", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, time.Time{}, d.DriverErr("count messages", err)
		}
		counts[outbox.MessageState(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, time.Time{}, d.DriverErr("count messages", err)
	}
	var oldest sql.NullInt64
	if err := db.QueryRowContext(ctx, d.OldestPending()).Scan(&oldest); err != nil {
		return nil, time.Time{}, d.DriverErr("count messages", err)
	}
	return counts, FromMicros(oldest.Int64), nil
}

// UseNonce records nonce until expiresAt inside write transaction w (see outbox.Nonces): it first removes
// every record expired at now, then inserts nonce unless it is there; true when it was inserted.
func (d Dialect) UseNonce(ctx context.Context, w Querier, nonce string, expiresAt, now time.Time) (bool, error) {
	if nonce == "" {
		return false, fmt.Errorf("%s: use nonce: empty nonce", d.Name)
	}
	if _, err := w.ExecContext(ctx, d.rebind(expireNonces), Micros(now)); err != nil {
		return false, d.DriverErr("expire nonces", err)
	}
	res, err := w.ExecContext(ctx, d.rebind(insertNonce), nonce, Micros(expiresAt))
	if err != nil {
		return false, d.DriverErr("use nonce", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, d.DriverErr("use nonce", err)
	}
	return n == 1, nil
}

// AttemptRow is one delivery attempt as Backend.RecordAttempts writes it.
type AttemptRow struct {
	MessageID string
	// Owner is the lease owner the attempt's result comes from: the message moves on only if it still holds
	// the lease.
	Owner                string
	StartedUS, LatencyUS int64
	StatusCode           int
	// Error is the attempt's error text, already capped and storable.
	Error string
	// Response is the start of the receiver's answer, already capped and storable.
	Response string
	// State is the message's next state (delivered, pending or dead).
	State outbox.MessageState
	// Next is the next attempt's time (unix microseconds) when State is pending, else nil (kept as it is).
	Next any
	// Delivered is the delivery time (unix microseconds) when State is delivered, else nil.
	Delivered any
	// WithReferral: an update of the message's referral follows; read it into Recorded.Referral. A backend
	// with row locks locks the referral before the message, the order UpdateReferral takes them in.
	WithReferral bool
}

// Recorded is what Backend.RecordAttempts did for one attempt.
type Recorded struct {
	// Moved: the lease was still held and the message moved to AttemptRow.State (false: lease lost; the
	// attempt alone was recorded).
	Moved bool
	// Referral is the message's referral as read with AttemptRow.WithReferral.
	Referral outbox.Referral
	// Successor: a later unfinished message waits behind this one (its chain, or its subscription
	// destination), so that a delivery may let another instance claim it. A backend that does not tell
	// reports true.
	Successor bool
}

// RecordAttempts is the plain Backend.RecordAttempts, for a backend that runs one write transaction at a
// time: one attempt in RecordAttempt's statements, a batch of distinct messages in recordBatch's (a
// statement per step for the whole batch), a batch naming a message twice one attempt at a time, in order.
func (d Dialect) RecordAttempts(ctx context.Context, w Querier, as []AttemptRow) ([]Recorded, error) {
	if len(as) > 1 && DistinctMessages(as) {
		return d.recordBatch(ctx, w, as)
	}
	recs := make([]Recorded, len(as))
	for i, a := range as {
		var err error
		if recs[i], err = d.RecordAttempt(ctx, w, a); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// DistinctMessages reports whether no message is named twice in as.
func DistinctMessages(as []AttemptRow) bool {
	seen := make(map[string]bool, len(as))
	for _, a := range as {
		if seen[a.MessageID] {
			return false
		}
		seen[a.MessageID] = true
	}
	return true
}

// recordBatch records a batch of attempts of distinct messages as RecordAttempt records each, with one
// statement per step for them all instead of one per attempt (every statement has a fixed cost, paid in
// SQLite's one writer: issue 12): it moves on every
// message whose lease its attempt's owner still holds (an UPDATE … FROM the batch's VALUES, RETURNING what
// moved and, for a delivery, whether a later message waits behind it), records those attempts in one
// INSERT, and reads the referrals asked for in one SELECT. An attempt whose message did not move (lease lost, or
// no such message) is then recorded alone by RecordAttempt, which tells the two apart.
func (d Dialect) recordBatch(ctx context.Context, w Querier, as []AttemptRow) ([]Recorded, error) {
	n := len(as)
	rows := Padded(n) // each statement's text names a power of two of rows, padded with NULLs
	args := make([]any, 0, 6*rows)
	for _, a := range as {
		args = append(args, a.MessageID, string(a.State), a.Error, a.Next, a.Delivered, a.Owner)
	}
	args = append(args, make([]any, 6*(rows-n))...)
	moved, err := w.QueryContext(ctx, d.rebind(`WITH v (id, state, error, next_at, delivered_at, owner) AS (VALUES `+
		valueRows(6, rows)+`)
		UPDATE outbox_messages SET state = v.state, attempts = attempts + 1, last_error = v.error, lease_owner = '',
			lease_until = 0, next_attempt_at = COALESCE(v.next_at, outbox_messages.next_attempt_at),
			delivered_at = COALESCE(v.delivered_at, outbox_messages.delivered_at)
		FROM v WHERE outbox_messages.id = v.id AND outbox_messages.state = 'inflight'
			AND outbox_messages.lease_owner = v.owner
		RETURNING outbox_messages.id, COALESCE(outbox_messages.referral_id, ''),
			outbox_messages.state <> 'delivered' OR `+successorOf("outbox_messages", d.ChainIndex)), args...)
	if err != nil {
		return nil, d.DriverErr("complete attempts", err)
	}
	referralOf := make(map[string]string, n) // moved message → its referral
	successor := make(map[string]bool, n)    // … → Recorded.Successor
	for moved.Next() {
		var id, ref string
		var succ bool
		if err := moved.Scan(&id, &ref, &succ); err != nil {
			_ = moved.Close()
			return nil, d.DriverErr("complete attempts", err)
		}
		referralOf[id], successor[id] = ref, succ
	}
	if err := moved.Err(); err != nil {
		_ = moved.Close()
		return nil, d.DriverErr("complete attempts", err)
	}
	if err := moved.Close(); err != nil {
		return nil, d.DriverErr("complete attempts", err)
	}
	recs := make([]Recorded, n)
	args = args[:0]
	var readIDs []any
	for i, a := range as {
		if _, ok := referralOf[a.MessageID]; !ok {
			if recs[i], err = d.RecordAttempt(ctx, w, a); err != nil {
				return nil, err
			}
			continue
		}
		recs[i] = Recorded{Moved: true, Successor: successor[a.MessageID]}
		args = append(args, a.MessageID, a.StartedUS, a.LatencyUS, a.StatusCode, a.Error, a.Response)
		if a.WithReferral {
			readIDs = append(readIDs, referralOf[a.MessageID])
		}
	}
	if k := len(args) / 6; k > 0 {
		args = append(args, make([]any, 6*(Padded(k)-k))...)
		if _, err := w.ExecContext(ctx, d.rebind(`WITH v (id, started_at, latency_us, status_code, error, response)
			AS (VALUES `+valueRows(6, Padded(k))+`)
			INSERT INTO outbox_attempts (message_id, n, started_at, latency_us, status_code, error, response)
			SELECT v.id, (SELECT COALESCE(MAX(n), 0) + 1 FROM outbox_attempts WHERE message_id = v.id), v.started_at,
				v.latency_us, v.status_code, v.error, v.response
			FROM v WHERE v.id IS NOT NULL`), args...); err != nil {
			return nil, d.DriverErr("record attempts", err)
		}
	}
	read := map[string]outbox.Referral{}
	if k := len(readIDs); k > 0 {
		readIDs = append(readIDs, make([]any, Padded(k)-k)...)
		if err := d.each(ctx, w, selectReferrals+` WHERE id IN (`+Placeholders(Padded(k))+`)`, readIDs,
			func(sc Scanner) error {
				r, err := d.ScanReferral(sc)
				if err == nil {
					read[r.Record.ID] = r
				}
				return err
			}); err != nil {
			return nil, d.DriverErr("read referrals", err)
		}
	}
	for i, a := range as {
		ref, ok := referralOf[a.MessageID]
		if !ok {
			continue
		}
		if a.WithReferral {
			r, found := read[ref]
			if !found {
				return nil, fmt.Errorf("%s: complete attempt: message %s: its referral: %w", d.Name, a.MessageID, outbox.ErrNotFound)
			}
			recs[i].Referral = r
		}
	}
	return recs, nil
}

// Padded is the number of rows a batch statement of n rows is written for: the least power of two at least
// n, so that batches of every size share a few statement texts (SQLite's statement cache, maxStmts, has
// room for them all).
func Padded(n int) int {
	p := 1
	for p < n {
		p *= 2
	}
	return p
}

// valueRows is rows rows of cols ? placeholders each, for a VALUES list.
func valueRows(cols, rows int) string {
	row := "(" + Placeholders(cols) + ")"
	return strings.TrimSuffix(strings.Repeat(row+", ", rows), ", ")
}

// RecordAttempt records one attempt, one statement per step, for a backend that runs one
// write transaction at a time (it reads the message before the referral): it moves the message on if
// a.Owner still holds the lease (reading the lease only when it does not), records the attempt, says for a
// delivery whether a later message waits behind it, and reads its referral when asked. ErrNotFound when
// there is no such message.
func (d Dialect) RecordAttempt(ctx context.Context, w Querier, a AttemptRow) (Recorded, error) {
	var referralID string
	err := w.QueryRowContext(ctx, d.rebind(moveLeased), string(a.State), a.Error, a.Next, a.Delivered,
		a.MessageID, a.Owner).Scan(&referralID)
	moved := err == nil
	if errors.Is(err, sql.ErrNoRows) {
		// Not moved: the lease is lost, or there is no such message.
		var one int
		err = w.QueryRowContext(ctx, d.rebind(messageExists), a.MessageID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return Recorded{}, fmt.Errorf("%s: complete attempt: %w", d.Name, outbox.ErrNotFound)
		}
	}
	if err != nil {
		return Recorded{}, d.DriverErr("complete attempt", err)
	}
	if _, err := w.ExecContext(ctx, d.rebind(insertAttempt), a.MessageID, a.MessageID, a.StartedUS, a.LatencyUS,
		a.StatusCode, a.Error, a.Response); err != nil {
		return Recorded{}, d.DriverErr("record attempt", err)
	}
	if !moved {
		return Recorded{}, nil
	}
	rec := Recorded{Moved: true, Successor: true}
	if a.State == outbox.StateDelivered {
		// Only a delivery's successor decides whether the commit signals (a retry always does, a dead
		// message never frees one).
		if err := w.QueryRowContext(ctx, d.selectSuccessor, a.MessageID, a.MessageID).Scan(&rec.Successor); err != nil {
			return Recorded{}, d.DriverErr("complete attempt", err)
		}
	}
	if a.WithReferral {
		if rec.Referral, err = d.ReadReferral(ctx, w, byID, false, referralID); err != nil {
			return Recorded{}, err
		}
	}
	return rec, nil
}
