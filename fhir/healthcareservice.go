package fhir

// HealthcareService is the FHIR R4 HealthcareService socialrx serves for each community service of its
// directory (GET /fhir/HealthcareService), with the SDOH Clinical Care capacity-status extension.
type HealthcareService struct {
	ResourceType string              `json:"resourceType"` // always "HealthcareService"
	ID           string              `json:"id"`
	Meta         *Meta               `json:"meta,omitempty"`
	Extension    []ResourceExtension `json:"extension,omitempty"`
	Identifier   []Identifier        `json:"identifier,omitempty"`
	Active       bool                `json:"active"`
	Type         []CodeableConcept   `json:"type,omitempty"`
	Name         string              `json:"name,omitempty"`
	Comment      string              `json:"comment,omitempty"`
}

// ResourceExtension is a FHIR Extension on a resource, with the value types socialrx writes there.
type ResourceExtension struct {
	URL                  string              `json:"url"`
	Extension            []ResourceExtension `json:"extension,omitempty"`
	ValueCodeableConcept *CodeableConcept    `json:"valueCodeableConcept,omitempty"`
	ValueString          string              `json:"valueString,omitempty"`
	ValueCode            string              `json:"valueCode,omitempty"`
	ValueDate            string              `json:"valueDate,omitempty"`
	ValueInteger         *int                `json:"valueInteger,omitempty"`
}
