package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestMainServiceInFlightCap: serve honours a service's delivery.max_in_flight from the directory file. With
// max_in_flight 1, three referrals are delivered to a receiver that holds its requests one at a time; with
// the default cap (8) all three would be in flight at once.
func TestMainServiceInFlightCap(t *testing.T) {
	t.Parallel()
	var (
		mu             sync.Mutex
		inFlight, peak int
	)
	arrived, release, done := make(chan string, 8), make(chan struct{}), make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		arrived <- r.Header.Get("webhook-id")
		select {
		case <-release:
		case <-done: // the test is over, passed or failed
		case <-r.Context().Done():
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	defer close(done)
	env := map[string]string{
		"SOCIALRX_ADDR": "127.0.0.1:0", "SOCIALRX_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "socialrx.db"),
		"SOCIALRX_CONFIG": writeDirectoryWith(t, recv.URL+"/hooks", ", max_in_flight: 1"), "SOCIALRX_LOG_FORMAT": "json",
	}
	base, _, stop := startMain(t, env)
	defer stop()
	fixture, err := os.ReadFile("../../testdata/referrals/walking-group-performer.json")
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	for i := range n {
		body := bytes.Replace(fixture, []byte("FVMC-2025-0142"), fmt.Appendf(nil, "FVMC-2025-9%03d", i), 1)
		if code, b := call(t, http.MethodPost, base+"/fhir/ServiceRequest", "gp-secret-token", body); code != http.StatusCreated {
			t.Fatalf("POST ServiceRequest %d: %d %s", i, code, b)
		}
	}
	for i := range n {
		select {
		case <-arrived:
		case <-time.After(15 * time.Second):
			t.Fatalf("webhook %d never arrived", i+1)
		}
		if i < n-1 {
			select {
			case id := <-arrived:
				t.Fatalf("webhook %s sent while another was in flight (max_in_flight 1)", id)
			case <-time.After(300 * time.Millisecond):
			}
		}
		release <- struct{}{}
	}
	mu.Lock()
	defer mu.Unlock()
	if peak != 1 {
		t.Errorf("%d webhooks in flight at once, want 1", peak)
	}
}
