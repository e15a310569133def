package fhir

import (
	"encoding/json"
	"maps"
	"os"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/fault"
)

// referralWith returns the walking-group fixture with the members of extra (a JSON object's members, raw)
// set, replacing any it has.
func referralWith(t *testing.T, extra string) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/referrals/walking-group-performer.json")
	if err != nil {
		t.Fatal(err)
	}
	var top, more map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte("{"+extra+"}"), &more); err != nil {
		t.Fatal(err)
	}
	maps.Copy(top, more)
	out, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDecodedSizeLimits: a body within the byte limit that holds too many values, too long an array or too
// long a string is refused while it is read, as too-costly (413), naming the limit; real referrals are far
// inside them.
func TestDecodedSizeLimits(t *testing.T) {
	t.Parallel()
	if _, err := ParseServiceRequest(referralWith(t, `"note":[{"text":"`+strings.Repeat("a", 4000)+`"}]`)); err != nil {
		t.Fatalf("an ordinary referral: %v", err)
	}
	items := func(n int, item string) string { return strings.TrimSuffix(strings.Repeat(item+",", n), ",") }
	for name, extra := range map[string]string{
		"values":  `"note":[` + items(MaxArrayItems, `{"text":"x","extension":[`+items(7, `{"url":"https://x.example/e","valueString":"v"}`)+`]}`) + `]`,
		"array":   `"note":[` + items(MaxArrayItems+1, `{"text":"x"}`) + `]`,
		"string":  `"patientInstruction":"` + strings.Repeat("b", MaxStringBytes+1) + `"`,
		"escaped": `"patientInstruction":"` + strings.Repeat(`\n`, MaxStringBytes+1) + `"`,
	} {
		body := referralWith(t, extra)
		if len(body) > 1<<20 {
			t.Fatalf("%s: the body (%d bytes) must be within the 1 MiB body limit to test the decoder's own", name, len(body))
		}
		_, err := ParseServiceRequest(body)
		fe := asFHIRError(t, err)
		if fe.Kind != fault.TooLarge || len(fe.Issues) != 1 || fe.Issues[0].Code != CodeTooCostly ||
			!strings.Contains(fe.Issues[0].Diagnostics, "too large at byte") {
			t.Errorf("%s: %v, want one too-costly issue (413)", name, err)
		}
		if err := ValidateResource(body, ""); fault.KindOf(err) != fault.TooLarge {
			t.Errorf("%s: ValidateResource: %v, want too-large", name, err)
		}
	}
	if _, err := Canonical([]byte(`[` + items(MaxArrayItems+1, "1") + `]`)); err == nil {
		t.Error("Canonical must refuse an array over the limit too")
	}
}

// TestNULInAnyPrimitive: U+0000 in any primitive, of any type, is a 400 naming the element (nothing that
// holds it may reach the database).
func TestNULInAnyPrimitive(t *testing.T) {
	t.Parallel()
	for expr, extra := range map[string]string{
		"ServiceRequest.patientInstruction":   `"patientInstruction":"call\u0000me"`,
		"ServiceRequest.identifier[0].system": `"identifier":[{"system":"https://x.example/\u0000","value":"1"}]`,
		"ServiceRequest.identifier[0].value":  `"identifier":[{"system":"https://x.example/","value":"1\u0000"}]`,
		"ServiceRequest.note[0].text":         `"note":[{"text":"\u0000"}]`,
		"ServiceRequest.instantiatesUri[0]":   `"instantiatesUri":["urn:x\u0000"]`,
	} {
		body := referralWith(t, extra)
		_, err := ParseServiceRequest(body)
		checkIssues(t, err, []want{{CodeValue, expr, "format: contains a NUL character"}})
	}
}
