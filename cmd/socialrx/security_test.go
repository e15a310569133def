package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/config"
)

// serveArgs runs the serve command as the binary does, with env as its whole environment; it returns the
// exit code and stderr (the command stops at once when ctx is already cancelled after start).
func serveArgs(t *testing.T, env map[string]string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // serve stops as soon as it has started
	var out, errb bytes.Buffer
	code := CLI(ctx, []string{"serve"}, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb)
	return code, errb.String()
}

// TestDemoFailsClosed: the embedded demo directory (published tokens) serves only on loopback; a non-loopback
// address is refused at start with a message that says why and how, unless SOCIALRX_DEMO_PUBLIC says the
// operator means it, which is logged as a loud warning. A real directory may listen anywhere.
func TestDemoFailsClosed(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + filepath.Join(t.TempDir(), "socialrx.db")
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		code, stderr := serveArgs(t, map[string]string{"SOCIALRX_ADDR": addr, "SOCIALRX_DATABASE_URL": db})
		if code != exitUsage || !strings.Contains(stderr, "not a loopback address") || !strings.Contains(stderr, "SOCIALRX_DEMO_PUBLIC") {
			t.Errorf("demo on %s: exit %d, %s", addr, code, stderr)
		}
	}
	starts := func(name, addr string, public bool, cfg *config.Config) string {
		t.Helper()
		var logs bytes.Buffer
		m := newTestMain(t)
		m.Settings.Addr, m.Settings.Security.DemoPublic, m.Logger = addr, public, slog.New(slog.NewTextHandler(&logs, nil))
		if cfg != nil {
			m.Config = cfg
		}
		if err := m.Run(context.Background()); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := m.Close(); err != nil {
			t.Errorf("%s: close: %v", name, err)
		}
		return logs.String()
	}
	if logs := starts("demo forced public", "0.0.0.0:0", true, nil); !strings.Contains(logs, "DEMO CONFIGURATION EXPOSED BEYOND THIS MACHINE") {
		t.Errorf("demo forced public must warn loudly:\n%s", logs)
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		starts("demo on "+addr, addr, false, nil)
	}
	dir := filepath.Join(t.TempDir(), "directory.yaml")
	y := "clients:\n  - {id: gp, role: gp, practices: [A81001], token_sha256: \"" + config.HashToken("real-token-0f9e8d") + "\"}\nservices:\n  - {id: s, name: S}\n"
	if err := os.WriteFile(dir, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	real, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	starts("a real directory on 0.0.0.0", "0.0.0.0:0", false, real)
}

// TestMetricsProtected: with SOCIALRX_METRICS_TOKEN, /metrics answers only a scraper that sends it; with
// SOCIALRX_METRICS_ADDR it is served on its own listener and not on the API's.
func TestMetricsProtected(t *testing.T) {
	t.Parallel()
	m := newTestMain(t)
	m.Settings.Security.MetricsToken = "scrape-7d2e"
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if code, _ := call(t, http.MethodGet, "http://"+m.Addr()+"/metrics", "wrong", nil); code != http.StatusUnauthorized {
		t.Errorf("/metrics with a wrong token: %d", code)
	}
	if code, body := call(t, http.MethodGet, "http://"+m.Addr()+"/metrics", "scrape-7d2e", nil); code != http.StatusOK ||
		!strings.Contains(string(body), "socialrx_outbox_messages") {
		t.Errorf("/metrics with the token: %d", code)
	}

	sep := newTestMain(t)
	sep.Settings.Security.MetricsAddr = "127.0.0.1:0"
	if err := sep.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sep.Close()
	if code, _ := call(t, http.MethodGet, "http://"+sep.Addr()+"/metrics", "", nil); code != http.StatusNotFound {
		t.Errorf("/metrics on the API listener when it has its own: %d", code)
	}
	if code, body := call(t, http.MethodGet, "http://"+sep.MetricsAddr()+"/metrics", "", nil); code != http.StatusOK ||
		!strings.Contains(string(body), "socialrx_outbox_messages") {
		t.Errorf("/metrics on its own listener: %d", code)
	}
}

// TestMainLimits: the process applies its settings' limits (here a GP rate of one request with a burst of
// two): the third request is a 429 with Retry-After.
func TestMainLimits(t *testing.T) {
	t.Parallel()
	m := newTestMain(t)
	m.Settings.Limits.Role[config.RoleGP] = config.Rate{PerSecond: 0.001, Burst: 2}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i := range 2 {
		if code, body := call(t, http.MethodGet, "http://"+m.Addr()+"/fhir/Task", "demo-gp-token", nil); code != http.StatusOK {
			t.Fatalf("request %d: %d %s", i+1, code, body)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+m.Addr()+"/fhir/Task", nil)
	req.Header.Set("Authorization", "Bearer demo-gp-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("third request: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
