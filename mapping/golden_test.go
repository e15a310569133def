package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// goldenIntake is what a golden file pins for one fixture.
type goldenIntake struct {
	Record               Record          `json:"record"`
	PracticeODS          string          `json:"practice_ods"`
	BusinessStatus       BusinessStatus  `json:"business_status"`
	ServiceRequestStatus string          `json:"service_request_status"`
	Identifiers          []Identifier    `json:"identifiers"`
	ServiceRequest       json.RawMessage `json:"service_request"`
	Task                 fhir.Task       `json:"task"`
	Events               []goldenEvent   `json:"events"`
}

// goldenEvent is Event with JSON names; Event converts to it, so a field added to Event must be added here too.
type goldenEvent struct {
	ID          string          `json:"id"`
	Type        EventType       `json:"type"`
	Destination Destination     `json:"destination"`
	Payload     json.RawMessage `json:"payload"`
}

func goldenOf(in Intake) goldenIntake {
	g := goldenIntake{
		Record:               in.Referral.Record,
		PracticeODS:          in.Referral.PracticeODS,
		BusinessStatus:       in.Referral.BusinessStatus,
		ServiceRequestStatus: in.Referral.ServiceRequestStatus,
		Identifiers:          in.Identifiers,
		ServiceRequest:       in.ServiceRequest,
		Task:                 TaskFor(in.Referral),
		Events:               []goldenEvent{},
	}
	for _, e := range in.Events {
		g.Events = append(g.Events, goldenEvent(e))
	}
	return g
}

// checkGolden compares got (marshalled) with testdata/golden/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got any) {
	t.Helper()
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./mapping -update to create it)", err)
	}
	if bytes.Equal(want, b) {
		return
	}
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("golden %s: %v", path, err)
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(w, g); diff != "" {
		t.Errorf("%s mismatch (-golden +got):\n%s", path, diff)
	} else {
		t.Errorf("%s differs in formatting only; run go test ./mapping -update", path)
	}
}

// TestBuildGolden maps every valid fixture with a fixed clock and counter ids and pins the record, the
// stored ServiceRequest, the Task and the events.
func TestBuildGolden(t *testing.T) {
	t.Parallel()
	for _, name := range validFixtures(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sub := loadFixture(t, filepath.Join(fixturesDir, name))
			in, err := buildFixture(t, sub)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if in.Fingerprint != sub.Fingerprint {
				t.Errorf("Fingerprint = %q, want the submission's %q", in.Fingerprint, sub.Fingerprint)
			}
			checkGolden(t, strings.TrimSuffix(name, ".json")+".json", goldenOf(in))
		})
	}
}

// kindStatus is the HTTP status the FHIR API gives each kind a negative fixture may get (its manifest,
// testdata/referrals/invalid/expected.json, says what the GP system sees).
var kindStatus = map[fault.Kind]int{fault.Invalid: 400, fault.Rule: 422}

// invalidCase is one entry of testdata/referrals/invalid/expected.json.
type invalidCase struct {
	File   string `json:"file"`
	Status int    `json:"status"`
	Rule   string `json:"rule"`
	Issues []struct {
		Code       fhir.IssueCode `json:"code"`
		Expression []string       `json:"expression"`
	} `json:"issues"`
}

type issueKey struct {
	Code       fhir.IssueCode
	Expression string
}

func keysOf(issues []fhir.Issue) []issueKey {
	out := make([]issueKey, 0, len(issues))
	for _, is := range issues {
		out = append(out, issueKey{Code: is.Code, Expression: strings.Join(is.Expression, " | ")})
	}
	return out
}

// TestInvalidFixtures checks every negative fixture gets exactly the issues its manifest lists.
func TestInvalidFixtures(t *testing.T) {
	t.Parallel()
	var cases []invalidCase
	if err := json.Unmarshal(readFile(t, filepath.Join(fixturesDir, "invalid", "expected.json")), &cases); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(fixturesDir, "invalid", "*.json"))
	if len(cases) != len(files)-1 {
		t.Errorf("expected.json lists %d fixtures, the folder holds %d", len(cases), len(files)-1)
	}
	for _, tc := range cases {
		t.Run(tc.File, func(t *testing.T) {
			t.Parallel()
			sub := loadFixture(t, filepath.Join(fixturesDir, "invalid", tc.File))
			_, err := buildFixture(t, sub)
			var fe *fhir.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Build error = %v, want *fhir.Error", err)
			}
			if kindStatus[fe.Kind] != tc.Status {
				t.Errorf("kind = %s (status %d), want status %d", fe.Kind, kindStatus[fe.Kind], tc.Status)
			}
			var want []issueKey
			for _, is := range tc.Issues {
				want = append(want, issueKey{Code: is.Code, Expression: strings.Join(is.Expression, " | ")})
			}
			if diff := cmp.Diff(want, keysOf(fe.Issues)); diff != "" {
				t.Errorf("issues (-want +got):\n%s\n%v", diff, fe)
			}
			for _, is := range fe.Issues {
				if is.Severity != fhir.SeverityError || is.Diagnostics == "" {
					t.Errorf("issue %+v: want severity error and a diagnostic", is)
				}
			}
		})
	}
}
