package fhir

import (
	"errors"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/fault"
)

// sr builds a ServiceRequest body from a minimal valid one: extra members are added (raw JSON, after the
// required ones) and the named members removed.
func sr(extra string, without ...string) []byte {
	members := []string{
		`"resourceType":"ServiceRequest"`,
		`"status":"active"`,
		`"intent":"order"`,
		`"subject":{"reference":"Patient/1"}`,
	}
	var keep []string
	for _, m := range members {
		drop := false
		for _, w := range without {
			if strings.HasPrefix(m, `"`+w+`"`) {
				drop = true
			}
		}
		if !drop {
			keep = append(keep, m)
		}
	}
	if extra != "" {
		keep = append(keep, extra)
	}
	return []byte("{" + strings.Join(keep, ",") + "}")
}

// want is one expected issue.
type want struct {
	code IssueCode
	expr string
	rule string // prefix of the diagnostics
}

// asFHIRError returns err as a *Error or fails.
func asFHIRError(t *testing.T, err error) *Error {
	t.Helper()
	var fe *Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *fhir.Error", err, err)
	}
	return fe
}

// checkIssues asserts a 400 with exactly the wanted issues (order-insensitive), each with an expression.
func checkIssues(t *testing.T, err error, wants []want) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", wants)
	}
	fe := asFHIRError(t, err)
	if fe.Kind != fault.Invalid {
		t.Errorf("kind %s, want invalid (400)", fe.Kind)
	}
	used := make([]bool, len(fe.Issues))
	for _, w := range wants {
		found := false
		for i, is := range fe.Issues {
			if used[i] || is.Code != w.code || len(is.Expression) != 1 || is.Expression[0] != w.expr {
				continue
			}
			if w.rule != "" && !strings.HasPrefix(is.Diagnostics, w.rule) {
				continue
			}
			used[i], found = true, true
			break
		}
		if !found {
			t.Errorf("missing issue %s at %s (%s); got %v", w.code, w.expr, w.rule, fe)
		}
	}
	for i, is := range fe.Issues {
		if !used[i] {
			t.Errorf("unexpected issue %s at %v: %s", is.Code, is.Expression, is.Diagnostics)
		}
		if is.Severity != SeverityError || is.Diagnostics == "" || len(is.Expression) == 0 {
			t.Errorf("issue %+v lacks severity, diagnostics or expression", is)
		}
	}
}

func TestParseServiceRequestRules(t *testing.T) {
	t.Parallel()
	containedPatient := `"contained":[{"resourceType":"Patient","id":"p1","active":true}]`
	tests := []struct {
		name string
		body []byte
		want []want // nil: must parse
	}{
		{"minimal", sr(""), nil},
		{"unknown element", sr(`"PatientInstruction":"x"`), []want{{CodeStructure, "ServiceRequest.PatientInstruction", "unknown-element"}}},
		{"two unknown elements reported together", sr(`"foo":1,"bar":2`), []want{
			{CodeStructure, "ServiceRequest.foo", "unknown-element"}, {CodeStructure, "ServiceRequest.bar", "unknown-element"}}},
		{"nested unknown element", sr(`"identifier":[{"sytem":"urn:x","value":"1"}]`), []want{{CodeStructure, "ServiceRequest.identifier[0].sytem", "unknown-element"}}},
		{"object for array (BaRS basedOn)", sr(`"basedOn":{"reference":"ServiceRequest/1"}`), []want{{CodeStructure, "ServiceRequest.basedOn", "cardinality"}}},
		{"array for single value", sr(`"code":[{"text":"x"}]`), []want{{CodeStructure, "ServiceRequest.code", "cardinality"}}},
		{"bad dateTime", sr(`"authoredOn":"2025-13-01"`), []want{{CodeValue, "ServiceRequest.authoredOn", "format"}}},
		{"dateTime time without zone", sr(`"authoredOn":"2025-01-01T10:00:00"`), []want{{CodeValue, "ServiceRequest.authoredOn", "format"}}},
		{"dateTime 30 February", sr(`"occurrenceDateTime":"2025-02-30"`), []want{{CodeValue, "ServiceRequest.occurrenceDateTime", "format"}}},
		{"dateTime ok partial", sr(`"authoredOn":"2025-01"`), nil},
		{"instant needs time", sr(`"meta":{"lastUpdated":"2025-01-01"}`), []want{{CodeValue, "ServiceRequest.meta.lastUpdated", "format"}}},
		{"missing status", sr("", "status"), []want{{CodeRequired, "ServiceRequest.status", "required"}}},
		{"missing intent", sr("", "intent"), []want{{CodeRequired, "ServiceRequest.intent", "required"}}},
		{"missing subject", sr("", "subject"), []want{{CodeRequired, "ServiceRequest.subject", "required"}}},
		{"status only as _status", sr(`"_status":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]}`, "status"),
			[]want{{CodeRequired, "ServiceRequest.status", "required"}}},
		{"status inactive", sr(`"status":"inactive"`, "status"), []want{{CodeCodeInvalid, "ServiceRequest.status", "code: not a code of the required value set request-status"}}},
		{"bad intent", sr(`"intent":"referral"`, "intent"), []want{{CodeCodeInvalid, "ServiceRequest.intent", "code"}}},
		{"bad priority", sr(`"priority":"soon"`), []want{{CodeCodeInvalid, "ServiceRequest.priority", "code"}}},
		{"schema enum (Identifier.use)", sr(`"identifier":[{"use":"primary","value":"1"}]`), []want{{CodeCodeInvalid, "ServiceRequest.identifier[0].use", "code"}}},
		{"all stage-2 issues at once", sr(`"status":"inactive","intent":"x"`, "status", "intent", "subject"), []want{
			{CodeCodeInvalid, "ServiceRequest.status", "code"}, {CodeCodeInvalid, "ServiceRequest.intent", "code"},
			{CodeRequired, "ServiceRequest.subject", "required"}}},
		{"stage 1 hides stage 2", sr(`"foo":1`, "status"), []want{{CodeStructure, "ServiceRequest.foo", "unknown-element"}}},
		{"code with double space", sr(`"priority":"a  b"`), []want{{CodeValue, "ServiceRequest.priority", "format"}}},
		{"nested contained (dom-2)", sr(`"supportingInfo":[{"reference":"#p1"}],"contained":[{"resourceType":"Patient","id":"p1","contained":[{"resourceType":"Patient","id":"p2"}]}]`),
			[]want{{CodeInvariant, "ServiceRequest.contained[0].contained", "dom-2"}, {CodeInvariant, "ServiceRequest.contained[0].contained[0]", "dom-3"}}},
		{"unreferenced contained (dom-3)", sr(containedPatient), []want{{CodeInvariant, "ServiceRequest.contained[0]", "dom-3"}}},
		{"contained referenced", sr(containedPatient + `,"supportingInfo":[{"reference":"#p1"}]`), nil},
		{"contained referenced from another contained", sr(`"supportingInfo":[{"reference":"#c1"}],"contained":[{"resourceType":"Patient","id":"p1","active":true},{"resourceType":"Consent","id":"c1","status":"active","scope":{"text":"x"},"category":[{"text":"y"}],"patient":{"reference":"#p1"}}]`), nil},
		{"contained refers to container", sr(`"contained":[{"resourceType":"Provenance","id":"v","target":[{"reference":"#"}],"recorded":"2025-01-01T00:00:00Z","agent":[{"who":{"display":"x"}}]}]`), nil},
		{"contained referenced by canonical", sr(`"instantiatesCanonical":["#pd"],"contained":[{"resourceType":"PlanDefinition","id":"pd","status":"active"}]`), nil},
		{"contained without id", sr(`"contained":[{"resourceType":"Patient","active":true}]`), []want{{CodeInvariant, "ServiceRequest.contained[0]", "dom-3"}}},
		{"contained duplicate ids", sr(`"supportingInfo":[{"reference":"#p1"}],"contained":[{"resourceType":"Patient","id":"p1"},{"resourceType":"Patient","id":"p1"}]`),
			[]want{{CodeInvalid, "ServiceRequest.contained[1].id", "contained-id"}}},
		{"contained meta.versionId (dom-4)", sr(`"subject":{"reference":"#p1"},"contained":[{"resourceType":"Patient","id":"p1","meta":{"versionId":"1"}}]`, "subject"),
			[]want{{CodeInvariant, "ServiceRequest.contained[0].meta", "dom-4"}}},
		{"contained without resourceType", sr(`"contained":[{"id":"p1"}]`), []want{{CodeStructure, "ServiceRequest.contained[0]", "resource-type"}}},
		{"contained unknown resourceType", sr(`"contained":[{"resourceType":"Referral","id":"p1"}]`), []want{{CodeInvalid, "ServiceRequest.contained[0]", "resource-type"}}},
		{"contained validated by its own type", sr(`"subject":{"reference":"#p1"},"contained":[{"resourceType":"Patient","id":"p1","gender":"f","status":"active"}]`, "subject"),
			[]want{{CodeStructure, "ServiceRequest.contained[0].status", "unknown-element"}}},
		{"contained stage 2", sr(`"subject":{"reference":"#p1"},"contained":[{"resourceType":"Patient","id":"p1","gender":"f"}]`, "subject"),
			[]want{{CodeCodeInvalid, "ServiceRequest.contained[0].gender", "code"}}},
		{"duplicate keys", []byte(`{"resourceType":"ServiceRequest","status":"active","status":"draft","intent":"order","subject":{"reference":"Patient/1"}}`),
			[]want{{CodeStructure, "ServiceRequest.status", "duplicate-key"}}},
		{"duplicate keys nested", sr(`"code":{"text":"a","text":"b"}`), []want{{CodeStructure, "ServiceRequest.code.text", "duplicate-key"}}},
		{"trailing garbage", append(sr(""), " x"...), []want{{CodeStructure, "ServiceRequest", "json"}}},
		{"two JSON values", append(sr(""), sr("")...), []want{{CodeStructure, "ServiceRequest", "json"}}},
		{"invalid JSON", []byte(`{"resourceType":"ServiceRequest",}`), []want{{CodeStructure, "ServiceRequest", "json"}}},
		{"empty body", nil, []want{{CodeStructure, "ServiceRequest", "json"}}},
		{"not an object", []byte(`[]`), []want{{CodeStructure, "ServiceRequest", "json-type"}}},
		{"invalid UTF-8", []byte("{\"resourceType\":\"ServiceRequest\",\"status\":\"\xff\"}"), []want{{CodeStructure, "ServiceRequest", "json"}}},
		{"unpaired surrogate", []byte(`{"resourceType":"ServiceRequest","patientInstruction":"\ud800"}`), []want{{CodeStructure, "ServiceRequest", "json"}}},
		{"too deep", []byte(strings.Repeat(`{"a":`, 200) + "1" + strings.Repeat("}", 200)), []want{{CodeStructure, "ServiceRequest", "json"}}},
		{"wrong resourceType", []byte(`{"resourceType":"Patient","active":true}`), []want{{CodeInvalid, "ServiceRequest", "resource-type"}}},
		{"missing resourceType", []byte(`{"status":"active"}`), []want{{CodeStructure, "ServiceRequest", "resource-type"}}},
		{"boolean as string", sr(`"doNotPerform":"true"`), []want{{CodeStructure, "ServiceRequest.doNotPerform", "json-type"}}},
		{"number as string", sr(`"quantityQuantity":{"value":"1.5"}`), []want{{CodeStructure, "ServiceRequest.quantityQuantity.value", "json-type"}}},
		{"decimal keeps precision", sr(`"quantityQuantity":{"value":1.50,"unit":"h"}`), nil},
		{"empty string", sr(`"patientInstruction":""`), []want{{CodeValue, "ServiceRequest.patientInstruction", "format"}}},
		{"control character in string", sr(`"patientInstruction":"a\u0001b"`), []want{{CodeValue, "ServiceRequest.patientInstruction", "format"}}},
		{"empty array", sr(`"category":[]`), []want{{CodeInvalid, "ServiceRequest.category", "empty"}}},
		{"empty object", sr(`"code":{}`), []want{{CodeInvalid, "ServiceRequest.code", "empty"}}},
		{"null value", sr(`"code":null`), []want{{CodeStructure, "ServiceRequest.code", "null"}}},
		{"null in complex array", sr(`"category":[null]`), []want{{CodeStructure, "ServiceRequest.category[0]", "null"}}},
		{"bad id", sr(`"id":"has space"`), []want{{CodeValue, "ServiceRequest.id", "format"}}},
		{"id too long", sr(`"id":"` + strings.Repeat("a", 65) + `"`), []want{{CodeValue, "ServiceRequest.id", "format"}}},
		{"uri with space", sr(`"instantiatesUri":["http://x y"]`), []want{{CodeValue, "ServiceRequest.instantiatesUri[0]", "format"}}},
		{"choice conflict", sr(`"occurrenceDateTime":"2025-01-01","occurrencePeriod":{"start":"2025-01-01"}`), []want{{CodeStructure, "ServiceRequest.occurrencePeriod", "choice"}}},
		{"unknown choice variant", sr(`"occurrenceString":"soon"`), []want{{CodeStructure, "ServiceRequest.occurrenceString", "unknown-element"}}},
		{"primitive twin", sr(`"_status":{"extension":[{"url":"http://example.org/x","valueString":"y"}]}`), nil},
		{"twin with unknown child", sr(`"_status":{"foo":1}`), []want{{CodeStructure, "ServiceRequest.status.foo", "unknown-element"}}},
		{"twin of a complex element", sr(`"_subject":{"id":"x"}`), []want{{CodeStructure, "ServiceRequest._subject", "unknown-element"}}},
		{"twin array aligned", sr(`"instantiatesUri":["http://a",null],"_instantiatesUri":[null,{"id":"b"}]`), nil},
		{"twin array length", sr(`"instantiatesUri":["http://a"],"_instantiatesUri":[null,{"id":"b"}]`), []want{{CodeStructure, "ServiceRequest.instantiatesUri", "twin"}}},
		{"null without twin", sr(`"instantiatesUri":["http://a",null]`), []want{{CodeStructure, "ServiceRequest.instantiatesUri[1]", "null"}}},
		{"canonical has no twin in the schema", sr(`"_instantiatesCanonical":[{"id":"x"}]`), []want{{CodeStructure, "ServiceRequest._instantiatesCanonical", "unknown-element"}}},
		{"extension without url", sr(`"extension":[{"valueString":"x"}]`), []want{{CodeRequired, "ServiceRequest.extension[0].url", "required"}}},
		{"extension value choice", sr(`"extension":[{"url":"http://example.org/x","valueBase64Binary":"abc"}]`), []want{{CodeValue, "ServiceRequest.extension[0].valueBase64Binary", "format"}}},
		{"base64 ok", sr(`"extension":[{"url":"http://example.org/x","valueBase64Binary":"aGVs bG8="}]`), nil},
		{"unsignedInt negative", sr(`"extension":[{"url":"http://example.org/x","valueUnsignedInt":-1}]`), []want{{CodeValue, "ServiceRequest.extension[0].valueUnsignedInt", "format"}}},
		{"integer overflow", sr(`"extension":[{"url":"http://example.org/x","valueInteger":2147483648}]`), []want{{CodeValue, "ServiceRequest.extension[0].valueInteger", "format"}}},
		{"integer with fraction", sr(`"extension":[{"url":"http://example.org/x","valueInteger":1.0}]`), []want{{CodeValue, "ServiceRequest.extension[0].valueInteger", "format"}}},
		{"positiveInt zero", sr(`"occurrenceTiming":{"repeat":{"frequency":0}}`), []want{{CodeValue, "ServiceRequest.occurrenceTiming.repeat.frequency", "format"}}},
		{"days of week", sr(`"occurrenceTiming":{"repeat":{"dayOfWeek":["mon","funday"]}}`), []want{{CodeCodeInvalid, "ServiceRequest.occurrenceTiming.repeat.dayOfWeek[1]", "code"}}},
		{"narrative div", sr(`"text":{"status":"generated","div":"<p>x</p>"}`), []want{{CodeValue, "ServiceRequest.text.div", "format"}}},
		{"narrative status required", sr(`"text":{"div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}`), []want{{CodeRequired, "ServiceRequest.text.status", "required"}}},
		{"odd key rendered safely", sr(`"a.b\"c":1`), []want{{CodeStructure, "ServiceRequest.a?b?c", "unknown-element"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sub, err := ParseServiceRequest(tc.body)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if sub == nil || len(sub.Raw) == 0 {
					t.Fatal("no submission")
				}
				return
			}
			if sub != nil {
				t.Errorf("got a submission for invalid input")
			}
			checkIssues(t, err, tc.want)
		})
	}
}

func TestTooManyIssuesAreCapped(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 150 {
		b.WriteString(`,"x`)
		b.WriteString(strings.Repeat("y", i))
		b.WriteString(`":1`)
	}
	_, err := ParseServiceRequest(sr(b.String()[1:]))
	fe := asFHIRError(t, err)
	if len(fe.Issues) != maxIssues+1 {
		t.Fatalf("%d issues, want %d", len(fe.Issues), maxIssues+1)
	}
	if last := fe.Issues[maxIssues]; last.Code != CodeTooCostly || !strings.Contains(last.Diagnostics, "50 more") {
		t.Errorf("last issue %+v", last)
	}
}

func TestSubmissionServiceRequest(t *testing.T) {
	t.Parallel()
	body := []byte(`{"resourceType":"ServiceRequest","id":"abc","meta":{"versionId":"3"},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
		"contained":[{"resourceType":"Patient","id":"p","gender":"female"}],
		"status":"draft","intent":"proposal","priority":"urgent","subject":{"reference":"#p"},"note":[{"text":"caf\u00e9 <&>"}]}`)
	sub, err := ParseServiceRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(sub.ServiceRequest.Status.Code()); got != "draft" {
		t.Errorf("status %q", got)
	}
	if got := sub.ServiceRequest.Intent.Code(); got != "proposal" {
		t.Errorf("intent %q", got)
	}
	if sub.ServiceRequest.Id != nil || sub.ServiceRequest.Meta != nil {
		t.Errorf("id/meta not removed: %s", sub.Raw)
	}
	want := `{"resourceType":"ServiceRequest","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},"contained":[{"resourceType":"Patient","id":"p","gender":"female"}],"status":"draft","intent":"proposal","priority":"urgent","subject":{"reference":"#p"},"note":[{"text":"café <&>"}]}`
	if string(sub.Raw) != want {
		t.Errorf("Raw\n got %s\nwant %s", sub.Raw, want)
	}
	p, ok := sub.Resolve("#p")
	if !ok || p.ResourceType != "Patient" || p.ID != "p" || string(p.JSON) != `{"resourceType":"Patient","id":"p","gender":"female"}` {
		t.Errorf("Resolve(#p) = %+v, %v", p, ok)
	}
	if sub.FromBundle {
		t.Error("FromBundle set")
	}
	if len(sub.Warnings) != 1 || sub.Warnings[0].Severity != SeverityWarning || sub.Warnings[0].Expression[0] != "ServiceRequest.requester" {
		t.Errorf("warnings %+v", sub.Warnings)
	}
	if len(sub.Fingerprint) != 64 {
		t.Errorf("fingerprint %q", sub.Fingerprint)
	}
}

func TestFingerprintServiceRequest(t *testing.T) {
	t.Parallel()
	base := `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"urn:uuid:0c2d8f5e-8a43-4c1e-9a57-1b7e6d1f2a3b"},"requester":{"reference":"Practitioner/1"}}`
	same := []string{
		// key order, whitespace, id, meta, text, regenerated urn:uuid
		`{ "intent": "order", "status": "active", "id": "x", "meta": {"versionId": "2"},
		   "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">t</div>"},
		   "requester": {"reference": "Practitioner/1"}, "resourceType": "ServiceRequest",
		   "subject": {"reference": "urn:uuid:6f1c9b0a-1d2e-4f3a-8b4c-5d6e7f8a9b0c"} }`,
	}
	different := []string{
		`{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/2"},"requester":{"reference":"Practitioner/1"}}`,
		`{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"urn:uuid:0c2d8f5e-8a43-4c1e-9a57-1b7e6d1f2a3b"},"requester":{"reference":"Practitioner/2"}}`,
		`{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"urn:uuid:0c2d8f5e-8a43-4c1e-9a57-1b7e6d1f2a3b"},"requester":{"reference":"Practitioner/1"},"priority":"urgent"}`,
	}
	fp := func(s string) string {
		t.Helper()
		sub, err := ParseServiceRequest([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return sub.Fingerprint
	}
	f0 := fp(base)
	for _, s := range same {
		if fp(s) != f0 {
			t.Errorf("fingerprint differs for equivalent %s", s)
		}
	}
	for _, s := range different {
		if fp(s) == f0 {
			t.Errorf("fingerprint equal for different %s", s)
		}
	}
}

func TestValidateResource(t *testing.T) {
	t.Parallel()
	task := []byte(`{"resourceType":"Task","status":"requested","intent":"order","priority":"routine","input":[{"type":{"text":"x"},"valueString":"y"}]}`)
	if err := ValidateResource(task, "Task"); err != nil {
		t.Errorf("valid Task: %v", err)
	}
	if err := ValidateResource(task, ""); err != nil {
		t.Errorf("valid Task, any type: %v", err)
	}
	checkIssues(t, ValidateResource(task, "ServiceRequest"), []want{{CodeInvalid, "ServiceRequest", "resource-type"}})
	bad := []byte(`{"resourceType":"Task","status":"done","intent":"order","priority":"whenever","output":[{"type":{"text":"x"}}]}`)
	checkIssues(t, ValidateResource(bad, ""), []want{
		{CodeCodeInvalid, "Task.status", "code"}, {CodeCodeInvalid, "Task.priority", "code"}, {CodeRequired, "Task.output[0].value[x]", "required"}})
}

func TestSubmissionContainedPosition(t *testing.T) {
	t.Parallel()
	c := `"contained":[{"resourceType":"Patient","id":"p","active":true}]`
	for _, body := range []string{
		`{` + c + `,"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"#p"}}`,
		`{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"#p"},` + c + `}`,
		`{"id":"x",` + c + `,"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"#p"}}`,
	} {
		sub, err := ParseServiceRequest([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if ref := sub.ServiceRequest.Subject.Reference; ref == nil || *ref != "#p" || sub.ServiceRequest.Status.Code() != "active" {
			t.Errorf("%s: decoded %+v", body, sub.ServiceRequest)
		}
		if p, ok := sub.Resolve("#p"); !ok || string(p.JSON) != `{"resourceType":"Patient","id":"p","active":true}` {
			t.Errorf("%s: contained %+v", body, p)
		}
	}
}

func TestCanonical(t *testing.T) {
	t.Parallel()
	got, err := Canonical([]byte(" {\"b\": [1.50, true, null], \"a\": {\"y\": \"\\u00e9\\n<\", \"x\": -0}} "))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":{"x":-0,"y":"é\n<"},"b":[1.50,true,null]}`; string(got) != want {
		t.Errorf("Canonical = %s, want %s", got, want)
	}
	for _, bad := range []string{`{"a":1,"a":2}`, `{"a":1} x`, ``, `{"a":}`} {
		if _, err := Canonical([]byte(bad)); err == nil {
			t.Errorf("Canonical(%q) accepted", bad)
		}
	}
}
