package mapping

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/socialrx/socialrx/fhir"
)

// Codes of the outcome measures and the episode as the GP record receives them (issue 14).
const (
	// SNOMEDSystem is SNOMED CT's system URI.
	SNOMEDSystem = "http://snomed.info/sct"
	// SNOMEDSWEMWBS is the SNOMED CT code of the SWEMWBS score, SNOMEDWEMWBS that of the WEMWBS score.
	SNOMEDSWEMWBS = "718466001"
	SNOMEDWEMWBS  = "718426000"
	// SNOMEDReferredToSocialPrescribing ("Referral to social prescribing service") codes the first
	// interaction of an episode: the GP's own ServiceRequest. socialrx never writes it back (a Task update
	// is not a new referral).
	SNOMEDReferredToSocialPrescribing = "871731000000106"
	// SNOMEDSocialPrescribingDeclined ("Social prescribing declined") codes an offered referral that was
	// declined: it is written to Task.output when the referral is rejected, and only then.
	SNOMEDSocialPrescribingDeclined = "871711000000103"

	// ONS4System is socialrx's code system of the ONS4 personal wellbeing questions (the panel "ons4" and its
	// items "life-satisfaction", "worthwhile", "happiness", "anxiety", each 0-10; there is no SNOMED CT code
	// for them), documented in the README.
	ONS4System = "https://socialrx.dev/fhir/CodeSystem/ons4"
	// MeasureItemSystem is socialrx's code system of the SWEMWBS and WEMWBS items ("swemwbs-1" … "swemwbs-7",
	// "wemwbs-1" … "wemwbs-14", answers 1-5) and of the SWEMWBS metric score ("swemwbs-metric").
	MeasureItemSystem = "https://socialrx.dev/fhir/CodeSystem/wellbeing-item"
	// TaskOutputSystem is socialrx's code system of Task.output types: "outcome-measure" (a reference to an
	// Observation) and "episode-code" (the episode's SNOMED CT code).
	TaskOutputSystem = "https://socialrx.dev/fhir/CodeSystem/task-output"
	// MeasureTimingExtension is the URL of socialrx's Observation extension saying whether a measure is a
	// baseline or a follow-up (valueCode "baseline" or "follow-up").
	MeasureTimingExtension = "https://socialrx.dev/fhir/StructureDefinition/measure-timing"
	// ObservationCategorySystem is HL7's observation category system ("survey").
	ObservationCategorySystem = "http://terminology.hl7.org/CodeSystem/observation-category"
)

// ObservationID is the FHIR id of a referral's n-th measure: the Task's id, "-m" and n.
func ObservationID(taskID string, n int) string { return taskID + "-m" + strconv.Itoa(n) }

// ParseObservationID splits an Observation id into the Task's id and the measure's number.
func ParseObservationID(id string) (taskID string, n int, ok bool) {
	i := strings.LastIndex(id, "-m")
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(id[i+2:])
	if err != nil || n < 1 || strconv.Itoa(n) != id[i+2:] {
		return "", 0, false
	}
	return id[:i], n, true
}

// Measure returns the referral's n-th measure.
func (r Referral) Measure(n int) (Measure, bool) {
	if n < 1 || n > len(r.Record.Measures) || r.Record.Measures[n-1].N != n {
		return Measure{}, false
	}
	return r.Record.Measures[n-1], true
}

// MeasureCode is the Observation.code of an instrument.
func MeasureCode(i Instrument) fhir.CodeableConcept {
	switch i {
	case InstrumentSWEMWBS:
		return fhir.CodeableConcept{Coding: []fhir.Coding{{System: SNOMEDSystem, Code: SNOMEDSWEMWBS}}, Text: "SWEMWBS score"}
	case InstrumentWEMWBS:
		return fhir.CodeableConcept{Coding: []fhir.Coding{{System: SNOMEDSystem, Code: SNOMEDWEMWBS}}, Text: "WEMWBS score"}
	case InstrumentONS4:
		return fhir.CodeableConcept{Coding: []fhir.Coding{{System: ONS4System, Code: "ons4", Display: "ONS4 personal wellbeing"}}, Text: "ONS4 personal wellbeing"}
	}
	return fhir.CodeableConcept{}
}

// Summary is one line a person reads about a measure: "SWEMWBS baseline 2026-11-03: 23 (metric 20.73)",
// "ONS4 follow-up 2026-12-01: life satisfaction 7, worthwhile 8, happiness 6, anxiety 3".
func (m Measure) Summary() string {
	head := fmt.Sprintf("%s %s %s: ", strings.ToUpper(string(m.Instrument)), m.Timing, m.Date)
	switch {
	case m.Instrument == InstrumentONS4:
		parts := make([]string, 0, len(m.Items))
		for i, k := range m.Instrument.ItemKeys() {
			if i < len(m.Items) {
				parts = append(parts, fmt.Sprintf("%s %d", strings.ReplaceAll(k, "-", " "), m.Items[i]))
			}
		}
		return head + strings.Join(parts, ", ")
	case m.Score != nil && m.MetricScore != nil:
		return head + fmt.Sprintf("%d (metric %.2f)", *m.Score, *m.MetricScore)
	case m.Score != nil:
		return head + strconv.Itoa(*m.Score)
	}
	return head
}

// ObservationFor renders the referral's measure m as the FHIR R4 Observation the GP reads:
//
//   - id ObservationID; meta.versionId "1" and lastUpdated = RecordedAt (a measure never changes);
//   - extension MeasureTimingExtension: baseline or follow-up;
//   - basedOn the ServiceRequest; status final; category survey; subject the patient (Task.for);
//   - code: SNOMED CT 718466001 (SWEMWBS) or 718426000 (WEMWBS) with valueInteger the raw score, or the
//     ONS4 panel (ONS4System) with no value;
//   - component: each item's answer (valueInteger, coded in ONS4System or MeasureItemSystem) and, for
//     SWEMWBS, the metric score (valueQuantity, MeasureItemSystem "swemwbs-metric");
//   - effectiveDateTime the day answered; issued = RecordedAt; performer the community service;
//   - note: the timing (baseline or follow-up) and who recorded it.
func ObservationFor(r Referral, m Measure) fhir.Observation {
	rec := r.Record
	at := fhir.ExactInstant(m.RecordedAt)
	o := fhir.Observation{
		ResourceType:      "Observation",
		ID:                ObservationID(rec.TaskID, m.N),
		Meta:              &fhir.Meta{VersionID: "1", LastUpdated: at},
		Extension:         []fhir.Extension{{URL: MeasureTimingExtension, ValueCode: string(m.Timing)}},
		BasedOn:           []fhir.Reference{{Reference: "ServiceRequest/" + rec.ServiceRequestID, Type: "ServiceRequest"}},
		Status:            "final",
		Category:          []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: ObservationCategorySystem, Code: "survey", Display: "Survey"}}}},
		Code:              MeasureCode(m.Instrument),
		Subject:           fhirRef(r.Patient),
		EffectiveDateTime: m.Date,
		Issued:            at,
		Performer:         []fhir.Reference{{Display: rec.Service.Name}},
	}
	if r.Owner.Reference != "" || r.Owner.Identifier != nil {
		o.Performer = []fhir.Reference{*fhirRef(r.Owner)}
	}
	if m.Score != nil {
		score := *m.Score
		o.ValueInteger = &score
	}
	note := string(m.Timing) + " measure, recorded by " + m.RecordedBy
	if m.Recorder != "" {
		note += " (" + m.Recorder + ")"
	}
	o.Note = []fhir.Annotation{{Text: note}}
	itemSystem := MeasureItemSystem
	if m.Instrument == InstrumentONS4 {
		itemSystem = ONS4System
	}
	items, keys := m.Instrument.Items(), m.Instrument.ItemKeys()
	for i, v := range m.Items {
		if i >= len(keys) {
			break
		}
		v := v
		o.Component = append(o.Component, fhir.ObservationComponent{
			Code:         fhir.CodeableConcept{Coding: []fhir.Coding{{System: itemSystem, Code: keys[i]}}, Text: items[i]},
			ValueInteger: &v,
		})
	}
	if m.MetricScore != nil {
		o.Component = append(o.Component, fhir.ObservationComponent{
			Code:          fhir.CodeableConcept{Coding: []fhir.Coding{{System: MeasureItemSystem, Code: "swemwbs-metric"}}, Text: "SWEMWBS metric score"},
			ValueQuantity: &fhir.Quantity{Value: *m.MetricScore, Unit: "score", System: "http://unitsofmeasure.org", Code: "{score}"},
		})
	}
	return o
}

// taskOutputs are the Task.output entries of measures and of the episode's code (after the outcome's):
// one "outcome-measure" per measure, referencing its Observation, and "episode-code" SNOMED CT
// 871711000000103 (social prescribing declined) when the referral was rejected; and, once the referral closed
// with one (HasLetter), "gp-letter" referencing the GP letter's DocumentReference.
func taskOutputs(r Referral) []fhir.TaskOutput {
	var out []fhir.TaskOutput
	if r.Record.Status == StatusRejected {
		out = append(out, fhir.TaskOutput{
			Type: fhir.CodeableConcept{Coding: []fhir.Coding{{System: TaskOutputSystem, Code: "episode-code"}}, Text: "episode code"},
			ValueCodeableConcept: &fhir.CodeableConcept{
				Coding: []fhir.Coding{{System: SNOMEDSystem, Code: SNOMEDSocialPrescribingDeclined}},
				Text:   "Social prescribing declined",
			},
		})
	}
	for _, m := range r.Record.Measures {
		out = append(out, fhir.TaskOutput{
			Type: fhir.CodeableConcept{Coding: []fhir.Coding{{System: TaskOutputSystem, Code: "outcome-measure"}}, Text: "outcome measure"},
			ValueReference: &fhir.Reference{Reference: "Observation/" + ObservationID(r.Record.TaskID, m.N), Type: "Observation",
				Display: m.Summary()},
		})
	}
	if r.HasLetter() {
		out = append(out, letterOutput(r))
	}
	for _, c := range r.Children {
		out = append(out, fhir.TaskOutput{
			Type:           fhir.CodeableConcept{Coding: []fhir.Coding{{System: TaskOutputSystem, Code: "onward-referral"}}, Text: "onward referral"},
			ValueReference: &fhir.Reference{Reference: "Task/" + c.TaskID, Type: "Task"},
		})
	}
	return out
}
