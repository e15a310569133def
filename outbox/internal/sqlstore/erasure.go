package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Consent withdrawal's erasure (outbox.Store.UpdateReferral): the statements that find and rewrite every copy
// of the person's data a referral left in the database.
const (
	// selectServiceFacts: every message of a referral to one destination, oldest first (any type).
	selectServiceFacts = `SELECT id, type, state FROM outbox_messages WHERE referral_id = ?
			AND destination_kind = ? AND destination_id = ? ORDER BY seq`
	eraseServiceRequest  = `UPDATE referrals SET service_request = ? WHERE id = ?`
	selectEventReferrals = `SELECT version, referral FROM referral_events
			WHERE referral_id = ? AND length(referral) > 0 ORDER BY version`
	eraseEventReferral = `UPDATE referral_events SET referral = ? WHERE referral_id = ? AND version = ?`
	selectPayloads     = `SELECT id, type, state, payload FROM outbox_messages WHERE referral_id = ? ORDER BY seq`
	erasePayload       = `UPDATE outbox_messages SET payload = ? WHERE id = ?`
	eraseResponses     = `UPDATE outbox_attempts SET response = '' WHERE response <> ''
			AND message_id IN (SELECT id FROM outbox_messages WHERE referral_id = ? AND state <> ?)`
)

// erasureStatements lists the static statements of this file.
func erasureStatements() []string {
	return []string{selectServiceFacts, eraseServiceRequest, selectEventReferrals, eraseEventReferral,
		selectPayloads, erasePayload, eraseResponses}
}

// serviceFacts reads, inside an update's write transaction w, the facts mapping.ConsentWithdrawal needs: every
// message of the referral to dest, oldest first, locked until commit so that no claim takes one in between.
func (d Dialect) serviceFacts(ctx context.Context, w Querier, referralID string, dest mapping.Destination) ([]mapping.MessageFact, error) {
	rows, err := w.QueryContext(ctx, d.rebind(selectServiceFacts)+d.Lock, referralID, string(dest.Kind), dest.ID)
	if err != nil {
		return nil, d.DriverErr("find service messages", err)
	}
	defer rows.Close()
	var out []mapping.MessageFact
	for rows.Next() {
		var id, typ, state string
		if err := rows.Scan(&id, &typ, &state); err != nil {
			return nil, d.DriverErr("find service messages", err)
		}
		out = append(out, mapping.MessageFact{ID: id, Type: mapping.EventType(typ), Destination: dest,
			Progress: outbox.MessageState(state).Progress()})
	}
	if err := rows.Err(); err != nil {
		return nil, d.DriverErr("find service messages", err)
	}
	return out, nil
}

// EraseReferral rewrites, inside the write transaction w of the version that recorded a consent withdrawal,
// every copy of the person's data the referral left: its ServiceRequest (sr, already scrubbed), each kept
// version of the referral (mapping.ScrubReferral), each of its outbox messages' payloads
// (mapping.ScrubPayload: whatever their state, so that nothing queued, dead or delivered keeps the person's
// data) and the receivers' answers kept with its attempts (they may echo what they were sent).
//
// scrub erases one kept version (mapping.ScrubReferral for a withdrawal, mapping.ExpireReferral for
// retention); keepDead leaves dead messages' payloads as they are (retention never scrubs a dead message).
func (d Dialect) EraseReferral(ctx context.Context, w Querier, referralID string, sr json.RawMessage,
	scrub func(mapping.Referral) mapping.Referral, keepDead bool) error {
	if _, err := w.ExecContext(ctx, d.rebind(eraseServiceRequest), []byte(sr), referralID); err != nil {
		return d.DriverErr("erase service request", err)
	}
	type versionRow struct {
		version int
		body    []byte
	}
	var versions []versionRow
	if err := d.each(ctx, w, selectEventReferrals, []any{referralID}, func(sc Scanner) error {
		var v versionRow
		if err := sc.Scan(&v.version, &v.body); err != nil {
			return err
		}
		versions = append(versions, v)
		return nil
	}); err != nil {
		return d.DriverErr("read referral versions", err)
	}
	for _, v := range versions {
		var r mapping.Referral
		if err := json.Unmarshal(v.body, &r); err != nil {
			return fmt.Errorf("%s: erase referral version %d: %w", d.Name, v.version, err)
		}
		b, err := json.Marshal(scrub(r))
		if err != nil {
			return fmt.Errorf("%s: erase referral version %d: %w", d.Name, v.version, err)
		}
		if _, err := w.ExecContext(ctx, d.rebind(eraseEventReferral), b, referralID, v.version); err != nil {
			return d.DriverErr("erase referral version", err)
		}
	}
	type payloadRow struct {
		id, typ, state string
		body           []byte
	}
	var payloads []payloadRow
	if err := d.each(ctx, w, selectPayloads, []any{referralID}, func(sc Scanner) error {
		var p payloadRow
		if err := sc.Scan(&p.id, &p.typ, &p.state, &p.body); err != nil {
			return err
		}
		payloads = append(payloads, p)
		return nil
	}); err != nil {
		return d.DriverErr("read payloads", err)
	}
	for _, p := range payloads {
		if keepDead && p.state == string(outbox.StateDead) {
			continue
		}
		scrubbed := mapping.ScrubPayload(mapping.EventType(p.typ), p.body)
		if string(scrubbed) == string(p.body) {
			continue
		}
		if _, err := w.ExecContext(ctx, d.rebind(erasePayload), scrubbed, p.id); err != nil {
			return d.DriverErr("erase payload", err)
		}
	}
	spared := "" // no state: every message's answers
	if keepDead {
		spared = string(outbox.StateDead)
	}
	if _, err := w.ExecContext(ctx, d.rebind(eraseResponses), referralID, spared); err != nil {
		return d.DriverErr("erase responses", err)
	}
	return nil
}

// each runs query (static, rebound) with args and calls fn for every row; the rows are closed before it
// returns, so that fn's caller may write in the same transaction afterwards.
func (d Dialect) each(ctx context.Context, q Querier, query string, args []any, fn func(Scanner) error) error {
	rows, err := q.QueryContext(ctx, d.rebind(query), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
