package server_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/fhir/fhirtest"
)

// textCase is one hostile request: NUL bytes and invalid UTF-8 in a path, a query, a header or a body.
type textCase struct {
	name           string
	method, path   string
	token          string
	body           []byte
	headers        []string
	status         int    // 400, or 200 for a search that must simply find nothing
	field          string // the JSON APIs' field, or an OperationOutcome expression ("" for the token endpoint)
	format         string // "fhir", "json", "oauth"
	fhirSearchZero bool
}

// TestNULAndInvalidUTF8EveryAPI sends NUL bytes and invalid UTF-8 in every place a value enters socialrx (a
// path, a query parameter, a header, a JSON, FHIR or form body) to every API, on both backends: each is a 400
// in that API's format naming where the bad value is, never a 5xx, and nothing is written; searches that must
// find nothing (an unknown owner, another practice) find nothing on PostgreSQL too (no value of the server's
// own reaches SQL).
func TestNULAndInvalidUTF8EveryAPI(t *testing.T) {
	t.Parallel()
	v := fhirtest.NewValidator(t)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			h := newHostile(t, b.open(t), nil, nil)
			h.v = v
			id := refer(h.harness, tokGP, "walking-group-performer.json")
			task := h.task(tokWalks, id.task)
			task["status"] = "received"
			task["statusReason"] = map[string]any{"text": "left a \x00 voicemail"}
			putBody, err := json.Marshal(task)
			if err != nil {
				t.Fatal(err)
			}
			referral := readFile(t, referrals+"/walking-group-performer.json")
			nulIdentifier := []byte(strings.Replace(string(referral), `"FVMC-2025-0142"`, `"FVMC-\u0000-0142"`, 1))
			latin1 := []byte(strings.Replace(string(referral), `"Low mood since retirement"`, "\"Low mood since caf\xe9 closed\"", 1))
			formNUL := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Task.rs"},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion":      {"eyJ\x00"}}.Encode()
			ods := url.QueryEscape(odsSystem + "|")
			cases := []textCase{
				{name: "FHIR path NUL", method: "GET", path: "/fhir/Task/abc%00def", token: tokGP, status: 400, field: "path", format: "fhir"},
				{name: "FHIR path invalid UTF-8", method: "GET", path: "/fhir/ServiceRequest/%FF%FE", token: tokGP, status: 400, field: "path", format: "fhir"},
				{name: "FHIR search NUL", method: "GET", path: "/fhir/Task?owner=no%00such", token: tokGP, status: 400, field: "owner", format: "fhir"},
				{name: "FHIR search identifier NUL", method: "GET", path: "/fhir/ServiceRequest?identifier=a%00b", token: tokGP, status: 400, field: "identifier", format: "fhir"},
				{name: "FHIR cursor NUL", method: "GET", path: "/fhir/Task?_cursor=%00", token: tokGP, status: 400, field: "_cursor", format: "fhir"},
				{name: "FHIR search invalid UTF-8", method: "GET", path: "/fhir/Task?requester:identifier=" + ods + "A8%FF", token: tokGP, status: 400, field: "requester:identifier", format: "fhir"},
				{name: "FHIR body NUL", method: "POST", path: "/fhir/ServiceRequest", token: tokGP, body: nulIdentifier, status: 400, field: "ServiceRequest.identifier[0].value", format: "fhir"},
				{name: "FHIR body invalid UTF-8", method: "POST", path: "/fhir/ServiceRequest", token: tokGP, body: latin1, status: 400, field: "ServiceRequest", format: "fhir"},
				{name: "FHIR If-None-Exist NUL", method: "POST", path: "/fhir/ServiceRequest", token: tokGP, body: referral,
					headers: []string{"If-None-Exist: identifier=FVMC%00"}, status: 400, field: "If-None-Exist", format: "fhir"},
				{name: "FHIR Task PUT NUL", method: "PUT", path: "/fhir/Task/" + id.task, token: tokWalks, body: putBody,
					headers: []string{`If-Match: W/"1"`}, status: 400, field: "Task.statusReason.text", format: "fhir"},
				{name: "FHIR Task PATCH NUL", method: "PATCH", path: "/fhir/Task/" + id.task, token: tokWalks,
					body:    []byte(`[{"op":"replace","path":"/status","value":"received"},{"op":"add","path":"/note/-","value":{"text":"a\u0000b"}}]`),
					headers: []string{`If-Match: W/"1"`, "Content-Type: application/json-patch+json"}, status: 400, field: "Task.note[0].text", format: "fhir"},
				{name: "FHIR Subscription NUL", method: "POST", path: "/fhir/Subscription", token: tokGP,
					body: subscriptionBody(gpCriteria, "https://gp.example.org/ho\x00ok", ""), status: 400, field: "Subscription.channel.endpoint", format: "fhir"},
				{name: "FHIR Subscription DELETE NUL", method: "DELETE", path: "/fhir/Subscription/%00", token: tokGP, status: 400, field: "path", format: "fhir"},
				{name: "community query NUL", method: "GET", path: "/community/v1/referrals?since=%00", token: tokWalks, status: 400, field: "since", format: "json"},
				{name: "community query invalid UTF-8", method: "GET", path: "/community/v1/referrals?status=%FF", token: tokWalks, status: 400, field: "status", format: "json"},
				{name: "community path NUL", method: "GET", path: "/community/v1/referrals/%00", token: tokWalks, status: 400, field: "path", format: "json"},
				{name: "community body NUL", method: "POST", path: "/community/v1/referrals/" + id.referral + "/status", token: tokWalks,
					body: []byte(`{"status":"received","note":"x\u0000y"}`), headers: []string{jsonCT}, status: 400, field: "note", format: "json"},
				{name: "community body invalid UTF-8", method: "POST", path: "/community/v1/referrals/" + id.referral + "/status", token: tokWalks,
					body: []byte("{\"status\":\"received\",\"note\":\"caf\xe9\"}"), headers: []string{jsonCT}, status: 400, field: "", format: "json"},
				{name: "admin query NUL", method: "GET", path: "/admin/v1/messages?service=%00", token: tokAdmin, status: 400, field: "service", format: "json"},
				{name: "admin path invalid UTF-8", method: "GET", path: "/admin/v1/messages/%FF", token: tokAdmin, status: 400, field: "path", format: "json"},
				{name: "admin body NUL", method: "POST", path: "/admin/v1/replay", token: tokAdmin,
					body: []byte(`{"state":"dead","reason":"fixed \u0000"}`), headers: []string{jsonCT}, status: 400, field: "reason", format: "json"},
				{name: "admin timeline NUL", method: "GET", path: "/admin/v1/referrals/%00/timeline", token: tokAdmin, status: 400, field: "path", format: "json"},
				{name: "token form NUL", method: "POST", path: "/oauth/token", body: []byte(formNUL),
					headers: []string{"Content-Type: application/x-www-form-urlencoded"}, status: 400, format: "oauth"},
				{name: "inbox path NUL", method: "GET", path: "/inbox/referrals/%00", status: 400, field: "path", format: "json"},
				{name: "unknown owner finds nothing", method: "GET", path: "/fhir/Task?owner=no-such-service", token: tokGP, status: 200, format: "fhir", fhirSearchZero: true},
				{name: "another practice finds nothing", method: "GET", path: "/fhir/Task?requester:identifier=" + ods + "B82002", token: tokGP, status: 200, format: "fhir", fhirSearchZero: true},
				{name: "unknown identifier finds nothing", method: "GET", path: "/fhir/ServiceRequest?identifier=never-used", token: tokGP2, status: 200, format: "fhir", fhirSearchZero: true},
			}
			for _, tc := range cases {
				r := h.do(tc.method, tc.path, tc.token, tc.body, tc.headers...)
				if r.status != tc.status {
					t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
					continue
				}
				switch {
				case tc.fhirSearchZero:
					if m := r.json(t); m["resourceType"] != "Bundle" || m["type"] != "searchset" || m["entry"] != nil {
						t.Errorf("%s: want an empty searchset, got %s", tc.name, r.body)
					}
				case tc.format == "fhir":
					if !hasExpression(issues(t, r), tc.field) {
						t.Errorf("%s: the OperationOutcome must name %s: %s", tc.name, tc.field, r.body)
					}
				case tc.format == "json":
					code, field, _ := apiErr(t, r)
					if field != tc.field || (code != "invalid_text" && code != "invalid_json") {
						t.Errorf("%s: error %s on %q, want invalid_text on %q: %s", tc.name, code, field, tc.field, r.body)
					}
				case tc.format == "oauth":
					var e struct{ Error, ErrorDescription string }
					if err := json.Unmarshal(r.body, &e); err != nil || e.Error != "invalid_request" ||
						!strings.Contains(string(r.body), "client_assertion") {
						t.Errorf("%s: want invalid_request naming client_assertion: %s", tc.name, r.body)
					}
				}
			}
			if n := h.countReferrals(); n != 1 {
				t.Errorf("%d referrals after the hostile requests, want the 1 posted first", n)
			}
			if got := h.task(tokWalks, id.task); got["status"] != "requested" {
				t.Errorf("the Task changed: %v", got["status"])
			}
		})
	}
}
