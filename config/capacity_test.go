package config

import (
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
)

// TestDirectoryCapacity: a service's capacity block is read, and every bad value is named with its place.
func TestDirectoryCapacity(t *testing.T) {
	t.Parallel()
	good := `services:
  - {id: s1, name: One, capacity: {status: waitlist, expected_wait_days: 10, max_open: 4}}
  - {id: s2, name: Two, capacity: {status: paused, until: "2027-01-04"}}
  - {id: s3, name: Three}
`
	c, err := Parse([]byte(good), "")
	if err != nil {
		t.Fatal(err)
	}
	s1, s2, s3 := c.Directory.Services[0].Capacity, c.Directory.Services[1].Capacity, c.Directory.Services[2].Capacity
	if s1 == nil || *s1 != (mapping.Capacity{Status: mapping.CapacityWaitlist, ExpectedWaitDays: 10, MaxOpen: 4}) {
		t.Errorf("s1: %+v", s1)
	}
	if s2 == nil || s2.Status != mapping.CapacityPaused || !s2.Until.Equal(time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("s2: %+v", s2)
	}
	if s3 != nil {
		t.Errorf("s3: %+v", s3)
	}
	bad := `services:
  - {id: s1, name: One, capacity: {status: roomy}}
  - {id: s2, name: Two, capacity: {status: open, expected_wait_days: 3}}
  - {id: s3, name: Three, capacity: {status: paused, until: "soon"}}
  - {id: s4, name: Four, capacity: {status: open, max_open: -2}}
  - {id: s5, name: Five, capacity: {status: open, colour: red}}
`
	_, err = Parse([]byte(bad), "")
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"colour"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
	bad = strings.ReplaceAll(bad, "  - {id: s5, name: Five, capacity: {status: open, colour: red}}\n", "")
	_, err = Parse([]byte(bad), "")
	for _, want := range []string{"services[0].capacity.status", "services[1].capacity.expected_wait_days",
		"services[2].capacity.until", "services[3].capacity.max_open"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
}

// TestDirectoryNeedsAndPolicy: meets and when_unavailable are read; left out, meets is not declared (nil).
func TestDirectoryNeedsAndPolicy(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(`services:
  - {id: s1, name: One, meets: [wheelchair-access, interpreter], when_unavailable: waitlist}
  - {id: s2, name: Two, meets: []}
  - {id: s3, name: Three}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	s := c.Directory.Services
	if len(s[0].CanMeet) != 2 || s[0].WhenUnavailable != mapping.PolicyWaitlist {
		t.Errorf("s1: %+v", s[0])
	}
	if s[1].CanMeet == nil || len(s[1].CanMeet) != 0 || s[2].CanMeet != nil {
		t.Errorf("declared none %v, undeclared %v", s[1].CanMeet, s[2].CanMeet)
	}
	_, err = Parse([]byte(`services:
  - {id: s1, name: One, meets: [teleportation], when_unavailable: shrug}
`), "")
	for _, want := range []string{"services[0].meets[0]", "services[0].when_unavailable"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
}

// TestDirectoryDeadlines: deadlines are read in days or hours, one left out keeps its default, bad ones are
// named; at most one service is the link worker.
func TestDirectoryDeadlines(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(`services:
  - {id: s1, name: One, deadlines: {remind_after: 36h, decline_after: 10d}}
  - {id: s2, name: Two, link_worker: true}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	s := c.Directory.Services
	want := mapping.Deadlines{RemindAfter: 36 * time.Hour, EscalateAfter: 4 * 24 * time.Hour, DeclineAfter: 10 * 24 * time.Hour}
	if s[0].ResponseDeadlines() != want || s[1].Deadlines != nil || s[1].ResponseDeadlines() != mapping.DefaultDeadlines() {
		t.Errorf("deadlines %+v, %+v", s[0].Deadlines, s[1].Deadlines)
	}
	if lw, ok := c.Directory.LinkWorker(); !ok || lw.ID != "s2" {
		t.Errorf("link worker %q %v", lw.ID, ok)
	}
	_, err = Parse([]byte(`services:
  - {id: s1, name: One, deadlines: {remind_after: soon}}
  - {id: s2, name: Two, deadlines: {remind_after: 5d}}
  - {id: s3, name: Three, link_worker: true}
  - {id: s4, name: Four, link_worker: true}
`), "")
	for _, want := range []string{"services[0].deadlines.remind_after", "services[1].deadlines: escalate_after", "link_worker"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
}
