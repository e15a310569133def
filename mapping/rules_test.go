package mapping

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
)

// baseDoc returns the walking-group fixture as a generic JSON document to mutate. Its contained resources
// are, in order: 0 Patient "pat", 1 Consent "consent", 2 PractitionerRole "gp-role", 3 Practitioner "gp",
// 4 Organization "practice".
func baseDoc(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readFile(t, filepath.Join(fixturesDir, "walking-group-performer.json")), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func docSub(t testing.TB, m map[string]any) *fhir.Submission {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return submissionFromJSON(t, b)
}

// contained returns the i-th contained resource of a document.
func contained(m map[string]any, i int) map[string]any {
	return m["contained"].([]any)[i].(map[string]any)
}

func obj(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func nhsID(v string) map[string]any { return obj("system", NHSNumberSystem, "value", v) }

func key(code fhir.IssueCode, expr ...string) issueKey {
	return issueKey{Code: code, Expression: strings.Join(expr, " | ")}
}

// TestBuildBusinessRules walks every business rule: each case mutates the valid walking-group referral and
// lists the issues (code + expression) Build must report, all at once.
func TestBuildBusinessRules(t *testing.T) {
	t.Parallel()
	noDefault := demoDirectory()
	noDefault.Services = noDefault.Services[:len(noDefault.Services)-1] // drop link-workers (the default)

	tests := []struct {
		name   string
		mutate func(m map[string]any)
		dir    *Directory
		want   []issueKey // nil: Build succeeds
	}{
		{name: "valid as is", mutate: func(map[string]any) {}},

		{name: "status draft", mutate: func(m map[string]any) { m["status"] = "draft" }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.status")}},
		{name: "status on-hold", mutate: func(m map[string]any) { m["status"] = "on-hold" }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.status")}},
		{name: "status revoked", mutate: func(m map[string]any) { m["status"] = "revoked" }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.status")}},
		{name: "status completed", mutate: func(m map[string]any) { m["status"] = "completed" }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.status")}},
		{name: "status entered-in-error", mutate: func(m map[string]any) { m["status"] = "entered-in-error" }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.status")}},
		{name: "status unknown", mutate: func(m map[string]any) { m["status"] = "unknown" }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.status")}},

		{name: "intent original-order", mutate: func(m map[string]any) { m["intent"] = "original-order" }},
		{name: "intent proposal", mutate: func(m map[string]any) { m["intent"] = "proposal" }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.intent")}},
		{name: "intent plan", mutate: func(m map[string]any) { m["intent"] = "plan" }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.intent")}},
		{name: "intent directive", mutate: func(m map[string]any) { m["intent"] = "directive" }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.intent")}},
		{name: "intent reflex-order", mutate: func(m map[string]any) { m["intent"] = "reflex-order" }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.intent")}},
		{name: "intent filler-order", mutate: func(m map[string]any) { m["intent"] = "filler-order" }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.intent")}},
		{name: "intent instance-order", mutate: func(m map[string]any) { m["intent"] = "instance-order" }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.intent")}},
		{name: "intent option", mutate: func(m map[string]any) { m["intent"] = "option" }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.intent")}},

		{name: "doNotPerform false", mutate: func(m map[string]any) { m["doNotPerform"] = false }},
		{name: "doNotPerform true", mutate: func(m map[string]any) { m["doNotPerform"] = true }, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.doNotPerform")}},

		{name: "subject relative literal", mutate: func(m map[string]any) { m["subject"] = obj("reference", "Patient/123") },
			want: []issueKey{key(fhir.CodeNotFound, "ServiceRequest.subject")}},
		{name: "subject absolute literal", mutate: func(m map[string]any) { m["subject"] = obj("reference", "https://gp.example/fhir/Patient/123") },
			want: []issueKey{key(fhir.CodeNotFound, "ServiceRequest.subject")}},
		{name: "subject versioned literal", mutate: func(m map[string]any) { m["subject"] = obj("reference", "Patient/123/_history/2") },
			want: []issueKey{key(fhir.CodeNotFound, "ServiceRequest.subject")}},
		{name: "subject literal with NHS number", mutate: func(m map[string]any) {
			m["subject"] = obj("reference", "Patient/123", "identifier", nhsID("9999542557"))
		}},
		{name: "subject logical NHS number", mutate: func(m map[string]any) {
			m["subject"] = obj("type", "Patient", "identifier", nhsID("9999542557"))
		}},
		{name: "subject logical NHS number invalid", mutate: func(m map[string]any) {
			m["subject"] = obj("identifier", nhsID("9991234567"))
			contained(m, 1)["patient"] = obj("display", "M Ellis")
		}, want: []issueKey{key(fhir.CodeValue, "ServiceRequest.subject.identifier.value")}},
		{name: "subject logical other identifier", mutate: func(m map[string]any) {
			m["subject"] = obj("identifier", obj("system", "https://gp.example/Id/mrn", "value", "123"))
			contained(m, 1)["patient"] = obj("display", "M Ellis")
		}, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.subject.identifier")}},
		{name: "subject display only", mutate: func(m map[string]any) { m["subject"] = obj("display", "Margaret Ellis") },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.subject")}},
		{name: "subject Group literal", mutate: func(m map[string]any) { m["subject"] = obj("reference", "Group/walkers") },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.subject")}},
		{name: "subject Location literal", mutate: func(m map[string]any) { m["subject"] = obj("reference", "Location/hall") },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.subject")}},
		{name: "subject Device absolute", mutate: func(m map[string]any) { m["subject"] = obj("reference", "https://gp.example/fhir/Device/d1") },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.subject")}},
		{name: "subject logical typed Group", mutate: func(m map[string]any) {
			m["subject"] = obj("type", "Group", "identifier", nhsID("9999542557"))
		}, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.subject")}},
		{name: "subject contained Group", mutate: func(m map[string]any) {
			m["contained"] = append(m["contained"].([]any), obj("resourceType", "Group", "id", "grp", "type", "person", "actual", true))
			m["subject"] = obj("reference", "#grp")
		}, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.subject")}},
		{name: "subject contained missing", mutate: func(m map[string]any) { m["subject"] = obj("reference", "#nobody") },
			want: []issueKey{key(fhir.CodeNotFound, "ServiceRequest.subject.reference")}},
		{name: "subject urn unresolved", mutate: func(m map[string]any) {
			m["subject"] = obj("reference", "urn:uuid:1b7c0c4e-3f55-4d3b-9b0e-6d1f8a2c9e11")
		}, want: []issueKey{key(fhir.CodeNotFound, "ServiceRequest.subject.reference")}},
		{name: "subject identifier disagrees with contained Patient", mutate: func(m map[string]any) {
			m["subject"] = obj("reference", "#pat", "identifier", nhsID("9995034913"))
		}, want: []issueKey{key(fhir.CodeInvariant, "ServiceRequest.subject.identifier")}},
		{name: "subject identifier agrees with contained Patient", mutate: func(m map[string]any) {
			m["subject"] = obj("reference", "#pat", "identifier", nhsID("9999542557"))
		}},

		{name: "NHS number fails modulus 11", mutate: func(m map[string]any) { contained(m, 0)["identifier"] = []any{nhsID("3478526985")} },
			want: []issueKey{key(fhir.CodeValue, "ServiceRequest.contained[0].identifier[0].value")}},
		{name: "NHS number with check digit 10", mutate: func(m map[string]any) { contained(m, 0)["identifier"] = []any{nhsID("9990000000")} },
			want: []issueKey{key(fhir.CodeValue, "ServiceRequest.contained[0].identifier[0].value")}},
		{name: "NHS number nine digits", mutate: func(m map[string]any) { contained(m, 0)["identifier"] = []any{nhsID("999954255")} },
			want: []issueKey{key(fhir.CodeValue, "ServiceRequest.contained[0].identifier[0].value")}},
		{name: "NHS number with letters", mutate: func(m map[string]any) { contained(m, 0)["identifier"] = []any{nhsID("99995425S7")} },
			want: []issueKey{key(fhir.CodeValue, "ServiceRequest.contained[0].identifier[0].value")}},
		{name: "second NHS number invalid", mutate: func(m map[string]any) {
			contained(m, 0)["identifier"] = []any{nhsID("9999542557"), nhsID("9999542558")}
		}, want: []issueKey{key(fhir.CodeValue, "ServiceRequest.contained[0].identifier[1].value")}},
		{name: "Patient without NHS number", mutate: func(m map[string]any) {
			contained(m, 0)["identifier"] = []any{obj("system", "https://gp.example/Id/mrn", "value", "123")}
		}, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.contained[0].identifier")}},
		{name: "Patient without NHS number, subject has one", mutate: func(m map[string]any) {
			delete(contained(m, 0), "identifier")
			m["subject"] = obj("reference", "#pat", "identifier", nhsID("9999542557"))
		}},
		{name: "another contained Patient with an invalid NHS number", mutate: func(m map[string]any) {
			m["contained"] = append(m["contained"].([]any), obj("resourceType", "Patient", "id", "carer", "identifier", []any{nhsID("1234567890")}))
		}, want: []issueKey{key(fhir.CodeValue, "ServiceRequest.contained[5].identifier[0].value")}},

		{name: "requester contained missing", mutate: func(m map[string]any) { m["requester"] = obj("reference", "#nobody") },
			want: []issueKey{key(fhir.CodeNotFound, "ServiceRequest.requester.reference")}},
		{name: "requester urn unresolved", mutate: func(m map[string]any) { m["requester"] = obj("reference", "urn:uuid:2c3d") },
			want: []issueKey{key(fhir.CodeNotFound, "ServiceRequest.requester.reference")}},
		{name: "requester on another server", mutate: func(m map[string]any) { m["requester"] = obj("reference", "Practitioner/7", "display", "Dr A") }},
		{name: "no requester", mutate: func(m map[string]any) { delete(m, "requester") }},

		{name: "consent missing", mutate: func(m map[string]any) { delete(m, "supportingInfo") },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.supportingInfo")}},
		{name: "supportingInfo without a Consent", mutate: func(m map[string]any) { m["supportingInfo"] = []any{obj("reference", "#gp")} },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.supportingInfo")}},
		{name: "consent on another server", mutate: func(m map[string]any) { m["supportingInfo"] = []any{obj("reference", "Consent/9")} },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.supportingInfo")}},
		{name: "supportingInfo contained missing", mutate: func(m map[string]any) { m["supportingInfo"] = []any{obj("reference", "#nothing")} },
			want: []issueKey{key(fhir.CodeNotFound, "ServiceRequest.supportingInfo[0].reference"), key(fhir.CodeBusinessRule, "ServiceRequest.supportingInfo")}},
		{name: "supportingInfo urn unresolved, consent present", mutate: func(m map[string]any) {
			m["supportingInfo"] = []any{obj("reference", "#consent"), obj("reference", "urn:uuid:3d4e")}
		}, want: []issueKey{key(fhir.CodeNotFound, "ServiceRequest.supportingInfo[1].reference")}},
		{name: "consent draft", mutate: func(m map[string]any) { contained(m, 1)["status"] = "draft" },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.contained[1].status")}},
		{name: "consent proposed", mutate: func(m map[string]any) { contained(m, 1)["status"] = "proposed" },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.contained[1].status")}},
		{name: "consent rejected", mutate: func(m map[string]any) { contained(m, 1)["status"] = "rejected" },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.contained[1].status")}},
		{name: "consent inactive", mutate: func(m map[string]any) { contained(m, 1)["status"] = "inactive" },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.contained[1].status")}},
		{name: "consent entered-in-error", mutate: func(m map[string]any) { contained(m, 1)["status"] = "entered-in-error" },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.contained[1].status")}},
		{name: "consent without status", mutate: func(m map[string]any) { delete(contained(m, 1), "status") },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.contained[1].status")}},
		{name: "consent refused", mutate: func(m map[string]any) { contained(m, 1)["provision"] = obj("type", "deny") },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.contained[1].provision.type")}},
		{name: "consent of another NHS number", mutate: func(m map[string]any) { contained(m, 1)["patient"] = obj("identifier", nhsID("9995034913")) },
			want: []issueKey{key(fhir.CodeInvariant, "ServiceRequest.contained[1].patient")}},
		{name: "consent of another contained Patient", mutate: func(m map[string]any) {
			m["contained"] = append(m["contained"].([]any), obj("resourceType", "Patient", "id", "other", "identifier", []any{nhsID("9995034913")}))
			contained(m, 1)["patient"] = obj("reference", "#other")
		}, want: []issueKey{key(fhir.CodeInvariant, "ServiceRequest.contained[1].patient")}},
		{name: "consent of a Patient elsewhere", mutate: func(m map[string]any) { contained(m, 1)["patient"] = obj("reference", "Patient/77") },
			want: []issueKey{key(fhir.CodeInvariant, "ServiceRequest.contained[1].patient")}},
		{name: "consent of the subject by NHS number", mutate: func(m map[string]any) { contained(m, 1)["patient"] = obj("identifier", nhsID("9999542557")) }},
		{name: "consent patient display only", mutate: func(m map[string]any) { contained(m, 1)["patient"] = obj("display", "Peggy") }},
		{name: "consent without patient", mutate: func(m map[string]any) { delete(contained(m, 1), "patient") }},
		{name: "a draft and an active consent", mutate: func(m map[string]any) {
			c := map[string]any{}
			for k, v := range contained(m, 1) {
				c[k] = v
			}
			c["id"], c["status"] = "old", "draft"
			m["contained"] = append(m["contained"].([]any), c)
			m["supportingInfo"] = []any{obj("reference", "#old"), obj("reference", "#consent")}
		}},
		{name: "two bad consents report both", mutate: func(m map[string]any) {
			c := map[string]any{}
			for k, v := range contained(m, 1) {
				c[k] = v
			}
			c["id"], c["status"] = "old", "draft"
			contained(m, 1)["provision"] = obj("type", "deny")
			m["contained"] = append(m["contained"].([]any), c)
			m["supportingInfo"] = []any{obj("reference", "#consent"), obj("reference", "#old")}
		}, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.contained[1].provision.type"), key(fhir.CodeBusinessRule, "ServiceRequest.contained[5].status")}},

		{name: "performer contained missing", mutate: func(m map[string]any) { m["performer"] = []any{obj("reference", "#nobody")} },
			want: []issueKey{key(fhir.CodeNotFound, "ServiceRequest.performer[0].reference")}},
		{name: "performer urn unresolved", mutate: func(m map[string]any) { m["performer"] = []any{obj("reference", "urn:uuid:4e5f")} },
			want: []issueKey{key(fhir.CodeNotFound, "ServiceRequest.performer[0].reference")}},
		{name: "performers name two services", mutate: func(m map[string]any) {
			m["performer"] = append(m["performer"].([]any), obj("identifier", obj("system", serviceSystem, "value", "debt-advice")))
		}, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.performer")}},
		{name: "code matches two services", mutate: func(m map[string]any) {
			delete(m, "performer")
			m["code"] = obj("coding", []any{obj("system", offerSystem, "code", "walking-group"), obj("system", offerSystem, "code", "befriending")})
		}, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.code")}},
		{name: "no route at all", dir: &noDefault, mutate: func(m map[string]any) { delete(m, "performer") },
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.performer", "ServiceRequest.code")}},
		{name: "unknown performer and no route", dir: &noDefault, mutate: func(m map[string]any) {
			m["performer"] = []any{obj("identifier", obj("system", ODSOrganizationSystem, "value", "NOPE1"))}
		}, want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.performer", "ServiceRequest.code")}},
		{name: "empty directory", dir: &Directory{}, mutate: func(map[string]any) {},
			want: []issueKey{key(fhir.CodeBusinessRule, "ServiceRequest.performer", "ServiceRequest.code")}},

		{name: "everything at once", mutate: func(m map[string]any) {
			m["status"], m["intent"], m["doNotPerform"] = "draft", "plan", true
			contained(m, 0)["identifier"] = []any{nhsID("3478526985")}
			contained(m, 1)["status"] = "proposed"
			m["requester"] = obj("reference", "#ghost")
			m["performer"] = []any{obj("reference", "urn:uuid:5f60")}
		}, want: []issueKey{
			key(fhir.CodeBusinessRule, "ServiceRequest.status"),
			key(fhir.CodeBusinessRule, "ServiceRequest.intent"),
			key(fhir.CodeBusinessRule, "ServiceRequest.doNotPerform"),
			key(fhir.CodeValue, "ServiceRequest.contained[0].identifier[0].value"),
			key(fhir.CodeNotFound, "ServiceRequest.requester.reference"),
			key(fhir.CodeBusinessRule, "ServiceRequest.contained[1].status"),
			key(fhir.CodeNotFound, "ServiceRequest.performer[0].reference"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := baseDoc(t)
			tt.mutate(m)
			sub := docSub(t, m)
			dir := demoDirectory()
			if tt.dir != nil {
				dir = *tt.dir
			}
			in, err := Build(sub, BuildInput{Directory: dir, PracticeODS: "A81001", Now: testNow, NewID: counterIDs()})
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				if in.Referral.Record.Status != StatusRequested {
					t.Errorf("status = %q", in.Referral.Record.Status)
				}
				return
			}
			var fe *fhir.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Build error = %v, want *fhir.Error", err)
			}
			if fe.Kind != fault.Rule {
				t.Errorf("kind = %s, want rule (422)", fe.Kind)
			}
			if diff := cmp.Diff(tt.want, keysOf(fe.Issues)); diff != "" {
				t.Errorf("issues (-want +got):\n%s\n%v", diff, fe)
			}
			for _, is := range fe.Issues {
				if is.Diagnostics == "" || is.Severity != fhir.SeverityError {
					t.Errorf("issue %+v: want severity error and a diagnostic", is)
				}
				for _, nhs := range []string{"9999542557", "3478526985", "9991234567", "9995034913"} {
					if strings.Contains(is.Diagnostics, nhs) {
						t.Errorf("diagnostic leaks an NHS number: %q", is.Diagnostics)
					}
				}
			}
		})
	}
}

// TestBuildDiagnostics pins the diagnostics that must explain themselves to a GP system's developer.
func TestBuildDiagnostics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		want   []string // substrings of the only issue's diagnostics
	}{
		{"literal subject says how to send the Patient", func(m map[string]any) { m["subject"] = obj("reference", "Patient/123") },
			[]string{"another server", "contained", "transaction Bundle", NHSNumberSystem}},
		{"consent rule is explained", func(m map[string]any) { delete(m, "supportingInfo") },
			[]string{"consent", "Consent", "active", "supportingInfo"}},
		{"ambiguous code names the candidates and asks for a performer", func(m map[string]any) {
			delete(m, "performer")
			m["code"] = obj("coding", []any{obj("system", offerSystem, "code", "walking-group"), obj("system", offerSystem, "code", "lunch-club")})
		}, []string{"frome-walks (Frome Walking for Health)", "lunch-club (Frome Friday Lunch Club)", "performer"}},
		{"Group subject", func(m map[string]any) { m["subject"] = obj("reference", "Group/1") }, []string{"Group", "Patient"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := baseDoc(t)
			tt.mutate(m)
			_, err := Build(docSub(t, m), BuildInput{Directory: demoDirectory(), Now: testNow, NewID: counterIDs()})
			var fe *fhir.Error
			if !errors.As(err, &fe) || len(fe.Issues) != 1 {
				t.Fatalf("Build error = %v, want one issue", err)
			}
			for _, s := range tt.want {
				if !strings.Contains(fe.Issues[0].Diagnostics, s) {
					t.Errorf("diagnostics %q lack %q", fe.Issues[0].Diagnostics, s)
				}
			}
		})
	}
}

// TestRoute checks which service each routing path picks.
func TestRoute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		want   string
	}{
		{"performer identifier", func(map[string]any) {}, "frome-walks"},
		{"performer wins over code", func(m map[string]any) {
			m["code"] = obj("coding", []any{obj("system", offerSystem, "code", "lunch-club")})
		}, "frome-walks"},
		{"performer contained Organization", func(m map[string]any) {
			m["contained"] = append(m["contained"].([]any), obj("resourceType", "Organization", "id", "cab", "identifier", []any{obj("system", serviceSystem, "value", "debt-advice")}))
			m["performer"] = []any{obj("reference", "#cab")}
		}, "debt-advice"},
		{"performer contained HealthcareService", func(m map[string]any) {
			m["contained"] = append(m["contained"].([]any), obj("resourceType", "HealthcareService", "id", "hs", "identifier", []any{obj("system", serviceSystem, "value", "befriending")}))
			m["performer"] = []any{obj("reference", "#hs")}
		}, "befriending"},
		{"two performers naming one service", func(m map[string]any) {
			m["performer"] = append(m["performer"].([]any), obj("identifier", obj("system", ODSOrganizationSystem, "value", "XYZ01")))
		}, "frome-walks"},
		{"unknown performer falls back on code", func(m map[string]any) {
			m["performer"] = []any{obj("identifier", obj("system", ODSOrganizationSystem, "value", "NOPE1"))}
			m["code"] = obj("coding", []any{obj("system", "http://snomed.info/sct", "code", "41920009")})
		}, "debt-advice"},
		{"performer identifier with another system does not match", func(m map[string]any) {
			m["performer"] = []any{obj("identifier", obj("system", serviceSystem, "value", "XYZ01"))}
		}, "link-workers"},
		{"code, no performer", func(m map[string]any) {
			delete(m, "performer")
			m["code"] = obj("coding", []any{obj("system", "http://snomed.info/sct", "code", "871731000000106"), obj("system", offerSystem, "code", "museum-volunteering")})
		}, "museum-volunteers"},
		{"two codes of one service", func(m map[string]any) {
			delete(m, "performer")
			m["code"] = obj("coding", []any{obj("system", "http://snomed.info/sct", "code", "41920009"), obj("system", offerSystem, "code", "debt-advice")})
		}, "debt-advice"},
		{"no performer, generic code: default", func(m map[string]any) { delete(m, "performer") }, "link-workers"},
		{"no performer, no code: default", func(m map[string]any) { delete(m, "performer"); delete(m, "code") }, "link-workers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := baseDoc(t)
			tt.mutate(m)
			in, err := Build(docSub(t, m), BuildInput{Directory: demoDirectory(), Now: testNow, NewID: counterIDs()})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if got := in.Referral.Record.Service.ID; got != tt.want {
				t.Errorf("routed to %q, want %q", got, tt.want)
			}
			svc, _ := demoDirectory().Service(tt.want)
			if got, want := in.Referral.Owner, ownerRef(svc); !cmp.Equal(got, want) {
				t.Errorf("owner = %+v, want %+v", got, want)
			}
			if (svc.Delivery.URL != "") != (len(in.Events) == 1) {
				t.Errorf("service webhook %q but %d events", svc.Delivery.URL, len(in.Events))
			}
		})
	}
}

func TestRequesterODS(t *testing.T) {
	t.Parallel()
	org := func(id, ods string) map[string]any {
		return obj("resourceType", "Organization", "id", id, "name", "Practice", "identifier", []any{obj("system", "https://other.example/Id/x", "value", "1"), obj("system", ODSOrganizationSystem, "value", ods)})
	}
	tests := []struct {
		name     string
		mutate   func(m map[string]any)
		ods      string
		expr     string
		wantFail bool
	}{
		{"PractitionerRole to contained Organization", func(map[string]any) {}, "A81001", "ServiceRequest.contained[4].identifier[0].value", false},
		{"requester identifier", func(m map[string]any) {
			m["requester"] = obj("type", "Organization", "identifier", obj("system", ODSOrganizationSystem, "value", "A81002"))
		}, "A81002", "ServiceRequest.requester.identifier.value", false},
		{"contained Organization", func(m map[string]any) {
			m["contained"] = append(m["contained"].([]any), org("o2", "A81005"))
			m["requester"] = obj("reference", "#o2")
		}, "A81005", "ServiceRequest.contained[5].identifier[1].value", false},
		{"PractitionerRole with organization identifier", func(m map[string]any) {
			contained(m, 2)["organization"] = obj("identifier", obj("system", ODSOrganizationSystem, "value", "A81006"))
		}, "A81006", "ServiceRequest.contained[2].organization.identifier.value", false},
		{"PractitionerRole without organization", func(m map[string]any) { delete(contained(m, 2), "organization") }, "", "", true},
		{"Practitioner", func(m map[string]any) { m["requester"] = obj("reference", "#gp") }, "", "", true},
		{"requester on another server", func(m map[string]any) { m["requester"] = obj("reference", "Organization/A81001") }, "", "", true},
		{"requester identifier of another system", func(m map[string]any) {
			m["requester"] = obj("identifier", obj("system", "https://other.example/Id/x", "value", "A81001"))
		}, "", "", true},
		{"no requester", func(m map[string]any) { delete(m, "requester") }, "", "", true},
		{"requester missing", func(m map[string]any) { m["requester"] = obj("reference", "#ghost") }, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := baseDoc(t)
			tt.mutate(m)
			ods, expr, ok := RequesterODS(docSub(t, m))
			if ok == tt.wantFail || ods != tt.ods || expr != tt.expr {
				t.Errorf("RequesterODS = %q, %q, %v; want %q, %q, %v", ods, expr, ok, tt.ods, tt.expr, !tt.wantFail)
			}
		})
	}
	if _, _, ok := RequesterODS(nil); ok {
		t.Error("RequesterODS(nil) ok")
	}
}

func TestBuildBadInput(t *testing.T) {
	t.Parallel()
	if _, err := Build(nil, BuildInput{NewID: counterIDs()}); !errors.Is(err, ErrBadInput) {
		t.Errorf("nil submission: %v", err)
	}
	sub := docSub(t, baseDoc(t))
	if _, err := Build(sub, BuildInput{Directory: demoDirectory()}); !errors.Is(err, ErrBadInput) {
		t.Errorf("no NewID: %v", err)
	}
	bad := *sub
	bad.Raw = json.RawMessage(`[1]`)
	if _, err := Build(&bad, BuildInput{Directory: demoDirectory(), NewID: counterIDs()}); !errors.Is(err, ErrBadInput) {
		t.Errorf("raw not an object: %v", err)
	}
}

// TestBuildDetails checks what the golden files show but a reader might miss.
func TestBuildDetails(t *testing.T) {
	t.Parallel()
	sub := docSub(t, baseDoc(t))
	in, err := Build(sub, BuildInput{Directory: demoDirectory(), PracticeODS: "A81099", Now: testNow.In(time.FixedZone("BST", 3600)), NewID: counterIDs()})
	if err != nil {
		t.Fatal(err)
	}
	rec := in.Referral.Record
	if rec.CreatedAt.Location().String() != "UTC" || !rec.CreatedAt.Equal(testNow) || rec.UpdatedAt != rec.CreatedAt {
		t.Errorf("CreatedAt %v UpdatedAt %v, want %v in UTC", rec.CreatedAt, rec.UpdatedAt, testNow)
	}
	if in.Referral.PracticeODS != "A81099" {
		t.Errorf("PracticeODS = %q: the server's value must be kept", in.Referral.PracticeODS)
	}
	if rec.Referrer.ODSCode != "A81001" {
		t.Errorf("Referrer.ODSCode = %q, want the requester's A81001", rec.Referrer.ODSCode)
	}
	ids := []string{rec.ID, rec.ServiceRequestID, rec.TaskID, in.Events[0].ID}
	gen := counterIDs()
	for i, id := range ids {
		if w := gen(); id != w {
			t.Errorf("id %d = %q, want %q (NewID order: referral, ServiceRequest, Task, event)", i, id, w)
		}
	}
	var sr map[string]any
	if err := json.Unmarshal(in.ServiceRequest, &sr); err != nil {
		t.Fatal(err)
	}
	if sr["id"] != rec.ServiceRequestID || sr["resourceType"] != "ServiceRequest" {
		t.Errorf("stored ServiceRequest id/resourceType: %v %v", sr["id"], sr["resourceType"])
	}
	if !strings.HasPrefix(string(in.ServiceRequest), `{"resourceType":"ServiceRequest","id":`) {
		t.Errorf("stored ServiceRequest should start with resourceType and id: %.80s", in.ServiceRequest)
	}
	var p webhookBody
	if err := json.Unmarshal(in.Events[0].Payload, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != EventReferralCreated || p.Timestamp != "2025-03-18T09:30:15.123456Z" || p.Data.ID != rec.ID {
		t.Errorf("payload = %+v", p)
	}
}
