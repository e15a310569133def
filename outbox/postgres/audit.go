package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
)

// appendAuditStatement moves a chain's head ($1 the new number, $2 the new hash; $3 the chain, $4 and $5
// where the head must be) and inserts the records ($6 to $21: one array per column after chain, in chain
// order) only when it moved: one statement, so atomic without a transaction.
var appendAuditStatement = `WITH ` + auditHeadCTE(1) + ` ` + auditInsert(1)

// auditHeadCTE is the CTE h of an audit append whose parameters start at $p: the chain's head moved (see
// appendAuditStatement), as h (chain) when it moved.
func auditHeadCTE(p int) string {
	return fmt.Sprintf(`h AS (UPDATE audit_chains SET head_seq = $%d, head_hash = $%d
		WHERE chain = $%d AND head_seq = $%d AND head_hash = $%d RETURNING chain)`, p, p+1, p+2, p+3, p+4)
}

// auditInsert is the insert of an audit append's records whose parameters start at $p (the records'
// arrays from $p+5), after auditHeadCTE(p) as h: one row each when the head moved, none otherwise.
func auditInsert(p int) string {
	arrays := make([]string, 16)
	for i := range arrays {
		typ := "text[]"
		if i < 2 {
			typ = "bigint[]"
		}
		arrays[i] = fmt.Sprintf("$%d::%s", p+5+i, typ)
	}
	return `INSERT INTO audit_records (chain, chain_seq, at, request_id, client_request_id, actor_id, actor_role, via,
		action, resource_type, resource_id, referral_id, practice_ods, service_id, address, prev_hash, hash)
	SELECT h.chain, x.chain_seq, x.at, x.request_id, x.client_request_id, x.actor_id, x.actor_role, x.via,
		x.action, x.resource_type, x.resource_id, x.referral_id, x.practice_ods, x.service_id, x.address,
		x.prev_hash, x.hash
	FROM h, unnest(` + strings.Join(arrays, ", ") + `) WITH ORDINALITY
		AS x (chain_seq, at, request_id, client_request_id, actor_id, actor_role, via, action, resource_type,
			resource_id, referral_id, practice_ods, service_id, address, prev_hash, hash, n)
	ORDER BY x.n`
}

// auditArgs are an audit append's 21 arguments for recs (of one chain, numbered in order and hashed).
func auditArgs(recs []outbox.AuditRecord) []any {
	n := len(recs)
	seqs, ats := make([]int64, n), make([]int64, n)
	cols := make([][]string, 14)
	for i := range cols {
		cols[i] = make([]string, n)
	}
	for i, r := range recs {
		seqs[i], ats[i] = r.ChainSeq, sqlstore.Micros(r.At)
		for j, v := range []string{r.RequestID, r.ClientRequestID, r.ActorID, r.ActorRole, r.Via, string(r.Action),
			r.ResourceType, r.ResourceID, r.ReferralID, r.PracticeODS, r.ServiceID, r.Address, r.PrevHash, r.Hash} {
			cols[j][i] = v
		}
	}
	first, last := recs[0], recs[n-1]
	args := []any{last.ChainSeq, last.Hash, first.Chain, first.ChainSeq - 1, first.PrevHash, seqs, ats}
	for _, c := range cols {
		args = append(args, c)
	}
	return args
}

// errAuditNumberTaken is the error of an append to chain whose record's number is taken there.
func errAuditNumberTaken(chain string) error {
	return fmt.Errorf("postgres: append audit: chain %s: %w: %w", chain, outbox.ErrAuditHead, sqlstore.ErrAuditNumberTaken)
}

// appendAudit appends records to an existing chain in one statement on q (sqlstore.AuditAppender): on its
// own (autocommit, formerly BEGIN, the head's move, the insert and COMMIT, four round trips for every audited
// request), or in a write transaction.
func (s *Store) appendAudit(ctx context.Context, q sqlstore.Querier, recs []outbox.AuditRecord) error {
	if s.closed() {
		return ErrClosed
	}
	first, n := recs[0], len(recs)
	res, err := q.ExecContext(ctx, appendAuditStatement, auditArgs(recs)...)
	if err != nil {
		if isUnique(err) {
			return errAuditNumberTaken(first.Chain)
		}
		if s.closed() {
			return ErrClosed
		}
		return s.d.DriverErr("append audit", err)
	}
	if got, err := res.RowsAffected(); err != nil {
		return s.d.DriverErr("append audit", err)
	} else if got != int64(n) {
		return fmt.Errorf("postgres: append audit: chain %s: %w", first.Chain, outbox.ErrAuditHead)
	}
	return nil
}
