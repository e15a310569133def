package mapping

import (
	"strings"
	"time"

	"github.com/socialrx/socialrx/fhir"
)

// CapacityDetailExtension is socialrx's extension on HealthcareService with what the SDOH capacity status
// leaves to free text: the group's own state (status), the state now (effective), the expected wait, the
// date a pause ends, the maximum and the number of open referrals.
const CapacityDetailExtension = "https://socialrx.dev/fhir/StructureDefinition/capacity-detail"

// HealthcareService is svc as a FHIR HealthcareService at now: its directory identifiers, the codes it takes
// as type, and its capacity c as the SDOH Clinical Care capacity-status extension (capacityStatus coded,
// capacityNotes the human sentence) plus socialrx's capacity-detail extension. It is pure.
func HealthcareService(svc Service, c Capacity, now time.Time) fhir.HealthcareService {
	code, display := c.Effective(now).SDOHCapacityCode()
	hs := fhir.HealthcareService{ResourceType: "HealthcareService", ID: svc.ID, Active: true, Name: svc.Name}
	if !c.UpdatedAt.IsZero() {
		hs.Meta = &fhir.Meta{LastUpdated: fhir.Instant(c.UpdatedAt)}
	}
	for _, id := range svc.Identifiers {
		hs.Identifier = append(hs.Identifier, fhir.Identifier{System: id.System, Value: id.Value})
	}
	for _, k := range svc.Codes {
		sys, val, _ := strings.Cut(k, "|")
		hs.Type = append(hs.Type, fhir.CodeableConcept{Coding: []fhir.Coding{{System: sys, Code: val}}})
	}
	if svc.Default {
		hs.Comment = "Takes referrals that name no performer and match no other service (the default route)."
	}
	hs.Extension = append(hs.Extension, fhir.ResourceExtension{URL: SDOHCapacityExtension, Extension: []fhir.ResourceExtension{
		{URL: "capacityStatus", ValueCodeableConcept: &fhir.CodeableConcept{
			Coding: []fhir.Coding{{System: SDOHCapacityCodeSystem, Code: code, Display: display}}}},
		{URL: "capacityNotes", ValueString: c.Note(now)},
	}})
	set, effective := c.Status, c.Effective(now)
	if !set.Valid() {
		set = CapacityOpen
	}
	detail := []fhir.ResourceExtension{
		{URL: "status", ValueCode: string(set)},
		{URL: "effective", ValueCode: string(effective)},
		{URL: "open", ValueInteger: intPtr(c.Open)},
	}
	if c.ExpectedWaitDays > 0 {
		detail = append(detail, fhir.ResourceExtension{URL: "expectedWaitDays", ValueInteger: intPtr(c.ExpectedWaitDays)})
	}
	if !c.Until.IsZero() {
		detail = append(detail, fhir.ResourceExtension{URL: "until", ValueDate: c.Until.UTC().Format(time.DateOnly)})
	}
	if c.MaxOpen > 0 {
		detail = append(detail, fhir.ResourceExtension{URL: "maxOpen", ValueInteger: intPtr(c.MaxOpen)})
	}
	hs.Extension = append(hs.Extension, fhir.ResourceExtension{URL: CapacityDetailExtension, Extension: detail})
	return hs
}

func intPtr(n int) *int { return &n }
