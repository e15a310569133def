package outbox

import (
	"context"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
)

// CodeCapacityFull is the rule code of ErrCapacityFull.
const CodeCapacityFull fault.Code = "capacity_full"

// ErrCapacityFull: a service tried to accept a referral while it already holds its maximum of open
// referrals (mapping.Capacity.MaxOpen). Nothing was written.
var ErrCapacityFull = fault.New(fault.Conflict, CodeCapacityFull, mapping.FieldStatus,
	"the service already holds its maximum of open referrals: complete, decline or close one, or raise max_open, before accepting another")

// Capacities is the part of Store that keeps what community services say about how full they are (issue 13).
// Every backend also ENFORCES the maximum: a referral update (UpdateReferral, or the Update of
// CompleteAttempt, ReplayMessages or DiscardMessages) that moves a referral into an open status
// (mapping.OpenStatus) from one that is not, for a service whose stored capacity has MaxOpen > 0, counts the
// service's open referrals in the same transaction, under a lock on the service's capacity, and fails with
// ErrCapacityFull (writing nothing) when they already reach MaxOpen. Concurrent accepts on any number of
// instances never take a service over its maximum. The open count is never stored: it is counted from the
// referrals, so completing, failing, declining or cancelling frees a place by itself.
type Capacities interface {
	// GetCapacity returns the service's stored capacity with its Open count now (found false, and a
	// Capacity with only ServiceID and Open set, when the service never set one).
	GetCapacity(ctx context.Context, serviceID string) (c mapping.Capacity, found bool, err error)
	// SetCapacity stores c (ServiceID, a valid Status and UpdatedAt required) and returns it with its Open
	// count. With ifAbsent, a service that already has a stored capacity keeps it (set false) — the
	// directory's initial setting never overrides what a group said.
	SetCapacity(ctx context.Context, c mapping.Capacity, ifAbsent bool) (out mapping.Capacity, set bool, err error)
	// ListCapacities returns every stored capacity and every service with open referrals (found or not),
	// each with its Open count, by ServiceID.
	ListCapacities(ctx context.Context) (map[string]mapping.Capacity, error)
	// RouteCapacities returns every stored capacity by ServiceID, as routing reads them before each intake:
	// Open is counted for the stored capacities with MaxOpen > 0 and for the services named in count that
	// have none stored (a directory maximum not stored yet: they are in the map with only ServiceID and
	// Open), and is 0 for every other (routing compares Open only with a maximum: mapping.Capacity.Effective).
	// Each count reads only that service's open referrals, so an intake costs the same however many
	// referrals are open elsewhere.
	RouteCapacities(ctx context.Context, count []string) (map[string]mapping.Capacity, error)
}
