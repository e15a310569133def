package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
)

// newTestMain returns a Main on port 0 over a fresh SQLite file with the embedded demo directory, logging to
// the test's output.
func newTestMain(t *testing.T) *Main {
	t.Helper()
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	settings := config.Defaults()
	settings.Addr = "127.0.0.1:0"
	settings.DatabaseURL = "sqlite:" + filepath.Join(t.TempDir(), "socialrx.db")
	return NewMain(settings, cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
}

// TestMainRunClose drives Main as the serve command does: Run returns once serving on a real port, a referral
// posted over real HTTP is created, and Close stops the service (twice is harmless) so that the port no longer
// accepts connections.
func TestMainRunClose(t *testing.T) {
	t.Parallel()
	m := newTestMain(t)
	if m.Addr() != "" {
		t.Fatalf("Addr before Run = %q, want empty", m.Addr())
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	addr := m.Addr()
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" {
		t.Fatalf("Addr after Run = %q (%v), want the bound port", addr, err)
	}

	// The default route (link workers, pull-only): nothing is delivered, so Close has no delivery to wait for.
	fixture, err := os.ReadFile("../../testdata/referrals/link-worker-befriending-default.json")
	if err != nil {
		t.Fatal(err)
	}
	if code, body := call(t, http.MethodPost, "http://"+addr+"/fhir/ServiceRequest", "demo-gp-token", fixture); code != http.StatusCreated {
		t.Fatalf("POST ServiceRequest: %d %s", code, body)
	}
	if err := m.Run(context.Background()); err == nil {
		t.Error("a second Run succeeded")
	}
	// Retention runs in serve; its counters are on /metrics from the start.
	if code, body := call(t, http.MethodGet, "http://"+addr+"/metrics", "", nil); code != http.StatusOK ||
		!strings.Contains(string(body), `socialrx_retention_scrubbed_total{kind="payload"} 0`) ||
		!strings.Contains(string(body), `socialrx_retention_scrubbed_total{kind="referral"} 0`) {
		t.Errorf("/metrics lacks the retention counters: %d", code)
	}

	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close again: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		_ = c.Close()
		t.Fatalf("%s still accepts connections after Close", addr)
	}
	assertStoreClosed(t, m)
}

// assertStoreClosed fails unless m's store refuses to read: Close has closed it.
func assertStoreClosed(t *testing.T, m *Main) {
	t.Helper()
	if m.store == nil {
		t.Fatal("Run opened no store")
	}
	if _, err := m.store.ListMessages(context.Background(), outbox.MessageQuery{}); err == nil {
		t.Error("the store still answers after Close")
	}
}

// TestMainCloseAfterFailedRun checks that Close after a Run that failed part-way (the store open, the dispatcher
// refusing its settings) returns at once, harmlessly, and closes the store.
func TestMainCloseAfterFailedRun(t *testing.T) {
	t.Parallel()
	m := newTestMain(t)
	m.Settings.DeliveryTimeout, m.Settings.DeliveryLease = 20*time.Second, 30*time.Second // lease ≤ one attempt
	err := m.Run(context.Background())
	var ue usageError
	if !errors.As(err, &ue) {
		t.Fatalf("Run with a lease shorter than one attempt: %v, want a usage error", err)
	}
	if m.Addr() != "" {
		t.Errorf("a failed Run listens on %q", m.Addr())
	}
	for range 2 {
		if err := m.Close(); err != nil {
			t.Fatalf("Close after a failed Run: %v", err)
		}
	}
	assertStoreClosed(t, m)
}

// TestMainCloseWithoutRun checks that a Main that never ran closes without error.
func TestMainCloseWithoutRun(t *testing.T) {
	t.Parallel()
	if err := newTestMain(t).Close(); err != nil {
		t.Fatal(err)
	}
}
