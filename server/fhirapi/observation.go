package fhirapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// Outcome measures as FHIR Observations (issue 14): a FHIR-capable community platform posts one against the
// referral's Task (POST /fhir/Observation with focus Task/{id}); everyone who may read the referral reads them
// (GET /fhir/Observation/{id}), and the Task's output references each one.

// readObservation is GET /fhir/Observation/{id}.
func (a *API) readObservation(w http.ResponseWriter, r *http.Request) {
	ref, m, err := a.svc.Observation(r.Context(), web.Caller(r.Context()), mux.Vars(r)["id"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeObservation(w, r, http.StatusOK, ref, m)
}

// writeObservation answers with the measure's Observation and its headers.
func (a *API) writeObservation(w http.ResponseWriter, r *http.Request, status int, ref outbox.Referral, m mapping.Measure) {
	o := mapping.ObservationFor(a.svc.ViewFor(web.Caller(r.Context()).Client, ref).Referral, m)
	b, err := json.Marshal(o)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.setResourceHeaders(w, r, "Observation", o.ID, "1", m.RecordedAt)
	if status == http.StatusCreated {
		a.respond(w, r, status, b, "Observation "+o.ID+" recorded")
		return
	}
	Write(w, status, b)
}

// obsCoding, obsIn: the parts of a posted Observation socialrx reads (after the strict R4 validation).
type obsCoding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

type obsIn struct {
	Status    string `json:"status"`
	Extension []struct {
		URL       string `json:"url"`
		ValueCode string `json:"valueCode"`
	} `json:"extension"`
	Code struct {
		Coding []obsCoding `json:"coding"`
	} `json:"code"`
	Focus []struct {
		Reference string `json:"reference"`
	} `json:"focus"`
	EffectiveDateTime string `json:"effectiveDateTime"`
	Component         []struct {
		Code struct {
			Coding []obsCoding `json:"coding"`
		} `json:"code"`
		ValueInteger *int `json:"valueInteger"`
	} `json:"component"`
	Note []struct {
		AuthorString string `json:"authorString"`
	} `json:"note"`
}

// createObservation is POST /fhir/Observation: an outcome measure recorded against the referral's Task by
// its community service (referral.Service.RecordMeasure). The Observation names the Task in focus
// (Task/{id}), the instrument in code (SNOMED CT 718466001 SWEMWBS, 718426000 WEMWBS, or ONS4System "ons4"),
// baseline or follow-up in the measure-timing extension, the day answered in effectiveDateTime (a date), and
// one component per item (coded as the Observations socialrx writes, valueInteger); note[0].authorString
// optionally names who took the answers. Every problem is reported at once (400), with the element's
// FHIRPath; the referral's rules are 422. The answer is the Observation as socialrx keeps it (201).
func (a *API) createObservation(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := fhir.ValidateResource(body, "Observation"); err != nil {
		a.fail(w, r, err)
		return
	}
	var in obsIn
	if err := json.Unmarshal(body, &in); err != nil {
		a.fail(w, r, fhir.NewError(fault.Invalid, fhir.CodeStructure, "the Observation could not be read: "+err.Error()))
		return
	}
	taskID, req, where, err := measureFromObservation(in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ref, m, err := a.svc.RecordMeasure(r.Context(), web.Caller(r.Context()),
		referral.MeasureRequest{ID: taskID, Kind: referral.ByTaskID, Measure: req})
	if err != nil {
		a.fail(w, r, observationFields(err, where))
		return
	}
	a.writeObservation(w, r, http.StatusCreated, ref, m)
}

// measureFromObservation reads the measure out of a posted Observation; where maps the use case's fields to
// the Observation's elements for the answer's expressions.
func measureFromObservation(in obsIn) (taskID string, out mapping.MeasureInput, where map[string]string, err error) {
	where = map[string]string{
		mapping.FieldInstrument: "Observation.code", mapping.FieldDate: "Observation.effectiveDateTime",
		mapping.FieldTiming: "Observation.extension", mapping.FieldItems: "Observation.component",
		mapping.FieldRecorder: "Observation.note[0].authorString",
	}
	var issues []fhir.Issue
	add := func(code fhir.IssueCode, expr, msg string) {
		issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: code, Diagnostics: msg, Expression: []string{expr}})
	}
	if in.Status != "final" {
		add(fhir.CodeValue, "Observation.status", "an outcome measure is recorded with status final")
	}
	switch {
	case len(in.Focus) != 1 || !strings.HasPrefix(in.Focus[0].Reference, "Task/") || len(in.Focus[0].Reference) == len("Task/"):
		add(fhir.CodeRequired, "Observation.focus", "focus must name the referral's Task once (Task/{id})")
	default:
		taskID = strings.TrimPrefix(in.Focus[0].Reference, "Task/")
	}
	for i, c := range in.Code.Coding {
		switch {
		case c.System == mapping.SNOMEDSystem && c.Code == mapping.SNOMEDSWEMWBS:
			out.Instrument = mapping.InstrumentSWEMWBS
		case c.System == mapping.SNOMEDSystem && c.Code == mapping.SNOMEDWEMWBS:
			out.Instrument = mapping.InstrumentWEMWBS
		case c.System == mapping.ONS4System && c.Code == "ons4":
			out.Instrument = mapping.InstrumentONS4
		default:
			continue
		}
		where[mapping.FieldInstrument] = "Observation.code.coding[" + strconv.Itoa(i) + "]"
		break
	}
	if out.Instrument == "" {
		add(fhir.CodeCodeInvalid, "Observation.code", fmt.Sprintf("code must be SNOMED CT %s (SWEMWBS), %s (WEMWBS) or %s|ons4 (ONS4)",
			mapping.SNOMEDSWEMWBS, mapping.SNOMEDWEMWBS, mapping.ONS4System))
	}
	for i, e := range in.Extension {
		if e.URL == mapping.MeasureTimingExtension {
			out.Timing = mapping.Timing(e.ValueCode)
			where[mapping.FieldTiming] = "Observation.extension[" + strconv.Itoa(i) + "]"
		}
	}
	if out.Timing == "" {
		add(fhir.CodeRequired, "Observation.extension", "the extension "+mapping.MeasureTimingExtension+" (valueCode baseline or follow-up) is required")
	}
	out.Date = in.EffectiveDateTime
	if len(in.Note) > 0 {
		out.Recorder = in.Note[0].AuthorString
	}
	if out.Instrument != "" {
		keys := out.Instrument.ItemKeys()
		system := mapping.MeasureItemSystem
		if out.Instrument == mapping.InstrumentONS4 {
			system = mapping.ONS4System
		}
		out.Items = make([]*int, len(keys))
		for ci, c := range in.Component {
			expr := "Observation.component[" + strconv.Itoa(ci) + "]"
			item := -1
			for _, cd := range c.Code.Coding {
				for k, key := range keys {
					if cd.System == system && cd.Code == key {
						item = k
					}
				}
				if cd.System == mapping.MeasureItemSystem && cd.Code == "swemwbs-metric" {
					item = -2 // socialrx computes the metric score itself: ignored
				}
			}
			switch {
			case item == -2:
			case item == -1:
				add(fhir.CodeCodeInvalid, expr+".code", fmt.Sprintf("component %d is not an item of %s (codes %s|%s)", ci+1, out.Instrument, system, strings.Join(keys, ", ")))
			case out.Items[item] != nil:
				add(fhir.CodeDuplicate, expr, fmt.Sprintf("item %s is answered twice", keys[item]))
			case c.ValueInteger == nil:
				add(fhir.CodeRequired, expr+".valueInteger", fmt.Sprintf("item %s needs a valueInteger", keys[item]))
				where[mapping.ItemField(item)] = expr
			default:
				out.Items[item] = c.ValueInteger
				where[mapping.ItemField(item)] = expr
			}
		}
	}
	if len(issues) > 0 {
		return "", out, where, &fhir.Error{Kind: fault.Invalid, Issues: issues}
	}
	return taskID, out, where, nil
}

// observationFields renders the use case's measure fields as the posted Observation's elements.
func observationFields(err error, where map[string]string) error {
	var fe *fault.Error
	if !errors.As(err, &fe) {
		return err
	}
	out := &fault.Error{Kind: fe.Kind, Issues: make([]fault.Issue, len(fe.Issues))}
	for i, is := range fe.Issues {
		if e, ok := where[is.Field]; ok {
			is.Field = e
		} else if strings.HasPrefix(is.Field, mapping.FieldItems+"[") {
			is.Field = "Observation.component"
		}
		out.Issues[i] = is
	}
	return out
}
