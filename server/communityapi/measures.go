package communityapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// Outcome measures on the community API (issue 14): POST /community/v1/referrals/{id}/measures records one,
// GET lists the referral's measures. Recording is optional: a group that collects none never calls these.

// measureBody is the body of POST /community/v1/referrals/{id}/measures.
type measureBody struct {
	Instrument string            `json:"instrument"`
	Timing     string            `json:"timing"`
	Date       string            `json:"date"`
	Items      []json.RawMessage `json:"items"`
	Recorder   string            `json:"recorder"`
}

// measuresPage is the answer of GET /community/v1/referrals/{id}/measures.
type measuresPage struct {
	Measures []mapping.Measure `json:"measures"`
}

// measureAnswer is the answer of a recorded measure: the measure, the referral's new version and the FHIR
// Observation id the GP reads it under.
type measureAnswer struct {
	mapping.Measure
	ReferralVersion int    `json:"referral_version"`
	ObservationID   string `json:"observation_id"`
}

// listMeasures is GET /community/v1/referrals/{id}/measures.
func (a *API) listMeasures(w http.ResponseWriter, r *http.Request) {
	ref, err := a.referral(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p := measuresPage{Measures: ref.Record.Measures}
	if p.Measures == nil {
		p.Measures = []mapping.Measure{}
	}
	w.Header().Set("ETag", strconv.Quote(strconv.Itoa(ref.Record.Version)))
	web.WriteJSON(w, a.log, http.StatusOK, p)
}

// recordMeasure is POST /community/v1/referrals/{id}/measures: 201 with the measure; 400 naming every
// problem of the measure at once (issues), 422 when the referral's state or measures forbid it.
func (a *API) recordMeasure(w http.ResponseWriter, r *http.Request) {
	ref, expect, body, ok := a.changeRequest(w, r)
	if !ok {
		return
	}
	in, err := decodeMeasure(body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	next, m, err := a.svc.RecordMeasure(r.Context(), web.Caller(r.Context()),
		referral.MeasureRequest{ID: ref.Record.ID, Kind: referral.ByRecordID, ExpectVersion: expect, Measure: in})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.Itoa(next.Record.Version)))
	web.WriteJSON(w, a.log, http.StatusCreated, measureAnswer{Measure: m, ReferralVersion: next.Record.Version,
		ObservationID: mapping.ObservationID(next.Record.TaskID, m.N)})
}

// decodeMeasure decodes a measure strictly (one JSON object, no duplicate or unknown fields, the right types;
// each item a whole number or null) into the use case's input; the measure's own rules are the use case's.
func decodeMeasure(body []byte) (mapping.MeasureInput, error) {
	var in mapping.MeasureInput
	if _, err := fhir.Canonical(body); err != nil {
		return in, bad("invalid_json", "", "the body must be one JSON object without duplicate keys")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return in, bad("invalid_json", "", "the body must be a JSON object")
	}
	if err := unknownFields(top, "", "instrument", "timing", "date", "items", "recorder"); err != nil {
		return in, err
	}
	for _, k := range []string{"instrument", "timing", "date", "recorder"} {
		if raw, ok := top[k]; ok {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return in, bad("invalid_type", k, k+" must be a JSON string")
			}
		}
	}
	var b measureBody
	if raw, ok := top["items"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if err := json.Unmarshal(raw, &b.Items); err != nil {
			return in, bad("invalid_type", "items", "items must be a JSON array of whole numbers, one per question in order")
		}
	}
	if err := json.Unmarshal(body, &struct {
		Instrument *string `json:"instrument"`
		Timing     *string `json:"timing"`
		Date       *string `json:"date"`
		Recorder   *string `json:"recorder"`
	}{&b.Instrument, &b.Timing, &b.Date, &b.Recorder}); err != nil {
		return in, bad("invalid_json", "", "the body is not a valid measure")
	}
	in = mapping.MeasureInput{Instrument: mapping.Instrument(b.Instrument), Timing: mapping.Timing(b.Timing), Date: b.Date, Recorder: b.Recorder}
	var issues []fault.Issue
	for i, raw := range b.Items {
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			in.Items = append(in.Items, nil)
			continue
		}
		var v int
		if err := json.Unmarshal(raw, &v); err != nil {
			issues = append(issues, fault.Issue{Code: "invalid_type", Field: mapping.ItemField(i),
				Message: fmt.Sprintf("item %d must be a whole number (or null when not answered)", i+1)})
			in.Items = append(in.Items, nil)
			continue
		}
		in.Items = append(in.Items, &v)
	}
	if len(issues) > 0 {
		return in, &fault.Error{Kind: fault.Invalid, Issues: issues}
	}
	return in, nil
}

// figures is GET /community/v1/figures?from=YYYY-MM&to=YYYY-MM[&format=csv]: the service's monthly figures.
func (a *API) figures(w http.ResponseWriter, r *http.Request) {
	q, err := web.ParseFiguresQuery(r.URL.Query())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	c := web.Caller(r.Context())
	figs, err := a.svc.Figures(r.Context(), c, referral.FiguresRequest{From: q.From, To: q.To})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	web.WriteFigures(w, a.log, q, "service-"+c.Client.Service, figs)
}
