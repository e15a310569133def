package postgres

import (
	"context"
	"slices"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
)

// lockIdentifiers takes a transaction-scoped advisory lock per identifier of practice (in key order, so that
// two creates never wait for each other in a cycle): a concurrent create of the same identifier for the same
// practice, in this process or another, waits until this transaction ends and then finds its referral.
func (s *Store) lockIdentifiers(ctx context.Context, w *sqlstore.Tx, practice string, ids []mapping.Identifier) error {
	keys := make([]int64, 0, len(ids))
	for _, id := range ids {
		keys = append(keys, lockKey("socialrx identifier", s.schema, practice, id.System, id.Value))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	for i, k := range keys {
		if i == 0 && w.Stamps.Writer == "" {
			// The transaction's id comes with the first lock: the referral's stamp needs it next (stamp),
			// and this saves intake a round trip.
			q := `SELECT pg_current_xact_id()::text FROM (SELECT pg_advisory_xact_lock($1)) l`
			if err := w.QueryRowContext(ctx, q, k).Scan(&w.Stamps.Writer); err != nil {
				return s.d.DriverErr("lock identifier", err)
			}
			continue
		}
		if _, err := w.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, k); err != nil {
			return s.d.DriverErr("lock identifier", err)
		}
	}
	return nil
}

// versionStatement is writeVersion's statement: the new version (sqlstore.UpdateReferral, $1 to $14: the
// referral's JSON is $10, its id $13), its timeline entry with that JSON (cause $15, status reason $16) and
// whether its practice has any subscription that gets notifications.
func versionStatement() string {
	return `WITH u AS (` + sqlstore.RebindDollar(sqlstore.UpdateReferral) + ` RETURNING 1),
		e AS (INSERT INTO referral_events (referral_id, version, at, cause, status, business_status, status_reason, referral)
			SELECT $13, $8, $9, $15, $3, $4, $16, $10 FROM u RETURNING 1)
		SELECT (SELECT count(*) FROM e), EXISTS (SELECT 1 FROM subscriptions
			WHERE lower(practice_ods) = lower($1) AND status IN ('active', 'error'))`
}

// writeVersion writes a referral's new version, its timeline entry and whether its practice has any active
// subscription (else the fan-out has nothing to do) in one statement: a delivery's update costs one round
// trip, not three (sqlstore.Backend.WriteVersion).
func (s *Store) writeVersion(ctx context.Context, w *sqlstore.Tx, v sqlstore.Version) (updated, subscribed bool, err error) {
	var n int
	if err := w.QueryRowContext(ctx, s.version, append(v.UpdateArgs(), string(v.Cause), v.Reason)...).Scan(&n, &subscribed); err != nil {
		return false, false, s.d.DriverErr("update referral", err)
	}
	return n == 1, subscribed, nil
}
