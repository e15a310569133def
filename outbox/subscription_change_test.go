package outbox

import "testing"

// TestSubscriptionChangeEveryState walks every message state: a dead message puts an active subscription in
// error (with the error), a delivered one brings an errored one back, no other outcome moves it.
func TestSubscriptionChangeEveryState(t *testing.T) {
	t.Parallel()
	for _, st := range AllStates() {
		ch := subscriptionChange("sub-1", st, "HTTP 404 Not Found")
		switch st {
		case StateDead:
			if ch == nil || ch.ID != "sub-1" || ch.From != SubscriptionActive || ch.To != SubscriptionError || ch.Error != "HTTP 404 Not Found" {
				t.Errorf("%s: %+v", st, ch)
			}
		case StateDelivered:
			if ch == nil || ch.From != SubscriptionError || ch.To != SubscriptionActive || ch.Error != "" {
				t.Errorf("%s: %+v", st, ch)
			}
		case StatePending, StateInflight, StateCancelled:
			if ch != nil {
				t.Errorf("%s: %+v, want no change", st, ch)
			}
		}
	}
	for _, st := range AllSubscriptionStatuses() {
		want := st != SubscriptionOff
		if st.Notified() != want || !st.Valid() {
			t.Errorf("%s: Notified %v Valid %v", st, st.Notified(), st.Valid())
		}
	}
	if SubscriptionStatus("").Valid() || SubscriptionStatus("requested").Valid() {
		t.Error("the zero value and requested are not stored statuses")
	}
}
