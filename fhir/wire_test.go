package fhir

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fhir/fhirtest"
)

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	allTypeInteractions = []TypeInteraction{InteractionRead, InteractionVRead, InteractionUpdate, InteractionPatch, InteractionDelete,
		InteractionHistoryInstance, InteractionHistoryType, InteractionCreate, InteractionSearchType}
	allSystemInteractions = []SystemInteraction{InteractionTransaction, InteractionBatch, InteractionSearchSystem, InteractionHistorySystem}
	allSearchParamTypes   = []SearchParamType{SearchParamNumber, SearchParamDate, SearchParamString, SearchParamToken, SearchParamReference,
		SearchParamComposite, SearchParamQuantity, SearchParamURI, SearchParamSpecial}
	allVersionings  = []Versioning{VersioningNone, VersioningVersioned, VersioningVersionedUpdate}
	allBundleTypes  = []BundleType{BundleSearchset, BundleTransactionResponse, BundleHistory}
	allSearchModes  = []SearchMode{SearchMatch, SearchInclude, SearchOutcome}
	allIssueCodes   = []IssueCode{CodeInvalid, CodeStructure, CodeRequired, CodeValue, CodeInvariant, CodeBusinessRule, CodeCodeInvalid, CodeNotFound, CodeNotSupported, CodeDuplicate, CodeConflict, CodeSecurity, CodeLogin, CodeForbidden, CodeTooCostly, CodeTransient, CodeException, CodeProcessing, CodeInformational}
	allSeverities   = []Severity{SeverityFatal, SeverityError, SeverityWarning, SeverityInformation}
	capabilityNow   = time.Date(2025, 1, 31, 9, 30, 0, 123456789, time.FixedZone("x", 3600))
	capabilityInput = CapabilityOptions{
		BaseURL:         "https://socialrx.example.org/fhir",
		SoftwareVersion: "1.2.3",
		Date:            capabilityNow,
		Publisher:       "socialrx",
		SMART:           true,
		TokenURL:        "https://socialrx.example.org/oauth/token",
		Resources: []ResourceCapability{
			{Type: "ServiceRequest", Interactions: []TypeInteraction{InteractionCreate, InteractionRead, InteractionSearchType},
				Versioning: VersioningVersioned, ConditionalCreate: true,
				SearchParams: []SearchParam{{Name: "identifier", Type: SearchParamToken}, {Name: "_lastUpdated", Type: SearchParamDate, Definition: "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"}}},
			{Type: "Task", Interactions: []TypeInteraction{InteractionRead, InteractionUpdate, InteractionSearchType}, Versioning: VersioningVersionedUpdate,
				SearchParams: []SearchParam{{Name: "focus", Type: SearchParamReference, Documentation: "ServiceRequest/{id}"}, {Name: "status", Type: SearchParamToken}}},
		},
		SystemInteractions: []SystemInteraction{InteractionTransaction},
	}
)

func TestEnumsWalkEveryValue(t *testing.T) {
	t.Parallel()
	check := func(name string, valid []bool, zeroValid bool) {
		t.Helper()
		for i, ok := range valid {
			if !ok {
				t.Errorf("%s value %d not Valid", name, i)
			}
		}
		if zeroValid {
			t.Errorf("%s: zero value is Valid", name)
		}
	}
	var v []bool
	for _, x := range allTypeInteractions {
		v = append(v, x.Valid())
	}
	check("TypeInteraction", v, TypeInteraction("").Valid())
	v = nil
	for _, x := range allSystemInteractions {
		v = append(v, x.Valid())
	}
	check("SystemInteraction", v, SystemInteraction("").Valid())
	v = nil
	for _, x := range allSearchParamTypes {
		v = append(v, x.Valid())
	}
	check("SearchParamType", v, SearchParamType("").Valid())
	v = nil
	for _, x := range allBundleTypes {
		v = append(v, x.Valid())
	}
	check("BundleType", v, BundleType("").Valid())
	v = nil
	for _, x := range allSearchModes {
		v = append(v, x.Valid())
	}
	check("SearchMode", v, SearchMode("").Valid())
	v = nil
	for _, x := range allVersionings {
		v = append(v, x.Valid())
	}
	// Versioning is optional: its zero value means "not stated" and is left out of the JSON.
	check("Versioning", v, false)
	if Versioning("sometimes").Valid() || TypeInteraction("search").Valid() {
		t.Error("unknown code accepted")
	}
}

func TestInstant(t *testing.T) {
	t.Parallel()
	got := Instant(capabilityNow)
	if want := "2025-01-31T08:30:00.123Z"; got != want {
		t.Errorf("Instant = %q, want %q", got, want)
	}
	if !validPrimitive("instant", got) {
		t.Errorf("%q is not a FHIR instant", got)
	}
}

func TestExactInstant(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2025, 3, 18, 9, 30, 0, 0, time.UTC), "2025-03-18T09:30:00Z"},
		{time.Date(2025, 3, 18, 10, 30, 0, 120000000, time.FixedZone("BST", 3600)), "2025-03-18T09:30:00.12Z"},
		{time.Date(2025, 3, 18, 9, 30, 0, 1, time.UTC), "2025-03-18T09:30:00.000000001Z"},
	} {
		if got := ExactInstant(tc.in); got != tc.want {
			t.Errorf("ExactInstant(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNewCapabilityStatement(t *testing.T) {
	t.Parallel()
	cs, err := NewCapabilityStatement(capabilityInput)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Status != "active" || cs.Kind != "instance" || cs.FHIRVersion != "4.0.1" || cs.Date != "2025-01-31T08:30:00.123Z" ||
		len(cs.Format) != 1 || cs.Format[0] != "json" || cs.Software.Name != "socialrx" || cs.Implementation.URL != capabilityInput.BaseURL {
		t.Errorf("statement %+v", cs)
	}
	if err := ValidateResource(mustJSON(t, cs), "CapabilityStatement"); err != nil {
		t.Errorf("package fhir rejects its own CapabilityStatement: %v", err)
	}
	bad := []func(*CapabilityOptions){
		func(o *CapabilityOptions) { o.Date = time.Time{} },
		func(o *CapabilityOptions) { o.BaseURL = "/fhir" },
		func(o *CapabilityOptions) { o.TokenURL = "token" },
		func(o *CapabilityOptions) { o.Resources = []ResourceCapability{{Type: "Referral"}} },
		func(o *CapabilityOptions) {
			o.Resources = []ResourceCapability{{Type: "Task", Interactions: []TypeInteraction{"search"}}}
		},
		func(o *CapabilityOptions) { o.Resources = []ResourceCapability{{Type: "Task", Versioning: "maybe"}} },
		func(o *CapabilityOptions) {
			o.Resources = []ResourceCapability{{Type: "Task", SearchParams: []SearchParam{{Name: "x", Type: "text"}}}}
		},
		func(o *CapabilityOptions) { o.SystemInteractions = []SystemInteraction{"everything"} },
	}
	for i, mutate := range bad {
		o := capabilityInput
		mutate(&o)
		if _, err := NewCapabilityStatement(o); !errors.Is(err, ErrCapability) {
			t.Errorf("case %d: error %v, want ErrCapability", i, err)
		}
	}
}

// TestWireTypesAgainstOfficialSchema proves that every kind of resource socialrx builds is valid R4 JSON by the
// official schema, and accepted by package fhir's own validator.
func TestWireTypesAgainstOfficialSchema(t *testing.T) {
	t.Parallel()
	v := fhirtest.NewValidator(t)

	every := capabilityInput
	every.Resources = []ResourceCapability{{Type: "Task", Interactions: allTypeInteractions}}
	for _, vs := range allVersionings {
		every.Resources = append(every.Resources, ResourceCapability{Type: "ServiceRequest", Versioning: vs})
	}
	for _, st := range allSearchParamTypes {
		every.Resources[0].SearchParams = append(every.Resources[0].SearchParams, SearchParam{Name: "p-" + string(st), Type: st})
	}
	every.SystemInteractions = allSystemInteractions
	minimal := CapabilityOptions{BaseURL: "http://127.0.0.1:8080/fhir", Date: capabilityNow}
	statement := func(o CapabilityOptions) []byte {
		cs, err := NewCapabilityStatement(o)
		if err != nil {
			t.Fatal(err)
		}
		return mustJSON(t, cs)
	}

	task := Task{ResourceType: "Task", ID: "t1", Meta: &Meta{VersionID: "1", LastUpdated: Instant(capabilityNow)},
		Status: "requested", Intent: "order", Code: &CodeableConcept{Coding: []Coding{{System: "http://hl7.org/fhir/CodeSystem/task-code", Code: "fulfill"}}},
		Focus: &Reference{Reference: "ServiceRequest/sr1"}, For: &Reference{Reference: "#p", Identifier: &Identifier{System: "https://fhir.nhs.uk/Id/nhs-number", Value: "9434765919"}},
		AuthoredOn: Instant(capabilityNow), Owner: &Reference{Identifier: &Identifier{System: "https://fhir.nhs.uk/Id/ods-organization-code", Value: "XYZ01"}, Display: "Frome Walking for Health"},
		BusinessStatus: &CodeableConcept{Text: "delivered"}, Note: []Annotation{{Text: "n"}},
		Output: []TaskOutput{{Type: CodeableConcept{Text: "outcome"}, ValueString: new("walked")}}}
	taskJSON := mustJSON(t, task)

	docs := map[string][]byte{
		"CapabilityStatement":         statement(capabilityInput),
		"CapabilityStatement/every":   statement(every),
		"CapabilityStatement/minimal": statement(minimal),
		"Task":                        taskJSON,
		"Bundle/searchset": mustJSON(t, NewSearchset(1, []BundleLink{{Relation: "self", URL: "https://x.example/fhir/Task?status=requested"}, {Relation: "next", URL: "https://x.example/fhir/Task?status=requested&_cursor=abc"}},
			[]BundleEntry{{FullURL: "https://x.example/fhir/Task/t1", Resource: taskJSON, Search: &BundleEntrySearch{Mode: SearchMatch}}})),
		"Bundle/searchset-empty": mustJSON(t, NewSearchset(0, []BundleLink{{Relation: "self", URL: "https://x.example/fhir/Task"}}, nil)),
		"Bundle/transaction-response": mustJSON(t, NewTransactionResponse([]BundleEntry{
			{Response: &BundleEntryResponse{Status: EntryStatus(201), Location: "ServiceRequest/sr1/_history/1", Etag: `W/"1"`, LastModified: Instant(capabilityNow),
				Outcome: MarshalOutcome("c1", []Issue{{Severity: SeverityWarning, Code: CodeRequired, Diagnostics: "w", Expression: []string{"ServiceRequest.requester"}}})}},
			{Response: &BundleEntryResponse{Status: EntryStatus(200)}},
		})),
		"OperationOutcome/ok": MarshalOutcome("c2", nil),
	}
	for _, code := range allIssueCodes {
		for _, sev := range allSeverities {
			docs["OperationOutcome/"+string(code)+"/"+string(sev)] = MarshalOutcome("corr-1", []Issue{{Severity: sev, Code: code, Diagnostics: "d", Expression: []string{"ServiceRequest.status"}}})
		}
	}
	bench, err := ParseServiceRequest(readBenchInput(t))
	if err != nil {
		t.Fatal(err)
	}
	docs["ServiceRequest/bench Raw"] = bench.Raw
	tx, err := ParseTransaction(bundle("transaction", post(uSR, txSR), post(uPat, txPatient), post(uCon, txConsent), post(uPrac, txPractitioner)))
	if err != nil {
		t.Fatal(err)
	}
	docs["ServiceRequest/transaction Raw"] = tx.Raw
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v.AssertValid(t, doc)
			if err := ValidateResource(doc, ""); err != nil {
				t.Errorf("package fhir rejects it: %v", err)
			}
		})
	}
	t.Run("schema rejects", func(t *testing.T) {
		t.Parallel()
		// The validator is not vacuous.
		for _, doc := range []string{
			`{"resourceType":"Task","status":"requested","intent":"order","foo":1}`,
			`{"resourceType":"Bundle","type":"searchset","entry":{"fullUrl":"x"}}`,
			`{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"9.9.9","format":["json"],"date":"2025"}`,
		} {
			if v.Validate(t, []byte(doc)) == nil {
				t.Errorf("schema accepts %s", doc)
			}
		}
	})
}
