package fhir

import (
	"strconv"
	"unicode/utf8"

	"github.com/socialrx/socialrx/fault"
)

// Length limits on the strings socialrx indexes and searches by (docs/design.md#intake-validation-and-routing):
// a ServiceRequest's identifiers (the idempotency keys), its subject and requester references. R4 itself sets
// no limit; socialrx does, so that an index never meets a value it cannot hold (a PostgreSQL index entry holds
// about 2,700 bytes) and a client learns its mistake as a 400 naming the element, not as a server error. The
// same limits bound the values of the search parameters that match them.
const (
	// MaxIdentifierSystem is the longest Identifier.system (a URI), in characters.
	MaxIdentifierSystem = 1024
	// MaxIdentifierValue is the longest Identifier.value, in characters.
	MaxIdentifierValue = 256
	// MaxReference is the longest Reference.reference socialrx indexes, in characters.
	MaxReference = 1024
)

// TooLong returns the issue of a value of expr longer than limit characters, or nil.
func TooLong(expr, value string, limit int) *Issue {
	if utf8.RuneCountInString(value) <= limit {
		return nil
	}
	return &Issue{Severity: SeverityError, Code: CodeTooLong, Expression: []string{expr},
		Diagnostics: "too-long: at most " + strconv.Itoa(limit) + " characters (socialrx indexes this value)"}
}

// checkLimits reports the indexed strings of the ServiceRequest beyond their limits (400).
func (s *Submission) checkLimits() error {
	var issues []Issue
	add := func(is *Issue) {
		if is != nil {
			issues = append(issues, *is)
		}
	}
	sr := &s.ServiceRequest
	for i, id := range sr.Identifier {
		at := "ServiceRequest.identifier[" + strconv.Itoa(i) + "]"
		if id.System != nil {
			add(TooLong(at+".system", *id.System, MaxIdentifierSystem))
		}
		if id.Value != nil {
			add(TooLong(at+".value", *id.Value, MaxIdentifierValue))
		}
	}
	if ref := sr.Subject.Reference; ref != nil {
		add(TooLong("ServiceRequest.subject.reference", *ref, MaxReference))
	}
	if sr.Requester != nil && sr.Requester.Reference != nil {
		add(TooLong("ServiceRequest.requester.reference", *sr.Requester.Reference, MaxReference))
	}
	if sr.Requester != nil && sr.Requester.Identifier != nil && sr.Requester.Identifier.Value != nil {
		add(TooLong("ServiceRequest.requester.identifier.value", *sr.Requester.Identifier.Value, MaxIdentifierValue))
	}
	if len(issues) > 0 {
		return &Error{Kind: fault.Invalid, Issues: issues}
	}
	return nil
}
