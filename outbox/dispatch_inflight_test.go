package outbox_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// noMoreWithin fails t if rc is sent another request within d: its requests in flight are at their cap.
func noMoreWithin(t *testing.T, rc *gatedReceiver, name string, d time.Duration) {
	t.Helper()
	select {
	case h := <-rc.hits:
		inFlight, _ := rc.counts()
		t.Fatalf("%s: request %s sent with %d already in flight", name, h.ID, inFlight-1)
	case <-time.After(d):
	}
}

// TestDispatchOwnCapAboveTheDefault: a service whose own cap (InFlight, the directory's
// delivery.max_in_flight) is above PerDestination is sent up to that many requests at once, and no more;
// a service without one stays at PerDestination meanwhile.
func TestDispatchOwnCapAboveTheDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	wide, plain := newGatedReceiver(t), newGatedReceiver(t)
	e.serve("wide", wide.receiver)
	e.serve("plain", plain.receiver)
	const n, perDest, own = 10, 2, 6
	for i := range n {
		e.refer(fmt.Sprintf("w%d", i), created("wide"))
		e.refer(fmt.Sprintf("p%d", i), created("plain"))
	}
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Clock = time.Now
		o.PerDestination = perDest
		o.InFlight = map[mapping.Destination]int{service("wide"): own}
	})
	for range own {
		wide.next(t) // times out if the service is held to PerDestination
	}
	for range perDest {
		plain.next(t)
	}
	noMoreWithin(t, wide, "wide", 300*time.Millisecond)
	noMoreWithin(t, plain, "plain", 0)
	if _, peak := wide.counts(); peak != own {
		t.Errorf("wide: %d requests in flight at most, want its own cap (%d)", peak, own)
	}
	if _, peak := plain.counts(); peak != perDest {
		t.Errorf("plain: %d requests in flight at most, want PerDestination (%d)", peak, perDest)
	}
	close(wide.gate)
	close(plain.gate)
	r.delivered(2 * n)
	if _, peak := wide.counts(); peak > own {
		t.Errorf("wide: %d requests in flight at once, want at most %d", peak, own)
	}
	if _, peak := plain.counts(); peak > perDest {
		t.Errorf("plain: %d requests in flight at once, want at most %d", peak, perDest)
	}
}

// TestDispatchOwnCapBelowTheDefault: a small group's endpoint with a cap of its own below PerDestination is
// sent one request at a time, and every claim names it with no more room than that cap and as many ahead,
// its first claim included (left out of a claim, it would be given PerDestination).
func TestDispatchOwnCapBelowTheDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	small, log := e.serveLoggingRoom("small")
	const n, own = 5, 1
	var ids []string
	for i := range n {
		ids = append(ids, e.refer(fmt.Sprintf("s%d", i), created("small"))...)
	}
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Clock = time.Now
		o.PerDestination = 4
		o.InFlight = map[mapping.Destination]int{service("small"): own}
	})
	for range ids {
		small.next(t)
		noMoreWithin(t, small, "small", 100*time.Millisecond)
		small.gate <- struct{}{}
	}
	r.delivered(n)
	if _, peak := small.counts(); peak != own {
		t.Errorf("%d requests in flight at most, want the service's own cap (%d)", peak, own)
	}
	rooms := log.log()
	if len(rooms) == 0 {
		t.Fatal("no claim seen")
	}
	for i, c := range rooms {
		if c[0] < 0 || c[0] > 2*own {
			t.Errorf("claim %d gave the service room %d (-1: not named), want 0 to %d: %v", i, c[0], 2*own, rooms)
		}
	}
}
