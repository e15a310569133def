package mapping

import (
	"strconv"
	"strings"

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

// route picks the community service (docs/design.md#intake-validation-and-routing, issue 2):
//
//  1. the service named by ServiceRequest.performer: a performer whose identifier, or whose contained
//     Organization / HealthcareService / PractitionerRole's identifier, is one of the service's identifiers
//     (performers naming several different services: 422);
//  2. failing that, the one service whose codes ("system|code") contain a coding of ServiceRequest.code
//     (several: 422 naming the candidates and asking for a performer);
//  3. failing that, the default service;
//  4. none: 422 saying why.
func (c *ctx) route(dir Directory, is *issueList) (Service, bool) {
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
	switch len(byPerformer) {
	case 0:
	case 1:
		return byPerformer[0], true
	default:
		is.add(fhir.CodeBusinessRule, "ServiceRequest.performer names several community services: "+names(byPerformer)+"; name exactly one", "ServiceRequest.performer")
		return Service{}, false
	}

	var byCode []Service
	if sr.Code != nil {
		for _, cd := range fromModelCC(*sr.Code).Coding {
			key := cd.System + "|" + cd.Code
			for _, s := range dir.Services {
				for _, k := range s.Codes {
					if k == key {
						byCode = addDistinct(byCode, s)
					}
				}
			}
		}
	}
	switch len(byCode) {
	case 0:
	case 1:
		return byCode[0], true
	default:
		is.add(fhir.CodeBusinessRule, "ServiceRequest.code matches several community services: "+names(byCode)+"; add a performer with the chosen service's identifier to say which one", "ServiceRequest.code")
		return Service{}, false
	}

	for _, s := range dir.Services {
		if s.Default {
			return s, true
		}
	}
	why := "no community service takes this referral: "
	if len(sr.Performer) > 0 {
		why += "no performer matches a directory service's identifiers, "
	} else {
		why += "it names no performer, "
	}
	why += "no service takes any ServiceRequest.code coding, and no default service is configured"
	is.add(fhir.CodeBusinessRule, why, "ServiceRequest.performer", "ServiceRequest.code")
	return Service{}, false
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
