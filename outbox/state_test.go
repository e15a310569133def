package outbox_test

import (
	"errors"
	"testing"

	"github.com/socialrx/socialrx/outbox"
)

func TestMessageStates(t *testing.T) {
	t.Parallel()
	finished := map[outbox.MessageState]bool{outbox.StateDelivered: true, outbox.StateCancelled: true, outbox.StateDiscarded: true}
	for _, st := range outbox.AllStates() {
		if !st.Valid() {
			t.Errorf("%s not valid", st)
		}
		if st.Finished() != finished[st] {
			t.Errorf("%s.Finished() = %v", st, st.Finished())
		}
		if got, err := outbox.ParseState(string(st)); err != nil || got != st {
			t.Errorf("ParseState(%s) = %s, %v", st, got, err)
		}
	}
	for _, bad := range []string{"", "Cancelled", "withdrawn"} {
		if _, err := outbox.ParseState(bad); !errors.Is(err, outbox.ErrBadRequest) || outbox.MessageState(bad).Valid() {
			t.Errorf("ParseState(%q) = %v", bad, err)
		}
	}
}
