package mapping

import (
	"testing"
	"time"
)

func TestCapacityStatusesWalked(t *testing.T) {
	t.Parallel()
	for _, s := range AllCapacityStatuses() {
		if !s.Valid() {
			t.Errorf("%s not valid", s)
		}
		if code, _ := s.SDOHCapacityCode(); code == "" {
			t.Errorf("%s has no SDOH code", s)
		}
	}
	if CapacityStatus("").Valid() || CapacityStatus("closed").Valid() {
		t.Error("an unknown state is valid")
	}
	for _, st := range AllStatuses() {
		want := st == StatusAccepted || st == StatusInProgress || st == StatusOnHold
		if OpenStatus(st) != want {
			t.Errorf("OpenStatus(%s) = %v", st, !want)
		}
	}
}

func TestCapacityEffective(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	day := func(d int) time.Time { return time.Date(2026, 11, 21+d, 0, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		name string
		c    Capacity
		want CapacityStatus
		note string
	}{
		{"never set", Capacity{}, CapacityOpen, "taking referrals"},
		{"open", Capacity{Status: CapacityOpen}, CapacityOpen, "taking referrals"},
		{"open below max", Capacity{Status: CapacityOpen, MaxOpen: 3, Open: 2}, CapacityOpen, "taking referrals"},
		{"open at max", Capacity{Status: CapacityOpen, MaxOpen: 3, Open: 3}, CapacityFull, "full: 3 of 3 places taken"},
		{"waitlist at max", Capacity{Status: CapacityWaitlist, ExpectedWaitDays: 7, MaxOpen: 1, Open: 1}, CapacityFull, "full: 1 of 1 places taken"},
		{"waitlist", Capacity{Status: CapacityWaitlist, ExpectedWaitDays: 7}, CapacityWaitlist, "waiting list: expected wait 7 days"},
		{"waitlist, no wait said", Capacity{Status: CapacityWaitlist}, CapacityWaitlist, "waiting list"},
		{"full", Capacity{Status: CapacityFull}, CapacityFull, "full: not taking referrals"},
		{"paused until later", Capacity{Status: CapacityPaused, Until: day(3)}, CapacityPaused, "paused until 2026-11-24"},
		{"paused, until passed", Capacity{Status: CapacityPaused, Until: day(0)}, CapacityOpen, "taking referrals"},
		{"paused, no date", Capacity{Status: CapacityPaused}, CapacityPaused, "paused"},
		{"paused at max stays paused", Capacity{Status: CapacityPaused, MaxOpen: 1, Open: 1}, CapacityPaused, "paused"},
	} {
		if got := tc.c.Effective(now); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
		if got := tc.c.Note(now); got != tc.note {
			t.Errorf("%s: note %q, want %q", tc.name, got, tc.note)
		}
	}
}

func TestCheckCapacity(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		c     Capacity
		field string
	}{
		{Capacity{Status: CapacityOpen}, ""},
		{Capacity{Status: CapacityWaitlist, ExpectedWaitDays: MaxExpectedWaitDays}, ""},
		{Capacity{Status: CapacityPaused, Until: now.Add(24 * time.Hour)}, ""},
		{Capacity{Status: CapacityFull, MaxOpen: MaxOpenLimit}, ""},
		{Capacity{Status: ""}, FieldCapacityStatus},
		{Capacity{Status: "busy"}, FieldCapacityStatus},
		{Capacity{Status: CapacityWaitlist, ExpectedWaitDays: -1}, FieldExpectedWait},
		{Capacity{Status: CapacityWaitlist, ExpectedWaitDays: MaxExpectedWaitDays + 1}, FieldExpectedWait},
		{Capacity{Status: CapacityOpen, ExpectedWaitDays: 2}, FieldExpectedWait},
		{Capacity{Status: CapacityFull, Until: now.Add(48 * time.Hour)}, FieldUntil},
		{Capacity{Status: CapacityPaused, Until: now}, FieldUntil},
		{Capacity{Status: CapacityOpen, MaxOpen: -1}, FieldMaxOpen},
		{Capacity{Status: CapacityOpen, MaxOpen: MaxOpenLimit + 1}, FieldMaxOpen},
	} {
		if field, why := CheckCapacity(tc.c, now); field != tc.field || (field != "" && why == "") {
			t.Errorf("%+v: field %q (%s), want %q", tc.c, field, why, tc.field)
		}
	}
}
