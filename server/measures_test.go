package server_test

import (
	"github.com/google/go-cmp/cmp"

	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
)

// postMeasure records a measure through the community API.
func postMeasure(h *harness, token, referralID, body string) response {
	h.t.Helper()
	return h.do(http.MethodPost, "/community/v1/referrals/"+referralID+"/measures", token, []byte(body), jsonCT)
}

// apiIssues decodes a JSON API error's issues (every problem of a measure) as field → message.
func apiIssues(t *testing.T, r response) map[string]string {
	t.Helper()
	var e struct {
		Field  string `json:"field"`
		Issues []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"issues"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("not a JSON error: %s", r.body)
	}
	out := map[string]string{e.Field: e.Message}
	for _, is := range e.Issues {
		out[is.Field] = is.Message
	}
	return out
}

// advance moves the harness's clock on by d.
func (h *harness) advance(d time.Duration) { h.clock.Add(d.Microseconds()) }

// outputs returns a Task's output entries as (type code, value) pairs: the Observation reference or the
// coded value's code.
func outputs(task map[string]any) [][2]string {
	var out [][2]string
	list, _ := task["output"].([]any)
	for _, o := range list {
		o := o.(map[string]any)
		typ := o["type"].(map[string]any)
		code := ""
		if cs, ok := typ["coding"].([]any); ok && len(cs) > 0 {
			code, _ = cs[0].(map[string]any)["code"].(string)
		}
		val := ""
		if ref, ok := o["valueReference"].(map[string]any); ok {
			val, _ = ref["reference"].(string)
		}
		if cc, ok := o["valueCodeableConcept"].(map[string]any); ok {
			if cs, ok := cc["coding"].([]any); ok && len(cs) > 0 {
				val, _ = cs[0].(map[string]any)["code"].(string)
			}
		}
		out = append(out, [2]string{code, val})
	}
	return out
}

// TestOutcomeMeasuresCommunityAPI: a group records measures through the community API; every problem of a
// measure is refused at once with its field, nothing changes; the referral's state and its other measures
// decide; the GP's Task references each measure's Observation (valid R4, coded), which the practice reads
// and nobody else does.
func TestOutcomeMeasuresCommunityAPI(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokGP, "walking-group-performer.json") // A81001 → frome-walks

	// Before the group takes the person on: 422, nothing written.
	swBase := `{"instrument":"swemwbs","timing":"baseline","date":"2026-11-21","items":[3,3,3,3,3,4,4],"recorder":"Sam (walk leader)"}`
	r := postMeasure(h, tokWalks, ref.referral, swBase)
	if code, field, _ := apiErr(t, r); r.status != http.StatusUnprocessableEntity || code != "measure_not_allowed" || field != "status" {
		t.Fatalf("measure on a requested referral: %d %s", r.status, r.body)
	}
	if r := setStatus(h, tokWalks, ref.referral, `{"status":"accepted"}`); r.status != http.StatusOK {
		t.Fatalf("accept: %d %s", r.status, r.body)
	}
	v := h.version(ref.referral)

	// Every problem at once, each naming its field; nothing changes.
	bad := []struct {
		body   string
		status int
		fields []string
	}{
		{`{"instrument":"swemwbs","timing":"baseline","date":"2026-11-21","items":[3,3,3,null,3,9,3]}`, 400, []string{"items[3]", "items[5]"}},
		{`{"instrument":"swemwbs","timing":"baseline","date":"2026-11-21","items":[3,3,3]}`, 400, []string{"items[3]", "items[4]", "items[5]", "items[6]"}},
		{`{"instrument":"ons4","timing":"baseline","date":"2026-11-21","items":[11,5,5,-1]}`, 400, []string{"items[0]", "items[3]"}},
		{`{"instrument":"ons4","timing":"later","date":"21/11/2026","items":[1,1,1,1]}`, 400, []string{"timing", "date"}},
		{`{"instrument":"phq9","timing":"baseline","date":"2026-11-21"}`, 400, []string{"instrument"}},
		{`{"instrument":"ons4","timing":"baseline","date":"2026-11-21","items":[1,1,1.5,1]}`, 400, []string{"items[2]"}},
		{`{"instrument":"ons4","timing":"baseline","date":"2026-11-21","items":[1,1,1,1],"score":4}`, 400, []string{"score"}},
		{`{"instrument":"ons4","timing":"baseline","date":"2026-11-23","items":[1,1,1,1]}`, 400, []string{"date"}},
		{`{"instrument":"ons4","timing":"follow-up","date":"2026-11-21","items":[1,1,1,1]}`, 422, []string{"timing"}},
		{`{"instrument":"ons4","timing":"baseline","date":"2026-11-20","items":[1,1,1,1]}`, 422, []string{"date"}},
		{`[]`, 400, []string{""}},
	}
	for _, tc := range bad {
		r := postMeasure(h, tokWalks, ref.referral, tc.body)
		if r.status != tc.status {
			t.Errorf("%s: want %d, got %d %s", tc.body, tc.status, r.status, r.body)
			continue
		}
		apiErr(t, r)
		got := apiIssues(t, r)
		for _, f := range tc.fields {
			if _, ok := got[f]; !ok {
				t.Errorf("%s: no issue names %q: %s", tc.body, f, r.body)
			}
		}
		if len(tc.fields) > 1 && len(got) != len(tc.fields) {
			t.Errorf("%s: issues %v, want exactly %v", tc.body, got, tc.fields)
		}
	}
	if h.version(ref.referral) != v {
		t.Fatalf("a refused measure changed the referral (version %d → %d)", v, h.version(ref.referral))
	}

	// Baselines, then follow-ups a month later.
	r = postMeasure(h, tokWalks, ref.referral, swBase)
	if r.status != http.StatusCreated {
		t.Fatalf("SWEMWBS baseline: %d %s", r.status, r.body)
	}
	var m struct {
		mapping.Measure
		ObservationID   string `json:"observation_id"`
		ReferralVersion int    `json:"referral_version"`
	}
	if err := json.Unmarshal(r.body, &m); err != nil || m.N != 1 || *m.Score != 23 || *m.MetricScore != 20.73 ||
		m.RecordedBy != "Frome Walking for Health" || m.Recorder != "Sam (walk leader)" || m.ObservationID != ref.task+"-m1" || m.ReferralVersion != v+1 {
		t.Fatalf("SWEMWBS baseline answer: %s", r.body)
	}
	if r := postMeasure(h, tokWalks, ref.referral, swBase); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("second SWEMWBS baseline: %d %s", r.status, r.body)
	}
	if r := postMeasure(h, tokWalks, ref.referral, `{"instrument":"ons4","timing":"baseline","date":"2026-11-21","items":[4,5,3,8]}`); r.status != http.StatusCreated {
		t.Fatalf("ONS4 baseline: %d %s", r.status, r.body)
	}
	h.advance(30 * 24 * time.Hour)
	if r := setStatus(h, tokWalks, ref.referral, `{"status":"in-progress"}`); r.status != http.StatusOK {
		t.Fatalf("start: %d %s", r.status, r.body)
	}
	if r := postMeasure(h, tokWalks, ref.referral, `{"instrument":"swemwbs","timing":"follow-up","date":"2026-12-20","items":[4,4,4,4,4,4,4]}`); r.status != http.StatusCreated {
		t.Fatalf("SWEMWBS follow-up: %d %s", r.status, r.body)
	}
	if r := setStatus(h, tokWalks, ref.referral, `{"status":"completed","outcome":"Walks every week"}`); r.status != http.StatusOK {
		t.Fatalf("complete: %d %s", r.status, r.body)
	}
	// A last follow-up after the close is still taken.
	if r := postMeasure(h, tokWalks, ref.referral, `{"instrument":"ons4","timing":"follow-up","date":"2026-12-21","items":[7,8,7,3]}`); r.status != http.StatusCreated {
		t.Fatalf("ONS4 follow-up after completion: %d %s", r.status, r.body)
	}

	// The group lists its measures; another group cannot see them.
	list := h.do(http.MethodGet, "/community/v1/referrals/"+ref.referral+"/measures", tokWalks, nil)
	var page struct {
		Measures []mapping.Measure `json:"measures"`
	}
	if err := json.Unmarshal(list.body, &page); err != nil || len(page.Measures) != 4 || page.Measures[2].Timing != mapping.TimingFollowUp || *page.Measures[2].Score != 28 {
		t.Fatalf("measures: %d %s", list.status, list.body)
	}
	if r := h.do(http.MethodGet, "/community/v1/referrals/"+ref.referral+"/measures", tokMuseum, nil); r.status != http.StatusNotFound {
		t.Errorf("another service lists the measures: %d", r.status)
	}
	if r := postMeasure(h, tokMuseum, ref.referral, swBase); r.status != http.StatusNotFound {
		t.Errorf("another service records a measure: %d", r.status)
	}

	// The GP's Task: the outcome, then one output per measure, each an Observation the practice reads.
	task := h.task(tokGP, ref.task)
	outs := outputs(task)
	var obs []string
	for _, o := range outs {
		if o[0] == "outcome-measure" {
			obs = append(obs, o[1])
		}
		if o[1] == mapping.SNOMEDSocialPrescribingDeclined || o[1] == mapping.SNOMEDReferredToSocialPrescribing {
			t.Errorf("a completed referral's Task is coded %s: %v", o[1], outs)
		}
	}
	want := []string{"Observation/" + ref.task + "-m1", "Observation/" + ref.task + "-m2", "Observation/" + ref.task + "-m3", "Observation/" + ref.task + "-m4"}
	if !slices.Equal(obs, want) {
		t.Fatalf("Task.output observations %v, want %v", obs, want)
	}
	o1 := h.do(http.MethodGet, "/fhir/"+want[0], tokGP, nil) // the harness validates it against the R4 schema
	if o1.status != http.StatusOK || o1.header.Get("ETag") != `W/"1"` {
		t.Fatalf("read %s: %d %s", want[0], o1.status, o1.body)
	}
	var sw struct {
		ResourceType string `json:"resourceType"`
		Status       string `json:"status"`
		Code         struct {
			Coding []struct{ System, Code string } `json:"coding"`
		} `json:"code"`
		ValueInteger      int    `json:"valueInteger"`
		EffectiveDateTime string `json:"effectiveDateTime"`
		BasedOn           []struct {
			Reference string `json:"reference"`
		} `json:"basedOn"`
		Subject   map[string]any `json:"subject"`
		Component []struct {
			Code struct {
				Coding []struct{ System, Code string } `json:"coding"`
			} `json:"code"`
			ValueInteger  *int `json:"valueInteger"`
			ValueQuantity *struct {
				Value float64 `json:"value"`
			} `json:"valueQuantity"`
		} `json:"component"`
	}
	if err := json.Unmarshal(o1.body, &sw); err != nil {
		t.Fatal(err)
	}
	if sw.ResourceType != "Observation" || sw.Status != "final" || sw.Code.Coding[0].System != "http://snomed.info/sct" ||
		sw.Code.Coding[0].Code != "718466001" || sw.ValueInteger != 23 || sw.EffectiveDateTime != "2026-11-21" ||
		sw.BasedOn[0].Reference != "ServiceRequest/"+ref.sr || sw.Subject == nil || len(sw.Component) != 8 ||
		sw.Component[7].ValueQuantity == nil || sw.Component[7].ValueQuantity.Value != 20.73 {
		t.Fatalf("SWEMWBS Observation: %s", o1.body)
	}
	ons := h.do(http.MethodGet, "/fhir/"+want[1], tokGP, nil)
	if ons.status != http.StatusOK || !strings.Contains(string(ons.body), `"system":"https://socialrx.dev/fhir/CodeSystem/ons4","code":"anxiety"},`) &&
		!strings.Contains(string(ons.body), `"code":"anxiety"`) || strings.Contains(string(ons.body), `"valueInteger":20`) {
		t.Fatalf("ONS4 Observation: %d %s", ons.status, ons.body)
	}
	for _, who := range []string{tokGP2, tokMuseum} {
		if r := h.do(http.MethodGet, "/fhir/"+want[0], who, nil); r.status != http.StatusNotFound {
			t.Errorf("another client reads the Observation: %d", r.status)
		}
	}
	for _, id := range []string{ref.task + "-m9", ref.task + "-m0", ref.task + "-m01", "nothing", ref.task} {
		if r := h.do(http.MethodGet, "/fhir/Observation/"+id, tokGP, nil); r.status != http.StatusNotFound {
			t.Errorf("Observation/%s: %d", id, r.status)
		}
	}
	if r := h.do(http.MethodPost, "/community/v1/referrals/"+ref.referral+"/measures", tokGP, []byte(swBase), jsonCT); r.status != http.StatusForbidden {
		t.Errorf("a GP client records a measure on the community API: %d", r.status)
	}
}

// TestEpisodeCoding: a declined referral's Task is coded 871711000000103 (social prescribing declined); an
// accepted, a completed or a cancelled one never is, and socialrx never codes a Task as a new referral
// (871731000000106 is the GP's own ServiceRequest, the episode's first interaction).
func TestEpisodeCoding(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	codes := func(task map[string]any) []string {
		var out []string
		for _, o := range outputs(task) {
			if o[0] == "episode-code" {
				out = append(out, o[1])
			}
		}
		return out
	}
	declined := refer(h, tokGP, "walking-group-performer.json")
	if got := codes(h.task(tokGP, declined.task)); len(got) != 0 {
		t.Fatalf("a requested referral is coded %v", got)
	}
	if r := setStatus(h, tokWalks, declined.referral, `{"status":"rejected","reason":"The person chose not to join"}`); r.status != http.StatusOK {
		t.Fatalf("decline: %d %s", r.status, r.body)
	}
	if got := codes(h.task(tokGP, declined.task)); !slices.Equal(got, []string{mapping.SNOMEDSocialPrescribingDeclined}) {
		t.Fatalf("a declined referral's episode codes %v", got)
	}

	done := refer(h, tokGP, "walking-group-literal-subject.json")
	for _, st := range []string{`{"status":"received"}`, `{"status":"accepted"}`, `{"status":"in-progress"}`, `{"status":"completed","outcome":"done"}`} {
		if r := setStatus(h, tokWalks, done.referral, st); r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", st, r.status, r.body)
		}
		task := h.task(tokGP, done.task)
		if got := codes(task); len(got) != 0 {
			t.Errorf("after %s the episode is coded %v", st, got)
		}
		if strings.Contains(string(mustJSON(t, task["output"])), mapping.SNOMEDReferredToSocialPrescribing) {
			t.Errorf("after %s the Task is coded as a new referral", st)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOutcomeMeasureFHIR: a FHIR-capable platform posts an Observation against the referral's Task; it is
// kept as the Observation the GP reads; a bad one is refused with every problem at once, each with the
// element's FHIRPath, and changes nothing.
func TestOutcomeMeasureFHIR(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokGP, "walking-group-performer.json")
	if r := setStatus(h, tokWalks, ref.referral, `{"status":"accepted"}`); r.status != http.StatusOK {
		t.Fatalf("accept: %d %s", r.status, r.body)
	}
	obs := func(code, timing, date string, items map[string]any) []byte {
		o := map[string]any{
			"resourceType": "Observation", "status": "final",
			"extension":         []any{map[string]any{"url": mapping.MeasureTimingExtension, "valueCode": timing}},
			"code":              map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": code}}},
			"focus":             []any{map[string]any{"reference": "Task/" + ref.task}},
			"effectiveDateTime": date,
			"note":              []any{map[string]any{"authorString": "Jo", "text": "first session"}},
		}
		var comps []any
		for k, v := range items {
			c := map[string]any{"code": map[string]any{"coding": []any{map[string]any{"system": mapping.MeasureItemSystem, "code": k}}}}
			if v != nil {
				c["valueInteger"] = v
			}
			comps = append(comps, c)
		}
		if comps != nil {
			o["component"] = comps
		}
		return mustJSON(t, o)
	}
	good := map[string]any{"swemwbs-1": 2, "swemwbs-2": 2, "swemwbs-3": 2, "swemwbs-4": 2, "swemwbs-5": 2, "swemwbs-6": 2, "swemwbs-7": 2}
	v := h.version(ref.referral)

	missing := map[string]any{"swemwbs-1": 2, "swemwbs-2": 9, "swemwbs-3": 2, "swemwbs-5": 2, "swemwbs-6": 2, "swemwbs-7": 2}
	r := h.do(http.MethodPost, "/fhir/Observation", tokWalks, obs("718466001", "baseline", "2026-11-21", missing))
	is := issues(t, r)
	if r.status != http.StatusBadRequest || len(is) != 2 || !hasExpression(is, "Observation.component") {
		t.Fatalf("a missing and an out-of-range item: %d %s", r.status, r.body)
	}
	var diag []string
	for _, i := range is {
		diag = append(diag, i.Diagnostics)
	}
	if all := strings.Join(diag, " | "); !strings.Contains(all, "item 4") || !strings.Contains(all, "item 2") || !strings.Contains(all, "is 9") {
		t.Errorf("diagnostics do not name the items: %s", all)
	}
	r = h.do(http.MethodPost, "/fhir/Observation", tokWalks, obs("12345", "sometime", "2026-11-21", good))
	if is := issues(t, r); r.status != http.StatusBadRequest || !hasExpression(is, "Observation.code") {
		t.Fatalf("unknown code: %d %s", r.status, r.body)
	}
	r = h.do(http.MethodPost, "/fhir/Observation", tokWalks, obs("718466001", "sometime", "2026-11", good))
	if is := issues(t, r); r.status != http.StatusBadRequest || !hasExpression(is, "Observation.extension") || !hasExpression(is, "Observation.effectiveDateTime") {
		t.Fatalf("bad timing and a partial date: %d %s", r.status, r.body)
	}
	r = h.do(http.MethodPost, "/fhir/Observation", tokWalks, []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueFoo":1}`))
	if r.status != http.StatusBadRequest {
		t.Fatalf("not R4: %d %s", r.status, r.body)
	}
	r = h.do(http.MethodPost, "/fhir/Observation", tokWalks, obs("718466001", "follow-up", "2026-11-21", good))
	if is := issues(t, r); r.status != http.StatusUnprocessableEntity || !hasExpression(is, "Observation.extension") {
		t.Fatalf("follow-up without a baseline: %d %s", r.status, r.body)
	}
	for _, tok := range []string{tokGP, tokMuseum} {
		if r := h.do(http.MethodPost, "/fhir/Observation", tok, obs("718466001", "baseline", "2026-11-21", good)); r.status != http.StatusForbidden && r.status != http.StatusNotFound {
			t.Errorf("a client other than the service posts a measure: %d %s", r.status, r.body)
		}
	}
	if h.version(ref.referral) != v {
		t.Fatal("a refused Observation changed the referral")
	}

	r = h.do(http.MethodPost, "/fhir/Observation", tokWalks, obs("718466001", "baseline", "2026-11-21", good))
	if r.status != http.StatusCreated || r.header.Get("Location") == "" {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	created := r.json(t)
	if created["id"] != ref.task+"-m1" || created["valueInteger"] != float64(14) {
		t.Fatalf("created: %s", r.body)
	}
	// The service reads what it created, cut to its sharing profile (the walking group's has no NHS number);
	// the GP reads the same Observation with the whole subject.
	if own := h.do(http.MethodGet, "/fhir/Observation/"+ref.task+"-m1", tokWalks, nil); own.status != http.StatusOK || string(own.body) != string(r.body) {
		t.Fatalf("the service reads another Observation than the one created: %s", own.body)
	}
	if strings.Contains(string(r.body), "9999542557") {
		t.Fatalf("the walking group's Observation shows the NHS number its profile withholds: %s", r.body)
	}
	read := h.do(http.MethodGet, "/fhir/Observation/"+ref.task+"-m1", tokGP, nil)
	gp, mine := read.json(t), r.json(t)
	if read.status != http.StatusOK || !strings.Contains(string(read.body), "9999542557") {
		t.Fatalf("the GP's Observation lost the subject's NHS number: %s", read.body)
	}
	delete(gp, "subject")
	delete(mine, "subject")
	if !cmp.Equal(gp, mine) {
		t.Fatalf("the GP reads another Observation than the one created: %s", cmp.Diff(mine, gp))
	}
	if got := outputs(h.task(tokGP, ref.task)); len(got) != 1 || got[0][1] != "Observation/"+ref.task+"-m1" {
		t.Fatalf("Task.output %v", got)
	}
	// The community API sees the same measure, with who took it.
	list := h.do(http.MethodGet, "/community/v1/referrals/"+ref.referral+"/measures", tokWalks, nil)
	if !strings.Contains(string(list.body), `"recorder":"Jo"`) || !strings.Contains(string(list.body), `"metric_score":15.32`) {
		t.Fatalf("measures: %s", list.body)
	}
	// The audit trail has the measure's creation by the service and each read of its Observation, by whom.
	obsRes := "Observation/" + ref.task + "-m1"
	want := map[string]bool{"frome-walks create fhir": false, "frome-walks read fhir": false, "practice-a81001 read fhir": false}
	for _, rec := range readAudit(t, h, "?referral="+ref.referral).Records {
		if rec.Resource == obsRes {
			want[rec.Actor+" "+rec.Action+" "+rec.Via] = true
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no audit record %q on %s", k, obsRes)
		}
	}
}
