package outbox

import (
	"context"
	"time"
)

// Prune completes the no-op store (Retention).
func (nopStore) Prune(context.Context, time.Time, PruneRequest) (PruneResult, error) {
	return PruneResult{}, nil
}
