package fhir

// Observation wire types: socialrx writes outcome measures as R4 Observations (issue 14), spelled out here like
// the Task (docs/design.md#known-traps) and pinned by golden files.

// Quantity is a FHIR Quantity.
type Quantity struct {
	Value  float64 `json:"value"`
	Unit   string  `json:"unit,omitempty"`
	System string  `json:"system,omitempty"`
	Code   string  `json:"code,omitempty"`
}

// ObservationComponent is Observation.component with the value[x] choices socialrx uses.
type ObservationComponent struct {
	Code          CodeableConcept `json:"code"`
	ValueInteger  *int            `json:"valueInteger,omitempty"`
	ValueQuantity *Quantity       `json:"valueQuantity,omitempty"`
}

// Observation is an R4 Observation as socialrx writes it: an outcome measure.
type Observation struct {
	ResourceType      string                 `json:"resourceType"` // always "Observation"
	ID                string                 `json:"id"`
	Meta              *Meta                  `json:"meta,omitempty"`
	Extension         []Extension            `json:"extension,omitempty"`
	BasedOn           []Reference            `json:"basedOn,omitempty"`
	Status            string                 `json:"status"`
	Category          []CodeableConcept      `json:"category,omitempty"`
	Code              CodeableConcept        `json:"code"`
	Subject           *Reference             `json:"subject,omitempty"`
	Focus             []Reference            `json:"focus,omitempty"`
	EffectiveDateTime string                 `json:"effectiveDateTime,omitempty"`
	Issued            string                 `json:"issued,omitempty"`
	Performer         []Reference            `json:"performer,omitempty"`
	ValueInteger      *int                   `json:"valueInteger,omitempty"`
	Note              []Annotation           `json:"note,omitempty"`
	Component         []ObservationComponent `json:"component,omitempty"`
}
