package postgres

import (
	"context"
	"fmt"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
)

// appendAuditStatement moves a chain's head ($1 the new number, $2 the new hash; $3 the chain, $4 and $5
// where the head must be) and inserts the records ($6 to $21: one array per column after chain, in chain
// order) only when it moved: one statement, so atomic without a transaction.
const appendAuditStatement = `WITH h AS (UPDATE audit_chains SET head_seq = $1, head_hash = $2
		WHERE chain = $3 AND head_seq = $4 AND head_hash = $5 RETURNING chain)
	INSERT INTO audit_records (chain, chain_seq, at, request_id, client_request_id, actor_id, actor_role, via,
		action, resource_type, resource_id, referral_id, practice_ods, service_id, address, prev_hash, hash)
	SELECT h.chain, x.chain_seq, x.at, x.request_id, x.client_request_id, x.actor_id, x.actor_role, x.via,
		x.action, x.resource_type, x.resource_id, x.referral_id, x.practice_ods, x.service_id, x.address,
		x.prev_hash, x.hash
	FROM h, unnest($6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
			$13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[],
			$21::text[]) WITH ORDINALITY
		AS x (chain_seq, at, request_id, client_request_id, actor_id, actor_role, via, action, resource_type,
			resource_id, referral_id, practice_ods, service_id, address, prev_hash, hash, n)
	ORDER BY x.n`

// appendAudit appends records to an existing chain in one statement on q (sqlstore.AuditAppender): on its
// own (autocommit, formerly BEGIN, the head's move, the insert and COMMIT, four round trips for every audited
// request), or in a write transaction.
func (s *Store) appendAudit(ctx context.Context, q sqlstore.Querier, recs []outbox.AuditRecord) error {
	if s.closed() {
		return ErrClosed
	}
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
	res, err := q.ExecContext(ctx, appendAuditStatement, args...)
	if err != nil {
		if isUnique(err) {
			return fmt.Errorf("postgres: append audit: chain %s: %w: %w", first.Chain, outbox.ErrAuditHead, sqlstore.ErrAuditNumberTaken)
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
