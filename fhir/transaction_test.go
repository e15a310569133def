package fhir

import (
	"encoding/json"
	"strings"
	"testing"
)

const (
	uSR   = "urn:uuid:11111111-1111-4111-8111-111111111111"
	uPat  = "urn:uuid:22222222-2222-4222-8222-222222222222"
	uCon  = "urn:uuid:33333333-3333-4333-8333-333333333333"
	uPrac = "urn:uuid:44444444-4444-4444-8444-444444444444"
	uNone = "urn:uuid:99999999-9999-4999-8999-999999999999"
)

// entry is one Bundle entry; empty fields are left out, method "-" leaves out request.
type entry struct {
	fullURL, method, url, resource string
}

func post(fullURL, resource string) entry {
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	_ = json.Unmarshal([]byte(resource), &head)
	return entry{fullURL: fullURL, method: "POST", url: head.ResourceType, resource: resource}
}

func bundle(typ string, entries ...entry) []byte {
	var parts []string
	for _, e := range entries {
		var m []string
		if e.fullURL != "" {
			m = append(m, `"fullUrl":`+quote(e.fullURL))
		}
		if e.resource != "" {
			m = append(m, `"resource":`+e.resource)
		}
		if e.method != "-" {
			m = append(m, `"request":{"method":`+quote(e.method)+`,"url":`+quote(e.url)+`}`)
		}
		parts = append(parts, "{"+strings.Join(m, ",")+"}")
	}
	head := `{"resourceType":"Bundle"`
	if typ != "" {
		head += `,"type":` + quote(typ)
	}
	if len(parts) > 0 {
		head += `,"entry":[` + strings.Join(parts, ",") + `]`
	}
	return []byte(head + "}")
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

const (
	txSR = `{"resourceType":"ServiceRequest","id":"tmp","meta":{"versionId":"1"},"status":"active","intent":"order",` +
		`"subject":{"reference":"` + uPat + `"},"requester":{"reference":"` + uPrac + `"},` +
		`"supportingInfo":[{"reference":"` + uCon + `"}],"performer":[{"reference":"` + uNone + `"}]}`
	txPatient = `{"resourceType":"Patient","id":"pat","meta":{"lastUpdated":"2025-01-01T00:00:00Z"},` +
		`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Alex</div>"},` +
		`"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}]}`
	txConsent = `{"resourceType":"Consent","status":"active","scope":{"text":"privacy"},"category":[{"text":"consent"}],` +
		`"patient":{"reference":"` + uPat + `"},"provision":{"data":[{"meaning":"related","reference":{"reference":"` + uSR + `"}}]}}`
	txPractitioner = `{"resourceType":"Practitioner","name":[{"family":"Example"}]}`
)

func TestParseTransaction(t *testing.T) {
	t.Parallel()
	body := bundle("transaction", post(uSR, txSR), post(uPat, txPatient), post(uCon, txConsent), post(uPrac, txPractitioner))
	sub, err := ParseTransaction(body)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"ServiceRequest","contained":[` +
		`{"resourceType":"Patient","id":"pat","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}]},` +
		`{"resourceType":"Consent","id":"consent1","status":"active","scope":{"text":"privacy"},"category":[{"text":"consent"}],"patient":{"reference":"#pat"},"provision":{"data":[{"meaning":"related","reference":{"reference":"#"}}]}},` +
		`{"resourceType":"Practitioner","id":"practitioner1","name":[{"family":"Example"}]}],` +
		`"status":"active","intent":"order","subject":{"reference":"#pat"},"requester":{"reference":"#practitioner1"},` +
		`"supportingInfo":[{"reference":"#consent1"}],"performer":[{"reference":"` + uNone + `"}]}`
	if string(sub.Raw) != want {
		t.Errorf("Raw\n got %s\nwant %s", sub.Raw, want)
	}
	if !sub.FromBundle {
		t.Error("FromBundle not set")
	}
	for id, rt := range map[string]string{"pat": "Patient", "consent1": "Consent", "practitioner1": "Practitioner"} {
		if r, ok := sub.Resolve("#" + id); !ok || r.ResourceType != rt || r.ID != id {
			t.Errorf("Resolve(#%s) = %+v, %v", id, r, ok)
		}
	}
	if len(sub.Contained) != 3 {
		t.Errorf("%d contained", len(sub.Contained))
	}
	if ref := sub.ServiceRequest.Subject.Reference; ref == nil || *ref != "#pat" {
		t.Errorf("decoded subject %v", ref)
	}
	if len(sub.Warnings) != 0 {
		t.Errorf("warnings %+v", sub.Warnings)
	}
	// The stored ServiceRequest is itself a valid bare ServiceRequest apart from dom-3 (Bundle resources need
	// not be referenced; here all are, so it parses).
	again, err := ParseServiceRequest(sub.Raw)
	if err != nil {
		t.Fatalf("Raw does not parse as a ServiceRequest: %v", err)
	}
	if len(again.Contained) != 3 {
		t.Errorf("contained lost")
	}
}

func TestParseTransactionLocalIDs(t *testing.T) {
	t.Parallel()
	srWithContained := `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"` + uPat + `"},` +
		`"contained":[{"resourceType":"Organization","id":"a","name":"GP"}],"requester":{"reference":"#a"},` +
		`"supportingInfo":[{"reference":"urn:uuid:55555555-5555-4555-8555-555555555555"}]}`
	body := bundle("transaction",
		post(uSR, srWithContained),
		post(uPat, `{"resourceType":"Patient","id":"x","active":true}`),
		post("urn:uuid:55555555-5555-4555-8555-555555555555", `{"resourceType":"Patient","id":"x","active":false}`),
		post("https://gp.example.org/fhir/Organization/a", `{"resourceType":"Organization","id":"a","name":"Practice"}`),
		post("urn:uuid:66666666-6666-4666-8666-666666666666", `{"resourceType":"Practitioner","id":"pr","name":[{"family":"Unreferenced"}]}`),
	)
	sub, err := ParseTransaction(body)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Contained []struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		} `json:"contained"`
		Subject        struct{ Reference string }   `json:"subject"`
		SupportingInfo []struct{ Reference string } `json:"supportingInfo"`
	}
	if err := json.Unmarshal(sub.Raw, &got); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range got.Contained {
		ids = append(ids, c.ResourceType+"/"+c.ID)
	}
	// Client-sent "a" keeps its id; both Patients share "x" so both get generated ids; the Organization's own
	// "a" is taken; the Practitioner keeps "pr" and stays although nothing references it.
	if want := "Organization/a Patient/patient1 Patient/patient2 Organization/organization1 Practitioner/pr"; strings.Join(ids, " ") != want {
		t.Errorf("contained %q, want %q", strings.Join(ids, " "), want)
	}
	if got.Subject.Reference != "#patient1" || got.SupportingInfo[0].Reference != "#patient2" {
		t.Errorf("references %+v %+v", got.Subject, got.SupportingInfo)
	}
}

func TestTransactionFingerprint(t *testing.T) {
	t.Parallel()
	fp := func(body []byte) string {
		t.Helper()
		sub, err := ParseTransaction(body)
		if err != nil {
			t.Fatal(err)
		}
		return sub.Fingerprint
	}
	f0 := fp(bundle("transaction", post(uSR, txSR), post(uPat, txPatient), post(uCon, txConsent), post(uPrac, txPractitioner)))
	// A resend: fresh urn:uuids, other entry order, other key order and ids.
	swap := strings.NewReplacer(
		uSR, "urn:uuid:a1111111-1111-4111-8111-111111111111",
		uPat, "urn:uuid:a2222222-2222-4222-8222-222222222222",
		uCon, "urn:uuid:a3333333-3333-4333-8333-333333333333",
		uPrac, "urn:uuid:a4444444-4444-4444-8444-444444444444",
		`"id":"pat"`, `"id":"other"`, `"status":"active","intent":"order"`, `"intent":"order","status":"active"`)
	resend := bundle("transaction", post(uPrac, txPractitioner), post(uCon, txConsent), post(uPat, txPatient), post(uSR, txSR))
	if f1 := fp([]byte(swap.Replace(string(resend)))); f1 != f0 {
		t.Error("fingerprint changed for an identical resend")
	}
	changed := bundle("transaction", post(uSR, txSR), post(uPat, strings.Replace(txPatient, "9434765919", "9434765870", 1)), post(uCon, txConsent), post(uPrac, txPractitioner))
	if fp(changed) == f0 {
		t.Error("fingerprint equal for a different Patient")
	}
	bare, err := ParseServiceRequest([]byte(txSR))
	if err != nil {
		t.Fatal(err)
	}
	if bare.Fingerprint == f0 {
		t.Error("bare ServiceRequest and Bundle share a fingerprint")
	}
}

func TestParseTransactionRules(t *testing.T) {
	t.Parallel()
	pat := post(uPat, txPatient)
	srE := post(uSR, txSR)
	tests := []struct {
		name string
		body []byte
		want []want
	}{
		{"collection", bundle("collection", srE, pat), []want{{CodeNotSupported, "Bundle.type", "bundle-type"}}},
		{"searchset", bundle("searchset"), []want{{CodeNotSupported, "Bundle.type", "bundle-type"}}},
		{"batch with relative fullUrl", bundle("batch", entry{fullURL: "ServiceRequest/1", method: "POST", url: "ServiceRequest", resource: txSR}),
			[]want{{CodeNotSupported, "Bundle.type", "bundle-type"}, {CodeValue, "Bundle.entry[0].fullUrl", "full-url"}}},
		{"missing type", bundle("", srE), []want{{CodeRequired, "Bundle.type", "bundle-type"}}},
		{"bad type code", bundle("transactions", srE), []want{{CodeNotSupported, "Bundle.type", "bundle-type"}}},
		{"relative fullUrl", bundle("transaction", entry{fullURL: "ServiceRequest/1", method: "POST", url: "ServiceRequest", resource: txSR}),
			[]want{{CodeValue, "Bundle.entry[0].fullUrl", "full-url"}}},
		{"upper-case urn:uuid", bundle("transaction", post(strings.ToUpper(uSR[9:]), txSR)), []want{{CodeValue, "Bundle.entry[0].fullUrl", "full-url"}}},
		{"malformed urn:uuid", bundle("transaction", post("urn:uuid:1234", txSR)), []want{{CodeValue, "Bundle.entry[0].fullUrl", "full-url"}}},
		{"version-specific fullUrl", bundle("transaction", post("https://x.example/fhir/ServiceRequest/1/_history/2", txSR)), []want{{CodeValue, "Bundle.entry[0].fullUrl", "full-url"}}},
		{"duplicate fullUrl", bundle("transaction", srE, post(uSR, txPatient)), []want{{CodeInvalid, "Bundle.entry[1].fullUrl", "full-url"}}},
		{"missing fullUrl", bundle("transaction", srE, post("", txPatient)), []want{{CodeRequired, "Bundle.entry[1].fullUrl", "transaction"}}},
		{"missing resource", bundle("transaction", srE, entry{fullURL: uPat, method: "POST", url: "Patient"}), []want{{CodeRequired, "Bundle.entry[1].resource", "transaction"}}},
		{"missing request", bundle("transaction", srE, entry{fullURL: uPat, method: "-", resource: txPatient}), []want{{CodeRequired, "Bundle.entry[1].request", "transaction"}}},
		{"PUT", bundle("transaction", entry{fullURL: uSR, method: "PUT", url: "ServiceRequest", resource: txSR}), []want{{CodeNotSupported, "Bundle.entry[0].request.method", "transaction"}}},
		{"request.url", bundle("transaction", srE, entry{fullURL: uPat, method: "POST", url: "Patient/1", resource: txPatient}), []want{{CodeValue, "Bundle.entry[1].request.url", "transaction"}}},
		{"unsupported entry type", bundle("transaction", srE, post(uPat, `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`)),
			[]want{{CodeNotSupported, "Bundle.entry[1].resource", "transaction"}}},
		{"two ServiceRequests", bundle("transaction", srE, post(uCon, txSR)), []want{{CodeInvalid, "Bundle.entry[1].resource", "transaction"}}},
		{"no ServiceRequest", bundle("transaction", pat), []want{{CodeRequired, "Bundle.entry", "transaction"}}},
		{"no entries", bundle("transaction"), []want{{CodeRequired, "Bundle.entry", "transaction"}}},
		{"entry resource with contained", bundle("transaction", srE, post(uPat, `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o"}],"managingOrganization":{"reference":"#o"}}`)),
			[]want{{CodeNotSupported, "Bundle.entry[1].resource.contained", "transaction"}}},
		{"entry resource structure", bundle("transaction", srE, post(uPat, `{"resourceType":"Patient","foo":1}`)), []want{{CodeStructure, "Bundle.entry[1].resource.foo", "unknown-element"}}},
		{"entry resource code", bundle("transaction", srE, post(uPat, `{"resourceType":"Patient","gender":"f"}`)), []want{{CodeCodeInvalid, "Bundle.entry[1].resource.gender", "code"}}},
		{"ServiceRequest required", bundle("transaction", post(uSR, `{"resourceType":"ServiceRequest","intent":"order","subject":{"reference":"`+uPat+`"}}`), pat),
			[]want{{CodeRequired, "Bundle.entry[0].resource.status", "required"}}},
		{"not a Bundle", []byte(txSR), []want{{CodeInvalid, "Bundle", "resource-type"}}},
		{"entry with inline resource fields", []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resourceType":"ServiceRequest","status":"active"}]}`),
			[]want{{CodeStructure, "Bundle.entry[0].resourceType", "unknown-element"}, {CodeStructure, "Bundle.entry[0].status", "unknown-element"},
				{CodeRequired, "Bundle.entry[0].fullUrl", "transaction"}, {CodeRequired, "Bundle.entry[0].resource", "transaction"},
				{CodeRequired, "Bundle.entry[0].request", "transaction"}, {CodeRequired, "Bundle.entry", "transaction"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sub, err := ParseTransaction(tc.body)
			if sub != nil {
				t.Errorf("got a submission for invalid input")
			}
			checkIssues(t, err, tc.want)
		})
	}
}
