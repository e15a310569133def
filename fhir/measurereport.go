package fhir

// MeasureReport wire types: socialrx's monthly figures (issue 14) as R4 summary MeasureReports.

// MeasureReportPopulation is MeasureReport.group.population: a count (absent, with a data-absent-reason
// extension, when suppressed).
type MeasureReportPopulation struct {
	Extension []Extension      `json:"extension,omitempty"`
	Code      *CodeableConcept `json:"code,omitempty"`
	Count     *int             `json:"count,omitempty"`
}

// MeasureReportGroup is MeasureReport.group: one figure.
type MeasureReportGroup struct {
	Extension    []Extension               `json:"extension,omitempty"`
	Code         *CodeableConcept          `json:"code,omitempty"`
	Population   []MeasureReportPopulation `json:"population,omitempty"`
	MeasureScore *Quantity                 `json:"measureScore,omitempty"`
}

// MeasureReport is an R4 MeasureReport as socialrx writes it: one month's figures.
type MeasureReport struct {
	ResourceType string               `json:"resourceType"` // always "MeasureReport"
	ID           string               `json:"id"`
	Meta         *Meta                `json:"meta,omitempty"`
	Identifier   []Identifier         `json:"identifier,omitempty"`
	Status       string               `json:"status"`
	Type         string               `json:"type"`
	Measure      string               `json:"measure"`
	Date         string               `json:"date,omitempty"`
	Period       Period               `json:"period"`
	Group        []MeasureReportGroup `json:"group,omitempty"`
}
