package mapping

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/fhir/fhirtest"
)

// taskStates renders the walking-group referral's Task through a referral's life, including outcomes and
// transport facts.
func taskStates(t testing.TB) map[string]fhir.Task {
	t.Helper()
	base := referralAt(t, StatusRequested)
	at := func(s TaskStatus, reason string, bs BusinessStatus, o *Outcome) fhir.Task {
		r := base
		r.Record.Status, r.Record.StatusReason, r.BusinessStatus, r.Record.Outcome = s, reason, bs, o
		r.Record.Version++
		r.Record.UpdatedAt = later
		return TaskFor(r)
	}
	return map[string]fhir.Task{
		"1-requested-queued":           TaskFor(base),
		"2-requested-delivery-failed":  at(StatusRequested, "", BusinessDeliveryFailed, nil),
		"3-received-delivered":         at(StatusReceived, "", BusinessDelivered, nil),
		"4-on-hold":                    at(StatusOnHold, "Waiting for the spring walking programme", BusinessDelivered, nil),
		"5-completed-text-outcome":     at(StatusCompleted, "", BusinessDelivered, &Outcome{Text: "Joined the Tuesday walking group; attends weekly"}),
		"6-completed-coded-outcome":    at(StatusCompleted, "", "", &Outcome{Text: "Attended 8 of 10 walks", Code: &Concept{System: "https://socialrx.dev/fhir/CodeSystem/referral-outcome", Code: "engaged", Display: "Engaged with the service"}}),
		"7-cancelled-no-business-stat": at(StatusCancelled, "Patient moved out of the area", "", nil),
		"8-pull-only-overdue":          at(StatusRequested, "", BusinessOverdue, nil),
	}
}

func TestTaskForGolden(t *testing.T) {
	t.Parallel()
	checkGolden(t, "task-states.json", taskStates(t))
}

// TestOutputIsValidR4 checks every Task and stored ServiceRequest mapping produces against the official R4
// JSON schema (fhirtest) and against the fhir package's own validator.
func TestOutputIsValidR4(t *testing.T) {
	t.Parallel()
	v := fhirtest.NewValidator(t)
	check := func(t *testing.T, resourceType string, b []byte) {
		t.Helper()
		v.AssertValid(t, b)
		if err := fhir.ValidateResource(b, resourceType); err != nil {
			t.Errorf("fhir.ValidateResource: %v\n%s", err, b)
		}
	}
	t.Run("task states", func(t *testing.T) {
		t.Parallel()
		for name, task := range taskStates(t) {
			b, err := json.Marshal(task)
			if err != nil {
				t.Fatal(err)
			}
			t.Run(name, func(t *testing.T) { check(t, "Task", b) })
		}
	})
	for _, name := range validFixtures(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in, err := buildFixture(t, loadFixture(t, filepath.Join(fixturesDir, name)))
			if err != nil {
				t.Fatal(err)
			}
			check(t, "ServiceRequest", in.ServiceRequest)
			b, err := json.Marshal(TaskFor(in.Referral))
			if err != nil {
				t.Fatal(err)
			}
			check(t, "Task", b)
		})
	}
}

func TestWebhookPayload(t *testing.T) {
	t.Parallel()
	rec := referralAt(t, StatusRequested).Record
	for _, et := range AllEventTypes() {
		b, err := WebhookPayload(et, rec, testNow.In(time.FixedZone("CET", 3600)))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if len(m) != 3 || string(m["type"]) != `"`+string(et)+`"` || string(m["timestamp"]) != `"2025-03-18T09:30:15.123456Z"` {
			t.Errorf("payload %s", b)
		}
		var data Record
		if err := json.Unmarshal(m["data"], &data); err != nil || data.ID != rec.ID {
			t.Errorf("data %s: %v", m["data"], err)
		}
	}
	if _, err := WebhookPayload("referral.deleted", rec, testNow); err == nil {
		t.Error("unknown event type accepted")
	}
}

func TestValidNHSNumber(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"9912003888", true},  // UK Core example
		{"3478526985", false}, // BaRS example: fails modulus 11
		{"9999542557", true},
		{"9990000107", true},
		{"9990000000", false}, // check value 10: no valid number has this prefix
		{"9990000050", true},  // check value 11 → 0
		{"9990000051", false},
		{"999954255", false},
		{"99995425570", false},
		{"999 954 2557", false},
		{"999-954-2557", false},
		{"99995425S7", false},
		{"", false},
		{"０９９９５４２５５７", false}, // full-width digits
	} {
		if got := ValidNHSNumber(tc.in); got != tc.want {
			t.Errorf("ValidNHSNumber(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// FuzzBuild proves Build never panics and only fails with a 422 *fhir.Error (or ErrBadInput for a body the
// fhir stage would have refused) on anything the fhir parsers accept.
func FuzzBuild(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(fixturesDir, "*.json"))
	more, _ := filepath.Glob(filepath.Join(fixturesDir, "invalid", "*.json"))
	for _, p := range append(paths, more...) {
		f.Add(readFile(f, p))
	}
	dir := demoDirectory()
	f.Fuzz(func(t *testing.T, body []byte) {
		sub, err := parseReal(body)
		if err != nil {
			return
		}
		RequesterODS(sub)
		in, err := Build(sub, BuildInput{Directory: dir, Now: testNow, NewID: counterIDs()})
		if err != nil {
			if fe, ok := err.(*fhir.Error); ok && fe.Kind == fault.Rule && len(fe.Issues) > 0 {
				return
			}
			t.Fatalf("Build: %v", err)
		}
		if _, err := json.Marshal(TaskFor(in.Referral)); err != nil {
			t.Fatal(err)
		}
	})
}
