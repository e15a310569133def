package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// SubscriptionCols are the columns ScanSubscription reads, in order.
const SubscriptionCols = `id, owner_client_id, practice_ods, criteria, endpoint, headers, payload, status,
	events_since_start, base_url, created_at, updated_at, resource, error, topic, heartbeat_period`

// ScanSubscription reads the SubscriptionCols of one row.
func (d Dialect) ScanSubscription(sc Scanner) (outbox.Subscription, error) {
	var (
		sub              outbox.Subscription
		headers, res     []byte
		payload, status  string
		created, updated int64
		heartbeat        int64
	)
	if err := sc.Scan(&sub.ID, &sub.OwnerClientID, &sub.PracticeODS, &sub.Criteria, &sub.Endpoint, &headers,
		&payload, &status, &sub.EventsSinceStart, &sub.BaseURL, &created, &updated, &res, &sub.Error, &sub.Topic,
		&heartbeat); err != nil {
		return outbox.Subscription{}, err
	}
	sub.HeartbeatPeriod = time.Duration(heartbeat) * time.Second
	if err := json.Unmarshal(headers, &sub.Header); err != nil {
		return outbox.Subscription{}, fmt.Errorf("%s: decode subscription headers: %w", d.Name, err)
	}
	if len(sub.Header) == 0 {
		sub.Header = nil
	}
	sub.Payload = mapping.PayloadContent(payload)
	sub.Status = outbox.SubscriptionStatus(status)
	sub.CreatedAt, sub.UpdatedAt = FromMicros(created), FromMicros(updated)
	if len(res) > 0 {
		sub.Resource = json.RawMessage(res)
	}
	return sub, nil
}

// ReadSubscription reads one subscription by id (ErrNotFound if none), locking its row (d.Lock) when lock
// is set.
func (d Dialect) ReadSubscription(ctx context.Context, q Querier, id string, lock bool) (outbox.Subscription, error) {
	query := d.rebind(selectSubscription)
	if lock {
		query += d.Lock
	}
	sub, err := d.ScanSubscription(q.QueryRowContext(ctx, query, id))
	if errors.Is(err, sql.ErrNoRows) {
		return outbox.Subscription{}, fmt.Errorf("%s: subscription: %w", d.Name, outbox.ErrNotFound)
	}
	if err != nil {
		return outbox.Subscription{}, d.DriverErr("read subscription", err)
	}
	return sub, nil
}

// SubscriptionRow is a new subscription as its row is written: the subscription as stored (active, no
// events yet, times truncated to the microsecond) and its encoded headers and resource.
type SubscriptionRow struct {
	// Sub is the subscription as it will read back.
	Sub outbox.Subscription
	// Headers is Sub.Header as JSON (never null).
	Headers []byte
	// Resource is Sub.Resource (never nil).
	Resource []byte
}

// NewSubscriptionRow checks a subscription to create (id, owner, practice, endpoint and CreatedAt required,
// a valid payload content) and encodes it; UpdatedAt defaults to CreatedAt.
func (d Dialect) NewSubscriptionRow(sub outbox.Subscription) (SubscriptionRow, error) {
	if sub.ID == "" || sub.OwnerClientID == "" || sub.PracticeODS == "" || sub.Endpoint == "" {
		return SubscriptionRow{}, fmt.Errorf("%s: create subscription: id, owner, practice and endpoint are required", d.Name)
	}
	if !sub.Payload.Valid() {
		return SubscriptionRow{}, fmt.Errorf("%s: create subscription: invalid payload content %q", d.Name, sub.Payload)
	}
	if sub.CreatedAt.IsZero() {
		return SubscriptionRow{}, fmt.Errorf("%s: create subscription: created_at is required", d.Name)
	}
	if sub.HeartbeatPeriod < 0 || sub.HeartbeatPeriod%time.Second != 0 {
		return SubscriptionRow{}, fmt.Errorf("%s: create subscription: the heartbeat period must be whole seconds", d.Name)
	}
	sub.Status = outbox.SubscriptionActive
	sub.Error = ""
	sub.EventsSinceStart = 0
	sub.CreatedAt = Norm(sub.CreatedAt)
	if sub.UpdatedAt.IsZero() {
		sub.UpdatedAt = sub.CreatedAt
	}
	sub.UpdatedAt = Norm(sub.UpdatedAt)
	headers := sub.Header
	if headers == nil {
		headers = []string{}
	}
	hj, err := json.Marshal(headers)
	if err != nil {
		return SubscriptionRow{}, fmt.Errorf("%s: encode subscription headers: %w", d.Name, err)
	}
	res := []byte(sub.Resource)
	if res == nil {
		res = []byte{}
	}
	return SubscriptionRow{Sub: sub, Headers: hj, Resource: res}, nil
}

// Args are the arguments of insertSubscription.
func (r SubscriptionRow) Args() []any {
	sub := r.Sub
	return []any{sub.ID, sub.OwnerClientID, sub.PracticeODS, sub.Criteria, sub.Endpoint, r.Headers,
		string(sub.Payload), string(sub.Status), sub.BaseURL, Micros(sub.CreatedAt), Micros(sub.UpdatedAt),
		r.Resource, sub.Topic, int64(sub.HeartbeatPeriod / time.Second)}
}

// SetSubscriptionStatus sets the subscription's status (and UpdatedAt to now when it changes; leaving error
// clears the error text) inside the write transaction w, reading it with a row lock (d.Lock), and returns it
// as it now is.
func (d Dialect) SetSubscriptionStatus(ctx context.Context, w Querier, id string, status outbox.SubscriptionStatus, now time.Time) (outbox.Subscription, error) {
	cur, err := d.ReadSubscription(ctx, w, id, true)
	if err != nil {
		return outbox.Subscription{}, err
	}
	if cur.Status == status {
		return cur, nil
	}
	if _, err := w.ExecContext(ctx, d.rebind(setSubscriptionStatus), string(status), "", Micros(now), id); err != nil {
		return outbox.Subscription{}, d.DriverErr("update subscription", err)
	}
	cur.Status, cur.Error, cur.UpdatedAt = status, "", Norm(now)
	return cur, nil
}

// ChangeSubscription applies ch inside the write transaction w: the subscription moves to ch.To (with
// ch.Error when that is error, else no error text) only if it is at ch.From.
func (d Dialect) ChangeSubscription(ctx context.Context, w Querier, ch outbox.SubscriptionChange, now time.Time) error {
	if !ch.From.Valid() || !ch.To.Valid() {
		return fmt.Errorf("%s: subscription change: invalid status %q → %q", d.Name, ch.From, ch.To)
	}
	msg := ""
	if ch.To == outbox.SubscriptionError {
		msg = d.storableError(ch.Error)
	}
	if _, err := w.ExecContext(ctx, d.rebind(changeSubscription), string(ch.To), msg, Micros(now), ch.ID, string(ch.From)); err != nil {
		return d.DriverErr("change subscription", err)
	}
	return nil
}

// ListSubscriptions returns the subscriptions matching q in (CreatedAt, ID) order.
func (d Dialect) ListSubscriptions(ctx context.Context, db Querier, q outbox.SubscriptionQuery) ([]outbox.Subscription, error) {
	where := []string{"1 = 1"}
	var args []any
	if q.OwnerClientID != "" {
		where = append(where, "owner_client_id = ?")
		args = append(args, q.OwnerClientID)
	}
	if q.PracticeODS != "" {
		where = append(where, "practice_ods = ?")
		args = append(args, q.PracticeODS)
	}
	if len(q.Statuses) > 0 {
		where = append(where, "status IN ("+Placeholders(len(q.Statuses))+")")
		for _, st := range q.Statuses {
			args = append(args, string(st))
		}
	}
	return d.subscriptions(ctx, db, "list subscriptions", d.rebind(selectSubscriptions+strings.Join(where, " AND ")+
		` ORDER BY created_at, id`), args...)
}

// subscriptions runs query (already in the backend's placeholders) and reads its SubscriptionCols rows;
// op names the operation in errors.
func (d Dialect) subscriptions(ctx context.Context, q Querier, op, query string, args ...any) ([]outbox.Subscription, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, d.DriverErr(op, err)
	}
	defer rows.Close()
	var out []outbox.Subscription
	for rows.Next() {
		sub, err := d.ScanSubscription(rows)
		if err != nil {
			return nil, d.DriverErr(op, err)
		}
		out = append(out, sub)
	}
	if err := rows.Err(); err != nil {
		return nil, d.DriverErr(op, err)
	}
	return out, nil
}

// FanOut notifies, inside the transaction w that wrote ref's new version, each active subscription of
// ref's practice (d.Subscribers), one at a time in id order: it takes the subscription's next event number
// (incremented here, so numbers are gap-free and follow commit order), renders the payload with notify at
// nowUS and hands both to emit, which queues the message. A notify or emit error ends the fan-out: the
// caller aborts the transaction.
func (d Dialect) FanOut(ctx context.Context, w Querier, ref outbox.Referral, nowUS int64, notify outbox.NotifyFunc, emit func(subID string, payload json.RawMessage) error) error {
	subs, err := d.subscriptions(ctx, w, "fan out", d.fanOut, ref.PracticeODS)
	if err != nil {
		return err
	}
	now := FromMicros(nowUS)
	for _, sub := range subs {
		var n int64
		if err := w.QueryRowContext(ctx, d.rebind(numberEvent), sub.ID).Scan(&n); err != nil {
			return d.DriverErr("fan out: number event", err)
		}
		sub.EventsSinceStart = n
		payload, err := notify(sub, ref, n, now)
		if err != nil {
			return fmt.Errorf("%s: fan out: render notification: %w", d.Name, err)
		}
		if payload == nil {
			payload = json.RawMessage{}
		}
		if err := emit(sub.ID, payload); err != nil {
			return err
		}
	}
	return nil
}
