package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
)

// findIdentifiersStatement looks a create's identifiers ($2 systems, $3 values) up under its practice ($1):
// the transaction's id, and the lowest and highest referral holding any of them. socialrx_identified
// (migration 99) seeks each identifier in the primary key, whatever plan the connection has cached.
const findIdentifiersStatement = `SELECT pg_current_xact_id()::text, i.first, i.last
	FROM socialrx_identified($1, $2::text[], $3::text[]) AS i`

// findIdentifiers returns the distinct referrals that hold any of ids under practice
// (sqlstore.IdentifierFinder), and notes the transaction's id with them: the referral's stamp needs it next
// (stamp), and this saves intake a round trip. No lock is taken: a concurrent create of one of the
// identifiers fails on the identifiers' key once this one commits (ErrRetry, writeCreation) and its fresh
// run finds this one. Formerly an advisory lock per identifier, then a lookup per identifier.
func (s *Store) findIdentifiers(ctx context.Context, w *sqlstore.Tx, practice string, ids []mapping.Identifier) ([]string, error) {
	systems, values := identifierArrays(ids)
	var (
		xid         string
		first, last sql.NullString
	)
	err := w.QueryRowContext(ctx, findIdentifiersStatement, practice, systems, values).Scan(&xid, &first, &last)
	if err != nil {
		return nil, s.d.DriverErr("find identifier", err)
	}
	noteWriter(w, xid)
	switch {
	case !first.Valid:
		return nil, nil
	case first.String == last.String:
		return []string{first.String}, nil
	}
	return []string{first.String, last.String}, nil // and maybe more: several is what matters
}

// identifierArrays spells ids as arrays of systems and values, in (system, value) order: a create writes
// its identifiers in that order, so that two creates sharing several never wait for each other in a
// cycle (each waits, on the identifiers' key, for the first it meets of the other's).
func identifierArrays(ids []mapping.Identifier) (systems, values []string) {
	sorted := slices.SortedFunc(slices.Values(ids), func(a, b mapping.Identifier) int {
		return cmp.Or(cmp.Compare(a.System, b.System), cmp.Compare(a.Value, b.Value))
	})
	systems, values = make([]string, len(sorted)), make([]string, len(sorted))
	for i, id := range sorted {
		systems[i], values[i] = id.System, id.Value
	}
	return systems, values
}

// creationRows are the CTEs of writeCreation's statements: the referral (sqlstore.InsertReferral, $1 to
// $20), its identifiers ($21 the practice key, $22 and $23 systems and values, inserted in their order), its
// messages ($24 to $28: ids, destination kinds and ids, types, payloads; seqs in their order) and its
// timeline entry (cause $29, status reason $30, the rest from the row). The referral's row comes first in the
// statement, so every other row's reference to it holds when the statement ends.
var creationRows = `WITH r AS (` + sqlstore.RebindDollar(sqlstore.InsertReferral) + ` RETURNING id),
	i AS (INSERT INTO referral_identifiers (practice_ods, system, value, referral_id)
		SELECT $21, x.system, x.value, r.id FROM r, unnest($22::text[], $23::text[]) WITH ORDINALITY
			AS x (system, value, n)
		ORDER BY x.n),
	m AS (INSERT INTO outbox_messages (id, referral_id, referral_version, destination_kind, destination_id, type,
			payload, state, attempts, created_at, next_attempt_at, budget_from)
		SELECT x.id, r.id, $11, x.kind, x.dest, x.type, x.payload, 'pending', 0, $12, $12, $12
		FROM r, unnest($24::text[], $25::text[], $26::text[], $27::text[], $28::bytea[]) WITH ORDINALITY
			AS x (id, kind, dest, type, payload, n)
		ORDER BY x.n),
	e AS (INSERT INTO referral_events (referral_id, version, at, cause, status, business_status, status_reason, referral)
		SELECT r.id, $11, $13, $29, $6, $7, $30, $16 FROM r)`

// subscribedTerm says whether the referral's practice has any subscription that gets notifications.
const subscribedTerm = `EXISTS (SELECT 1 FROM subscriptions WHERE lower(practice_ods) = lower($4) AND status IN ('active', 'error'))`

// creationStatement is writeCreation's statement without an audit record: creationRows, and whether the
// practice has any subscription that gets notifications.
var creationStatement = creationRows + ` SELECT ` + subscribedTerm

// auditedCreationStatement is creationStatement that also appends the create's audit record after the head
// of its chain it names ($31 to $51: appendAuditStatement's $1 to $21), when the head is there, and says how
// many records it inserted: the record costs no round trip of its own (formerly one more statement in the
// transaction, issue 12).
var auditedCreationStatement = creationRows + `, ` + auditHeadCTE(31) + `,
	a AS (` + auditInsert(31) + ` RETURNING 1)
	SELECT ` + subscribedTerm + `, (SELECT count(*) FROM a)`

// writeCreation writes a new referral's rows in one statement (sqlstore.CreationWriter): with its stamp
// reserved before, one round trip for the referral, its identifiers, its messages, its timeline entry,
// c.Audit's records (when their chain's head is where they say: audited) and whether the fan-out has anything
// to do. Formerly six round trips, then seven with the audit record. The other instances are told after the
// commit (announce), not by a NOTIFY inside it.
func (s *Store) writeCreation(ctx context.Context, w *sqlstore.Tx, c sqlstore.Creation, v sqlstore.Version) (subscribed, audited bool, err error) {
	systems, values := identifierArrays(c.Identifiers)
	n := len(c.Events)
	ids, kinds, dests, types := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	payloads := make([][]byte, n)
	for i, e := range c.Events {
		ids[i], kinds[i], dests[i], types[i], payloads[i] = e.ID, e.Kind, e.Dest, e.Type, e.Payload
		if payloads[i] == nil {
			payloads[i] = []byte{} // the column is NOT NULL
		}
	}
	args := append(c.Row.InsertArgs(), c.Practice, systems, values, ids, kinds, dests, types, payloads,
		string(v.Cause), v.Reason)
	if len(c.Audit) == 0 {
		err = w.QueryRowContext(ctx, creationStatement, args...).Scan(&subscribed)
	} else {
		var appended int
		err = w.QueryRowContext(ctx, auditedCreationStatement, append(args, auditArgs(c.Audit)...)...).Scan(&subscribed, &appended)
		audited = appended == len(c.Audit)
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			switch pe.TableName {
			case "referral_identifiers":
				// A concurrent create of one of the identifiers committed first (findIdentifiers): a fresh
				// run of the transaction finds its referral.
				return false, false, fmt.Errorf("postgres: insert identifier: %w: %w", sqlstore.ErrRetry, err)
			case "outbox_messages":
				return false, false, fmt.Errorf("postgres: insert message: duplicate message id: %w", err)
			case "referrals":
				return false, false, fmt.Errorf("postgres: insert referral: referral, task or service request id already exists: %w", err)
			case "audit_records":
				return false, false, errAuditNumberTaken(c.Audit[0].Chain)
			}
		}
		return false, false, s.d.DriverErr("insert referral", err)
	}
	return subscribed, audited, nil
}

// versionStatement is writeVersion's statement: the new version (sqlstore.UpdateReferral, $1 to $14: the
// referral's JSON is $10, its id $13), its timeline entry (cause $15, status reason $16) with that JSON, or
// with none when $17 (sqlstore.Version.AsPrevious), and whether its practice has any subscription that gets
// notifications.
func versionStatement() string {
	return `WITH u AS (` + sqlstore.RebindDollar(sqlstore.UpdateReferral) + ` RETURNING 1),
		e AS (INSERT INTO referral_events (referral_id, version, at, cause, status, business_status, status_reason,
				referral, as_previous)
			SELECT $13, $8, $9, $15, $3, $4, $16, CASE WHEN $17::boolean THEN ''::bytea ELSE $10 END, $17 FROM u
			RETURNING 1)
		SELECT (SELECT count(*) FROM e), EXISTS (SELECT 1 FROM subscriptions
			WHERE lower(practice_ods) = lower($1) AND status IN ('active', 'error'))`
}

// writeVersion writes a referral's new version, its timeline entry and whether its practice has any active
// subscription (else the fan-out has nothing to do) in one statement: a delivery's update costs one round
// trip, not three (sqlstore.Backend.WriteVersion).
func (s *Store) writeVersion(ctx context.Context, w *sqlstore.Tx, v sqlstore.Version) (updated, subscribed bool, err error) {
	var n int
	if err := w.QueryRowContext(ctx, s.version, append(v.UpdateArgs(), string(v.Cause), v.Reason, v.AsPrevious)...).Scan(&n, &subscribed); err != nil {
		return false, false, s.d.DriverErr("update referral", err)
	}
	return n == 1, subscribed, nil
}

// versionsStatement is writeVersions' statement: versionStatement for a batch of versions given as arrays
// ($1 to $17 in the order of versionStatement's arguments), returning the id of each referral updated and
// whether its practice has any subscription that gets notifications.
const versionsStatement = `WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
			$6::text[], $7::text[], $8::int[], $9::bigint[], $10::bytea[], $11::text[], $12::text[], $13::text[],
			$14::int[], $15::text[], $16::text[], $17::boolean[])
		AS v(practice_ods, service_id, status, business_status, patient_ref, patient_nhs_number, requester_ref,
			version, updated_at, referral, service_request_status, deadline_step, id, from_version, cause, reason,
			as_previous)),
	u AS (UPDATE referrals r SET practice_ods = v.practice_ods, service_id = v.service_id, status = v.status,
			business_status = v.business_status, patient_ref = v.patient_ref,
			patient_nhs_number = v.patient_nhs_number, requester_ref = v.requester_ref, version = v.version,
			updated_at = v.updated_at, referral = v.referral, service_request_status = v.service_request_status,
			deadline_step = v.deadline_step
		FROM v WHERE r.id = v.id AND r.version = v.from_version
		RETURNING r.id, r.practice_ods),
	e AS (INSERT INTO referral_events (referral_id, version, at, cause, status, business_status, status_reason,
			referral, as_previous)
		SELECT v.id, v.version, v.updated_at, v.cause, v.status, v.business_status, v.reason,
			CASE WHEN v.as_previous THEN ''::bytea ELSE v.referral END, v.as_previous
		FROM v JOIN u ON u.id = v.id ORDER BY v.updated_at)
	SELECT u.id, EXISTS (SELECT 1 FROM subscriptions
		WHERE lower(practice_ods) = lower(u.practice_ods) AND status IN ('active', 'error'))
	FROM u`

// writeVersions is sqlstore.Backend.WriteVersions: one version in writeVersion's statement, a batch in
// versionsStatement (one round trip for all). A batch naming a referral twice is written one version at a
// time, in order.
func (s *Store) writeVersions(ctx context.Context, w *sqlstore.Tx, vs []sqlstore.Version) (updated, subscribed []bool, err error) {
	n := len(vs)
	ids := make([]string, n)
	for i, v := range vs {
		ids[i] = v.Row.ID
	}
	if n == 1 || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != n {
		return sqlstore.WriteEach(vs, func(v sqlstore.Version) (bool, bool, error) { return s.writeVersion(ctx, w, v) })
	}
	var (
		practice, service, status, business = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		patient, nhs, requester, srStatus   = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		deadline, causes, reasons           = make([]string, n), make([]string, n), make([]string, n)
		version, from                       = make([]int32, n), make([]int32, n)
		at                                  = make([]int64, n)
		referral                            = make([][]byte, n)
		asPrevious                          = make([]bool, n)
	)
	for i, v := range vs {
		r := v.Row
		practice[i], service[i], status[i], business[i] = r.Practice, r.Service, r.Status, r.Business
		patient[i], nhs[i], requester[i], srStatus[i] = r.PatientRef, r.PatientNHS, r.RequesterRef, r.SRStatus
		deadline[i], causes[i], reasons[i] = r.Deadline, string(v.Cause), v.Reason
		version[i], from[i], at[i], referral[i] = int32(r.Version), int32(v.From), r.UpdatedAt, r.Referral
		asPrevious[i] = v.AsPrevious
	}
	rows, err := w.QueryContext(ctx, versionsStatement, practice, service, status, business, patient, nhs, requester,
		version, at, referral, srStatus, deadline, ids, from, causes, reasons, asPrevious)
	if err != nil {
		return nil, nil, s.d.DriverErr("update referrals", err)
	}
	defer rows.Close()
	subs := make(map[string]bool, n)
	for rows.Next() {
		var id string
		var sub bool
		if err := rows.Scan(&id, &sub); err != nil {
			return nil, nil, s.d.DriverErr("update referrals", err)
		}
		subs[id] = sub
	}
	if err := rows.Err(); err != nil {
		return nil, nil, s.d.DriverErr("update referrals", err)
	}
	updated, subscribed = make([]bool, n), make([]bool, n)
	for i, id := range ids {
		subscribed[i], updated[i] = subs[id]
	}
	return updated, subscribed, nil
}
