package outbox

import "context"

// nopStore's Audit: appends vanish, nothing is found.

func (nopStore) AppendAudit(context.Context, string, []AuditRecord) error { return nil }
func (nopStore) AuditHead(context.Context, string) (AuditChain, error) {
	return AuditChain{}, ErrNotFound
}
func (nopStore) AuditChains(context.Context) ([]AuditChain, error) { return nil, nil }
func (nopStore) ChainRecords(context.Context, string, int64, int) ([]AuditRecord, error) {
	return nil, nil
}
func (nopStore) ListAudit(context.Context, AuditQuery) ([]AuditRecord, error) { return nil, nil }
