package outbox_test

import (
	"testing"

	"github.com/socialrx/socialrx/outbox"
)

// TestDiscardable walks every message state: only a message waiting to be sent (pending) or given up (dead)
// can be discarded; an inflight one may be reaching its destination, the others are final.
func TestDiscardable(t *testing.T) {
	t.Parallel()
	want := map[outbox.MessageState]bool{outbox.StatePending: true, outbox.StateDead: true}
	for _, st := range outbox.AllStates() {
		if got := outbox.Discardable(st); got != want[st] {
			t.Errorf("Discardable(%s) = %v, want %v", st, got, want[st])
		}
	}
	if outbox.Discardable("") {
		t.Error("the invalid state is discardable")
	}
}
