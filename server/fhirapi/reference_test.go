package fhirapi

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/referral"
)

var update = flag.Bool("update", false, "rewrite docs/fhir-api.md from the code")

// TestReferenceDoc keeps docs/fhir-api.md in step with the declared routes and search parameters.
func TestReferenceDoc(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "..", "docs", "fhir-api.md")
	got := New(Options{}).Reference()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./server/fhirapi -run TestReferenceDoc -update)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("docs/fhir-api.md is out of date (-file +code); run go test ./server/fhirapi -run TestReferenceDoc -update:\n%s", diff)
	}
}

// TestCapabilityDeclaresTheTable: the CapabilityStatement's search parameters are exactly the table's
// documented ones.
func TestCapabilityDeclaresTheTable(t *testing.T) {
	t.Parallel()
	opts := New(Options{TokenPath: "/oauth/token"}).capabilityOptions("https://x.example/fhir")
	for _, rc := range opts.Resources {
		var names []string
		for _, sp := range rc.SearchParams {
			names = append(names, sp.Name)
		}
		var want []string
		own := map[string][]fhir.SearchParam{typeAuditEvent: auditEventParams, typeMeasureReport: measureReportParams}
		for _, sp := range own[rc.Type] {
			want = append(want, sp.Name)
		}
		for _, sp := range searchParams {
			if sp.Doc != "" && contains(sp.Types, rc.Type) {
				want = append(want, sp.Name)
			}
		}
		if diff := cmp.Diff(want, names); diff != "" {
			t.Errorf("%s search parameters (-table +capability):\n%s", rc.Type, diff)
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestCapabilityDeclaresWhatWorks: the CapabilityStatement declares vread and history-instance for
// ServiceRequest and Task, the table's _include and _revinclude values, Subscription update, patch and $status,
// and socialrx's SubscriptionTopic; JSON only.
func TestCapabilityDeclaresWhatWorks(t *testing.T) {
	t.Parallel()
	cs, err := fhir.NewCapabilityStatement(New(Options{TokenPath: "/oauth/token", Started: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}).capabilityOptions("https://x.example/fhir"))
	if err != nil {
		t.Fatal(err)
	}
	byType := map[string]fhir.CapabilityResource{}
	for _, r := range cs.Rest[0].Resource {
		byType[r.Type] = r
	}
	interactions := func(r fhir.CapabilityResource) []string {
		var out []string
		for _, i := range r.Interaction {
			out = append(out, i.Code)
		}
		return out
	}
	for typ, want := range map[string][]string{
		typeServiceRequest: {"create", "read", "vread", "update", "patch", "search-type", "history-instance"},
		typeTask:           {"read", "vread", "update", "patch", "search-type", "history-instance"},
		typeAuditEvent:     {"search-type"},
		"Subscription":     {"create", "read", "update", "patch", "delete"},
		"Observation":      {"create", "read"},
	} {
		if diff := cmp.Diff(want, interactions(byType[typ])); diff != "" {
			t.Errorf("%s interactions (-want +got):\n%s", typ, diff)
		}
	}
	if diff := cmp.Diff([]string{includeFocus}, byType[typeTask].SearchInclude); diff != "" {
		t.Errorf("Task searchInclude: %s", diff)
	}
	if diff := cmp.Diff([]string{includeFocus}, byType[typeServiceRequest].SearchRevInclude); diff != "" {
		t.Errorf("ServiceRequest searchRevInclude: %s", diff)
	}
	sub := byType["Subscription"]
	if len(sub.Operation) != 1 || sub.Operation[0].Name != "status" || len(sub.Extension) != 1 ||
		sub.Extension[0].URL != fhir.BackportTopicCanonicalURL || sub.Extension[0].ValueCanonical != referral.TopicPracticeTasks {
		t.Errorf("Subscription: operations %+v, extensions %+v", sub.Operation, sub.Extension)
	}
	if diff := cmp.Diff([]string{"json"}, cs.Format); diff != "" {
		t.Errorf("format: %s", diff)
	}
}
