package mapping

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	models "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/socialrx/socialrx/fhir"
)

// fixturesDir holds the project's shared referral fixtures.
const fixturesDir = "../testdata/referrals"

// Systems used by the demo directory and the fixtures.
const (
	offerSystem   = "https://socialrx.dev/fhir/CodeSystem/community-offer"
	serviceSystem = "https://socialrx.dev/Id/community-service"
)

// demoDirectory is the community directory the fixtures are routed in. It is the demo configuration's
// directory (the lead copies it into the embedded demo YAML): seven services around Frome, Somerset, some with
// a webhook, some pull-only, one default.
func demoDirectory() Directory {
	return Directory{Services: []Service{
		{
			ID:          "frome-walks",
			Name:        "Frome Walking for Health",
			Identifiers: []Identifier{{System: ODSOrganizationSystem, Value: "XYZ01"}},
			Codes:       []string{offerSystem + "|walking-group"},
			Delivery:    Delivery{URL: "https://frome-walks.example/socialrx/hooks", Secret: "whsec_ZnJvbWUtd2Fsa3MgZGVtbyBzZWNyZXQgMjAyNSEh"},
		},
		{
			ID:          "museum-volunteers",
			Name:        "Somerset Museums Volunteer Programme",
			Identifiers: []Identifier{{System: serviceSystem, Value: "museum-volunteers"}},
			Codes:       []string{offerSystem + "|museum-volunteering"},
		},
		{
			ID:          "debt-advice",
			Name:        "Citizens Advice Mendip (debt and money advice)",
			Identifiers: []Identifier{{System: serviceSystem, Value: "debt-advice"}},
			Codes:       []string{"http://snomed.info/sct|41920009", offerSystem + "|debt-advice"},
			Delivery:    Delivery{URL: "https://advice-mendip.example/webhooks/socialrx", Secret: "whsec_ZGVidC1hZHZpY2UgZGVtbyBzZWNyZXQgMjAyNSEh"},
			Sharing: SharingProfile{Fields: []SharingField{ShareFirstName, ShareName, ShareBirthDate, ShareContact,
				ShareAddress, ShareLanguage, ShareServiceRequested, ShareNeeds, ShareReferrer, ShareConsent}},
		},
		{
			ID:          "lunch-club",
			Name:        "Frome Friday Lunch Club",
			Identifiers: []Identifier{{System: serviceSystem, Value: "lunch-club"}},
			Codes:       []string{offerSystem + "|lunch-club"},
		},
		{
			ID:          "befriending",
			Name:        "Age UK Somerset Befriending",
			Identifiers: []Identifier{{System: serviceSystem, Value: "befriending"}},
			Codes:       []string{offerSystem + "|befriending"},
		},
		{
			ID:          "arts-on-prescription",
			Name:        "Arts on Prescription Frome",
			Identifiers: []Identifier{{System: serviceSystem, Value: "arts-on-prescription"}},
			Codes:       []string{offerSystem + "|arts-on-prescription"},
			Delivery:    Delivery{URL: "https://arts-frome.example/hooks/referrals", Secret: "whsec_YXJ0cy1vbi1yeCBkZW1vIHNlY3JldCAyMDI1ISEh"},
		},
		{
			ID:          "link-workers",
			Name:        "Mendip Social Prescribing Link Workers",
			Identifiers: []Identifier{{System: serviceSystem, Value: "link-workers"}},
			Default:     true,
			Delivery:    Delivery{URL: "https://mendip-linkworkers.example/socialrx", Secret: "whsec_bGluay13b3JrZXJzIGRlbW8gc2VjcmV0IDIwMjUh"},
			Sharing:     SharingProfile{Fields: AllSharingFields()},
		},
	}}
}

// testNow is the fixed clock of the golden tests.
var testNow = time.Date(2025, 3, 18, 9, 30, 15, 123456000, time.UTC)

// counterIDs returns a NewID that yields UUIDv7-shaped ids 1, 2, 3, ... (safe for concurrent use).
func counterIDs() func() string {
	var n atomic.Int64
	return func() string {
		return fmt.Sprintf("0195a8c2-7d00-7000-8000-%012d", n.Add(1))
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadFixture reads a fixture (ServiceRequest or transaction Bundle) and parses it with the real fhir
// parsers, which every shared fixture must pass (stages 1 and 2, 400).
func loadFixture(t testing.TB, path string) *fhir.Submission {
	t.Helper()
	sub, err := parseReal(readFile(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return sub
}

// parseReal routes a body to fhir.ParseTransaction or fhir.ParseServiceRequest by its resourceType.
func parseReal(body []byte) (*fhir.Submission, error) {
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return nil, err
	}
	if head.ResourceType == "Bundle" {
		return fhir.ParseTransaction(body)
	}
	return fhir.ParseServiceRequest(body)
}

// submissionFromJSON parses a (mutated) referral with the real fhir parsers. When they refuse it at 400 the
// rule is enforced before mapping; mapping must still not trust that, so the body is then handed over by
// testSubmission, which does what the fhir stage does to a valid submission without checking anything.
func submissionFromJSON(t testing.TB, body []byte) *fhir.Submission {
	t.Helper()
	sub, err := parseReal(body)
	if err == nil {
		return sub
	}
	var fe *fhir.Error
	if !errors.As(err, &fe) {
		t.Fatal(err)
	}
	t.Logf("fhir stage refuses it (%v); testing mapping's own check", err)
	if sub, err = testSubmission(body); err != nil {
		t.Fatal(err)
	}
	return sub
}

// testSubmission stands in for the fhir parsers on input they refuse: Bundle entries moved into contained
// with their urn:uuid references rewritten to "#id"; id and meta dropped; contained indexed.
func testSubmission(body []byte) (*fhir.Submission, error) {
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	sr, fromBundle := doc, false
	if doc["resourceType"] == "Bundle" {
		fromBundle = true
		var err error
		if sr, err = flattenBundle(doc); err != nil {
			return nil, err
		}
	}
	delete(sr, "id")
	delete(sr, "meta")
	raw, err := json.Marshal(sr)
	if err != nil {
		return nil, err
	}
	model, err := models.UnmarshalServiceRequest(raw)
	if err != nil {
		return nil, err
	}
	sub := &fhir.Submission{ServiceRequest: model, Raw: raw, Contained: map[string]fhir.RawResource{}, FromBundle: fromBundle}
	contained, _ := sr["contained"].([]any)
	for _, c := range contained {
		m, _ := c.(map[string]any)
		id, _ := m["id"].(string)
		typ, _ := m["resourceType"].(string)
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		sub.Contained[id] = fhir.RawResource{ResourceType: typ, ID: id, JSON: b}
	}
	sum := sha256.Sum256(raw)
	sub.Fingerprint = hex.EncodeToString(sum[:])
	return sub, nil
}

func flattenBundle(doc map[string]any) (map[string]any, error) {
	entries, _ := doc["entry"].([]any)
	var sr map[string]any
	var others []map[string]any
	rewrite := map[string]string{}
	used := map[string]bool{}
	for i, e := range entries {
		em, _ := e.(map[string]any)
		res, _ := em["resource"].(map[string]any)
		if res == nil {
			return nil, fmt.Errorf("entry %d has no resource", i)
		}
		if res["resourceType"] == "ServiceRequest" && sr == nil {
			sr = res
			continue
		}
		id, _ := res["id"].(string)
		if id == "" || used[id] {
			id = fmt.Sprintf("%s%d", strings.ToLower(res["resourceType"].(string)), i)
		}
		used[id] = true
		res["id"] = id
		if fu, _ := em["fullUrl"].(string); fu != "" {
			rewrite[fu] = "#" + id
		}
		others = append(others, res)
	}
	if sr == nil {
		return nil, fmt.Errorf("no ServiceRequest entry")
	}
	rewriteRefs(sr, rewrite)
	contained, _ := sr["contained"].([]any)
	for _, o := range others {
		rewriteRefs(o, rewrite)
		contained = append(contained, o)
	}
	sr["contained"] = contained
	return sr, nil
}

func rewriteRefs(v any, to map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && k == "reference" {
				if r, ok := to[s]; ok {
					x[k] = r
				}
				continue
			}
			rewriteRefs(val, to)
		}
	case []any:
		for _, e := range x {
			rewriteRefs(e, to)
		}
	}
}

// validFixtures lists the valid fixture files (base names).
func validFixtures(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(fixturesDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 8 {
		t.Fatalf("want at least 8 valid fixtures, found %d", len(paths))
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	return names
}

// buildFixture runs Build on a fixture the way the server does: practice from RequesterODS, else the
// client's practice (A81001 here).
func buildFixture(t testing.TB, sub *fhir.Submission) (Intake, error) {
	t.Helper()
	practice, _, ok := RequesterODS(sub)
	if !ok {
		practice = "A81001"
	}
	return Build(sub, BuildInput{Directory: demoDirectory(), PracticeODS: practice, Now: testNow, NewID: counterIDs()})
}
