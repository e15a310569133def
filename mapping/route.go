package mapping

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/fhir"
)

// matches reports whether one of ids is one of the service's identifiers. A directory identifier with no
// system matches on value alone.
func (s Service) matches(ids []rawIdentifier) bool {
	for _, want := range s.Identifiers {
		for _, got := range ids {
			if got.Value != "" && (want.System == "" || got.System == want.System) && SameIdentifierValue(got.System, got.Value, want.Value) {
				return true
			}
		}
	}
	return false
}

func names(ss []Service) string {
	parts := make([]string, 0, len(ss))
	for _, s := range ss {
		parts = append(parts, s.ID+" ("+s.Name+")")
	}
	return strings.Join(parts, ", ")
}

func addDistinct(ss []Service, s Service) []Service {
	for _, have := range ss {
		if have.ID == s.ID {
			return ss
		}
	}
	return append(ss, s)
}

// route picks the community service (docs/design.md#intake-validation-and-routing, issues 2 and 13): it finds
// the candidates and Decide chooses among them by capacity, the person's support needs and each service's
// policy:
//
//  1. the service named by ServiceRequest.performer: a performer whose identifier, or whose contained
//     Organization / HealthcareService / PractitionerRole's identifier, is one of the service's identifiers
//     (performers naming several different services: 422);
//  2. failing that, the services whose codes ("system|code") contain a coding of ServiceRequest.code (several
//     that all have room and meet the needs: 422 naming them and asking for a performer);
//  3. failing that, the default service;
//  4. none: 422 saying why.
//
// A candidate that cannot take the referral hands it to the default (link-worker) service, or keeps it on
// its waiting list, as Decide says; the decision comes back with the service.
func (c *ctx) route(dir Directory, caps map[string]Capacity, needs []SupportNeed, now time.Time, is *issueList) (Service, RouteDecision, bool) {
	sr := &c.sub.ServiceRequest
	var byPerformer []Service
	for i := range sr.Performer {
		ref := fromModelRef(&sr.Performer[i])
		var ids []rawIdentifier
		if ref.Identifier != nil {
			ids = append(ids, *ref.Identifier)
		}
		r := c.resolve(ref)
		c.checkRef(is, r, "ServiceRequest.performer["+strconv.Itoa(i)+"].reference")
		if r.found {
			ids = append(ids, decodeAs[rawIdentified](r.res).Identifier...)
		}
		for _, s := range dir.Services {
			if s.matches(ids) {
				byPerformer = addDistinct(byPerformer, s)
			}
		}
	}
	in := RouteInput{Needs: needs, Capacities: caps, Now: now}
	for i := range dir.Services {
		if dir.Services[i].Default {
			in.Default = &dir.Services[i]
			break
		}
	}
	switch len(byPerformer) {
	case 0:
	case 1:
		in.Named = &byPerformer[0]
	default:
		is.add(fhir.CodeBusinessRule, "ServiceRequest.performer names several community services: "+names(byPerformer)+"; name exactly one", "ServiceRequest.performer")
		return Service{}, RouteDecision{}, false
	}
	if in.Named == nil && sr.Code != nil {
		for _, cd := range fromModelCC(*sr.Code).Coding {
			key := cd.System + "|" + cd.Code
			for _, s := range dir.Services {
				if slices.Contains(s.Codes, key) {
					in.Matched = addDistinct(in.Matched, s)
				}
			}
		}
	}
	svc, d, amb, ok := Decide(in)
	if amb != nil {
		is.add(fhir.CodeBusinessRule, "ServiceRequest.code matches several community services: "+names(amb.Services)+"; add a performer with the chosen service's identifier to say which one", "ServiceRequest.code")
		return Service{}, RouteDecision{}, false
	}
	if ok {
		return svc, d, true
	}
	why := "no community service takes this referral: "
	if len(sr.Performer) > 0 {
		why += "no performer matches a directory service's identifiers, "
	} else {
		why += "it names no performer, "
	}
	why += "no service takes any ServiceRequest.code coding, and no default service is configured"
	is.add(fhir.CodeBusinessRule, why, "ServiceRequest.performer", "ServiceRequest.code")
	return Service{}, RouteDecision{}, false
}

// ownerRef is Task.owner: the service as a logical reference by its first identifier, with its name.
func ownerRef(s Service) Reference {
	r := Reference{Display: s.Name}
	if len(s.Identifiers) > 0 {
		id := s.Identifiers[0]
		r.Identifier = &Identifier{System: id.System, Value: id.Value}
		if id.System == ODSOrganizationSystem {
			r.Type = "Organization"
		}
	}
	return r
}
