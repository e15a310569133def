package mapping

import (
	"strings"
	"time"

	"github.com/socialrx/socialrx/fhir"
)

// Monthly figures as FHIR R4 MeasureReports (issue 14): one summary MeasureReport per month, a group per
// figure, coded in FiguresSystem. A suppressed count or statistic is left out and marked with the
// data-absent-reason extension (masked; a statistic of nothing: not-applicable).
const (
	// FiguresMeasure is the canonical URL of socialrx's monthly figures (MeasureReport.measure).
	FiguresMeasure = "https://socialrx.dev/fhir/Measure/social-prescribing-monthly"
	// FiguresSystem codes the groups: received, accepted, declined, completed, with-baseline, with-follow-up,
	// median-days-to-first-contact, median-days-to-completion, swemwbs-metric-change, ons4-<item>-change.
	FiguresSystem = "https://socialrx.dev/fhir/CodeSystem/monthly-figure"
	// FiguresScopeSystem identifies whose figures a report gives: "area", "practice-<ODS>", "service-<id>".
	FiguresScopeSystem = "https://socialrx.dev/Id/figures-scope"
	// DataAbsentReason is HL7's extension saying why a value is missing ("masked": suppressed).
	DataAbsentReason = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
	// MeasurePopulationSystem is HL7's measure-population code system.
	MeasurePopulationSystem = "http://terminology.hl7.org/CodeSystem/measure-population"
)

// absent is the data-absent-reason extension with code why ("masked": suppressed; "not-applicable":
// nothing to compute it from).
func absent(why string) []fhir.Extension {
	return []fhir.Extension{{URL: DataAbsentReason, ValueCode: why}}
}

// MeasureReportFor renders month m's figures for scope ("area", "practice-<ODS>", "service-<id>") as a
// complete summary MeasureReport: id scope-month (characters FHIR ids lack become '-'), period the UK month,
// date now; a group per count (population initial-population with its count) and per statistic (its n as
// the population, the value as measureScore: days, or the score's change).
func MeasureReportFor(m MonthFigures, scope string, uk *time.Location, now time.Time) fhir.MeasureReport {
	start, _ := time.ParseInLocation("2006-01", m.Month, uk)
	end := start.AddDate(0, 1, -1)
	id := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, scope+"-"+m.Month)
	if len(id) > 64 {
		id = id[len(id)-64:]
	}
	mr := fhir.MeasureReport{ResourceType: "MeasureReport", ID: id, Status: "complete", Type: "summary",
		Identifier: []fhir.Identifier{{System: FiguresScopeSystem, Value: scope}},
		Measure:    FiguresMeasure, Date: fhir.Instant(now),
		Period: fhir.Period{Start: start.Format(time.DateOnly), End: end.Format(time.DateOnly)}}
	for _, c := range []struct {
		code, text string
		n          Count
	}{{"received", "Referrals received", m.Received}, {"accepted", "Accepted", m.Accepted}, {"declined", "Declined", m.Declined},
		{"completed", "Completed", m.Completed}, {"with-baseline", "With a baseline measure", m.WithBaseline},
		{"with-follow-up", "With a baseline and a follow-up", m.WithFollowUp}} {
		mr.Group = append(mr.Group, fhir.MeasureReportGroup{Code: figureCode(c.code, c.text), Population: []fhir.MeasureReportPopulation{population(c.n)}})
	}
	stats := []struct {
		code, text, unit string
		s                Stat
	}{{"median-days-to-first-contact", "Median days to first contact", "d", m.DaysToFirstContact},
		{"median-days-to-completion", "Median days to completion", "d", m.DaysToCompletion},
		{"swemwbs-metric-change", "Mean change of the SWEMWBS metric score", "{score}", m.SWEMWBSChange}}
	for _, k := range InstrumentONS4.ItemKeys() {
		stats = append(stats, struct {
			code, text, unit string
			s                Stat
		}{"ons4-" + k + "-change", "Mean change of ONS4 " + strings.ReplaceAll(k, "-", " "), "{score}", m.ONS4Change[k]})
	}
	for _, st := range stats {
		g := fhir.MeasureReportGroup{Code: figureCode(st.code, st.text), Population: []fhir.MeasureReportPopulation{population(st.s.N)}}
		if st.s.Value != nil {
			g.MeasureScore = &fhir.Quantity{Value: *st.s.Value, Unit: st.unit, System: "http://unitsofmeasure.org", Code: st.unit}
		} else if st.s.N.N == 0 && !st.s.N.Suppressed {
			g.Extension = absent("not-applicable")
		} else {
			g.Extension = absent("masked")
		}
		mr.Group = append(mr.Group, g)
	}
	return mr
}

// figureCode is a group's code.
func figureCode(code, text string) *fhir.CodeableConcept {
	return &fhir.CodeableConcept{Coding: []fhir.Coding{{System: FiguresSystem, Code: code}}, Text: text}
}

// population is a count as an initial-population: the number, or (1–4) no number and masked.
func population(c Count) fhir.MeasureReportPopulation {
	p := fhir.MeasureReportPopulation{Code: &fhir.CodeableConcept{Coding: []fhir.Coding{{System: MeasurePopulationSystem, Code: "initial-population"}}}}
	if c.Suppressed {
		p.Extension = absent("masked")
		return p
	}
	n := c.N
	p.Count = &n
	return p
}
