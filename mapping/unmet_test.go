package mapping

import (
	"testing"
	"time"
)

func TestPostcodeDistrict(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"BA11 1AA": "BA11", "ba11 1aa": "BA11", "BA111AA": "BA11", "SW1A 1AA": "SW1A", "M1 1AE": "M1",
		"B33 8TH": "B33", "": "unknown", "=1+1 1AA": "unknown", "BA11 1A=": "unknown", "BA11": "unknown", "not a postcode at all": "unknown",
	} {
		if got := PostcodeDistrict(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// TestUnmetCounts: each referral adds its cells (no room; each unmet need; a decline), counts are added up
// per month and district, and small numbers (1 to 4) are suppressed.
func TestUnmetCounts(t *testing.T) {
	t.Parallel()
	nov := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	dec := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	ref := func(created time.Time, postcode string, st TaskStatus, d *RouteDecision) Referral {
		return Referral{Record: Record{CreatedAt: created, Status: st, Patient: Person{Postcode: postcode}, Route: d}}
	}
	full := &RouteDecision{Outcome: RouteLinkWorker, Reason: UnmetNoCapacity, Needs: []SupportNeed{NeedWheelchair}}
	needs := &RouteDecision{Outcome: RouteLinkWorker, Reason: UnmetNeeds, Needs: []SupportNeed{NeedOneToOne, NeedInterpreter}}
	waitlisted := &RouteDecision{Outcome: RouteWaitlisted, ExpectedWaitDays: 9}
	var cells []UnmetKey
	for range 6 {
		cells = append(cells, UnmetCells(ref(nov, "BA11 1AA", StatusRequested, full))...)
	}
	for range 5 {
		cells = append(cells, UnmetCells(ref(nov, "BA11 2LB", StatusRejected, needs))...)
	}
	cells = append(cells, UnmetCells(ref(dec, "BA11 1AA", StatusRejected, nil))...)
	cells = append(cells, UnmetCells(ref(dec, "", StatusAccepted, waitlisted))...) // a waiting list is not unmet
	cells = append(cells, UnmetCells(ref(dec, "", StatusCompleted, nil))...)
	got := CountUnmet(cells)
	want := []UnmetRow{
		{UnmetKey: UnmetKey{Reason: UnmetDeclined, Month: "2026-11", District: "BA11"}, Count: 5},
		{UnmetKey: UnmetKey{Reason: UnmetNeeds, Need: NeedInterpreter, Month: "2026-11", District: "BA11"}, Count: 5},
		{UnmetKey: UnmetKey{Reason: UnmetNeeds, Need: NeedOneToOne, Month: "2026-11", District: "BA11"}, Count: 5},
		{UnmetKey: UnmetKey{Reason: UnmetNoCapacity, Month: "2026-11", District: "BA11"}, Count: 6},
		{UnmetKey: UnmetKey{Reason: UnmetDeclined, Month: "2026-12", District: "BA11"}, Suppressed: true},
	}
	if len(got) != len(want) {
		t.Fatalf("rows %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
