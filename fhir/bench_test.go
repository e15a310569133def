package fhir

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// readBenchInput returns testdata/servicerequest-bench.json: a realistic ~4 KB social-prescribing referral with
// a contained Patient and Consent.
func readBenchInput(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "servicerequest-bench.json"))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func BenchmarkParseServiceRequest(b *testing.B) {
	body := readBenchInput(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseServiceRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaselineUnmarshal is the yardstick for the two above on a shared, noisy machine: encoding/json
// decoding the same body into an interface{} (no validation, no output).
func BenchmarkBaselineUnmarshal(b *testing.B) {
	body := readBenchInput(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseTransaction(b *testing.B) {
	body := bundle("transaction", post(uSR, txSR), post(uPat, txPatient), post(uCon, txConsent), post(uPrac, txPractitioner))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTransaction(body); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBenchInputIsValid(t *testing.T) {
	t.Parallel()
	body := readBenchInput(t)
	sub, err := ParseServiceRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(sub.Contained) != 2 || len(sub.Warnings) != 0 {
		t.Errorf("contained %d, warnings %v", len(sub.Contained), sub.Warnings)
	}
	if n := len(body); n < 3000 || n > 5500 {
		t.Errorf("bench input is %d bytes, want 3–5 KB", n)
	}
}
