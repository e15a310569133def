package mapping

import (
	"slices"
	"strconv"
	"strings"

	"github.com/socialrx/socialrx/fhir"
)

// SupportNeed is a person's support need a community service may or may not be able to meet (issue 13). The
// zero value is invalid.
type SupportNeed string

// SupportNeedSystem is the code system of support needs: a GP system sends them as ServiceRequest.orderDetail
// codings in this system; socialrx also adds NeedInterpreter when the Patient's communication says an
// interpreter is required.
const SupportNeedSystem = "https://socialrx.dev/fhir/CodeSystem/support-need"

// Support needs.
const (
	NeedOneToOne      SupportNeed = "one-to-one"           // needs one-to-one support throughout
	NeedBuddy         SupportNeed = "buddy-first-visit"    // needs someone to go with them the first time
	NeedWheelchair    SupportNeed = "wheelchair-access"    // uses a wheelchair: step-free access
	NeedHearingLoop   SupportNeed = "hearing-loop"         // uses a hearing aid: a hearing loop
	NeedSafeguarding  SupportNeed = "safeguarding-concern" // a safeguarding concern the group must be able to handle
	NeedInterpreter   SupportNeed = "interpreter"          // needs an interpreter (Patient.communication)
	NeedLearningSuppt SupportNeed = "learning-disability"  // a learning disability: easy read, more time
)

// AllSupportNeeds lists every support need, in the order they are shown.
func AllSupportNeeds() []SupportNeed {
	return []SupportNeed{NeedOneToOne, NeedBuddy, NeedWheelchair, NeedHearingLoop, NeedSafeguarding, NeedInterpreter, NeedLearningSuppt}
}

// Display is the need in words.
func (n SupportNeed) Display() string {
	switch n {
	case NeedOneToOne:
		return "One-to-one support"
	case NeedBuddy:
		return "A buddy for the first visit"
	case NeedWheelchair:
		return "Wheelchair access"
	case NeedHearingLoop:
		return "Hearing loop"
	case NeedSafeguarding:
		return "Safeguarding concern"
	case NeedInterpreter:
		return "Interpreter"
	case NeedLearningSuppt:
		return "Learning disability support"
	}
	return ""
}

// Valid reports whether n is a support need.
func (n SupportNeed) Valid() bool { return n.Display() != "" }

// supportNeeds reads the person's support needs: ServiceRequest.orderDetail codings in SupportNeedSystem
// (an unknown code there is a business-rule issue naming it), then NeedInterpreter when the patient needs an
// interpreter. Each need once, in AllSupportNeeds order.
func (c *ctx) supportNeeds(is *issueList, interpreter bool) []SupportNeed {
	sr := &c.sub.ServiceRequest
	var out []SupportNeed
	for i, d := range sr.OrderDetail {
		for j, cd := range fromModelCC(d).Coding {
			if cd.System != SupportNeedSystem {
				continue
			}
			n := SupportNeed(cd.Code)
			if !n.Valid() {
				is.add(fhir.CodeBusinessRule, "support need '"+cd.Code+"' is not in "+SupportNeedSystem+"; use one of "+needNames(AllSupportNeeds()),
					"ServiceRequest.orderDetail["+strconv.Itoa(i)+"].coding["+strconv.Itoa(j)+"]")
				continue
			}
			out = append(out, n)
		}
	}
	if interpreter {
		out = append(out, NeedInterpreter)
	}
	return sortNeeds(out)
}

// sortNeeds returns needs without repeats, in AllSupportNeeds order.
func sortNeeds(needs []SupportNeed) []SupportNeed {
	var out []SupportNeed
	for _, n := range AllSupportNeeds() {
		if slices.Contains(needs, n) {
			out = append(out, n)
		}
	}
	return out
}

func needNames(ns []SupportNeed) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = string(n)
	}
	return strings.Join(parts, ", ")
}

// Meets reports whether the service can meet every one of needs: it declares each in CanMeet. A service
// that declares nothing (CanMeet nil: a directory entry without meets, as before issue 13) is not checked; an
// empty, non-nil CanMeet declares that it meets none.
func (s Service) Meets(needs []SupportNeed) bool {
	if s.CanMeet == nil {
		return true
	}
	for _, n := range needs {
		if !slices.Contains(s.CanMeet, n) {
			return false
		}
	}
	return true
}
