package outbox_test

import (
	"testing"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// TestMessageStateProgress walks every message state through Progress, the fact mapping.Withdrawal decides on.
func TestMessageStateProgress(t *testing.T) {
	t.Parallel()
	want := map[outbox.MessageState]mapping.DeliveryProgress{
		outbox.StatePending:   mapping.ProgressUnsent,
		outbox.StateDead:      mapping.ProgressUnsent,
		outbox.StateInflight:  mapping.ProgressInFlight,
		outbox.StateDelivered: mapping.ProgressDelivered,
		outbox.StateCancelled: mapping.ProgressWithdrawn,
		outbox.StateDiscarded: mapping.ProgressWithdrawn,
	}
	for _, st := range outbox.AllStates() {
		got := st.Progress()
		if got != want[st] || !got.Valid() {
			t.Errorf("%s.Progress() = %q, want %q", st, got, want[st])
		}
	}
	if p := outbox.MessageState("").Progress(); p != "" {
		t.Errorf("invalid state's progress %q, want none", p)
	}
}
