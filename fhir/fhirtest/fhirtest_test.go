package fhirtest

import (
	"os"
	"testing"
)

func TestValidator(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(SchemaPath()); err != nil {
		t.Fatalf("schema not found: %v", err)
	}
	v := NewValidator(t)
	valid := []string{
		`{"resourceType":"Patient","active":true}`,
		`{"resourceType":"CapabilityStatement","status":"active","date":"2025-01-31","kind":"instance","fhirVersion":"4.0.1","format":["json"],"implementation":{"description":"x"},"rest":[{"mode":"server"}]}`,
	}
	for _, doc := range valid {
		v.AssertValid(t, []byte(doc))
	}
	invalid := []string{
		`{"resourceType":"Patient","active":"yes"}`,
		`{"resourceType":"Patient","foo":1}`,
		`{"resourceType":"NoSuchResource"}`,
		`{"resourceType":"Bundle_Entry"}`,
		`{"active":true}`,
		`not json`,
	}
	for _, doc := range invalid {
		if v.Validate(t, []byte(doc)) == nil {
			t.Errorf("accepted %s", doc)
		}
	}
}
