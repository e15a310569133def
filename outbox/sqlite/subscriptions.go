package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
)

// CreateSubscription stores sub as active with no events yet; times are truncated to the microsecond and
// UpdatedAt defaults to CreatedAt (required).
func (s *Store) CreateSubscription(ctx context.Context, sub outbox.Subscription) (outbox.Subscription, error) {
	row, err := dialect().NewSubscriptionRow(sub)
	if err != nil {
		return outbox.Subscription{}, err
	}
	err = s.write(ctx, func(w *wtx) error {
		if _, err := w.ExecContext(w.ctx, sqlstore.InsertSubscription, row.Args()...); err != nil {
			if isUnique(err) {
				return fmt.Errorf("sqlite: insert subscription: id already exists: %w", err)
			}
			return driverErr("insert subscription", err)
		}
		return nil
	})
	if err != nil {
		return outbox.Subscription{}, err
	}
	return row.Sub, nil
}

// GetSubscription returns one subscription.
func (s *Store) GetSubscription(ctx context.Context, id string) (outbox.Subscription, error) {
	return dialect().ReadSubscription(ctx, s.db, id, false)
}

// UpdateSubscriptionStatus sets the status (and UpdatedAt to now when it changes). Messages already queued for
// a subscription set off stay queued; the dispatcher's resolver makes them dead (outbox.ErrDestinationOff).
func (s *Store) UpdateSubscriptionStatus(ctx context.Context, id string, status outbox.SubscriptionStatus, now time.Time) (outbox.Subscription, error) {
	if !status.Valid() {
		return outbox.Subscription{}, fmt.Errorf("sqlite: update subscription: invalid status %q", status)
	}
	var out outbox.Subscription
	err := s.write(ctx, func(w *wtx) error {
		var err error
		out, err = dialect().SetSubscriptionStatus(w.ctx, w, id, status, now)
		return err
	})
	if err != nil {
		return outbox.Subscription{}, err
	}
	return out, nil
}

// ListSubscriptions returns the subscriptions matching q in (CreatedAt, ID) order.
func (s *Store) ListSubscriptions(ctx context.Context, q outbox.SubscriptionQuery) ([]outbox.Subscription, error) {
	return dialect().ListSubscriptions(ctx, s.db, q)
}

// fanOut writes, inside the transaction that wrote ref's new version, one notification message for each
// active subscription of ref's practice: the subscription's next event number (incremented here, so numbers
// are gap-free and follow commit order), payload from Options.Notify, due at nowUS. A Notify error aborts the
// transaction.
func (s *Store) fanOut(w *wtx, ref outbox.Referral, nowUS int64) error {
	return dialect().FanOut(w.ctx, w, `practice_ods = ? COLLATE NOCASE AND status = 'active'`, ref, nowUS, s.opts.Notify,
		func(subID string, payload json.RawMessage) error {
			return insertMessages(w, ref.Record.ID, ref.Record.Version, nowUS, []sqlstore.EventRow{{
				ID: s.opts.NewID(), Kind: string(mapping.DestinationSubscription), Dest: subID,
				Type: string(mapping.EventNotification), Payload: payload,
			}})
		})
}
