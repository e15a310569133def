package mapping

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RouteOutcome says how a referral was routed (issue 13). The zero value is invalid.
type RouteOutcome string

// Routing outcomes.
const (
	// RouteDirect: to a service with room that meets the person's needs.
	RouteDirect RouteOutcome = "routed"
	// RouteWaitlisted: onto the routed service's waiting list (ExpectedWaitDays when it said one).
	RouteWaitlisted RouteOutcome = "waitlisted"
	// RouteLinkWorker: the service asked for (or every service matching the codes) could not take it; handed
	// to the link-worker (default) service with the reason, to find another group.
	RouteLinkWorker RouteOutcome = "link-worker"
	// RouteDefault: nothing named or matched; the default service (as ever).
	RouteDefault RouteOutcome = "default"
	// RouteNoAlternative: nothing could take it and there is no other route (no link-worker service, or it is
	// the one that cannot): sent to the service anyway, with the reason, never silently nowhere.
	RouteNoAlternative RouteOutcome = "no-alternative"
)

// AllRouteOutcomes lists every routing outcome.
func AllRouteOutcomes() []RouteOutcome {
	return []RouteOutcome{RouteDirect, RouteWaitlisted, RouteLinkWorker, RouteDefault, RouteNoAlternative}
}

// Display is the outcome in words (Task.businessStatus display).
func (o RouteOutcome) Display() string {
	switch o {
	case RouteDirect:
		return "Routed to a service with room"
	case RouteWaitlisted:
		return "On the service's waiting list"
	case RouteLinkWorker:
		return "Handed to the link-worker service"
	case RouteDefault:
		return "Routed to the default service"
	case RouteNoAlternative:
		return "Sent without a better route"
	}
	return ""
}

// Valid reports whether o is a routing outcome.
func (o RouteOutcome) Valid() bool { return o.Display() != "" }

// Shown reports whether the GP's Task shows the outcome (Task.businessStatus, statusReason): every outcome
// except a plain route (RouteDirect, RouteDefault), which the Task's owner already says.
func (o RouteOutcome) Shown() bool {
	switch o {
	case RouteWaitlisted, RouteLinkWorker, RouteNoAlternative:
		return true
	case RouteDirect, RouteDefault:
	}
	return false
}

// RouteDecisionSystem is the code system of RouteOutcome codes in Task.businessStatus.
const RouteDecisionSystem = "https://socialrx.dev/fhir/CodeSystem/routing-decision"

// UnmetReason is why the service wanted could not take a referral (the unmet-need counts' reasons). The zero
// value means none.
type UnmetReason string

// Reasons a referral found no place.
const (
	UnmetNoCapacity UnmetReason = "no-capacity" // full, paused, or on a waiting list it does not take
	UnmetNeeds      UnmetReason = "needs-unmet" // no group it could go to meets the person's support needs
)

// UnavailablePolicy is what a service wants done with a referral that names it while it has no room
// (directory when_unavailable). The zero value is PolicyLinkWorker.
type UnavailablePolicy string

// Policies for a named service with no room. A named service that cannot meet the person's needs always
// hands the referral to the link-worker service.
const (
	PolicyLinkWorker UnavailablePolicy = "link-worker" // hand it to the link-worker service (the default)
	PolicyWaitlist   UnavailablePolicy = "waitlist"    // keep it, on the waiting list, with the expected wait
)

// Valid reports whether p is a policy ("" is the default, link-worker).
func (p UnavailablePolicy) Valid() bool {
	return p == "" || p == PolicyLinkWorker || p == PolicyWaitlist
}

// RouteDecision is how a referral was routed, kept with it (Record.Route) and shown to the GP when
// RouteOutcome.Shown (Task.businessStatus coding in RouteDecisionSystem, Task.statusReason Text).
type RouteDecision struct {
	Outcome RouteOutcome `json:"outcome"`
	Reason  UnmetReason  `json:"reason,omitempty"`
	// Wanted is the service asked for (the performer) or matched by code, when the referral went elsewhere or
	// nowhere better.
	Wanted           *ServiceRef   `json:"wanted,omitempty"`
	ExpectedWaitDays int           `json:"expected_wait_days,omitempty"`
	Needs            []SupportNeed `json:"needs,omitempty"` // the person's support needs routing looked at
	Text             string        `json:"text"`
}

// RouteInput is what Decide chooses from: the service named by the performer (or nil), else the services
// whose codes match (possibly none), the default (link-worker) service (or nil), the person's needs, and every
// service's capacity (absent: open).
type RouteInput struct {
	Named      *Service
	Matched    []Service
	Default    *Service
	Needs      []SupportNeed
	Capacities map[string]Capacity
	Now        time.Time
}

// Ambiguous is Decide's answer when several matched services have room and meet the needs: the caller asks
// for a performer (the directory's contract: several code matches need one).
type Ambiguous struct{ Services []Service }

// Decide routes a referral across capacity × needs × each service's policy (issue 13). It is pure:
//
//  1. A named service that meets the needs and takes referrals gets it (waitlisted when on a waiting list).
//     One that cannot meet the needs hands it to the link-worker service (needs-unmet). One with no room
//     (full, paused, or full at its max_open) keeps it on its waiting list when its policy is waitlist, and
//     otherwise hands it to the link-worker service (no-capacity).
//  2. Else, among the services whose codes match: those meeting the needs with room; exactly one open: it;
//     several open: ambiguous (ask for a performer, as before); none open but some on a waiting list: the
//     shortest expected wait (unknown waits last; directory order breaks ties); none with room: the first
//     whose policy is waitlist keeps it on its list, else the link-worker service (no-capacity); none meeting
//     the needs: the link-worker service (needs-unmet).
//  3. Else the default service (RouteDefault).
//  4. Handing to the link-worker service when there is none, or when the service that cannot take it is the
//     link-worker service itself, sends it to the service wanted anyway (RouteNoAlternative), with the reason.
//
// ok is false only when there is no route at all (no named, no match, no default).
func Decide(in RouteInput) (svc Service, d RouteDecision, amb *Ambiguous, ok bool) {
	state := func(s Service) Capacity {
		c := in.Capacities[s.ID]
		c.ServiceID = s.ID
		return c
	}
	needs := sortNeeds(in.Needs)
	direct := func(s Service) (Service, RouteDecision, *Ambiguous, bool) {
		c := state(s)
		if c.Effective(in.Now) == CapacityWaitlist {
			return s, waitlisted(s, c, needs, ""), nil, true
		}
		return s, RouteDecision{Outcome: RouteDirect, Needs: needs}, nil, true
	}
	handOff := func(wanted Service, why UnmetReason) (Service, RouteDecision, *Ambiguous, bool) {
		ref := &ServiceRef{ID: wanted.ID, Name: wanted.Name}
		cause := unmetText(wanted, state(wanted), why, needs, in.Now)
		if in.Default == nil || in.Default.ID == wanted.ID {
			return wanted, RouteDecision{Outcome: RouteNoAlternative, Reason: why, Wanted: ref, Needs: needs,
				Text: cause + "; there is no other route, so it was sent to " + wanted.Name + " anyway"}, nil, true
		}
		return *in.Default, RouteDecision{Outcome: RouteLinkWorker, Reason: why, Wanted: ref, Needs: needs,
			Text: cause + "; sent to " + in.Default.Name + " to find another group"}, nil, true
	}
	if in.Named != nil {
		s := *in.Named
		switch {
		case !s.Meets(needs):
			return handOff(s, UnmetNeeds)
		case state(s).Effective(in.Now).TakesReferrals():
			return direct(s)
		case s.WhenUnavailable == PolicyWaitlist:
			return s, waitlisted(s, state(s), needs, UnmetNoCapacity), nil, true
		}
		return handOff(s, UnmetNoCapacity)
	}
	if len(in.Matched) > 0 {
		var meeting, open, waiting []Service
		for _, s := range in.Matched {
			if !s.Meets(needs) {
				continue
			}
			meeting = append(meeting, s)
			switch state(s).Effective(in.Now) {
			case CapacityOpen:
				open = append(open, s)
			case CapacityWaitlist:
				waiting = append(waiting, s)
			case CapacityFull, CapacityPaused:
			}
		}
		switch {
		case len(meeting) == 0:
			return handOff(in.Matched[0], UnmetNeeds)
		case len(open) == 1:
			return direct(open[0])
		case len(open) > 1:
			return Service{}, RouteDecision{}, &Ambiguous{Services: open}, false
		case len(waiting) > 0:
			slices.SortStableFunc(waiting, func(a, b Service) int { return cmp.Compare(waitKey(state(a)), waitKey(state(b))) })
			return direct(waiting[0])
		}
		for _, s := range meeting {
			if s.WhenUnavailable == PolicyWaitlist {
				return s, waitlisted(s, state(s), needs, UnmetNoCapacity), nil, true
			}
		}
		return handOff(meeting[0], UnmetNoCapacity)
	}
	if in.Default != nil {
		return *in.Default, RouteDecision{Outcome: RouteDefault, Needs: needs}, nil, true
	}
	return Service{}, RouteDecision{}, nil, false
}

// waitKey orders waiting lists: the shortest expected wait first, an unknown wait last.
func waitKey(c Capacity) int {
	if c.ExpectedWaitDays > 0 {
		return c.ExpectedWaitDays
	}
	return MaxExpectedWaitDays + 1
}

// waitlisted is the decision to put the referral on s's waiting list; why is no-capacity when s is full or
// paused and keeps waiting-list referrals by its policy.
func waitlisted(s Service, c Capacity, needs []SupportNeed, why UnmetReason) RouteDecision {
	d := RouteDecision{Outcome: RouteWaitlisted, Reason: why, ExpectedWaitDays: c.ExpectedWaitDays, Needs: needs}
	d.Text = "On the waiting list of " + s.Name
	if why == UnmetNoCapacity {
		d.Text = s.Name + " has no place now; on its waiting list"
	}
	if c.ExpectedWaitDays > 0 {
		d.Text += ": expected wait " + strconv.Itoa(c.ExpectedWaitDays) + " days"
	}
	return d
}

// unmetText says why s could not take the referral, without patient data beyond the needs' names.
func unmetText(s Service, c Capacity, why UnmetReason, needs []SupportNeed, now time.Time) string {
	switch why {
	case UnmetNeeds:
		var missing []string
		for _, n := range needs {
			if !slices.Contains(s.CanMeet, n) {
				missing = append(missing, strings.ToLower(n.Display()))
			}
		}
		return s.Name + " cannot meet the person's support needs (" + strings.Join(missing, ", ") + ")"
	case UnmetNoCapacity:
		return s.Name + " has no place now (" + c.Note(now) + ")"
	}
	return s.Name + " cannot take it"
}
