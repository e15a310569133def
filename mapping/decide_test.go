package mapping

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
)

// TestDecide walks routing across capacity × needs × the named service's policy (issue 13).
func TestDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	walks := Service{ID: "walks", Name: "Walks", CanMeet: []SupportNeed{NeedWheelchair}}
	walks2 := Service{ID: "walks2", Name: "Walks Two", CanMeet: []SupportNeed{NeedWheelchair, NeedOneToOne}}
	museum := Service{ID: "museum", Name: "Museum", WhenUnavailable: PolicyWaitlist, CanMeet: []SupportNeed{}}
	undeclared := Service{ID: "undeclared", Name: "Undeclared"}
	lw := Service{ID: "lw", Name: "Link Workers", Default: true, CanMeet: AllSupportNeeds()}
	open := Capacity{Status: CapacityOpen}
	full := Capacity{Status: CapacityFull}
	paused := Capacity{Status: CapacityPaused, Until: now.Add(72 * time.Hour)}
	wait := func(d int) Capacity { return Capacity{Status: CapacityWaitlist, ExpectedWaitDays: d} }
	atMax := Capacity{Status: CapacityOpen, MaxOpen: 2, Open: 2}
	type want struct {
		svc     string
		outcome RouteOutcome
		reason  UnmetReason
		wanted  string
		wait    int
		amb     int
		noRoute bool
	}
	for _, tc := range []struct {
		name    string
		named   *Service
		matched []Service
		dflt    *Service
		needs   []SupportNeed
		caps    map[string]Capacity
		want    want
	}{
		// A named performer.
		{"named, open", &walks, nil, &lw, nil, map[string]Capacity{"walks": open}, want{svc: "walks", outcome: RouteDirect}},
		{"named, never set", &walks, nil, &lw, nil, nil, want{svc: "walks", outcome: RouteDirect}},
		{"named, meets the need", &walks, nil, &lw, []SupportNeed{NeedWheelchair}, nil, want{svc: "walks", outcome: RouteDirect}},
		{"named, waitlist", &walks, nil, &lw, nil, map[string]Capacity{"walks": wait(21)}, want{svc: "walks", outcome: RouteWaitlisted, wait: 21}},
		{"named, full, link-worker policy", &walks, nil, &lw, nil, map[string]Capacity{"walks": full}, want{svc: "lw", outcome: RouteLinkWorker, reason: UnmetNoCapacity, wanted: "walks"}},
		{"named, at its max", &walks, nil, &lw, nil, map[string]Capacity{"walks": atMax}, want{svc: "lw", outcome: RouteLinkWorker, reason: UnmetNoCapacity, wanted: "walks"}},
		{"named, paused", &walks, nil, &lw, nil, map[string]Capacity{"walks": paused}, want{svc: "lw", outcome: RouteLinkWorker, reason: UnmetNoCapacity, wanted: "walks"}},
		{"named, full, waitlist policy", &museum, nil, &lw, nil, map[string]Capacity{"museum": full}, want{svc: "museum", outcome: RouteWaitlisted, reason: UnmetNoCapacity}},
		{"named, cannot meet the need", &walks, nil, &lw, []SupportNeed{NeedOneToOne}, nil, want{svc: "lw", outcome: RouteLinkWorker, reason: UnmetNeeds, wanted: "walks"}},
		{"named, waitlist policy cannot meet the need", &museum, nil, &lw, []SupportNeed{NeedHearingLoop}, nil, want{svc: "lw", outcome: RouteLinkWorker, reason: UnmetNeeds, wanted: "museum"}},
		{"named, declares no needs: not checked", &undeclared, nil, &lw, []SupportNeed{NeedOneToOne, NeedInterpreter}, nil, want{svc: "undeclared", outcome: RouteDirect}},
		{"named, full, no link worker", &walks, nil, nil, nil, map[string]Capacity{"walks": full}, want{svc: "walks", outcome: RouteNoAlternative, reason: UnmetNoCapacity, wanted: "walks"}},
		{"named link worker, full", &lw, nil, &lw, nil, map[string]Capacity{"lw": full}, want{svc: "lw", outcome: RouteNoAlternative, reason: UnmetNoCapacity, wanted: "lw"}},
		// Services matched by code.
		{"one match, open", nil, []Service{walks}, &lw, nil, nil, want{svc: "walks", outcome: RouteDirect}},
		{"two matches open: ask for a performer", nil, []Service{walks, walks2}, &lw, nil, nil, want{amb: 2, noRoute: true}},
		{"two matches, one full", nil, []Service{walks, walks2}, &lw, nil, map[string]Capacity{"walks": full}, want{svc: "walks2", outcome: RouteDirect}},
		{"two matches, needs narrow it", nil, []Service{walks, walks2}, &lw, []SupportNeed{NeedOneToOne}, nil, want{svc: "walks2", outcome: RouteDirect}},
		{"two matches, needs narrow to a full one", nil, []Service{walks, walks2}, &lw, []SupportNeed{NeedOneToOne}, map[string]Capacity{"walks2": full}, want{svc: "lw", outcome: RouteLinkWorker, reason: UnmetNoCapacity, wanted: "walks2"}},
		{"two waiting lists: the shorter wait", nil, []Service{walks, walks2}, &lw, nil, map[string]Capacity{"walks": wait(30), "walks2": wait(7)}, want{svc: "walks2", outcome: RouteWaitlisted, wait: 7}},
		{"a waiting list with no wait said comes last", nil, []Service{walks, walks2}, &lw, nil, map[string]Capacity{"walks": wait(0), "walks2": wait(40)}, want{svc: "walks2", outcome: RouteWaitlisted, wait: 40}},
		{"open beats a waiting list", nil, []Service{walks, walks2}, &lw, nil, map[string]Capacity{"walks": wait(1)}, want{svc: "walks2", outcome: RouteDirect}},
		{"all full, one keeps a waiting list", nil, []Service{walks, museum}, &lw, nil, map[string]Capacity{"walks": full, "museum": full}, want{svc: "museum", outcome: RouteWaitlisted, reason: UnmetNoCapacity}},
		{"all full", nil, []Service{walks, walks2}, &lw, nil, map[string]Capacity{"walks": full, "walks2": paused}, want{svc: "lw", outcome: RouteLinkWorker, reason: UnmetNoCapacity, wanted: "walks"}},
		{"none meets the needs", nil, []Service{walks, walks2}, &lw, []SupportNeed{NeedInterpreter}, nil, want{svc: "lw", outcome: RouteLinkWorker, reason: UnmetNeeds, wanted: "walks"}},
		{"none meets the needs, no link worker", nil, []Service{walks}, nil, []SupportNeed{NeedInterpreter}, nil, want{svc: "walks", outcome: RouteNoAlternative, reason: UnmetNeeds, wanted: "walks"}},
		// Nothing named or matched.
		{"the default", nil, nil, &lw, []SupportNeed{NeedSafeguarding}, map[string]Capacity{"lw": full}, want{svc: "lw", outcome: RouteDefault}},
		{"no route at all", nil, nil, nil, nil, nil, want{noRoute: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc, d, amb, ok := Decide(RouteInput{Named: tc.named, Matched: tc.matched, Default: tc.dflt, Needs: tc.needs, Capacities: tc.caps, Now: now})
			if ok == tc.want.noRoute {
				t.Fatalf("ok %v, want %v (%+v)", ok, !tc.want.noRoute, d)
			}
			if tc.want.amb > 0 {
				if amb == nil || len(amb.Services) != tc.want.amb {
					t.Fatalf("ambiguous: %+v", amb)
				}
				return
			}
			if !ok {
				return
			}
			if svc.ID != tc.want.svc || d.Outcome != tc.want.outcome || d.Reason != tc.want.reason || d.ExpectedWaitDays != tc.want.wait {
				t.Errorf("got %s %s %s wait %d, want %+v", svc.ID, d.Outcome, d.Reason, d.ExpectedWaitDays, tc.want)
			}
			wanted := ""
			if d.Wanted != nil {
				wanted = d.Wanted.ID
			}
			if wanted != tc.want.wanted {
				t.Errorf("wanted %q, want %q", wanted, tc.want.wanted)
			}
			if d.Outcome.Shown() && d.Text == "" {
				t.Error("a shown decision without text")
			}
		})
	}
	for _, o := range AllRouteOutcomes() {
		if !o.Valid() {
			t.Errorf("%s is not valid", o)
		}
	}
}

// TestBuildRoutesByNeedsAndCapacity: Build reads the support needs from orderDetail, routes the referral
// through Decide, and shows the decision on the Task (businessStatus coding, statusReason) and the record.
func TestBuildRoutesByNeedsAndCapacity(t *testing.T) {
	t.Parallel()
	withNeeds := func(codes ...string) map[string]any {
		m := baseDoc(t)
		var cds []any
		for _, c := range codes {
			cds = append(cds, obj("system", SupportNeedSystem, "code", c))
		}
		m["orderDetail"] = []any{obj("coding", cds)}
		return m
	}
	dir := demoDirectory()
	for i := range dir.Services {
		switch dir.Services[i].ID {
		case "frome-walks":
			dir.Services[i].CanMeet = []SupportNeed{NeedWheelchair}
		case "link-workers":
			dir.Services[i].CanMeet = AllSupportNeeds()
		}
	}
	build := func(m map[string]any, caps map[string]Capacity) (Intake, error) {
		return Build(docSub(t, m), BuildInput{Directory: dir, Capacities: caps, PracticeODS: "A81001", Now: testNow, NewID: counterIDs()})
	}

	in, err := build(withNeeds("wheelchair-access"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec := in.Referral.Record; rec.Service.ID != "frome-walks" || rec.Route != nil || len(rec.SupportNeeds) != 1 || rec.StatusReason != "" {
		t.Errorf("a met need: %s route %+v needs %v", rec.Service.ID, rec.Route, rec.SupportNeeds)
	}

	in, err = build(withNeeds("one-to-one", "wheelchair-access"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := in.Referral.Record
	if rec.Service.ID != "link-workers" || rec.Route == nil || rec.Route.Reason != UnmetNeeds || rec.Route.Wanted.ID != "frome-walks" {
		t.Fatalf("an unmet need: %s %+v", rec.Service.ID, rec.Route)
	}
	task := TaskFor(in.Referral)
	if task.StatusReason == nil || !strings.Contains(task.StatusReason.Text, "cannot meet the person's support needs (one-to-one support)") {
		t.Errorf("statusReason: %+v", task.StatusReason)
	}
	if bs := task.BusinessStatus; bs == nil || len(bs.Coding) != 2 || bs.Coding[1].System != RouteDecisionSystem || bs.Coding[1].Code != "link-worker" {
		t.Errorf("businessStatus: %+v", bs)
	}

	in, err = build(withNeeds(), map[string]Capacity{"frome-walks": {Status: CapacityWaitlist, ExpectedWaitDays: 21}})
	if err != nil {
		t.Fatal(err)
	}
	if rec := in.Referral.Record; rec.Service.ID != "frome-walks" || rec.Route == nil || rec.Route.Outcome != RouteWaitlisted ||
		rec.StatusReason != "On the waiting list of Frome Walking for Health: expected wait 21 days" {
		t.Errorf("waitlisted: %s %+v %q", rec.Service.ID, rec.Route, rec.StatusReason)
	}

	in, err = build(baseDoc(t), map[string]Capacity{"frome-walks": {Status: CapacityOpen, MaxOpen: 3, Open: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if rec := in.Referral.Record; rec.Service.ID != "link-workers" || rec.Route.Reason != UnmetNoCapacity ||
		!strings.Contains(rec.StatusReason, "full: 3 of 3 places taken") {
		t.Errorf("at its maximum: %s %+v", rec.Service.ID, rec.Route)
	}

	_, err = build(withNeeds("one-to-one", "jetpack"), nil)
	var fe *fhir.Error
	if !errors.As(err, &fe) || fe.Kind != fault.Rule || len(fe.Issues) != 1 || fe.Issues[0].Expression[0] != "ServiceRequest.orderDetail[0].coding[1]" {
		t.Errorf("an unknown need: %v", err)
	}
}
