package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// The statements of service capacity (issue 13, migration 70).
const (
	capacityCols   = `service_id, status, expected_wait_days, until_at, max_open, updated_at, updated_by`
	selectCapacity = `SELECT ` + capacityCols + ` FROM service_capacity WHERE service_id = ?`
	listCapacities = `SELECT ` + capacityCols + ` FROM service_capacity ORDER BY service_id`
	upsertCapacity = `INSERT INTO service_capacity (` + capacityCols + `) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (service_id) DO UPDATE SET status = excluded.status,
		expected_wait_days = excluded.expected_wait_days, until_at = excluded.until_at,
		max_open = excluded.max_open, updated_at = excluded.updated_at, updated_by = excluded.updated_by`
	// countOpen counts a service's open referrals (mapping.OpenStatus).
	countOpen = `SELECT COUNT(*) FROM referrals WHERE service_id = ?
		AND status IN ('accepted', 'in-progress', 'on-hold')`
	countOpenAll = `SELECT service_id, COUNT(*) FROM referrals
		WHERE status IN ('accepted', 'in-progress', 'on-hold') GROUP BY service_id`
	// routeCapacities is every stored capacity with its open count where it has a maximum (0 elsewhere):
	// each count reads the service's entries of referrals_open_service alone (SQLite migration 86, PostgreSQL 92).
	routeCapacities = `SELECT ` + capacityCols + `, CASE WHEN c.max_open > 0 THEN (SELECT COUNT(*) FROM referrals r
		WHERE r.service_id = c.service_id AND r.status IN ('accepted', 'in-progress', 'on-hold')) ELSE 0 END
		FROM service_capacity c`
)

// scanCapacity reads the capacityCols of one row.
func scanCapacity(sc Scanner) (mapping.Capacity, error) {
	var (
		c             mapping.Capacity
		status        string
		until, upd    int64
		wait, maxOpen int64
	)
	if err := sc.Scan(&c.ServiceID, &status, &wait, &until, &maxOpen, &upd, &c.UpdatedBy); err != nil {
		return mapping.Capacity{}, err
	}
	c.Status = mapping.CapacityStatus(status)
	c.ExpectedWaitDays, c.MaxOpen = int(wait), int(maxOpen)
	c.Until, c.UpdatedAt = FromMicros(until), FromMicros(upd)
	return c, nil
}

// scanWith is a Scanner that reads a row's capacityCols into what scanCapacity gives it and the columns
// after them into more.
type scanWith struct {
	Scanner
	more any
}

// Scan reads the row into dest and then more.
func (sw scanWith) Scan(dest ...any) error { return sw.Scanner.Scan(append(dest, sw.more)...) }

// readCapacity reads serviceID's stored capacity (locked with d.Lock when lock is set) and its open count.
func (d Dialect) readCapacity(ctx context.Context, q Querier, serviceID string, lock bool) (mapping.Capacity, bool, error) {
	query := d.rebind(selectCapacity)
	if lock {
		query += d.Lock
	}
	c, err := scanCapacity(q.QueryRowContext(ctx, query, serviceID))
	found := true
	if errors.Is(err, sql.ErrNoRows) {
		c, found, err = mapping.Capacity{ServiceID: serviceID}, false, nil
	}
	if err != nil {
		return mapping.Capacity{}, false, d.DriverErr("read capacity", err)
	}
	if err := q.QueryRowContext(ctx, d.rebind(countOpen), serviceID).Scan(&c.Open); err != nil {
		return mapping.Capacity{}, false, d.DriverErr("count open referrals", err)
	}
	return c, found, nil
}

// capacityBound reports whether a change from cur to next is one checkCapacity checks: a move from a status
// that is not open into one that is.
func capacityBound(cur, next mapping.Referral) bool {
	return !mapping.OpenStatus(cur.Record.Status) && mapping.OpenStatus(next.Record.Status)
}

// checkCapacity enforces the service's maximum of open referrals inside a referral update's write
// transaction w (outbox.Capacities): a move from a status that is not open into one that is, for a service
// with a stored MaxOpen, is refused with outbox.ErrCapacityFull when the service's open referrals (counted
// under the capacity row's lock) already reach it.
func (d Dialect) checkCapacity(ctx context.Context, w Querier, cur, next mapping.Referral) error {
	if !capacityBound(cur, next) {
		return nil
	}
	c, found, err := d.readCapacity(ctx, w, next.Record.Service.ID, true)
	if err != nil || !found || c.MaxOpen <= 0 {
		return err
	}
	if c.Open >= c.MaxOpen {
		return fmt.Errorf("%s: update referral: %d of %d open: %w", d.Name, c.Open, c.MaxOpen, outbox.ErrCapacityFull)
	}
	return nil
}

// GetCapacity returns the service's stored capacity and its open count (outbox.Capacities).
func (s *Store) GetCapacity(ctx context.Context, serviceID string) (mapping.Capacity, bool, error) {
	return s.d.readCapacity(ctx, s.read, serviceID, false)
}

// SetCapacity stores c (outbox.Capacities); with ifAbsent a stored capacity is kept.
func (s *Store) SetCapacity(ctx context.Context, c mapping.Capacity, ifAbsent bool) (mapping.Capacity, bool, error) {
	d := s.d
	if c.ServiceID == "" || !c.Status.Valid() || c.UpdatedAt.IsZero() {
		return mapping.Capacity{}, false, fmt.Errorf("%s: set capacity: a service, a valid status and a time are required", d.Name)
	}
	c.UpdatedAt, c.Until = Norm(c.UpdatedAt), Norm(c.Until)
	c.UpdatedBy = d.storableError(c.UpdatedBy)
	var out mapping.Capacity
	var set bool
	err := s.write(ctx, func(ctx context.Context, w *Tx) error {
		cur, found, err := d.readCapacity(ctx, w, c.ServiceID, true)
		if err != nil {
			return err
		}
		if found && ifAbsent {
			out, set = cur, false
			return nil
		}
		if _, err := w.ExecContext(ctx, d.rebind(upsertCapacity), c.ServiceID, string(c.Status), c.ExpectedWaitDays,
			Micros(c.Until), c.MaxOpen, Micros(c.UpdatedAt), c.UpdatedBy); err != nil {
			if d.IsUnique(err) && d.Concurrent {
				return fmt.Errorf("%s: set capacity: %w: %w", d.Name, ErrRetry, err)
			}
			return d.DriverErr("set capacity", err)
		}
		c.Open = cur.Open
		out, set = c, true
		return nil
	})
	if err != nil {
		return mapping.Capacity{}, false, err
	}
	return out, set, nil
}

// RouteCapacities returns every stored capacity, with its open count where routing reads it: the services
// with a maximum, and those named in count that have none stored (outbox.Capacities).
func (s *Store) RouteCapacities(ctx context.Context, count []string) (map[string]mapping.Capacity, error) {
	d := s.d
	out := map[string]mapping.Capacity{}
	rows, err := s.read.QueryContext(ctx, d.rebind(routeCapacities))
	if err != nil {
		return nil, d.DriverErr("route capacities", err)
	}
	defer rows.Close()
	for rows.Next() {
		var open int
		c, err := scanCapacity(scanWith{rows, &open})
		if err != nil {
			return nil, d.DriverErr("route capacities", err)
		}
		c.Open = open
		out[c.ServiceID] = c
	}
	if err := rows.Err(); err != nil {
		return nil, d.DriverErr("route capacities", err)
	}
	rows.Close()
	for _, id := range count {
		if _, found := out[id]; found {
			continue // its stored capacity decides, counted above when it has a maximum
		}
		c := mapping.Capacity{ServiceID: id}
		if err := s.read.QueryRowContext(ctx, d.rebind(countOpen), id).Scan(&c.Open); err != nil {
			return nil, d.DriverErr("count open referrals", err)
		}
		out[id] = c
	}
	return out, nil
}

// ListCapacities returns every stored capacity and every service with open referrals, with their open
// counts (outbox.Capacities).
func (s *Store) ListCapacities(ctx context.Context) (map[string]mapping.Capacity, error) {
	d := s.d
	out := map[string]mapping.Capacity{}
	rows, err := s.read.QueryContext(ctx, d.rebind(listCapacities))
	if err != nil {
		return nil, d.DriverErr("list capacities", err)
	}
	for rows.Next() {
		c, err := scanCapacity(rows)
		if err != nil {
			rows.Close()
			return nil, d.DriverErr("list capacities", err)
		}
		out[c.ServiceID] = c
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, d.DriverErr("list capacities", err)
	}
	rows.Close()
	rows, err = s.read.QueryContext(ctx, d.rebind(countOpenAll))
	if err != nil {
		return nil, d.DriverErr("count open referrals", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, d.DriverErr("count open referrals", err)
		}
		c := out[id]
		c.ServiceID, c.Open = id, n
		out[id] = c
	}
	if err := rows.Err(); err != nil {
		return nil, d.DriverErr("count open referrals", err)
	}
	return out, nil
}
