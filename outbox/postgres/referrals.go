package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
)

const insertReferral = `INSERT INTO referrals (id, task_id, service_request_id, practice_ods, service_id, status,
	business_status, patient_ref, patient_nhs_number, requester_ref, version, created_at, updated_at,
	fingerprint, identifiers, referral, service_request)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`

const updateReferral = `UPDATE referrals SET practice_ods = $1, service_id = $2, status = $3, business_status = $4,
	patient_ref = $5, patient_nhs_number = $6, requester_ref = $7, version = $8, updated_at = $9, referral = $10
	WHERE id = $11 AND version = $12`

const insertMessage = `INSERT INTO outbox_messages (id, referral_id, referral_version, destination_kind,
	destination_id, type, payload, state, attempts, created_at, next_attempt_at, budget_from)
	VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $9, $10)`

const insertEvent = `INSERT INTO referral_events (referral_id, version, at, cause, status, business_status,
	status_reason) VALUES ($1, $2, $3, $4, $5, $6, $7)`

// insertMessages writes events as pending messages due at now, for the referral's given version.
func insertMessages(w *wtx, referralID string, version int, now int64, rows []sqlstore.EventRow) error {
	for _, e := range rows {
		if _, err := w.ExecContext(w.ctx, insertMessage, e.ID, referralID, version, e.Kind, e.Dest, e.Type,
			e.Payload, now, now, now); err != nil {
			if _, ok := uniqueViolation(err); ok {
				return fmt.Errorf("postgres: insert message: duplicate message id: %w", err)
			}
			return driverErr("insert message", err)
		}
	}
	if len(rows) > 0 {
		w.changed = true
	}
	return nil
}

// CreateReferral writes the referral, its identifiers, its messages and timeline entry in one transaction
// (identifiers locked first, see lockIdentifiers). The referral is stored as version 1 whatever the intake says,
// with its times truncated to the microsecond and UpdatedAt defaulting to CreatedAt. Events without an id
// get one from Options.NewID. Messages are created pending and due at Record.CreatedAt.
func (s *Store) CreateReferral(ctx context.Context, in mapping.Intake) (outbox.CreateResult, error) {
	c, err := dialect().NewCreation(in, s.opts.NewID)
	if err != nil {
		return outbox.CreateResult{}, err
	}
	ids, events, res := c.Identifiers, c.Events, c.Result
	hook := func(stage string) error {
		if s.opts.FailAfter == nil {
			return nil
		}
		return s.opts.FailAfter(stage, in)
	}
	fresh := res
	err = s.write(ctx, func(w *wtx) error {
		res = fresh
		if err := s.lockIdentifiers(w, ids); err != nil {
			return err
		}
		existing, err := dialect().ExistingByIdentifiers(w.ctx, w, ids, in.Fingerprint)
		if err != nil || existing != nil {
			if existing != nil {
				res = outbox.CreateResult{Referral: *existing, Created: false}
			}
			return err
		}
		// The referral's UpdatedAt follows commit order (sqlstore.Dialect.Stamp); CreatedAt is the intake's.
		cc, err := dialect().StampCreation(w.ctx, w, c)
		if err != nil {
			return err
		}
		row := cc.Row
		res = cc.Result
		if _, err := w.ExecContext(w.ctx, insertReferral, row.ID, row.TaskID, row.SRID, row.Practice,
			row.Service, row.Status, row.Business, row.PatientRef, row.PatientNHS, row.RequesterRef,
			row.Version, row.CreatedAt, row.UpdatedAt, row.Fingerprint, row.Identifiers, row.Referral,
			row.ServiceRequest); err != nil {
			if _, ok := uniqueViolation(err); ok {
				return fmt.Errorf("postgres: insert referral: referral, task or service request id already exists: %w", err)
			}
			return driverErr("insert referral", err)
		}
		if err := hook("referral"); err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := w.ExecContext(w.ctx,
				`INSERT INTO referral_identifiers (system, value, referral_id) VALUES ($1, $2, $3)`,
				id.System, id.Value, row.ID); err != nil {
				if _, ok := uniqueViolation(err); ok {
					// Unreachable while every writer takes the identifier locks; kept as a backstop: a
					// fresh run of the transaction finds the referral that holds the identifier.
					return fmt.Errorf("postgres: insert identifier: %w: %w", errRetry, err)
				}
				return driverErr("insert identifier", err)
			}
		}
		if err := hook("identifiers"); err != nil {
			return err
		}
		if err := insertMessages(w, row.ID, 1, row.CreatedAt, events); err != nil {
			return err
		}
		if err := s.fanOut(w, res.Referral, row.CreatedAt); err != nil {
			return err
		}
		if err := hook("messages"); err != nil {
			return err
		}
		if _, err := w.ExecContext(w.ctx, insertEvent, row.ID, 1, row.UpdatedAt, string(outbox.CauseCreate),
			row.Status, row.Business, cc.Result.Referral.Record.StatusReason); err != nil {
			return driverErr("insert referral event", err)
		}
		return hook("events")
	})
	if err != nil {
		return outbox.CreateResult{}, err
	}
	return res, nil
}

// lockIdentifiers takes a transaction-scoped advisory lock per identifier (in key order, so that two
// creates never wait for each other in a cycle): a concurrent create of the same identifier, in this process
// or another, waits until this transaction ends and then finds its referral.
func (s *Store) lockIdentifiers(w *wtx, ids []mapping.Identifier) error {
	keys := make([]int64, 0, len(ids))
	for _, id := range ids {
		keys = append(keys, lockKey("socialrx identifier", s.schema, id.System, id.Value))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	for _, k := range keys {
		if _, err := w.ExecContext(w.ctx, `SELECT pg_advisory_xact_lock($1)`, k); err != nil {
			return driverErr("lock identifier", err)
		}
	}
	return nil
}

// byAnyID selects a referral by referral, task or ServiceRequest id.
const byAnyID = `id = $1 OR task_id = $1 OR service_request_id = $1`

// GetReferral returns one referral by referral id, task id or ServiceRequest id.
func (s *Store) GetReferral(ctx context.Context, id string) (outbox.Referral, error) {
	if id == "" {
		return outbox.Referral{}, fmt.Errorf("postgres: referral: %w", outbox.ErrNotFound)
	}
	return dialect().ReadReferral(ctx, s.db, byAnyID, id)
}

// SearchReferrals returns up to q.Limit referrals in (UpdatedAt, ID) order (default 100, at most 1000) and
// the cursor of the last one when more follow. A non-nil empty Practices matches nothing.
func (s *Store) SearchReferrals(ctx context.Context, q outbox.ReferralQuery) ([]outbox.Referral, *outbox.Cursor, error) {
	return dialect().SearchReferrals(ctx, s.db, q)
}

// rebind turns the ? placeholders of a query built at run time into PostgreSQL's $1, $2, … (the queries
// built here contain no ? in literals).
func rebind(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// UpdateReferral applies fn to the referral (by referral, task or ServiceRequest id) in one transaction.
// A change bumps the version, sets UpdatedAt to now, enqueues fn's events (due at now) and adds a timeline
// entry; if fn returns outbox.ErrNoChange, or the referral unchanged and no events, nothing is written and
// the current referral is returned (with a nil error). fn may not change the referral's ids or creation time.
// A referral.cancelled to a service whose referral.created is still pending or dead withdraws that message
// instead of being queued (see outbox.Store.UpdateReferral).
func (s *Store) UpdateReferral(ctx context.Context, id string, expectVersion int, now time.Time, fn outbox.ReferralUpdate) (outbox.Referral, error) {
	if fn == nil {
		return outbox.Referral{}, errors.New("postgres: update referral: nil update")
	}
	if id == "" {
		return outbox.Referral{}, fmt.Errorf("postgres: referral: %w", outbox.ErrNotFound)
	}
	var out outbox.Referral
	err := s.write(ctx, func(w *wtx) error {
		cur, err := dialect().ReadReferral(w.ctx, w, byAnyID+" FOR UPDATE", id)
		if err != nil {
			return err
		}
		if expectVersion > 0 && cur.Record.Version != expectVersion {
			return fmt.Errorf("postgres: update referral: %w", outbox.ErrVersionMismatch)
		}
		out, err = s.applyUpdate(w, cur, now, fn, outbox.CauseUpdate)
		return err
	})
	if err != nil {
		return outbox.Referral{}, err
	}
	return out, nil
}

// applyUpdate runs fn on cur inside the write transaction and writes the result (see UpdateReferral).
// fn's own error is returned unchanged.
func (s *Store) applyUpdate(w *wtx, cur outbox.Referral, now time.Time, fn outbox.ReferralUpdate, cause outbox.TimelineCause) (outbox.Referral, error) {
	ch, ok, err := dialect().NewChange(w.ctx, w, cur, now, fn, s.opts.NewID)
	if err != nil {
		return outbox.Referral{}, err
	}
	if !ok {
		return cur, nil
	}
	c, next, row, rows, withdraw := cur.Record, ch.Next, ch.Row, ch.Events, ch.Withdraw
	// The version's UpdatedAt is stamped in commit order (it may be a few microseconds after now); its
	// messages are due at the caller's now.
	dueUS := sqlstore.Micros(now)
	// The new version, its timeline entry and whether its practice has any active subscription (else the
	// fan-out has nothing to do) in one statement: a delivery's update costs one round trip, not three.
	var updated int
	var subscribed bool
	if err := w.QueryRowContext(w.ctx, `WITH u AS (`+updateReferral+` RETURNING 1),
		e AS (INSERT INTO referral_events (referral_id, version, at, cause, status, business_status, status_reason)
			SELECT $11, $8, $9, $13, $3, $4, $14 FROM u RETURNING 1)
		SELECT (SELECT count(*) FROM e), EXISTS (SELECT 1 FROM subscriptions
			WHERE lower(practice_ods) = lower($1) AND status = 'active')`,
		row.Practice, row.Service, row.Status, row.Business,
		row.PatientRef, row.PatientNHS, row.RequesterRef, row.Version, row.UpdatedAt, row.Referral,
		c.ID, c.Version, string(cause), next.Record.StatusReason).Scan(&updated, &subscribed); err != nil {
		return outbox.Referral{}, driverErr("update referral", err)
	}
	if updated != 1 {
		return outbox.Referral{}, fmt.Errorf("postgres: update referral: %w", outbox.ErrVersionMismatch)
	}
	if err := insertMessages(w, c.ID, row.Version, dueUS, rows); err != nil {
		return outbox.Referral{}, err
	}
	if err := dialect().WithdrawMessages(w.ctx, w, withdraw, row.Version); err != nil {
		return outbox.Referral{}, err
	}
	if len(withdraw) > 0 {
		w.changed = true
	}
	out := cur
	out.Referral = next
	if subscribed {
		if err := s.fanOut(w, out, dueUS); err != nil {
			return outbox.Referral{}, err
		}
	}
	return out, nil
}

// Timeline returns every version of the referral (by referral, task or ServiceRequest id), oldest first,
// with the ids of the messages each version enqueued.
func (s *Store) Timeline(ctx context.Context, id string) ([]outbox.TimelineEntry, error) {
	return dialect().Timeline(ctx, s.db, byAnyID, id)
}
