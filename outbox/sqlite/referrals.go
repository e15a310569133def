package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
)

const insertReferral = `INSERT INTO referrals (id, task_id, service_request_id, practice_ods, service_id, status,
	business_status, patient_ref, patient_nhs_number, requester_ref, version, created_at, updated_at,
	fingerprint, identifiers, referral, service_request)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

const updateReferral = `UPDATE referrals SET practice_ods = ?, service_id = ?, status = ?, business_status = ?,
	patient_ref = ?, patient_nhs_number = ?, requester_ref = ?, version = ?, updated_at = ?, referral = ?
	WHERE id = ? AND version = ?`

const insertMessage = `INSERT INTO outbox_messages (id, seq, referral_id, referral_version, destination_kind,
	destination_id, type, payload, state, attempts, created_at, next_attempt_at, budget_from)
	VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox_messages), ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)`

const insertEvent = `INSERT INTO referral_events (referral_id, version, at, cause, status, business_status,
	status_reason) VALUES (?, ?, ?, ?, ?, ?, ?)`

// insertMessages writes events as pending messages due at now, for the referral's given version.
func insertMessages(w *wtx, referralID string, version int, now int64, rows []sqlstore.EventRow) error {
	for _, e := range rows {
		if _, err := w.ExecContext(w.ctx, insertMessage, e.ID, referralID, version, e.Kind, e.Dest, e.Type,
			e.Payload, now, now, now); err != nil {
			if isUnique(err) {
				return fmt.Errorf("sqlite: insert message: duplicate message id: %w", err)
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
// (group-committed with concurrent writes). The referral is stored as version 1 whatever the intake says,
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
	err = s.write(ctx, func(w *wtx) error {
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
			if isUnique(err) {
				return fmt.Errorf("sqlite: insert referral: referral, task or service request id already exists: %w", err)
			}
			return driverErr("insert referral", err)
		}
		if err := hook("referral"); err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := w.ExecContext(w.ctx,
				`INSERT INTO referral_identifiers (system, value, referral_id) VALUES (?, ?, ?)`,
				id.System, id.Value, row.ID); err != nil {
				if isUnique(err) {
					// Unreachable with one writer and immediate transactions; kept as a backstop.
					return fmt.Errorf("sqlite: insert identifier: %w", outbox.ErrConflict)
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

// byAnyID selects a referral by referral, task or ServiceRequest id.
const byAnyID = `id = ?1 OR task_id = ?1 OR service_request_id = ?1`

// GetReferral returns one referral by referral id, task id or ServiceRequest id.
func (s *Store) GetReferral(ctx context.Context, id string) (outbox.Referral, error) {
	if id == "" {
		return outbox.Referral{}, fmt.Errorf("sqlite: referral: %w", outbox.ErrNotFound)
	}
	return dialect().ReadReferral(ctx, s.db, byAnyID, id)
}

// SearchReferrals returns up to q.Limit referrals in (UpdatedAt, ID) order (default 100, at most 1000) and
// the cursor of the last one when more follow. A non-nil empty Practices matches nothing.
func (s *Store) SearchReferrals(ctx context.Context, q outbox.ReferralQuery) ([]outbox.Referral, *outbox.Cursor, error) {
	return dialect().SearchReferrals(ctx, s.db, q)
}

// UpdateReferral applies fn to the referral (by referral, task or ServiceRequest id) in one transaction.
// A change bumps the version, sets UpdatedAt to now, enqueues fn's events (due at now) and adds a timeline
// entry; if fn returns outbox.ErrNoChange, or the referral unchanged and no events, nothing is written and
// the current referral is returned (with a nil error). fn may not change the referral's ids or creation time.
// A referral.cancelled to a service whose referral.created is still pending or dead withdraws that message
// instead of being queued (see outbox.Store.UpdateReferral).
func (s *Store) UpdateReferral(ctx context.Context, id string, expectVersion int, now time.Time, fn outbox.ReferralUpdate) (outbox.Referral, error) {
	if fn == nil {
		return outbox.Referral{}, errors.New("sqlite: update referral: nil update")
	}
	if id == "" {
		return outbox.Referral{}, fmt.Errorf("sqlite: referral: %w", outbox.ErrNotFound)
	}
	var out outbox.Referral
	err := s.write(ctx, func(w *wtx) error {
		cur, err := dialect().ReadReferral(w.ctx, w, byAnyID, id)
		if err != nil {
			return err
		}
		if expectVersion > 0 && cur.Record.Version != expectVersion {
			return fmt.Errorf("sqlite: update referral: %w", outbox.ErrVersionMismatch)
		}
		out, err = s.applyUpdate(w, cur, now, fn, outbox.CauseUpdate)
		return err
	})
	if err != nil {
		return outbox.Referral{}, err
	}
	return out, nil
}

// applyUpdate runs fn on cur inside the writer's transaction and writes the result (see UpdateReferral).
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
	res, err := w.ExecContext(w.ctx, updateReferral, row.Practice, row.Service, row.Status, row.Business,
		row.PatientRef, row.PatientNHS, row.RequesterRef, row.Version, row.UpdatedAt, row.Referral,
		c.ID, c.Version)
	if err != nil {
		return outbox.Referral{}, driverErr("update referral", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return outbox.Referral{}, driverErr("update referral", err)
	} else if n != 1 {
		return outbox.Referral{}, fmt.Errorf("sqlite: update referral: %w", outbox.ErrVersionMismatch)
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
	if err := s.fanOut(w, out, dueUS); err != nil {
		return outbox.Referral{}, err
	}
	if _, err := w.ExecContext(w.ctx, insertEvent, c.ID, row.Version, row.UpdatedAt, string(cause), row.Status,
		row.Business, next.Record.StatusReason); err != nil {
		return outbox.Referral{}, driverErr("insert referral event", err)
	}
	return out, nil
}

// Timeline returns every version of the referral (by referral, task or ServiceRequest id), oldest first,
// with the ids of the messages each version enqueued.
func (s *Store) Timeline(ctx context.Context, id string) ([]outbox.TimelineEntry, error) {
	return dialect().Timeline(ctx, s.db, byAnyID, id)
}
