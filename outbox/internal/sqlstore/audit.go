package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/outbox"
)

// The audit trail (outbox.Audit): audit_records, one row per audited access, and audit_chains, one head per
// chain (migration 55). Times are unix microseconds.

const (
	auditCols = `seq, chain, chain_seq, at, request_id, client_request_id, actor_id, actor_role, via, action,
		resource_type, resource_id, referral_id, practice_ods, service_id, address, prev_hash, hash`
	insertAuditHead = `INSERT INTO audit_records (chain, chain_seq, at, request_id, client_request_id, actor_id,
		actor_role, via, action, resource_type, resource_id, referral_id, practice_ods, service_id, address,
		prev_hash, hash) VALUES `
	auditRowParams   = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertAuditChain = `INSERT INTO audit_chains (chain, instance, started_at, head_seq, head_hash)
		VALUES (?, ?, ?, 0, ?)`
	moveAuditHead = `UPDATE audit_chains SET head_seq = ?, head_hash = ?
		WHERE chain = ? AND head_seq = ? AND head_hash = ?`
	selectAuditHead = `SELECT chain, instance, started_at, head_seq, head_hash FROM audit_chains WHERE chain = ?`
	// selectAuditChains lists the chains with a head, then the chains of records that have none.
	selectAuditChains = `SELECT chain, instance, started_at, head_seq, head_hash, 0 FROM audit_chains
		UNION ALL
		SELECT DISTINCT r.chain, '', 0, 0, '', 1 FROM audit_records r
			WHERE NOT EXISTS (SELECT 1 FROM audit_chains c WHERE c.chain = r.chain)
		ORDER BY 1`
	selectChainRecords = `SELECT ` + auditCols + ` FROM audit_records WHERE chain = ? AND chain_seq > ?
		ORDER BY chain_seq LIMIT ?`
)

// auditRowsPerInsert caps the rows of one INSERT (17 parameters each).
const auditRowsPerInsert = 50

// auditStatements lists the static statements of this file, for Dialect.Compile.
func auditStatements() []string {
	return []string{insertAuditChain, moveAuditHead, selectAuditHead, selectAuditChains, selectChainRecords}
}

// AppendAudit appends one chain's records and moves its head, in one transaction (outbox.Audit).
func (s *Store) AppendAudit(ctx context.Context, instance string, recs []outbox.AuditRecord) error {
	d := s.d
	if len(recs) == 0 {
		return nil
	}
	first := recs[0]
	for i, r := range recs {
		if r.Chain != first.Chain || r.ChainSeq != first.ChainSeq+int64(i) || r.Hash == "" {
			return fmt.Errorf("%s: append audit: records must be of one chain, numbered in order and hashed", d.Name)
		}
	}
	if aa, ok := s.b.(AuditAppender); ok && first.ChainSeq > 1 && len(recs) <= auditRowsPerInsert {
		err := aa.AppendAudit(ctx, recs)
		s.noteFailure(err)
		return err
	}
	return s.write(ctx, func(ctx context.Context, w *Tx) error {
		w.Quiet = true
		if first.ChainSeq == 1 {
			if _, err := w.ExecContext(ctx, d.rebind(insertAuditChain), first.Chain, instance, Micros(first.At),
				outbox.AuditGenesis); err != nil {
				if d.IsUnique(err) {
					return fmt.Errorf("%s: append audit: chain %s exists: %w", d.Name, first.Chain, outbox.ErrAuditHead)
				}
				return d.DriverErr("append audit", err)
			}
		}
		return s.moveAuditHead(ctx, w, recs)
	})
}

// moveAuditHead moves the head of recs' chain from the first record's predecessor to the last record and
// inserts them, in w: recs are of one chain, numbered in order and hashed.
func (s *Store) moveAuditHead(ctx context.Context, w *Tx, recs []outbox.AuditRecord) error {
	d := s.d
	first, last := recs[0], recs[len(recs)-1]
	if aa, ok := s.b.(AuditAppender); ok && len(recs) <= auditRowsPerInsert {
		return aa.AppendAuditIn(ctx, w, recs)
	}
	res, err := w.ExecContext(ctx, d.rebind(moveAuditHead), last.ChainSeq, last.Hash, first.Chain,
		first.ChainSeq-1, first.PrevHash)
	if err != nil {
		return d.DriverErr("append audit", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return d.DriverErr("append audit", err)
	} else if n != 1 {
		return fmt.Errorf("%s: append audit: chain %s: %w", d.Name, first.Chain, outbox.ErrAuditHead)
	}
	for start := 0; start < len(recs); start += auditRowsPerInsert {
		part := recs[start:min(start+auditRowsPerInsert, len(recs))]
		var q strings.Builder
		q.WriteString(insertAuditHead)
		args := make([]any, 0, 17*len(part))
		for i, r := range part {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(auditRowParams)
			args = append(args, r.Chain, r.ChainSeq, Micros(r.At), r.RequestID, r.ClientRequestID, r.ActorID,
				r.ActorRole, r.Via, string(r.Action), r.ResourceType, r.ResourceID, r.ReferralID, r.PracticeODS,
				r.ServiceID, r.Address, r.PrevHash, r.Hash)
		}
		if _, err := w.ExecContext(ctx, d.rebind(q.String()), args...); err != nil {
			if d.IsUnique(err) {
				return fmt.Errorf("%s: append audit: chain %s: %w: %w", d.Name, first.Chain, outbox.ErrAuditHead, ErrAuditNumberTaken)
			}
			return d.DriverErr("append audit", err)
		}
	}
	return nil
}

// appendDisclosures appends ds (the disclosures of attempts w records, outbox.AttemptResult.Audit, or of a
// creation it writes) in w, chain by chain in the order given: it reads the chain's head, locked until
// commit (a chain not yet written is started for its disclosure's Instance), numbers and hashes the records
// after it, moves the head and inserts them. It returns the records as appended, chain by chain.
func (s *Store) appendDisclosures(ctx context.Context, w *Tx, ds []outbox.Disclosure) ([]outbox.AuditRecord, error) {
	d := s.d
	var appended []outbox.AuditRecord
	for len(ds) > 0 {
		chain := ds[0].Record.Chain
		var recs []outbox.AuditRecord
		rest := ds[:0:0]
		for _, x := range ds {
			if x.Record.Chain == chain {
				recs = append(recs, x.Record)
			} else {
				rest = append(rest, x)
			}
		}
		head, err := s.readAuditHead(ctx, w, d.Lock, chain)
		switch {
		case errors.Is(err, outbox.ErrNotFound):
			head.HeadHash = outbox.AuditGenesis
			if _, err := w.ExecContext(ctx, d.rebind(insertAuditChain), chain, ds[0].Instance,
				Micros(recs[0].At), outbox.AuditGenesis); err != nil {
				return nil, d.DriverErr("append audit", err)
			}
		case err != nil:
			return nil, err
		}
		outbox.ChainAudit(recs, head.HeadSeq, head.HeadHash)
		if err := s.moveAuditHead(ctx, w, recs); err != nil {
			return nil, err
		}
		appended = append(appended, recs...)
		ds = rest
	}
	return appended, nil
}

// ErrAuditNumberTaken: an append moved its chain's head but found its record's number already used in the
// chain (a trail changed behind the store's back). It comes wrapped with outbox.ErrAuditHead; unlike a head
// found elsewhere, it may have aborted the transaction (PostgreSQL) or left the head moved in it (SQLite), so
// the transaction must not go on.
var ErrAuditNumberTaken = fault.Sentinel(fault.Conflict, "audit record number already used in its chain")

// errCreationNotAudited: a creation's record could not be appended, so the referral is not created; the
// client may try again (a new lane starts a new chain).
var errCreationNotAudited = fault.Sentinel(fault.Unavailable, "the creation's audit record could not be appended")

// appendCreation appends a creation's record d in w (outbox.Referrals.CreateAuditedReferral) and returns it
// as appended. A record numbered by its caller is appended after the head it names if the chain's head is
// there (one statement, nothing read first; unless headTried: the creation's own statement tried that,
// CreationWriter); when the head is not there (no row moved, nothing written), or the record is not
// numbered, after the head read locked (appendDisclosures). An append that fails otherwise fails the
// creation with errCreationNotAudited (outbox.ErrAuditHead still matches it).
func (s *Store) appendCreation(ctx context.Context, w *Tx, d outbox.Disclosure, headTried bool) (outbox.AuditRecord, error) {
	if recs := headKnown(d); recs != nil && !headTried {
		err := s.moveAuditHead(ctx, w, recs)
		if err == nil {
			return recs[0], nil
		}
		if !errors.Is(err, outbox.ErrAuditHead) || errors.Is(err, ErrAuditNumberTaken) {
			return outbox.AuditRecord{}, notAudited(err)
		}
	}
	d.Record.ChainSeq, d.Record.PrevHash = 0, ""
	recs, err := s.appendDisclosures(ctx, w, []outbox.Disclosure{d})
	if err != nil {
		return outbox.AuditRecord{}, notAudited(err)
	}
	return recs[0], nil
}

// headKnown is d's record numbered and hashed after the head its caller names, to be appended there if the
// chain's head is still there; nil when d names no head (its record is then appended after the head read).
func headKnown(d outbox.Disclosure) []outbox.AuditRecord {
	r := d.Record
	if r.ChainSeq <= 1 || r.PrevHash == "" {
		return nil
	}
	recs := []outbox.AuditRecord{r}
	outbox.ChainAudit(recs, r.ChainSeq-1, r.PrevHash)
	return recs
}

// notAudited is err, an append's failure that the audit chain caused, as the failure of the creation it
// was for (errCreationNotAudited, kind unavailable); the database's own failures keep their kind.
func notAudited(err error) error {
	if errors.Is(err, outbox.ErrAuditHead) {
		return fmt.Errorf("%w: %w", errCreationNotAudited, err)
	}
	return err
}

// checkDisclosure refuses a disclosure no store may append: one without its chain, or an invalid record.
func checkDisclosure(d outbox.Disclosure) error {
	if d.Record.Chain == "" {
		return errors.New("a disclosure needs its chain")
	}
	return d.Record.Validate()
}

// AuditAppender is a Backend that appends records to an existing chain and moves its head in one
// statement, atomic without a transaction of its own (one round trip where the script takes four).
// AppendAudit gets at most 50 records of one chain, numbered in order from a ChainSeq above 1 and hashed;
// it returns an error wrapping outbox.ErrAuditHead when the head is not at the first record's predecessor
// or a number is taken, and the driver's error with its kind otherwise. AppendAuditIn does the same in the
// write transaction w (a chain's first records too, once its head row is written).
type AuditAppender interface {
	AppendAudit(ctx context.Context, recs []outbox.AuditRecord) error
	AppendAuditIn(ctx context.Context, w *Tx, recs []outbox.AuditRecord) error
}

// AuditHead returns one chain's head (outbox.Audit).
func (s *Store) AuditHead(ctx context.Context, chain string) (outbox.AuditChain, error) {
	return s.readAuditHead(ctx, s.read, "", chain)
}

// readAuditHead reads one chain's head on q, with lock (Dialect.Lock, or "") after the query; ErrNotFound
// when the chain has none.
func (s *Store) readAuditHead(ctx context.Context, q Querier, lock, chain string) (outbox.AuditChain, error) {
	var c outbox.AuditChain
	var started int64
	err := q.QueryRowContext(ctx, s.d.rebind(selectAuditHead+lock), chain).
		Scan(&c.Chain, &c.Instance, &started, &c.HeadSeq, &c.HeadHash)
	if errors.Is(err, sql.ErrNoRows) {
		return outbox.AuditChain{}, fmt.Errorf("%s: audit chain %s: %w", s.d.Name, chain, outbox.ErrNotFound)
	}
	if err != nil {
		return outbox.AuditChain{}, s.d.DriverErr("audit head", err)
	}
	c.StartedAt = FromMicros(started)
	return c, nil
}

// AuditChains returns every chain, with or without a head row (outbox.Audit).
func (s *Store) AuditChains(ctx context.Context) ([]outbox.AuditChain, error) {
	rows, err := s.read.QueryContext(ctx, s.d.rebind(selectAuditChains))
	if err != nil {
		return nil, s.d.DriverErr("audit chains", err)
	}
	defer rows.Close()
	var out []outbox.AuditChain
	for rows.Next() {
		var c outbox.AuditChain
		var started, headless int64
		if err := rows.Scan(&c.Chain, &c.Instance, &started, &c.HeadSeq, &c.HeadHash, &headless); err != nil {
			return nil, s.d.DriverErr("audit chains", err)
		}
		c.StartedAt, c.Headless = FromMicros(started), headless == 1
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.d.DriverErr("audit chains", err)
	}
	return out, nil
}

// ChainRecords returns a page of one chain's records in chain order (outbox.Audit).
func (s *Store) ChainRecords(ctx context.Context, chain string, afterChainSeq int64, limit int) ([]outbox.AuditRecord, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	rows, err := s.read.QueryContext(ctx, s.d.rebind(selectChainRecords), chain, afterChainSeq, limit)
	if err != nil {
		return nil, s.d.DriverErr("audit chain records", err)
	}
	return s.d.collectAudit(rows, "audit chain records")
}

// ListAudit returns the records q selects, ordered by Seq (outbox.Audit).
func (s *Store) ListAudit(ctx context.Context, q outbox.AuditQuery) ([]outbox.AuditRecord, error) {
	if q.Practices != nil && len(q.Practices) == 0 {
		return nil, nil
	}
	var where []string
	var args []any
	if q.ReferralID != "" {
		where, args = append(where, `referral_id = ?`), append(args, q.ReferralID)
	}
	if q.ActorID != "" {
		where, args = append(where, `actor_id = ?`), append(args, q.ActorID)
	}
	if len(q.Practices) > 0 {
		where = append(where, `practice_ods IN (?`+strings.Repeat(`, ?`, len(q.Practices)-1)+`)`)
		for _, p := range q.Practices {
			args = append(args, p)
		}
	}
	if !q.Since.IsZero() {
		where, args = append(where, `at >= ?`), append(args, Micros(q.Since))
	}
	if !q.Until.IsZero() {
		where, args = append(where, `at < ?`), append(args, Micros(q.Until))
	}
	if q.AfterSeq > 0 {
		where, args = append(where, `seq > ?`), append(args, q.AfterSeq)
	}
	stmt := `SELECT ` + auditCols + ` FROM audit_records`
	if len(where) > 0 {
		stmt += ` WHERE ` + strings.Join(where, ` AND `)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	rows, err := s.read.QueryContext(ctx, s.d.rebind(stmt+` ORDER BY seq LIMIT ?`), append(args, limit)...)
	if err != nil {
		return nil, s.d.DriverErr("list audit", err)
	}
	return s.d.collectAudit(rows, "list audit")
}

func (d Dialect) collectAudit(rows *sql.Rows, op string) ([]outbox.AuditRecord, error) {
	defer rows.Close()
	var out []outbox.AuditRecord
	for rows.Next() {
		var r outbox.AuditRecord
		var at int64
		var action string
		if err := rows.Scan(&r.Seq, &r.Chain, &r.ChainSeq, &at, &r.RequestID, &r.ClientRequestID, &r.ActorID,
			&r.ActorRole, &r.Via, &action, &r.ResourceType, &r.ResourceID, &r.ReferralID, &r.PracticeODS,
			&r.ServiceID, &r.Address, &r.PrevHash, &r.Hash); err != nil {
			return nil, d.DriverErr(op, err)
		}
		r.At, r.Action = FromMicros(at), outbox.AuditAction(action)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, d.DriverErr(op, err)
	}
	return out, nil
}
