package outboxtest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// moveTo is a ReferralUpdate setting the referral's status.
func moveTo(st mapping.TaskStatus) outbox.ReferralUpdate {
	return func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.Status = st
		return next, nil, nil
	}
}

// openCount reads the service's open count.
func openCount(t *testing.T, s outbox.Store, service string) int {
	t.Helper()
	c, _, err := s.GetCapacity(t.Context(), service)
	if err != nil {
		t.Fatal(err)
	}
	return c.Open
}

// testCapacityStates: a service's capacity is stored and read back as set; the directory's initial setting
// (ifAbsent) never overrides a group's; the open count follows accept, complete, fail and cancel by itself.
func testCapacityStates(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	c, found, err := s.GetCapacity(ctx, walks.ID)
	if err != nil || found || c.ServiceID != walks.ID || c.Open != 0 || c.Status != "" {
		t.Fatalf("never set: %+v found %v, %v", c, found, err)
	}
	wait := mapping.Capacity{ServiceID: walks.ID, Status: mapping.CapacityWaitlist, ExpectedWaitDays: 14,
		MaxOpen: 0, UpdatedAt: at(time.Minute), UpdatedBy: "inbox:frome-walks"}
	got, set, err := s.SetCapacity(ctx, wait, false)
	if err != nil || !set {
		t.Fatalf("set: %v %v", set, err)
	}
	diff(t, "set", got, wait)
	if got, set, err := s.SetCapacity(ctx, mapping.Capacity{ServiceID: walks.ID, Status: mapping.CapacityOpen,
		MaxOpen: 9, UpdatedAt: at(2 * time.Minute), UpdatedBy: "directory"}, true); err != nil || set {
		t.Fatalf("if absent over a stored one: %+v %v %v", got, set, err)
	} else {
		diff(t, "kept", got, wait)
	}
	paused := mapping.Capacity{ServiceID: debt.ID, Status: mapping.CapacityPaused, Until: time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC),
		MaxOpen: 2, UpdatedAt: at(3 * time.Minute), UpdatedBy: "api:debt-advice"}
	if _, set, err := s.SetCapacity(ctx, paused, true); err != nil || !set {
		t.Fatalf("if absent, none stored: %v %v", set, err)
	}
	c, found, err = s.GetCapacity(ctx, debt.ID)
	if err != nil || !found {
		t.Fatalf("get: %v %v", found, err)
	}
	diff(t, "read back", c, paused)
	if _, _, err := s.SetCapacity(ctx, mapping.Capacity{ServiceID: walks.ID, Status: "nearly", UpdatedAt: at(0)}, false); err == nil {
		t.Error("an unknown status was stored")
	}

	for n := 1; n <= 4; n++ {
		create(t, s, intake(n))
	}
	for _, id := range []string{"ref-001", "ref-002", "ref-003", "ref-004"} {
		if _, err := s.UpdateReferral(ctx, id, 0, at(time.Hour), moveTo(mapping.StatusAccepted)); err != nil {
			t.Fatal(err)
		}
	}
	if n := openCount(t, s, walks.ID); n != 4 {
		t.Fatalf("open after 4 accepts: %d", n)
	}
	steps := []struct {
		id string
		to mapping.TaskStatus
	}{
		{"ref-001", mapping.StatusInProgress}, // still open
		{"ref-001", mapping.StatusCompleted},  // frees one
		{"ref-002", mapping.StatusCancelled},  // the GP's cancellation frees one
		{"ref-003", mapping.StatusInProgress},
		{"ref-003", mapping.StatusFailed}, // frees one
	}
	want := []int{4, 3, 2, 2, 1}
	for i, st := range steps {
		if _, err := s.UpdateReferral(ctx, st.id, 0, at(2*time.Hour), moveTo(st.to)); err != nil {
			t.Fatal(err)
		}
		if n := openCount(t, s, walks.ID); n != want[i] {
			t.Errorf("after %s → %s: open %d, want %d", st.id, st.to, n, want[i])
		}
	}
	all, err := s.ListCapacities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantAll := map[string]mapping.Capacity{debt.ID: paused}
	w := wait
	w.Open = 1
	wantAll[walks.ID] = w
	diff(t, "list", all, wantAll)
}

// testCapacityMaxOpenConcurrent: many accepts at once for a service with a maximum never take it over the
// maximum: exactly max_open succeed, the rest fail with ErrCapacityFull (kind conflict) and write nothing; a
// completion frees a place for the next accept.
func testCapacityMaxOpenConcurrent(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	const n, maxOpen = 12, 3
	for i := 1; i <= n; i++ {
		create(t, s, intake(i))
	}
	if _, _, err := s.SetCapacity(ctx, mapping.Capacity{ServiceID: walks.ID, Status: mapping.CapacityOpen, MaxOpen: maxOpen,
		UpdatedAt: at(time.Minute)}, false); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.UpdateReferral(ctx, fmt.Sprintf("ref-%03d", i+1), 0, at(time.Hour), moveTo(mapping.StatusAccepted))
		})
	}
	wg.Wait()
	ok, full := 0, 0
	var accepted string
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
			accepted = fmt.Sprintf("ref-%03d", i+1)
		case errors.Is(err, outbox.ErrCapacityFull) && fault.KindOf(err) == fault.Conflict:
			full++
			if r := get(t, s, fmt.Sprintf("ref-%03d", i+1)); r.Record.Status != mapping.StatusRequested || r.Record.Version != 1 {
				t.Errorf("a refused accept wrote: %s v%d", r.Record.Status, r.Record.Version)
			}
		default:
			t.Errorf("accept %d: %v", i+1, err)
		}
	}
	if ok != maxOpen || full != n-maxOpen {
		t.Fatalf("%d accepted, %d refused as full; want %d and %d", ok, full, maxOpen, n-maxOpen)
	}
	c, _, err := s.GetCapacity(ctx, walks.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Open != maxOpen || c.Effective(at(time.Hour)) != mapping.CapacityFull {
		t.Fatalf("after the rush: open %d, effective %s", c.Open, c.Effective(at(time.Hour)))
	}
	// A move between open statuses is never refused; a completion frees a place.
	if _, err := s.UpdateReferral(ctx, accepted, 0, at(2*time.Hour), moveTo(mapping.StatusInProgress)); err != nil {
		t.Fatalf("start while full: %v", err)
	}
	if _, err := s.UpdateReferral(ctx, accepted, 0, at(2*time.Hour), moveTo(mapping.StatusCompleted)); err != nil {
		t.Fatal(err)
	}
	var next string
	for i := 1; i <= n; i++ {
		if id := fmt.Sprintf("ref-%03d", i); get(t, s, id).Record.Status == mapping.StatusRequested {
			next = id
			break
		}
	}
	if _, err := s.UpdateReferral(ctx, next, 0, at(3*time.Hour), moveTo(mapping.StatusAccepted)); err != nil {
		t.Fatalf("accept after a completion freed a place: %v", err)
	}
	if n := openCount(t, s, walks.ID); n != maxOpen {
		t.Fatalf("open %d, want %d", n, maxOpen)
	}
	// Another service is not limited by this one's maximum.
	create(t, s, toService(intake(50), debt))
	if _, err := s.UpdateReferral(ctx, "ref-050", 0, at(3*time.Hour), moveTo(mapping.StatusAccepted)); err != nil {
		t.Fatalf("another service: %v", err)
	}
}

// testRouteCapacities: routing's read of the capacities counts the open referrals of every stored capacity
// with a maximum and of every service named (a directory maximum not stored yet), exactly as GetCapacity
// counts them, and no other: a service without a maximum reads 0 however many referrals it holds open. A
// stored capacity named as well is read once, as stored.
func testRouteCapacities(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	const lunch = "lunch-club"
	// frome-walks: stored, maximum 5, 3 open; debt-advice: stored, no maximum, 2 open; lunch-club: not
	// stored, named, 1 open; park-run: not stored, not named, 1 open.
	services := []string{walks.ID, walks.ID, walks.ID, debt.ID, debt.ID, lunch, "park-run", walks.ID}
	for i, svc := range services {
		n := i + 1
		create(t, s, toService(intake(n), mapping.Destination{Kind: mapping.DestinationService, ID: svc}))
		if n < len(services) { // the last one stays requested: not open
			id := fmt.Sprintf("ref-%03d", n)
			if _, err := s.UpdateReferral(ctx, id, 0, at(time.Hour), moveTo(mapping.StatusAccepted)); err != nil {
				t.Fatal(err)
			}
		}
	}
	walksCap := mapping.Capacity{ServiceID: walks.ID, Status: mapping.CapacityOpen, MaxOpen: 5,
		UpdatedAt: at(time.Minute), UpdatedBy: "api"}
	debtCap := mapping.Capacity{ServiceID: debt.ID, Status: mapping.CapacityWaitlist, ExpectedWaitDays: 7,
		UpdatedAt: at(time.Minute), UpdatedBy: "api"}
	for _, c := range []mapping.Capacity{walksCap, debtCap} {
		if _, _, err := s.SetCapacity(ctx, c, false); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.RouteCapacities(ctx, []string{lunch, debt.ID})
	if err != nil {
		t.Fatal(err)
	}
	w := walksCap
	w.Open = 3
	want := map[string]mapping.Capacity{walks.ID: w, debt.ID: debtCap, lunch: {ServiceID: lunch, Open: 1}}
	diff(t, "route capacities", got, want)
	for _, id := range []string{walks.ID, lunch} {
		if n := openCount(t, s, id); n != want[id].Open {
			t.Errorf("%s: routing counted %d open, GetCapacity %d", id, want[id].Open, n)
		}
	}
	// A completion frees a place: the next read counts it.
	if _, err := s.UpdateReferral(ctx, "ref-001", 0, at(2*time.Hour), moveTo(mapping.StatusCompleted)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.RouteCapacities(ctx, nil); err != nil || got[walks.ID].Open != 2 || len(got) != 2 {
		t.Errorf("after a completion: %+v, %v; want frome-walks open 2 and only the two stored", got, err)
	}
}
