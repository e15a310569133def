package fhir

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// schemaPatterns returns the official schema's regular expression of every string-valued primitive (the
// number and boolean patterns do not apply to JSON numbers and booleans), compiled with Go's regexp.
func schemaPatterns(tb testing.TB) map[string]*regexp.Regexp {
	tb.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "fhir.schema.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var schema struct {
		Definitions map[string]struct {
			Pattern    string `json:"pattern"`
			Type       string `json:"type"`
			Properties map[string]struct {
				Pattern string `json:"pattern"`
			} `json:"properties"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(src, &schema); err != nil {
		tb.Fatal(err)
	}
	out := map[string]*regexp.Regexp{}
	for name, d := range schema.Definitions {
		if d.Pattern != "" && d.Type == "string" {
			out[name] = regexp.MustCompile(d.Pattern)
		}
	}
	// base64Binary has no pattern of its own; its choice variants carry one.
	out["base64Binary"] = regexp.MustCompile(schema.Definitions["Extension"].Properties["valueBase64Binary"].Pattern)
	if len(out) != 14 {
		tb.Fatalf("%d string patterns", len(out))
	}
	return out
}

var primitiveSamples = map[string][]string{
	"id":           {"a", "A-1.b", "x y", "", "ü", "0123456789012345678901234567890123456789012345678901234567890123", "01234567890123456789012345678901234567890123456789012345678901234"},
	"string":       {"a", " a ", "\t\r\n", "", "a\fb", "a\x01b", "é"},
	"markdown":     {"# x", "", "a\x00"},
	"code":         {"active", "a b", "a  b", " a", "a ", "", "a\tb", "<="},
	"uri":          {"http://x", "urn:uuid:1", "#p", "a b", "", "x\ty"},
	"url":          {"https://x.example/fhir", "", "a b"},
	"canonical":    {"http://hl7.org/fhir/StructureDefinition/x|1.0", "#pd", "a b", ""},
	"oid":          {"urn:oid:1.2.3", "urn:oid:1", "urn:oid:3.1", "urn:oid:1.02", "urn:oid:2.0"},
	"uuid":         {"urn:uuid:c757873d-ec9a-4326-a141-556f43239520", "urn:uuid:C757873D-EC9A-4326-A141-556F43239520", "urn:uuid:1234", "c757873d-ec9a-4326-a141-556f43239520"},
	"date":         {"2025", "2025-01", "2025-01-31", "2025-02-29", "2024-02-29", "0000", "2025-13", "2025-1-1", "2025-01-31T10:00:00Z"},
	"dateTime":     {"2025", "2025-01-31T10:00:00Z", "2025-01-31T10:00:00.123+14:00", "2025-01-31T10:00:00+14:30", "2025-01-31T10:00:00", "2025-01-31T24:00:00Z", "2025-01-31T23:59:60Z", "2025-01T10:00:00Z", "2025-04-31"},
	"instant":      {"2025-01-31T10:00:00Z", "2025-01-31T10:00:00.1-05:00", "2025-01-31", "2025-01-31T10:00Z"},
	"time":         {"10:00:00", "23:59:60.5", "24:00:00", "10:00", "10:00:00Z"},
	"base64Binary": {"aGVsbG8=", "aGVs bG8=", "aGV sbG8=", "aGVsbG8", "a===", "====", "aG=V", "", "aGVsbG8=\n"},
}

// stricterThanSchema lists samples the schema's pattern accepts and package fhir rejects on purpose.
var stricterThanSchema = map[string]string{
	"string/a\x01b":       "R4 strings exclude control characters other than tab, CR and LF",
	"markdown/a\x00":      "R4 strings exclude control characters other than tab, CR and LF",
	"uri/":                "FHIR JSON does not allow empty values",
	"url/":                "FHIR JSON does not allow empty values",
	"canonical/":          "FHIR JSON does not allow empty values",
	"date/2025-02-29":     "not a calendar date",
	"dateTime/2025-04-31": "not a calendar date",
	"base64Binary/a===":   "padding is at most two '='",
	"base64Binary/====":   "padding without data",
	"base64Binary/aG=V":   "'=' only as final padding",
}

func TestPrimitivesAgainstSchemaPatterns(t *testing.T) {
	t.Parallel()
	patterns := schemaPatterns(t)
	for typ, samples := range primitiveSamples {
		re := patterns[typ]
		if re == nil {
			t.Fatalf("no pattern for %s", typ)
		}
		for _, s := range samples {
			mine, theirs := validPrimitive(typ, s), re.MatchString(s)
			if mine == theirs {
				continue
			}
			if _, ok := stricterThanSchema[typ+"/"+s]; ok && theirs && !mine {
				continue
			}
			t.Errorf("%s %q: package fhir %v, schema %v", typ, s, mine, theirs)
		}
	}
	for k := range stricterThanSchema {
		typ, s, _ := cutSlash(k)
		if validPrimitive(typ, s) {
			t.Errorf("%s is listed as stricter but accepted", k)
		}
	}
}

func cutSlash(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func TestNumberPrimitives(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ, lit string
		ok       bool
	}{
		{"integer", "0", true}, {"integer", "-2147483648", true}, {"integer", "2147483647", true},
		{"integer", "2147483648", false}, {"integer", "1.0", false}, {"integer", "1e3", false}, {"integer", "-0", true},
		{"unsignedInt", "0", true}, {"unsignedInt", "-1", false}, {"positiveInt", "0", false}, {"positiveInt", "1", true},
		{"decimal", "1.50", true}, {"decimal", "-0.0e-10", true},
		{"boolean", "true", true}, {"boolean", "false", true},
	}
	for _, tc := range tests {
		if got := validPrimitive(tc.typ, tc.lit); got != tc.ok {
			t.Errorf("%s %s = %v", tc.typ, tc.lit, got)
		}
	}
}

// FuzzPrimitivesAgainstSchema: whatever package fhir accepts, the official pattern accepts too (it is never
// more permissive than the schema).
func FuzzPrimitivesAgainstSchema(f *testing.F) {
	patterns := schemaPatterns(f)
	for _, samples := range primitiveSamples {
		for _, s := range samples {
			f.Add(s)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		for typ, re := range patterns {
			if validPrimitive(typ, s) && !re.MatchString(s) {
				t.Errorf("%s %q: accepted by package fhir, rejected by the schema pattern", typ, s)
			}
		}
	})
}
