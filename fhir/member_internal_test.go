package fhir

import (
	"encoding/json"
	"testing"
)

func TestTopLevelMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	docs := []string{
		`{"resourceType":"ServiceRequest","id":"a","meta":{"versionId":"1","lastUpdated":"x"},"contained":[{"status":"nested"}],"status":"active"}`,
		` { "note" : [ {"text": "a \"quoted\" } ] brace"} ] , "status" : "revoked" , "n": 12.5e3, "b": true, "z": null }`,
		`{"status":"esc\u0061ped"}`,
		`{"contained":[{"id":"p","name":[{"given":["x\\"]}]}],"meta":{"versionId":"7"}}`,
	}
	for _, d := range docs {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(d), &m); err != nil {
			t.Fatal(err)
		}
		for k, want := range m {
			got, ok := TopLevel([]byte(d), k)
			if !ok || string(got) != string(want) {
				t.Errorf("%s: %q: got %q %v, want %q", d, k, got, ok, want)
			}
		}
		var s struct{ Status string }
		_ = json.Unmarshal([]byte(d), &s)
		if got, _ := TopLevelString([]byte(d), "status"); got != s.Status {
			t.Errorf("%s: status %q, want %q", d, got, s.Status)
		}
		if _, ok := TopLevel([]byte(d), "absent"); ok {
			t.Errorf("%s: found an absent key", d)
		}
	}
	for _, bad := range []string{``, `[]`, `{"a"`, `{"a":`, `{"a":"x`} {
		if _, ok := TopLevel([]byte(bad), "a"); ok {
			t.Errorf("%q: malformed input must not be found", bad)
		}
	}
}

func FuzzTopLevel(f *testing.F) {
	f.Add([]byte(`{"status":"active","meta":{"versionId":"1"}}`), "status")
	f.Add([]byte(`{"a":[{"b":"}"}],"status":"x"}`), "status")
	f.Fuzz(func(t *testing.T, b []byte, key string) {
		got, ok := TopLevel(b, key)
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil {
			return // only valid objects have a defined answer; invalid input just must not panic
		}
		want, has := m[key]
		if ok && has && !sameJSONValue(got, want) {
			t.Fatalf("%q in %q: got %q, want %q", key, b, got, want)
		}
	})
}

func sameJSONValue(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}
