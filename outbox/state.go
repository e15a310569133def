package outbox

import (
	"fmt"

	"github.com/socialrx/socialrx/fault"
)

// ErrBadRequest marks a request about messages that cannot be carried out as asked (an unknown state name, a
// replay without a reason or a selection); the message says what to change.
var ErrBadRequest = fault.Sentinel(fault.Invalid, "bad request")

// ParseState parses a message state name.
func ParseState(s string) (MessageState, error) {
	st := MessageState(s)
	switch st {
	case StatePending, StateInflight, StateDelivered, StateDead, StateCancelled, StateDiscarded:
		return st, nil
	}
	return "", fmt.Errorf("%w: state %q must be pending, inflight, delivered, dead, cancelled or discarded", ErrBadRequest, s)
}
