package sqlstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Retention's statements (outbox.Retention). A closed referral is one in a final status.
const (
	dueDelivered = ` FROM outbox_messages WHERE state = 'delivered' AND scrubbed_at = 0 AND delivered_at < ?`
	// dueClosedWhere's terms spell referrals_unscrubbed's predicate (migrations 87 on SQLite, 95 on
	// PostgreSQL), so that the index of the closed referrals alone can serve both its statements.
	dueClosedWhere = ` WHERE scrubbed_at = 0 AND updated_at < ?
			AND status IN ('rejected', 'completed', 'failed', 'cancelled', 'entered-in-error')`

	countDueDelivered  = `SELECT count(*)` + dueDelivered
	selectDueDelivered = `SELECT id, payload` + dueDelivered + ` ORDER BY delivered_at, seq LIMIT ?`
	scrubDelivered     = `UPDATE outbox_messages SET payload = ?, payload_sha256 = ?, scrubbed_at = ?
			WHERE id = ? AND state = 'delivered' AND scrubbed_at = 0`
	expireReferral = `UPDATE referrals SET referral = ?, patient_ref = '', patient_nhs_number = '', scrubbed_at = ?
			WHERE id = ? AND scrubbed_at = 0`
)

// SelectDueClosed is retention's scan of the closed referrals not yet scrubbed, oldest change first (?
// placeholders: the cutoff, the batch).
func (d Dialect) SelectDueClosed() string {
	return `SELECT id FROM referrals` + d.indexed("referrals_unscrubbed") + dueClosedWhere + ` ORDER BY updated_at, id LIMIT ?`
}

// countDueClosed counts the closed referrals not yet scrubbed (? placeholder: the cutoff).
func (d Dialect) countDueClosed() string {
	return `SELECT count(*) FROM referrals` + d.indexed("referrals_unscrubbed") + dueClosedWhere
}

// retentionStatements lists the static statements of this file.
func retentionStatements() []string {
	return []string{countDueDelivered, selectDueDelivered, scrubDelivered, expireReferral}
}

// Prune applies retention (outbox.Retention): first the delivered payloads, then the closed referrals, a
// batch per write transaction, each row marked scrubbed so that it is never counted nor scrubbed again.
func (s *Store) Prune(ctx context.Context, now time.Time, req outbox.PruneRequest) (outbox.PruneResult, error) {
	d := s.d
	var res outbox.PruneResult
	batch := req.Batch
	if batch <= 0 {
		batch = 100
	}
	if req.DryRun {
		if !req.DeliveredBefore.IsZero() {
			if err := s.read.QueryRowContext(ctx, d.rebind(countDueDelivered), Micros(req.DeliveredBefore)).Scan(&res.Payloads); err != nil {
				return res, d.DriverErr("count delivered payloads", err)
			}
		}
		if !req.ClosedBefore.IsZero() {
			if err := s.read.QueryRowContext(ctx, d.rebind(d.countDueClosed()), Micros(req.ClosedBefore)).Scan(&res.Referrals); err != nil {
				return res, d.DriverErr("count closed referrals", err)
			}
		}
		return res, nil
	}
	nowUS := Micros(now)
	for !req.DeliveredBefore.IsZero() {
		n := 0
		err := s.write(ctx, func(ctx context.Context, w *Tx) error {
			n = 0
			type row struct {
				id   string
				body []byte
			}
			var rows []row
			if err := d.each(ctx, w, selectDueDelivered+d.Lock, []any{Micros(req.DeliveredBefore), batch}, func(sc Scanner) error {
				var r row
				if err := sc.Scan(&r.id, &r.body); err != nil {
					return err
				}
				rows = append(rows, r)
				return nil
			}); err != nil {
				return d.DriverErr("find delivered payloads", err)
			}
			for _, r := range rows {
				sum := sha256.Sum256(r.body)
				res, err := w.ExecContext(ctx, d.rebind(scrubDelivered), []byte{}, hex.EncodeToString(sum[:]), nowUS, r.id)
				if err != nil {
					return d.DriverErr("scrub payload", err)
				}
				if k, err := res.RowsAffected(); err == nil && k == 1 {
					n++
				}
			}
			return nil
		})
		if err != nil {
			return res, err
		}
		res.Payloads += n
		if n == 0 {
			break
		}
		if req.Progress != nil {
			req.Progress(res)
		}
	}
	for !req.ClosedBefore.IsZero() {
		n := 0
		err := s.write(ctx, func(ctx context.Context, w *Tx) error {
			n = 0
			var ids []string
			if err := d.each(ctx, w, d.SelectDueClosed()+d.Lock, []any{Micros(req.ClosedBefore), batch}, func(sc Scanner) error {
				var id string
				if err := sc.Scan(&id); err != nil {
					return err
				}
				ids = append(ids, id)
				return nil
			}); err != nil {
				return d.DriverErr("find closed referrals", err)
			}
			for _, id := range ids {
				cur, err := d.ReadReferral(ctx, w, byID, true, id)
				if err != nil {
					return err
				}
				rj, err := json.Marshal(mapping.ExpireReferral(cur.Referral))
				if err != nil {
					return fmt.Errorf("%s: expire referral: %w", d.Name, err)
				}
				if err := d.EraseReferral(ctx, w, id, mapping.ScrubServiceRequest(cur.ServiceRequest, cur.Record.Patient),
					mapping.ExpireReferral, true); err != nil {
					return err
				}
				res, err := w.ExecContext(ctx, d.rebind(expireReferral), rj, nowUS, id)
				if err != nil {
					return d.DriverErr("expire referral", err)
				}
				if k, err := res.RowsAffected(); err == nil && k == 1 {
					n++
				}
			}
			return nil
		})
		if err != nil {
			return res, err
		}
		res.Referrals += n
		if n == 0 {
			break
		}
		if req.Progress != nil {
			req.Progress(res)
		}
	}
	return res, nil
}
