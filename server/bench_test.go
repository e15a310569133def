package server_test

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// BenchmarkIntakeHTTP posts unique referrals over loopback HTTP to a real SQLite store from parallel clients:
// the whole intake path (HTTP, validate, map, group-committed durable write). `make bench` reports the
// load-generator version with latency percentiles (cmd/socialrx-bench).
func BenchmarkIntakeHTTP(b *testing.B) {
	h := newHarness(&testing.T{}, nil)
	tmpl := readFile(&testing.T{}, filepath.Join(referrals, "walking-group-performer.json"))
	if !bytes.Contains(tmpl, []byte(`"FVMC-2025-0142"`)) {
		b.Fatal("fixture identifier changed")
	}
	var seq atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		client := &http.Client{}
		for pb.Next() {
			body := bytes.Replace(tmpl, []byte(`"FVMC-2025-0142"`), []byte(fmt.Sprintf(`"FVMC-b%d"`, seq.Add(1))), 1)
			req, _ := http.NewRequest(http.MethodPost, h.url+"/fhir/ServiceRequest", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tokPCN)
			req.Header.Set("Content-Type", fhirJSON)
			req.Header.Set("Prefer", "return=minimal")
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
