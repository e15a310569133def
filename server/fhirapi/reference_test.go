package fhirapi

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
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
		for _, sp := range searchParams {
			if sp.Doc != "" && (rc.Type == typeTask && contains(sp.Types, typeTask) || rc.Type == typeServiceRequest && contains(sp.Types, typeServiceRequest)) {
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
