package outbox

import (
	"context"
	"time"
)

// PruneRequest selects what retention scrubs (docs/design.md#retention). Zero times skip that part.
type PruneRequest struct {
	// DeliveredBefore: delivered messages delivered before it have their payload scrubbed (emptied; its
	// SHA-256 kept in its row's payload_sha256, the message's metadata and attempt history kept). Dead messages
	// are never scrubbed by retention (an engineer may still replay them), nor pending, inflight, cancelled or
	// discarded ones.
	DeliveredBefore time.Time
	// ClosedBefore: referrals in a final status (rejected, completed, failed, cancelled, entered-in-error) last
	// changed before it have their personal fields erased (mapping.ExpireReferral; the stored ServiceRequest,
	// every kept version, the payloads of their messages that are not dead, the receivers' answers) in place:
	// no new version, no event.
	ClosedBefore time.Time
	// DryRun counts what would be scrubbed and changes nothing.
	DryRun bool
	// Batch is how many messages or referrals one transaction scrubs (0: 100), so that a prune never holds
	// the database for long while serve runs.
	Batch int
	// Progress, if not nil, is told after each committed batch what was scrubbed so far.
	Progress func(PruneResult)
}

// PruneResult counts what a prune scrubbed (or, dry, would scrub).
type PruneResult struct {
	Payloads  int // delivered messages whose payload was scrubbed
	Referrals int // closed referrals whose personal fields were erased
}

// Retention is the part of Store that applies retention periods.
type Retention interface {
	// Prune scrubs what req selects, a batch per transaction, at now; a dry run counts the same selection
	// without writing (the count equals what a real prune at the same now would scrub). Each message or
	// referral is scrubbed once (it is marked scrubbed), so prunes may run again, or from several instances.
	Prune(ctx context.Context, now time.Time, req PruneRequest) (PruneResult, error)
}
