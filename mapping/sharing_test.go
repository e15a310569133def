package mapping

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func fullRecord() Record {
	t0 := time.Date(2026, 11, 20, 10, 5, 0, 0, time.UTC)
	return Record{
		ID: "r1", ServiceRequestID: "sr1", TaskID: "t1", Status: StatusAccepted, Version: 3,
		Service: ServiceRef{ID: "frome-walks", Name: "Frome Walks"}, Priority: "urgent", ReferredAt: "2026-11-20",
		CreatedAt: t0, UpdatedAt: t0.Add(time.Hour),
		Patient: Person{NHSNumber: "9999542557", FirstName: "Margaret", Name: "Margaret Anne Ellis",
			BirthDate: "1951-03-14", Gender: "female", Phone: "07700 900123", Email: "peggy@example.org",
			Address: []string{"12 Vallis Way", "Frome", "BA11 3BA"}, Postcode: "BA11 3BA", Language: "English",
			InterpreterNeeded: true},
		Requested:    []Concept{{System: "s", Code: "walking-group"}},
		Reasons:      []string{"Low mood since retirement"},
		Needs:        "Weekday mornings",
		SupportNeeds: []SupportNeed{"wheelchair-access"},
		Notes:        []string{"Daughter answers the phone"},
		Referrer:     Referrer{Name: "Dr Rahman", ODSCode: "A81001"},
		Consent:      Consent{Recorded: true, Status: "active"},
		Outcome:      &Outcome{Text: "Joined"},
	}
}

// TestSharingProfileApply walks every field alone and the default: each shares exactly its members.
func TestSharingProfileApply(t *testing.T) {
	t.Parallel()
	full := fullRecord()
	// keys of the record's JSON that each field adds ("patient." for the patient's own keys).
	members := map[SharingField][]string{
		ShareFirstName:        {"patient.first_name"},
		ShareName:             {"patient.name"},
		ShareNHSNumber:        {"patient.nhs_number"},
		ShareBirthDate:        {"patient.birth_date"},
		ShareGender:           {"patient.gender"},
		ShareContact:          {"patient.phone", "patient.email"},
		ShareAddress:          {"patient.address", "patient.postcode"},
		ShareLanguage:         {"patient.language", "patient.interpreter_needed"},
		ShareServiceRequested: {"service_requested"},
		ShareReasons:          {"reasons"},
		ShareNeeds:            {"needs", "support_needs"},
		ShareNotes:            {"notes"},
		ShareReferrer:         {"referrer"},
		ShareConsent:          {"consent"},
	}
	always := []string{"id", "service_request_id", "task_id", "status", "version", "service", "priority",
		"referred_at", "created_at", "updated_at", "outcome"}
	for _, f := range AllSharingFields() {
		if len(members[f]) == 0 {
			t.Fatalf("field %q has no members in this test", f)
		}
	}
	tests := []struct {
		name    string
		profile SharingProfile
		want    []SharingField
	}{
		{"nothing", SharingProfile{Fields: []SharingField{}}, nil},
		{"default (zero value)", SharingProfile{}, DefaultSharingFields()},
		{"all", SharingProfile{Fields: AllSharingFields()}, AllSharingFields()},
	}
	for _, f := range AllSharingFields() {
		tests = append(tests, struct {
			name    string
			profile SharingProfile
			want    []SharingField
		}{string(f) + " alone", SharingProfile{Fields: []SharingField{f}}, []SharingField{f}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := recordKeys(t, tt.profile.Apply(full))
			want := slices.Clone(always)
			for _, f := range tt.want {
				want = append(want, members[f]...)
			}
			slices.Sort(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
		})
	}
	if !cmp.Equal(full, fullRecord()) {
		t.Error("Apply changed its input")
	}
	if keys := recordKeys(t, IdentifiersOnly(full)); slices.ContainsFunc(keys, func(k string) bool {
		return strings.HasPrefix(k, "patient") || k == "referrer" || k == "reasons" || k == "notes"
	}) {
		t.Errorf("IdentifiersOnly keeps %v", keys)
	}
}

// recordKeys lists the record's JSON keys, the patient's as "patient.<key>".
func recordKeys(t *testing.T, rec Record) []string {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	for k, v := range m {
		if k != "patient" {
			out = append(out, k)
			continue
		}
		var p map[string]json.RawMessage
		if err := json.Unmarshal(v, &p); err != nil {
			t.Fatal(err)
		}
		for pk := range p {
			out = append(out, "patient."+pk)
		}
	}
	slices.Sort(out)
	return out
}

func TestParseSharingFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      []string
		want    []SharingField
		wantErr string
	}{
		{in: []string{"contact", "first_name"}, want: []SharingField{ShareFirstName, ShareContact}},
		{in: []string{"all"}, want: AllSharingFields()},
		{in: []string{"all", "name"}, want: AllSharingFields()},
		{in: []string{}, want: []SharingField{}},
		{in: []string{"nhs", "dob", "name"}, wantErr: `unknown field "nhs", "dob"`},
	}
	for _, tt := range tests {
		p, err := ParseSharingFields(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v: err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !cmp.Equal(p.Fields, tt.want) || p.Fields == nil {
			t.Errorf("%v: %v, %v; want %v", tt.in, p.Fields, err, tt.want)
		}
	}
}

func TestSharingFieldValid(t *testing.T) {
	t.Parallel()
	for _, f := range AllSharingFields() {
		if !f.Valid() {
			t.Errorf("%q not valid", f)
		}
	}
	if SharingField("").Valid() || SharingField("all").Valid() {
		t.Error("zero value or all valid")
	}
}

// TestSharingProfileForService cuts the FHIR view's patient reference and requester to the profile: the NHS
// number identifier only with nhs_number, the name only with name (the first name with first_name), the GP
// system's Patient reference never; the requester only with referrer. The referral itself is not changed.
func TestSharingProfileForService(t *testing.T) {
	t.Parallel()
	nhs := &Identifier{System: "https://fhir.nhs.uk/Id/nhs-number", Value: "9999542557"}
	ref := Referral{Record: fullRecord(),
		Patient:   Reference{Reference: "Patient/p1", Type: "Patient", Identifier: nhs, Display: "Margaret Anne Ellis"},
		Requester: Reference{Reference: "Practitioner/dr1", Display: "Dr Rahman"}}
	cases := []struct {
		name      string
		fields    []SharingField
		patient   Reference
		requester bool
	}{
		{"nothing", []SharingField{}, Reference{}, false},
		{"default", nil, Reference{Type: "Patient", Display: "Margaret"}, true},
		{"nhs number only", []SharingField{ShareNHSNumber}, Reference{Type: "Patient", Identifier: nhs}, false},
		{"name and nhs number", []SharingField{ShareName, ShareFirstName, ShareNHSNumber, ShareReferrer},
			Reference{Type: "Patient", Identifier: nhs, Display: "Margaret Anne Ellis"}, true},
		{"contact only", []SharingField{ShareContact}, Reference{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := SharingProfile{Fields: tc.fields}
			got := p.ForService(ref)
			if diff := cmp.Diff(tc.patient, got.Patient); diff != "" {
				t.Errorf("patient reference (-want +got):\n%s", diff)
			}
			if (got.Requester != Reference{}) != tc.requester {
				t.Errorf("requester = %+v, want shared=%v", got.Requester, tc.requester)
			}
			if diff := cmp.Diff(p.Apply(ref.Record), got.Record); diff != "" {
				t.Errorf("record not cut as Apply cuts it (-want +got):\n%s", diff)
			}
			task, err := json.Marshal(TaskFor(got))
			if err != nil {
				t.Fatal(err)
			}
			for _, leak := range []string{"Patient/p1", "Low mood"} {
				if strings.Contains(string(task), leak) {
					t.Errorf("the service's Task holds %q: %s", leak, task)
				}
			}
		})
	}
	if ref.Patient.Reference != "Patient/p1" || ref.Patient.Identifier.Value != "9999542557" {
		t.Errorf("ForService changed its argument: %+v", ref.Patient)
	}
}
