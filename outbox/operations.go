package outbox

import (
	"context"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
)

// MaxResponseBytes is how much of a receiver's answer an attempt keeps (Attempt.Response).
const MaxResponseBytes = 1024

// DiscardRequest retires messages for good: each named message that is pending or dead becomes
// StateDiscarded, with the actor and the reason recorded. Messages in other states are left as they are
// (the caller says why); an unknown id is ErrNotFound and nothing is discarded.
type DiscardRequest struct {
	IDs    []string
	Reason string
	Actor  string
	DryRun bool
	// Update, if not nil, is applied once to each referral with a discarded message to a service destination,
	// in the same transaction (businessStatus: MarkDeliveryFailed, as nothing will be delivered).
	Update ReferralUpdate
}

// Discard records an engineer's discard of a message.
type Discard struct {
	MessageID string
	At        time.Time
	Actor     string
	Reason    string
	FromState MessageState
}

// Discardable reports whether a message in state s may be discarded: it is waiting to be sent (pending) or
// has given up (dead). An inflight message may be reaching its destination right now; the others are
// final.
func Discardable(s MessageState) bool {
	switch s {
	case StatePending, StateDead:
		return true
	case StateInflight, StateDelivered, StateCancelled, StateDiscarded:
	}
	return false
}

// Pause holds a destination: while it is paused no claim leases its messages (they stay pending, or
// inflight with an expired lease, and no attempt is made), and its retry budgets do not run (on resume, the
// paused time is added back to the BudgetFrom of its pending and inflight messages).
type Pause struct {
	Destination mapping.Destination
	PausedAt    time.Time
	PausedBy    string
	Reason      string
	// ResumedAt and ResumedBy are set once the pause has ended (zero while it holds).
	ResumedAt time.Time
	ResumedBy string
}

// Resumed is what ResumeDestination did.
type Resumed struct {
	Pause Pause // the pause as it ended
	// Messages is the number of the destination's pending and inflight messages whose retry budget was
	// extended by the paused time; its pending messages are due at once.
	Messages int
}

// DestinationCount is the number of messages of one destination in one state.
type DestinationCount struct {
	Destination mapping.Destination
	State       MessageState
	Count       int
}

// InboxStat is how a community service's unacknowledged referrals stand: those still requested (waiting for
// the service to see them), how many of them are overdue (businessStatus overdue), and when the oldest was
// created.
type InboxStat struct {
	ServiceID     string
	Waiting       int
	Overdue       int
	OldestWaiting time.Time
}

// Operations is the part of Store behind the engineers' tools (CLI, admin API, console): discarding
// messages, pausing destinations and the counts of the overview.
type Operations interface {
	// DiscardMessages moves the named pending or dead messages to StateDiscarded (see DiscardRequest), in
	// one transaction, and returns them as they now are; with DryRun, those that would be discarded, as
	// they are.
	DiscardMessages(ctx context.Context, now time.Time, req DiscardRequest) ([]Message, error)
	// PauseDestination starts p (Destination, PausedAt, PausedBy and Reason set) unless the destination is
	// already paused: it returns the pause in force and whether this call started it.
	PauseDestination(ctx context.Context, p Pause) (Pause, bool, error)
	// ResumeDestination ends the destination's pause at now (ErrNotFound when it is not paused): its
	// pending messages become due at once, and the paused time is added back to the retry budgets of its
	// pending and inflight messages (a message created or replayed during the pause has its budget start at
	// now).
	ResumeDestination(ctx context.Context, dest mapping.Destination, now time.Time, actor string) (Resumed, error)
	// ListPauses returns the pauses in force, oldest first.
	ListPauses(ctx context.Context) ([]Pause, error)
	// CountByDestination returns the number of messages of every (destination, state) that has any, ordered
	// by destination and state.
	CountByDestination(ctx context.Context) ([]DestinationCount, error)
	// CountDelivered returns the number of messages delivered at or after since.
	CountDelivered(ctx context.Context, since time.Time) (int, error)
	// InboxStats returns, for every community service with referrals still requested, how many wait, how
	// many of those are overdue and the creation of the oldest, ordered by service id.
	InboxStats(ctx context.Context) ([]InboxStat, error)
}

// Errors of opening a store that must already exist (the backends' Options.Existing, used by the CLI, which
// never creates nor migrates a database).
var (
	// ErrNoDatabase: there is no socialrx database there (no file, or no socialrx schema in it).
	ErrNoDatabase = fault.Sentinel(fault.Unavailable, "no socialrx database there")
	// ErrSchemaBehind: the database lacks migrations this build of socialrx needs (`socialrx migrate`).
	ErrSchemaBehind = fault.Sentinel(fault.Unavailable, "the database schema is older than this socialrx")
)
