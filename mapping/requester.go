package mapping

import (
	"strconv"
	"strings"

	"github.com/socialrx/socialrx/fhir"
)

// RequesterODS returns the ODS code of the organisation that made the referral, and the FHIRPath of where it
// was found, so that the server can scope a GP client to its own practices (403) before calling Build.
// It looks, in order, at:
//
//  1. ServiceRequest.requester.identifier with system https://fhir.nhs.uk/Id/ods-organization-code;
//  2. the contained Organization the requester references, by the same identifier system;
//  3. the contained PractitionerRole the requester references: its organization.identifier, or the contained
//     Organization its organization references.
//
// ok is false when none of these yields a code (no requester, a requester on another server, or a
// practitioner with no organisation); the caller then falls back on the client's own practice.
func RequesterODS(sub *fhir.Submission) (ods string, expr string, ok bool) {
	if sub == nil || sub.ServiceRequest.Requester == nil {
		return "", "", false
	}
	return newCtx(sub).requesterODS()
}

func odsOf(ids []rawIdentifier) (string, int, bool) {
	for i, id := range ids {
		if id.System == ODSOrganizationSystem && id.Value != "" {
			return id.Value, i, true
		}
	}
	return "", 0, false
}

func (c *ctx) requesterODS() (string, string, bool) {
	req := fromModelRef(c.sub.ServiceRequest.Requester)
	if req.Identifier != nil && req.Identifier.System == ODSOrganizationSystem && req.Identifier.Value != "" {
		return req.Identifier.Value, "ServiceRequest.requester.identifier.value", true
	}
	r := c.resolve(req)
	if !r.found {
		return "", "", false
	}
	switch r.typ {
	case "Organization":
		org := decodeAs[rawOrganization](r.res)
		if v, i, ok := odsOf(org.Identifier); ok {
			return v, c.resPath(r) + ".identifier[" + strconv.Itoa(i) + "].value", true
		}
	case "PractitionerRole":
		role := decodeAs[rawPractitionerRole](r.res)
		if role.Organization == nil {
			return "", "", false
		}
		if id := role.Organization.Identifier; id != nil && id.System == ODSOrganizationSystem && id.Value != "" {
			return id.Value, c.resPath(r) + ".organization.identifier.value", true
		}
		o := c.resolve(*role.Organization)
		if o.found && o.typ == "Organization" {
			org := decodeAs[rawOrganization](o.res)
			if v, i, ok := odsOf(org.Identifier); ok {
				return v, c.resPath(o) + ".identifier[" + strconv.Itoa(i) + "].value", true
			}
		}
	}
	return "", "", false
}

// NormalODS is an ODS organisation code as socialrx stores and compares it: ODS codes are case-insensitive
// ("a81001" is A81001), so every code is kept and looked up in upper case.
func NormalODS(code string) string { return strings.ToUpper(strings.TrimSpace(code)) }

// SameIdentifierValue reports whether two values of an identifier of system are the same: ODS codes compare
// case-insensitively, every other system exactly.
func SameIdentifierValue(system, a, b string) bool {
	if system == ODSOrganizationSystem {
		return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
	}
	return a == b
}
