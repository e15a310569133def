package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// NHSNumberSystem is the NHS number identifier system, used when the record carries no NHS number.
const NHSNumberSystem = "https://fhir.nhs.uk/Id/nhs-number"

// ReferralCols are the columns ScanReferral reads, in order.
const ReferralCols = `version, created_at, updated_at, fingerprint, identifiers, referral, service_request`

// ForwardedSRKey prefixes a forwarded referral's own key in the service_request_id column.
const ForwardedSRKey = "forward:"

// ReferralRow is a referral as its row is written.
type ReferralRow struct {
	ID, TaskID, SRID, Practice, Service, Status, Business string
	PatientRef, PatientNHS, RequesterRef                  string
	SRStatus                                              string // the ServiceRequest's status
	Deadline                                              string // the deadline ladder's rung (mapping.DeadlineStep)
	ParentTask                                            string // a forwarded referral's parent Task id ("": none)
	Version                                               int
	CreatedAt, UpdatedAt                                  int64
	Fingerprint                                           string
	Identifiers, Referral, ServiceRequest                 []byte
}

// InsertArgs are the arguments of InsertReferral for r, in order.
func (r ReferralRow) InsertArgs() []any {
	return []any{r.ID, r.TaskID, r.SRID, r.Practice, r.Service, r.Status, r.Business, r.PatientRef, r.PatientNHS,
		r.RequesterRef, r.Version, r.CreatedAt, r.UpdatedAt, r.Fingerprint, r.Identifiers, r.Referral,
		r.ServiceRequest, r.SRStatus, r.Deadline, r.ParentTask}
}

// RowKeys are the columns of a referral's row that an update of a version sets only when they change
// (Version.Prev): on SQLite, an UPDATE rewrites the entry of every index holding a column it assigns, even
// to the value it had, so that a version assigning only what changed leaves the indexes of the others
// alone.
type RowKeys struct {
	Practice, Service, Status, PatientRef, PatientNHS, RequesterRef, SRStatus, Deadline string
}

// rowKeysOf are r's RowKeys, as RowOf writes them.
func rowKeysOf(r mapping.Referral) RowKeys {
	nhs := r.Record.Patient.NHSNumber
	if nhs == "" && r.Patient.Identifier != nil && r.Patient.Identifier.System == NHSNumberSystem {
		nhs = r.Patient.Identifier.Value
	}
	srStatus := r.ServiceRequestStatus
	if srStatus == "" {
		srStatus = "active"
	}
	return RowKeys{Practice: mapping.NormalODS(r.PracticeODS), Service: r.Record.Service.ID,
		Status: string(r.Record.Status), PatientRef: r.Patient.Reference, PatientNHS: nhs,
		RequesterRef: r.Requester.Reference, SRStatus: srStatus, Deadline: string(r.Record.DeadlineStep)}
}

// keys are r's RowKeys.
func (r ReferralRow) keys() RowKeys {
	return RowKeys{Practice: r.Practice, Service: r.Service, Status: r.Status, PatientRef: r.PatientRef,
		PatientNHS: r.PatientNHS, RequesterRef: r.RequesterRef, SRStatus: r.SRStatus, Deadline: r.Deadline}
}

// RowOf encodes a referral, its identifiers, fingerprint and ServiceRequest as its row.
func (d Dialect) RowOf(r mapping.Referral, ids []mapping.Identifier, fingerprint string, sr json.RawMessage) (ReferralRow, error) {
	rj, err := json.Marshal(r)
	if err != nil {
		return ReferralRow{}, fmt.Errorf("%s: encode referral: %w", d.Name, err)
	}
	if ids == nil {
		ids = []mapping.Identifier{}
	}
	ij, err := json.Marshal(ids)
	if err != nil {
		return ReferralRow{}, fmt.Errorf("%s: encode identifiers: %w", d.Name, err)
	}
	if sr == nil {
		sr = []byte{} // the column is NOT NULL
	}
	k := rowKeysOf(r)
	// A forwarded referral shares its parent's ServiceRequest (Task.focus) but the column is unique and finds
	// the parent: the child's row holds a key of its own there.
	srid, parent := r.Record.ServiceRequestID, ""
	if r.Parent != nil {
		srid, parent = ForwardedSRKey+r.Record.ID, r.Parent.TaskID
	}
	return ReferralRow{
		ID: r.Record.ID, TaskID: r.Record.TaskID, SRID: srid, SRStatus: k.SRStatus, ParentTask: parent,
		Practice: k.Practice, Service: k.Service, Status: k.Status, Business: string(r.BusinessStatus),
		PatientRef: k.PatientRef, PatientNHS: k.PatientNHS, RequesterRef: k.RequesterRef,
		Version: r.Record.Version, Deadline: k.Deadline,
		CreatedAt: Micros(r.Record.CreatedAt), UpdatedAt: Micros(r.Record.UpdatedAt),
		Fingerprint: fingerprint, Identifiers: ij, Referral: rj, ServiceRequest: sr,
	}, nil
}

// ReferralColumns are the ReferralCols of one row, as read.
type ReferralColumns struct {
	Version                               int
	CreatedUS, UpdatedUS                  int64
	Fingerprint                           string
	Identifiers, Referral, ServiceRequest []byte
}

// ScanReferral reads the ReferralCols of one row.
func (d Dialect) ScanReferral(sc Scanner) (outbox.Referral, error) {
	var c ReferralColumns
	if err := sc.Scan(&c.Version, &c.CreatedUS, &c.UpdatedUS, &c.Fingerprint, &c.Identifiers, &c.Referral,
		&c.ServiceRequest); err != nil {
		return outbox.Referral{}, err
	}
	return d.DecodeReferral(c)
}

// DecodeReferral is the referral whose ReferralCols are c.
func (d Dialect) DecodeReferral(c ReferralColumns) (outbox.Referral, error) {
	var out outbox.Referral
	if err := decodeStored(c.Referral, &out.Referral); err != nil {
		return outbox.Referral{}, fmt.Errorf("%s: decode referral: %w", d.Name, err)
	}
	if err := decodeStored(c.Identifiers, &out.Identifiers); err != nil {
		return outbox.Referral{}, fmt.Errorf("%s: decode identifiers: %w", d.Name, err)
	}
	if len(out.Identifiers) == 0 {
		out.Identifiers = nil
	}
	if len(c.ServiceRequest) > 0 {
		out.ServiceRequest = json.RawMessage(c.ServiceRequest)
	}
	out.Fingerprint = c.Fingerprint
	out.Record.Version = c.Version
	out.Record.CreatedAt = FromMicros(c.CreatedUS)
	out.Record.UpdatedAt = FromMicros(c.UpdatedUS)
	return out, nil
}

// Dedupe drops repeated identifiers, keeping the first occurrence's order.
func Dedupe(ids []mapping.Identifier) []mapping.Identifier {
	if len(ids) == 0 {
		return nil
	}
	out := make([]mapping.Identifier, 0, len(ids))
	seen := make(map[mapping.Identifier]bool, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// ReferralSearch builds the query of a referral search page: SELECT ReferralCols FROM referrals, q's
// filters, in (updated_at, id) order, limited to limit+1 rows (one more than the page, to tell whether more
// follow), with ? placeholders. none reports a query that matches nothing (a non-nil empty Practices).
func ReferralSearch(q outbox.ReferralQuery) (query string, args []any, limit int, none bool) {
	return referralSearch(q, Dialect{})
}

// SearchStatement is ReferralSearch as d spells it: with d.VisibleStamps, and naming the index of a search
// by one patient (narrowIndex) where d takes INDEXED BY.
func (d Dialect) SearchStatement(q outbox.ReferralQuery) (query string, args []any, limit int, none bool) {
	return referralSearch(q, d)
}

// narrowIndex is the index a search by one patient reads, or "" when the search names a referral, Task or
// ServiceRequest (their unique indexes serve it) or no patient. On SQLite the patient indexes hold the key
// alone (migration 88: a new version, which moves updated_at, then writes none of their pages), and its
// planner, without statistics, would rather read a scope's index in (updated_at, id) order (the
// practice's, the service's, a status's) than sort one patient's few referrals: a search for one patient
// would then read the practice's every referral.
func narrowIndex(q outbox.ReferralQuery) string {
	if q.ID != "" || q.TaskID != "" || q.ServiceRequestID != "" || q.TaskIDs != nil || q.ServiceRequestIDs != nil ||
		q.Identifier != nil || q.ParentTaskID != "" {
		return ""
	}
	switch {
	case q.PatientRef != "":
		return "referrals_patient_ref"
	case q.PatientNHSNumber != "":
		return "referrals_patient_nhs"
	}
	return ""
}

// referralSearch is ReferralSearch as d spells it (SearchStatement; the zero Dialect: as ReferralSearch).
func referralSearch(q outbox.ReferralQuery, d Dialect) (query string, args []any, limit int, none bool) {
	var where []string
	if d.VisibleStamps != "" {
		where = append(where, d.VisibleStamps)
	}
	from := selectReferrals
	if ix := narrowIndex(q); ix != "" {
		from += d.indexed(ix)
	}
	eq := func(col, v string) {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	in := func(col string, vs []string) {
		where = append(where, col+" IN ("+Placeholders(len(vs))+")")
		for _, v := range vs {
			args = append(args, v)
		}
	}
	eq("id", q.ID)
	eq("task_id", q.TaskID)
	eq("service_request_id", q.ServiceRequestID)
	for _, f := range []struct {
		col string
		vs  []string
	}{{"task_id", q.TaskIDs}, {"service_request_id", q.ServiceRequestIDs}, {"service_request_status", q.ServiceRequestStatuses}} {
		if f.vs == nil {
			continue
		}
		if len(f.vs) == 0 {
			return "", nil, 0, true
		}
		in(f.col, f.vs)
	}
	if q.Identifier != nil {
		if q.Identifier.System != "" {
			where = append(where, "id IN (SELECT referral_id FROM referral_identifiers WHERE system = ? AND value = ?)")
			args = append(args, q.Identifier.System, q.Identifier.Value)
		} else {
			where = append(where, "id IN (SELECT referral_id FROM referral_identifiers WHERE value = ?)")
			args = append(args, q.Identifier.Value)
		}
	}
	if q.Practices != nil {
		if len(q.Practices) == 0 {
			return "", nil, 0, true
		}
		practices := make([]string, len(q.Practices))
		for i, p := range q.Practices {
			practices[i] = mapping.NormalODS(p)
		}
		in("practice_ods", practices)
	}
	eq("service_id", q.ServiceID)
	if len(q.Statuses) > 0 {
		st := make([]string, len(q.Statuses))
		for i, v := range q.Statuses {
			st[i] = string(v)
		}
		in("status", st)
	}
	eq("patient_ref", q.PatientRef)
	eq("patient_nhs_number", q.PatientNHSNumber)
	eq("requester_ref", q.RequesterRef)
	bound := func(op string, t time.Time) {
		if !t.IsZero() {
			where = append(where, "updated_at "+op+" ?")
			args = append(args, Micros(t))
		}
	}
	if !q.CreatedUntil.IsZero() {
		where = append(where, "created_at <= ?")
		args = append(args, Micros(q.CreatedUntil))
	}
	if len(q.BusinessStatuses) > 0 {
		bs := make([]string, len(q.BusinessStatuses))
		for i, v := range q.BusinessStatuses {
			bs[i] = string(v)
		}
		in("business_status", bs)
	}
	if q.ParentTaskID != "" {
		// Spelled as referrals_parent's predicate, so that the search uses that index (which holds only
		// forwarded referrals).
		where = append(where, "parent_task_id <> ''")
		eq("parent_task_id", q.ParentTaskID)
	}
	if len(q.DeadlineSteps) > 0 {
		ds := make([]string, len(q.DeadlineSteps))
		for i, v := range q.DeadlineSteps {
			ds[i] = string(v)
		}
		in("deadline_step", ds)
	}
	bound(">", q.UpdatedAfter)
	bound(">=", q.UpdatedFrom)
	bound("<", q.UpdatedBefore)
	bound("<=", q.UpdatedUntil)
	if q.After != nil {
		where = append(where, "(updated_at, id) > (?, ?)")
		args = append(args, Micros(q.After.UpdatedAt), q.After.ID)
	}
	limit = ClampLimit(q.Limit)
	query = from + whereClause(where) + " ORDER BY updated_at, id LIMIT ?"
	args = append(args, limit+1)
	return query, args, limit, false
}

// whereClause joins filter terms into a WHERE clause ("" for none).
func whereClause(where []string) string {
	if len(where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(where, " AND ")
}

// ReferralCount builds the query counting the referrals that match q's filters (After and Limit ignored), with
// ? placeholders; none reports a query that matches nothing.
func ReferralCount(q outbox.ReferralQuery) (query string, args []any, none bool) {
	return referralCount(q, Dialect{})
}

// referralCount is ReferralCount as d spells it (referralSearch).
func referralCount(q outbox.ReferralQuery, d Dialect) (query string, args []any, none bool) {
	q.After, q.Limit = nil, 0
	page, args, _, none := referralSearch(q, d)
	if none {
		return "", nil, true
	}
	// The page query is SELECT cols FROM referrals [WHERE …] ORDER BY … LIMIT ?: keep its WHERE.
	where := strings.TrimPrefix(page, selectReferrals)
	where = where[:strings.LastIndex(where, " ORDER BY ")]
	return "SELECT count(*) FROM referrals" + where, args[:len(args)-1], false
}

// CountReferrals counts the referrals matching q's filters on db.
func (d Dialect) CountReferrals(ctx context.Context, db Querier, q outbox.ReferralQuery) (int, error) {
	query, args, none := referralCount(q, d)
	if none {
		return 0, nil
	}
	var n int
	if err := db.QueryRowContext(ctx, d.rebind(query), args...).Scan(&n); err != nil {
		return 0, d.DriverErr("count referrals", err)
	}
	return n, nil
}

// SearchReferrals runs a referral search on db: up to q.Limit referrals in (UpdatedAt, ID) order (default
// 100, at most 1000) and the cursor of the last one when more follow. A non-nil empty Practices matches
// nothing.
func (d Dialect) SearchReferrals(ctx context.Context, db Querier, q outbox.ReferralQuery) ([]outbox.Referral, *outbox.Cursor, error) {
	query, args, limit, none := referralSearch(q, d)
	if none {
		return nil, nil, nil
	}
	rows, err := db.QueryContext(ctx, d.rebind(query), args...)
	if err != nil {
		return nil, nil, d.DriverErr("search referrals", err)
	}
	defer rows.Close()
	var out []outbox.Referral
	for rows.Next() {
		r, err := d.ScanReferral(rows)
		if err != nil {
			return nil, nil, d.DriverErr("search referrals", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, d.DriverErr("search referrals", err)
	}
	var next *outbox.Cursor
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1].Record
		next = &outbox.Cursor{UpdatedAt: last.UpdatedAt, ID: last.ID}
	}
	return out, next, nil
}

// ReferralVersions returns the kept versions of the referral (by referral, task or ServiceRequest id), oldest
// first: each the referral as that version wrote it, with the referral's ServiceRequest, identifiers and
// fingerprint (which never change).
func (d Dialect) ReferralVersions(ctx context.Context, db Querier, id string) ([]outbox.Referral, error) {
	cur, err := d.ReadReferral(ctx, db, byAnyID, false, id, id, id)
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, d.rebind(selectVersions), cur.Record.ID)
	if err != nil {
		return nil, d.DriverErr("referral versions", err)
	}
	defer rows.Close()
	var (
		out  []outbox.Referral
		base []byte // the latest full copy read (Version.AsPrevious)
	)
	for rows.Next() {
		var e eventRow
		if err := e.scan(rows); err != nil {
			return nil, d.DriverErr("referral versions", err)
		}
		if !e.asPrevious {
			base = e.referral
		} else if base == nil {
			continue // no copy before it: not kept
		} else {
			e.referral = base
		}
		v, err := d.versionOf(e, cur)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, d.DriverErr("referral versions", err)
	}
	return out, nil
}

// ReferralVersion returns one kept version of the referral (ErrNotFound when the referral or the version is
// unknown).
func (d Dialect) ReferralVersion(ctx context.Context, db Querier, id string, version int) (outbox.Referral, error) {
	cur, err := d.ReadReferral(ctx, db, byAnyID, false, id, id, id)
	if err != nil {
		return outbox.Referral{}, err
	}
	var e eventRow
	err = e.scan(db.QueryRowContext(ctx, d.rebind(selectVersion), cur.Record.ID, version))
	if errors.Is(err, sql.ErrNoRows) {
		return outbox.Referral{}, fmt.Errorf("%s: referral version %d: %w", d.Name, version, outbox.ErrNotFound)
	}
	if err != nil {
		return outbox.Referral{}, d.DriverErr("referral version", err)
	}
	return d.versionOf(e, cur)
}

// eventRow is a row of selectVersions or selectVersion: a timeline entry, with the full copy it is read
// from (its own, or for as_previous the latest before it).
type eventRow struct {
	version                    int
	at                         int64
	referral                   []byte
	asPrevious                 bool
	status, business, reasonOf string
}

func (e *eventRow) scan(sc Scanner) error {
	return sc.Scan(&e.version, &e.at, &e.referral, &e.asPrevious, &e.status, &e.business, &e.reasonOf)
}

// versionOf decodes e as a version of cur: its copy of the referral, with, for an as_previous entry, the
// entry's own status, business status and status reason.
func (d Dialect) versionOf(e eventRow, cur outbox.Referral) (outbox.Referral, error) {
	out := cur
	out.Referral = mapping.Referral{}
	if err := decodeStored(e.referral, &out.Referral); err != nil {
		return outbox.Referral{}, fmt.Errorf("%s: decode referral version %d: %w", d.Name, e.version, err)
	}
	if e.asPrevious {
		out.Record.Status, out.BusinessStatus = mapping.TaskStatus(e.status), mapping.BusinessStatus(e.business)
		out.Record.StatusReason = e.reasonOf
	}
	out.Record.Version = e.version
	out.Record.UpdatedAt = FromMicros(e.at)
	out.Record.CreatedAt = cur.Record.CreatedAt
	return out, nil
}

// createdFacts reads, inside an update's write transaction w, the facts mapping.Withdrawal needs of the
// referral's referral.created messages to dest, oldest first, locking them (d.Lock) until commit so that no
// claim takes one between the decision and its application.
func (d Dialect) createdFacts(ctx context.Context, w Querier, referralID string, dest mapping.Destination) ([]mapping.MessageFact, error) {
	rows, err := w.QueryContext(ctx, d.rebind(selectCreated)+d.Lock,
		referralID, string(dest.Kind), dest.ID, string(mapping.EventReferralCreated))
	if err != nil {
		return nil, d.DriverErr("find created message", err)
	}
	defer rows.Close()
	var out []mapping.MessageFact
	for rows.Next() {
		var id, state string
		if err := rows.Scan(&id, &state); err != nil {
			return nil, d.DriverErr("find created message", err)
		}
		out = append(out, mapping.MessageFact{ID: id, Type: mapping.EventReferralCreated, Destination: dest,
			Progress: outbox.MessageState(state).Progress()})
	}
	if err := rows.Err(); err != nil {
		return nil, d.DriverErr("find created message", err)
	}
	return out, nil
}

// Timeline returns every version of the referral (by referral, task or ServiceRequest id), oldest first,
// with the ids of the messages each version enqueued and withdrew.
func (d Dialect) Timeline(ctx context.Context, db Querier, id string) ([]outbox.TimelineEntry, error) {
	var rid string
	err := db.QueryRowContext(ctx, d.rebind(selectReferralID), id, id, id).Scan(&rid)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s: referral: %w", d.Name, outbox.ErrNotFound)
	}
	if err != nil {
		return nil, d.DriverErr("timeline", err)
	}
	rows, err := db.QueryContext(ctx, d.rebind(selectTimeline), rid)
	if err != nil {
		return nil, d.DriverErr("timeline", err)
	}
	defer rows.Close()
	var out []outbox.TimelineEntry
	byVersion := map[int]int{}
	for rows.Next() {
		e := outbox.TimelineEntry{ReferralID: rid}
		var at int64
		if err := rows.Scan(&e.Version, &at, &e.Cause, &e.Status, &e.BusinessStatus, &e.StatusReason); err != nil {
			return nil, d.DriverErr("timeline", err)
		}
		e.At = FromMicros(at)
		byVersion[e.Version] = len(out)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, d.DriverErr("timeline", err)
	}
	rows.Close()
	mrows, err := db.QueryContext(ctx, d.rebind(selectTimelineMessages), rid)
	if err != nil {
		return nil, d.DriverErr("timeline", err)
	}
	defer mrows.Close()
	for mrows.Next() {
		var mid string
		var v, wv int
		if err := mrows.Scan(&mid, &v, &wv); err != nil {
			return nil, d.DriverErr("timeline", err)
		}
		if i, ok := byVersion[v]; ok {
			out[i].Messages = append(out[i].Messages, mid)
		}
		if i, ok := byVersion[wv]; ok && wv > 0 {
			out[i].Withdrawn = append(out[i].Withdrawn, mid)
		}
	}
	if err := mrows.Err(); err != nil {
		return nil, d.DriverErr("timeline", err)
	}
	return out, nil
}

// EventRow is an outbox message about to be inserted.
type EventRow struct {
	ID, Kind, Dest, Type string
	Payload              []byte
}

// EventRows checks events (destination and type required) and turns them into rows; an event without an
// id gets one from newID.
func (d Dialect) EventRows(events []mapping.Event, newID func() string) ([]EventRow, error) {
	rows := make([]EventRow, 0, len(events))
	for i, e := range events {
		if e.Destination.Kind == "" || e.Destination.ID == "" || e.Type == "" {
			return nil, fmt.Errorf("%s: event %d: destination and type are required", d.Name, i)
		}
		id := e.ID
		if id == "" {
			id = newID()
		}
		p := []byte(e.Payload)
		if p == nil {
			p = []byte{}
		}
		rows = append(rows, EventRow{ID: id, Kind: string(e.Destination.Kind), Dest: e.Destination.ID,
			Type: string(e.Type), Payload: p})
	}
	return rows, nil
}

// Creation is a referral to create, checked and encoded.
type Creation struct {
	// Row is the referral's row (version 1).
	Row ReferralRow
	// Identifiers are the intake's identifiers without repeats.
	Identifiers []mapping.Identifier
	// Practice is the key the identifiers are unique under: the referring practice's ODS code, upper case.
	Practice string
	// Events are the referral's messages.
	Events []EventRow
	// Result is what the create returns when the referral is new.
	Result outbox.CreateResult
	// Audit is the create's audit record, numbered and hashed after the head its chain's lane knows, for a
	// CreationWriter to append with the rows (nil: the record, if any, is appended after them).
	Audit []outbox.AuditRecord
}

// NewCreation checks an intake (record id, task id, ServiceRequest id and CreatedAt required) and encodes
// it for CreateReferral: the referral as version 1 whatever the intake says, with its times truncated to the
// microsecond and UpdatedAt defaulting to CreatedAt; events without an id get one from newID.
func (d Dialect) NewCreation(in mapping.Intake, newID func() string) (Creation, error) {
	r := in.Referral
	rec := &r.Record
	if rec.ID == "" || rec.TaskID == "" || rec.ServiceRequestID == "" {
		return Creation{}, fmt.Errorf("%s: create referral: record id, task id and service request id are required", d.Name)
	}
	if rec.CreatedAt.IsZero() {
		return Creation{}, fmt.Errorf("%s: create referral: record created_at is required", d.Name)
	}
	rec.Version = 1
	rec.CreatedAt = Norm(rec.CreatedAt)
	if rec.UpdatedAt.IsZero() {
		rec.UpdatedAt = rec.CreatedAt
	}
	rec.UpdatedAt = Norm(rec.UpdatedAt)
	ids := Dedupe(in.Identifiers)
	row, err := d.RowOf(r, ids, in.Fingerprint, in.ServiceRequest)
	if err != nil {
		return Creation{}, err
	}
	events, err := d.EventRows(in.Events, newID)
	if err != nil {
		return Creation{}, err
	}
	return Creation{Row: row, Identifiers: ids, Practice: strings.ToUpper(r.PracticeODS), Events: events, Result: outbox.CreateResult{
		Referral: outbox.Referral{Referral: r, ServiceRequest: in.ServiceRequest, Identifiers: ids,
			Fingerprint: in.Fingerprint},
		Created: true,
	}}, nil
}

// Stamp returns the UpdatedAt a referral change written in transaction w must carry: now to the microsecond,
// or one microsecond after the newest UpdatedAt already written when now is not later. UpdatedAt then
// strictly increases in commit order, which is what makes a poll with _lastUpdated=gt<the last value seen>
// (or a since cursor) return every change exactly once: a change that commits later can never carry an
// earlier time than one a poller has already seen, even when its caller read the clock first or two
// callers read the same microsecond. It runs d.StampLock first; with a d.Stamper, the Stamper chooses.
func (d Dialect) Stamp(ctx context.Context, w *Tx, now time.Time) (time.Time, error) {
	if d.Stamper != nil {
		us, err := d.Stamper(ctx, w, Micros(Norm(now)))
		if err != nil {
			return time.Time{}, err
		}
		return FromMicros(us), nil
	}
	if d.StampLock != "" {
		if _, err := w.ExecContext(ctx, d.StampLock); err != nil {
			return time.Time{}, d.DriverErr("stamp lock", err)
		}
	}
	var last sql.NullInt64
	if err := w.QueryRowContext(ctx, selectStamp).Scan(&last); err != nil {
		return time.Time{}, d.DriverErr("stamp", err)
	}
	at := Norm(now)
	if last.Valid && Micros(at) <= last.Int64 {
		at = FromMicros(last.Int64 + 1)
	}
	return at, nil
}

// StampCreation stamps a new referral inside write transaction w (Stamp, from the intake's UpdatedAt) and
// returns c with that UpdatedAt, its row encoded again when the stamp moved it; CreatedAt is kept.
func (d Dialect) StampCreation(ctx context.Context, w *Tx, c Creation) (Creation, error) {
	rec := &c.Result.Referral.Record
	at, err := d.Stamp(ctx, w, rec.UpdatedAt)
	if err != nil || rec.UpdatedAt.Equal(at) {
		return c, err
	}
	rec.UpdatedAt = at
	row, err := d.RowOf(c.Result.Referral.Referral, c.Identifiers, c.Result.Referral.Fingerprint, c.Result.Referral.ServiceRequest)
	if err != nil {
		return Creation{}, err
	}
	c.Row = row
	return c, nil
}

// Change is an update of a referral, decided and encoded, still to be written.
type Change struct {
	// Next is the referral as it will be: the new version, UpdatedAt now.
	Next mapping.Referral
	// Row is Next's row.
	Row ReferralRow
	// Prev are the RowKeys of the version it replaces, as that version decodes.
	Prev RowKeys
	// Events are the messages to enqueue (fn's events less the cancellations mapping.Withdrawal dropped).
	Events []EventRow
	// Withdraw are the ids of the referral.created messages to retire into the cancelled state
	// (mapping.Withdrawal's decision).
	Withdraw []string
	// Erase: the change records a consent withdrawal; ErasedSR is the referral's ServiceRequest scrubbed
	// (mapping.ScrubServiceRequest), and ConsentWithdraw the ids of the service's unsent messages to retire
	// (mapping.ConsentWithdrawal's decision).
	Erase           bool
	ErasedSR        json.RawMessage
	ConsentWithdraw []string
	// AsPrevious: Next differs from the version it replaces only in its status, business status and status
	// reason (and its version and stamp), as a delivery's version does: its timeline entry then holds no
	// copy of the referral (Version.AsPrevious).
	AsPrevious bool
}

// NewChange runs fn on cur inside the update's write transaction w and decides what to write (see
// outbox.Store.UpdateReferral): ok false means nothing (fn returned outbox.ErrNoChange, or left the
// referral unchanged with no events). mapping.Withdrawal decides what a cancellation withdraws, from the
// facts it asks for (read and locked here). The new version's UpdatedAt comes from Stamp. fn's own error is
// returned unchanged; fn may not change the referral's ids or creation time. Events without an id get one
// from newID.
func (d Dialect) NewChange(ctx context.Context, w *Tx, cur outbox.Referral, now time.Time, fn outbox.ReferralUpdate, newID func() string) (ch Change, ok bool, err error) {
	next, events, err := fn(cur)
	if errors.Is(err, outbox.ErrNoChange) {
		return Change{}, false, nil
	}
	if err != nil {
		return Change{}, false, err
	}
	c, n := cur.Record, next.Record
	if n.ID != c.ID || n.TaskID != c.TaskID || n.ServiceRequestID != c.ServiceRequestID ||
		!n.CreatedAt.Equal(c.CreatedAt) {
		return Change{}, false, fmt.Errorf("%s: update referral: an update may not change the referral's ids or creation time", d.Name)
	}
	next.Record.Version, next.Record.UpdatedAt, next.Record.CreatedAt = c.Version, c.UpdatedAt, c.CreatedAt
	if len(events) == 0 && reflect.DeepEqual(next, cur.Referral) {
		return Change{}, false, nil
	}
	// What a cancellation withdraws is mapping's decision; the store reads the facts it asks for.
	var facts []mapping.MessageFact
	for _, dest := range mapping.WithdrawalFacts(cur.Referral, events) {
		fs, err := d.createdFacts(ctx, w, cur.Record.ID, dest)
		if err != nil {
			return Change{}, false, err
		}
		facts = append(facts, fs...)
	}
	events, withdraw, business := mapping.Withdrawal(cur.Referral, next, events, facts)
	next.BusinessStatus = business
	var erase []string
	sr := cur.ServiceRequest
	erasing := next.Record.ConsentWithdrawn && !cur.Record.ConsentWithdrawn
	if erasing {
		dest := mapping.Destination{Kind: mapping.DestinationService, ID: cur.Record.Service.ID}
		fs, err := d.serviceFacts(ctx, w, cur.Record.ID, dest)
		if err != nil {
			return Change{}, false, err
		}
		events, erase = mapping.ConsentWithdrawal(events, fs)
		sr = mapping.ScrubServiceRequest(cur.ServiceRequest, cur.Record.Patient)
	}
	rows, err := d.EventRows(events, newID)
	if err != nil {
		return Change{}, false, err
	}
	at, err := d.Stamp(ctx, w, now)
	if err != nil {
		return Change{}, false, err
	}
	next.Record.Version = c.Version + 1
	next.Record.UpdatedAt = at
	row, err := d.RowOf(next, cur.Identifiers, cur.Fingerprint, sr)
	if err != nil {
		return Change{}, false, err
	}
	return Change{Next: next, Row: row, Prev: rowKeysOf(cur.Referral), Events: rows, Withdraw: withdraw,
			Erase: erasing, ErasedSR: sr, ConsentWithdraw: erase, AsPrevious: !erasing && statusOnly(cur.Referral, next)},
		true, nil
}

// statusOnly reports whether next differs from prev in nothing but the fields a timeline entry keeps in
// its own columns (status, business status, status reason) and the version and stamp its row gives: a
// timeline entry of next then needs no copy of the referral (Version.AsPrevious).
func statusOnly(prev, next mapping.Referral) bool {
	next.Record.Status, next.BusinessStatus, next.Record.StatusReason = prev.Record.Status, prev.BusinessStatus, prev.Record.StatusReason
	next.Record.Version, next.Record.UpdatedAt, next.Record.CreatedAt = prev.Record.Version, prev.Record.UpdatedAt, prev.Record.CreatedAt
	return reflect.DeepEqual(next, prev)
}

// WithdrawMessages retires the messages ids into the cancelled state inside the update's write
// transaction w, recording the referral version that withdrew them (why: outbox.WithdrawnError, or
// outbox.ConsentWithdrawnError).
func (d Dialect) WithdrawMessages(ctx context.Context, w Querier, ids []string, version int, why ...string) error {
	reason := outbox.WithdrawnError
	if len(why) > 0 {
		reason = why[0]
	}
	for _, id := range ids {
		if _, err := w.ExecContext(ctx, d.rebind(withdrawMessage), reason, version, id); err != nil {
			return d.DriverErr("withdraw message", err)
		}
	}
	return nil
}

// ReadReferral reads the one referral matching where, a WHERE term with ? placeholders (ErrNotFound if
// none), locking its row (d.Lock) when lock is set.
func (d Dialect) ReadReferral(ctx context.Context, q Querier, where string, lock bool, args ...any) (outbox.Referral, error) {
	query := d.rebind(selectReferral + where)
	if lock {
		query += d.Lock
	}
	r, err := d.ScanReferral(q.QueryRowContext(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return outbox.Referral{}, fmt.Errorf("%s: referral: %w", d.Name, outbox.ErrNotFound)
	}
	if err != nil {
		return outbox.Referral{}, d.DriverErr("read referral", err)
	}
	return r, nil
}

// ExistingByIdentifiers finds, inside a create's write transaction w, a referral of practice (upper case)
// already holding one of ids: the same one with the same fingerprint is returned (a resend); anything else
// is ErrConflict. Neither: nil, nil. Other practices' referrals are never looked at.
func (d Dialect) ExistingByIdentifiers(ctx context.Context, w Querier, practice string, ids []mapping.Identifier, fingerprint string) (*outbox.Referral, error) {
	found := ""
	for _, id := range ids {
		var rid string
		err := w.QueryRowContext(ctx, d.rebind(selectIdentifier), practice, id.System, id.Value).Scan(&rid)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, d.DriverErr("find identifier", err)
		}
		if found != "" && found != rid {
			return nil, fmt.Errorf("%s: create referral: %w", d.Name, errSeveralReferrals)
		}
		found = rid
	}
	if found == "" {
		return nil, nil
	}
	return d.existingReferral(ctx, w, found, fingerprint)
}

// errSeveralReferrals: a create's identifiers are held by more than one referral.
var errSeveralReferrals = fmt.Errorf("identifiers belong to several referrals: %w", outbox.ErrConflict)

// existingReferral reads the referral id that holds a create's identifiers: the create's answer when its
// fingerprint is the create's (a duplicate), else ErrConflict (the identifiers reused for another request).
func (d Dialect) existingReferral(ctx context.Context, w Querier, id, fingerprint string) (*outbox.Referral, error) {
	cur, err := d.ReadReferral(ctx, w, byID, false, id)
	if err != nil {
		return nil, err
	}
	if cur.Fingerprint != fingerprint {
		return nil, fmt.Errorf("%s: create referral: %w", d.Name, outbox.ErrConflict)
	}
	return &cur, nil
}

// Version is a referral's new version as Backend.WriteVersion writes it.
type Version struct {
	// Row is the new version's row.
	Row ReferralRow
	// From is the version it replaces: nothing is written unless the referral is still at it.
	From int
	// Cause and Reason are the timeline entry's cause and status reason.
	Cause  outbox.TimelineCause
	Reason string
	// Prev, if set, are the RowKeys the row is expected to hold: the plain WriteVersion (SQLite's) then
	// assigns only the keys that change, on the condition that the others still hold what Prev says (else
	// it assigns them all). PostgreSQL's statements assign every column: there, any update of a row
	// indexed by updated_at writes every index entry anew.
	Prev *RowKeys
	// AsPrevious: the referral is the version From's but for its status, business status and status reason
	// (Change.AsPrevious). The timeline entry then holds no copy of it (an empty referral, as_previous set,
	// migrations 91 and 98): the kept version is read back as the latest full copy before it with the
	// entry's own status, business status and status reason (versionOf). A delivery's version, about 2 KB
	// a copy, no longer writes one.
	AsPrevious bool
}

// UpdateArgs are the arguments of UpdateReferral for v, in order.
func (v Version) UpdateArgs() []any {
	r := v.Row
	return []any{r.Practice, r.Service, r.Status, r.Business, r.PatientRef, r.PatientNHS, r.RequesterRef,
		r.Version, r.UpdatedAt, r.Referral, r.SRStatus, r.Deadline, r.ID, v.From}
}

// EventArgs are the arguments of insertEvent for v, in order.
func (v Version) EventArgs() []any {
	r := v.Row
	return []any{r.ID, r.Version, r.UpdatedAt, string(v.Cause), r.Status, r.Business, v.Reason, v.EventReferral(),
		v.AsPrevious}
}

// EventReferral is the referral v's timeline entry holds: none when v.AsPrevious, else the whole version.
func (v Version) EventReferral() []byte {
	if v.AsPrevious {
		return []byte{}
	}
	return v.Row.Referral
}

// WriteVersions is the plain Backend.WriteVersions, for a backend that runs one write transaction at a time:
// a batch of versions of distinct referrals that change none of their RowKeys (a delivery's, an
// acknowledgement's business status) in writeBatch's statements, any other one by one, in order, with
// WriteVersion.
func (d Dialect) WriteVersions(ctx context.Context, w Querier, vs []Version) (updated, subscribed []bool, err error) {
	if len(vs) > 1 && keysKept(vs) {
		return d.writeBatch(ctx, w, vs)
	}
	return WriteEach(vs, func(v Version) (bool, bool, error) { return d.WriteVersion(ctx, w, v) })
}

// keysKept reports whether every version names a distinct referral and changes none of its RowKeys.
func keysKept(vs []Version) bool {
	seen := make(map[string]bool, len(vs))
	for _, v := range vs {
		if seen[v.Row.ID] || v.Prev == nil || *v.Prev != v.Row.keys() {
			return false
		}
		seen[v.Row.ID] = true
	}
	return true
}

// writeBatch writes versions that keep their RowKeys (keysKept) as WriteVersion writes each, with one
// statement per step for them all (every statement has a fixed cost, paid in SQLite's one writer: issue 12):
// one UPDATE … FROM the batch's VALUES assigns what changed (updateChanged's
// assignments, on the same condition that every key still holds its value), RETURNING what it updated and
// whether its practice has any subscription that gets notifications (d.Subscribers: else the fan-out has
// nothing to do, as PostgreSQL's statements say); one INSERT writes their timeline entries. A version it did
// not update is then written alone by WriteVersion, which tells a referral that moved on from one whose keys
// were not as expected.
func (d Dialect) writeBatch(ctx context.Context, w Querier, vs []Version) (updated, subscribed []bool, err error) {
	n := len(vs)
	rows := Padded(n)
	args := make([]any, 0, 14*rows)
	for _, v := range vs {
		r, k := v.Row, *v.Prev
		args = append(args, r.ID, v.From, r.Business, r.Version, r.UpdatedAt, r.Referral, k.Practice, k.Service,
			k.Status, k.PatientRef, k.PatientNHS, k.RequesterRef, k.SRStatus, k.Deadline)
	}
	args = append(args, make([]any, 14*(rows-n))...)
	done := make(map[string]bool, n) // updated → whether its practice has a subscription that gets notifications
	if err := d.each(ctx, w, `WITH v (id, from_version, business_status, version, updated_at, referral, practice_ods,
			service_id, status, patient_ref, patient_nhs_number, requester_ref, service_request_status, deadline_step)
			AS (VALUES `+valueRows(14, rows)+`)
		UPDATE referrals SET business_status = v.business_status, version = v.version, updated_at = v.updated_at,
			referral = v.referral
		FROM v WHERE referrals.id = v.id AND referrals.version = v.from_version
			AND referrals.practice_ods = v.practice_ods AND referrals.service_id = v.service_id
			AND referrals.status = v.status AND referrals.patient_ref = v.patient_ref
			AND referrals.patient_nhs_number = v.patient_nhs_number AND referrals.requester_ref = v.requester_ref
			AND referrals.service_request_status = v.service_request_status
			AND referrals.deadline_step = v.deadline_step
		RETURNING referrals.id, EXISTS (SELECT 1 FROM subscriptions WHERE `+
		strings.Replace(d.Subscribers, "?", "referrals.practice_ods", 1)+`)`, args, func(sc Scanner) error {
		var id string
		var sub bool
		if err := sc.Scan(&id, &sub); err != nil {
			return err
		}
		done[id] = sub
		return nil
	}); err != nil {
		return nil, nil, d.DriverErr("update referrals", err)
	}
	updated, subscribed = make([]bool, n), make([]bool, n)
	args = args[:0]
	for i, v := range vs {
		sub, ok := done[v.Row.ID]
		if !ok {
			if updated[i], subscribed[i], err = d.WriteVersion(ctx, w, v); err != nil {
				return nil, nil, err
			}
			continue
		}
		updated[i], subscribed[i] = true, sub
		args = append(args, v.EventArgs()...)
	}
	if k := len(args) / 9; k > 0 {
		args = append(args, make([]any, 9*(Padded(k)-k))...)
		if _, err := w.ExecContext(ctx, d.rebind(`WITH v (referral_id, version, at, cause, status, business_status,
				status_reason, referral, as_previous) AS (VALUES `+valueRows(9, Padded(k))+`)
			INSERT INTO referral_events (referral_id, version, at, cause, status, business_status, status_reason,
				referral, as_previous)
			SELECT referral_id, version, at, cause, status, business_status, status_reason, referral, as_previous
			FROM v WHERE referral_id IS NOT NULL`), args...); err != nil {
			return nil, nil, d.DriverErr("insert referral events", err)
		}
	}
	return updated, subscribed, nil
}

// WriteEach writes each version with write, in order (Backend.WriteVersions one at a time).
func WriteEach(vs []Version, write func(Version) (updated, subscribed bool, err error)) (updated, subscribed []bool, err error) {
	updated, subscribed = make([]bool, len(vs)), make([]bool, len(vs))
	for i, v := range vs {
		if updated[i], subscribed[i], err = write(v); err != nil {
			return nil, nil, err
		}
	}
	return updated, subscribed, nil
}

// WriteVersion is the plain Backend.WriteVersion, one statement per step: the referral's row, then its
// timeline entry. It does not probe for subscriptions (subscribed is true: the fan-out's own query finds
// out).
//
// With v.Prev, the row's update assigns only the keys that change (and the columns every version changes),
// on the condition that the row holds the others as v.Prev says. A row that holds something else (written
// by an earlier release, say) is then updated with every column assigned, as without v.Prev.
func (d Dialect) WriteVersion(ctx context.Context, w Querier, v Version) (updated, subscribed bool, err error) {
	n := int64(0)
	if v.Prev != nil {
		query, args, guarded := updateChanged(v, *v.Prev)
		if n, err = d.execUpdate(ctx, w, query, args); err != nil {
			return false, false, err
		}
		if n == 0 && !guarded {
			return false, false, nil
		}
	}
	if n == 0 {
		if n, err = d.execUpdate(ctx, w, UpdateReferral, v.UpdateArgs()); err != nil {
			return false, false, err
		}
	}
	if n != 1 {
		return false, false, nil
	}
	if _, err := w.ExecContext(ctx, d.rebind(insertEvent), v.EventArgs()...); err != nil {
		return false, false, d.DriverErr("insert referral event", err)
	}
	return true, true, nil
}

// execUpdate runs a referral row's update (query with ? placeholders) and returns how many rows it changed.
func (d Dialect) execUpdate(ctx context.Context, w Querier, query string, args []any) (int64, error) {
	res, err := w.ExecContext(ctx, d.rebind(query), args...)
	if err != nil {
		return 0, d.DriverErr("update referral", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, d.DriverErr("update referral", err)
	}
	return n, nil
}

// updateChanged is UpdateReferral for v assigning, of the RowKeys, only those that differ from prev, with
// the others' values from prev in its WHERE (guarded: there was at least one).
func updateChanged(v Version, prev RowKeys) (query string, args []any, guarded bool) {
	r := v.Row
	next := r.keys()
	set := []string{"business_status = ?", "version = ?", "updated_at = ?", "referral = ?"}
	args = []any{r.Business, r.Version, r.UpdatedAt, r.Referral}
	var where []string
	var whereArgs []any
	for _, k := range []struct {
		col        string
		prev, next string
	}{
		{"practice_ods", prev.Practice, next.Practice}, {"service_id", prev.Service, next.Service},
		{"status", prev.Status, next.Status}, {"patient_ref", prev.PatientRef, next.PatientRef},
		{"patient_nhs_number", prev.PatientNHS, next.PatientNHS},
		{"requester_ref", prev.RequesterRef, next.RequesterRef},
		{"service_request_status", prev.SRStatus, next.SRStatus}, {"deadline_step", prev.Deadline, next.Deadline},
	} {
		if k.prev == k.next {
			where, whereArgs = append(where, k.col+" = ?"), append(whereArgs, k.prev)
		} else {
			set, args = append(set, k.col+" = ?"), append(args, k.next)
		}
	}
	query = "UPDATE referrals SET " + strings.Join(set, ", ") + " WHERE " +
		strings.Join(append([]string{"id = ?", "version = ?"}, where...), " AND ")
	return query, append(append(args, r.ID, v.From), whereArgs...), len(where) > 0
}
