package fhir

// The Task wire types below are socialrx's own: samply's Task marshals output[] badly (docs/design.md#known-traps), and the
// Task is the resource GP systems read most, so its JSON is spelled out here and pinned by golden files.

// Meta is Resource.meta.
type Meta struct {
	VersionID   string   `json:"versionId,omitempty"`
	LastUpdated string   `json:"lastUpdated,omitempty"` // FHIR instant
	Profile     []string `json:"profile,omitempty"`
}

// Coding is a FHIR Coding.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// CodeableConcept is a FHIR CodeableConcept.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Identifier is a FHIR Identifier.
type Identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value,omitempty"`
}

// Reference is a FHIR Reference.
type Reference struct {
	Reference  string      `json:"reference,omitempty"`
	Type       string      `json:"type,omitempty"`
	Identifier *Identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

// Annotation is a FHIR Annotation.
type Annotation struct {
	AuthorString string `json:"authorString,omitempty"`
	Time         string `json:"time,omitempty"`
	Text         string `json:"text"`
}

// TaskOutput is Task.output with the value[x] choices socialrx uses.
type TaskOutput struct {
	Type                 CodeableConcept  `json:"type"`
	ValueString          *string          `json:"valueString,omitempty"`
	ValueCodeableConcept *CodeableConcept `json:"valueCodeableConcept,omitempty"`
	ValueReference       *Reference       `json:"valueReference,omitempty"`
}

// Task is the referral's FHIR R4 Task.
type Task struct {
	ResourceType   string           `json:"resourceType"` // always "Task"
	ID             string           `json:"id"`
	Meta           *Meta            `json:"meta,omitempty"`
	Identifier     []Identifier     `json:"identifier,omitempty"`
	BasedOn        []Reference      `json:"basedOn,omitempty"`
	PartOf         []Reference      `json:"partOf,omitempty"` // a forwarded referral's link-worker Task
	Status         string           `json:"status"`
	StatusReason   *CodeableConcept `json:"statusReason,omitempty"`
	BusinessStatus *CodeableConcept `json:"businessStatus,omitempty"`
	Intent         string           `json:"intent"`
	Priority       string           `json:"priority,omitempty"`
	Code           *CodeableConcept `json:"code,omitempty"`
	Focus          *Reference       `json:"focus,omitempty"`
	For            *Reference       `json:"for,omitempty"`
	AuthoredOn     string           `json:"authoredOn,omitempty"`
	LastModified   string           `json:"lastModified,omitempty"`
	Requester      *Reference       `json:"requester,omitempty"`
	Owner          *Reference       `json:"owner,omitempty"`
	Note           []Annotation     `json:"note,omitempty"`
	Output         []TaskOutput     `json:"output,omitempty"`
}
