package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
)

const testSecret = "whsec_c29jaWFscngtZGVtby13ZWJob29rLXNlY3JldC0zMmI="

// webhook is one delivery the test receiver accepted.
type webhook struct {
	id   string
	body []byte
}

// startMain runs CLI("serve") in-process on port 0 and returns its base URL, the exit-code channel and the
// cancel function that stands in for SIGTERM.
func startMain(t *testing.T, env map[string]string) (string, <-chan int, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	exit := make(chan int, 1)
	go func() {
		exit <- CLI(ctx, []string{"serve"}, func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, pw)
		_ = pw.Close()
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "listening" {
				addr <- line["addr"].(string)
			}
		}
	}()
	select {
	case a := <-addr:
		return "http://" + a, exit, cancel
	case code := <-exit:
		cancel()
		t.Fatalf("Main exited with %d before listening", code)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("Main did not start listening")
	}
	return "", nil, nil
}

// writeDirectory writes a directory file with one GP client and one webhook service pointing at url.
func writeDirectory(t *testing.T, url string) string {
	t.Helper()
	return writeDirectoryWith(t, url, "")
}

// writeDirectoryWith is writeDirectory with more of the service's delivery block (delivery, "key: value, …").
func writeDirectoryWith(t *testing.T, url, delivery string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "directory.yaml")
	y := fmt.Sprintf(`clients:
  - {id: practice, role: gp, token_sha256: %q, practices: [A81001]}
  - {id: walks, role: community, service: frome-walks, token_sha256: %q}
services:
  - id: frome-walks
    name: Frome Walking for Health
    identifiers: [{system: "https://fhir.nhs.uk/Id/ods-organization-code", value: "XYZ01"}]
    delivery: {url: %q, secret_file: secret.txt%s}
`, config.HashToken("gp-secret-token"), config.HashToken("walks-secret-token"), url, delivery)
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret.txt"), []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func call(t *testing.T, method, url, token string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestMainEndToEnd runs the real program: serve on a temp SQLite file and port 0 with a directory file, post a
// referral, receive its signed webhook, see the Task become delivered, stop gracefully, then operate the outbox
// from the CLI against the same database.
func TestMainEndToEnd(t *testing.T) {
	t.Parallel()
	got := make(chan webhook, 4)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if err := outbox.Verify(testSecret, r.Header, b, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		got <- webhook{id: r.Header.Get("webhook-id"), body: b}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	db := filepath.Join(t.TempDir(), "socialrx.db")
	env := map[string]string{
		"SOCIALRX_ADDR": "127.0.0.1:0", "SOCIALRX_DATABASE_URL": "sqlite:" + db,
		"SOCIALRX_CONFIG": writeDirectory(t, recv.URL+"/hooks"), "SOCIALRX_LOG_FORMAT": "json",
	}
	base, exit, stop := startMain(t, env)
	defer stop()

	fixture, err := os.ReadFile("../../testdata/referrals/walking-group-performer.json")
	if err != nil {
		t.Fatal(err)
	}
	code, body := call(t, http.MethodPost, base+"/fhir/ServiceRequest", "gp-secret-token", fixture)
	if code != http.StatusCreated {
		t.Fatalf("POST ServiceRequest: %d %s", code, body)
	}
	var sr struct{ ID string }
	_ = json.Unmarshal(body, &sr)

	var hook webhook
	select {
	case hook = <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("no webhook delivered")
	}
	var event struct {
		Type string
		Data struct {
			ServiceRequestID string `json:"service_request_id"`
			Status           string
		}
	}
	if err := json.Unmarshal(hook.body, &event); err != nil || event.Type != "referral.created" || event.Data.ServiceRequestID != sr.ID {
		t.Fatalf("webhook event: %v %s", err, hook.body)
	}

	// The Task shows the delivery (businessStatus delivered) once the attempt is recorded.
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body = call(t, http.MethodGet, base+"/fhir/Task?focus=ServiceRequest/"+sr.ID, "gp-secret-token", nil)
		if code == http.StatusOK && strings.Contains(string(body), `"code":"delivered"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Task never showed delivered: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	select {
	case c := <-exit:
		if c != 0 {
			t.Fatalf("Main exit code %d after SIGTERM-equivalent", c)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Main did not stop")
	}

	// The CLI sees the same database.
	cli := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		c := CLI(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb)
		return c, out.String() + errb.String()
	}
	c, out := cli("outbox", "list", "--json")
	if c != 0 || !strings.Contains(out, hook.id) || !strings.Contains(out, `"state": "delivered"`) {
		t.Fatalf("outbox list: %d %s", c, out)
	}
	c, out = cli("outbox", "show", hook.id, "--actor", "tester")
	if c != 0 || !strings.Contains(out, "delivered") || !strings.Contains(out, "204") {
		t.Fatalf("outbox show: %d %s", c, out)
	}
	if c, out = cli("outbox", "replay", hook.id); c != exitUsage || !strings.Contains(out, "reason") {
		t.Fatalf("replay without reason: want usage error, got %d %s", c, out)
	}
}

func TestMainCommands(t *testing.T) {
	t.Parallel()
	run := func(stdin string, env map[string]string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		c := CLI(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
		return c, out.String(), errb.String()
	}
	if c, out, _ := run("", nil, "hash-token", "demo-gp-token"); c != 0 || strings.TrimSpace(out) != config.HashToken("demo-gp-token") {
		t.Errorf("hash-token arg: %d %q", c, out)
	}
	if c, out, _ := run("demo-gp-token\n", nil, "hash-token"); c != 0 || strings.TrimSpace(out) != "4b84a7a27d238193a0b6912903f938eb877b8428b7fa202e57af51b5d100c74b" {
		t.Errorf("hash-token stdin: %d %q", c, out)
	}
	if c, out, _ := run("", nil, "version"); c != 0 || !strings.HasPrefix(out, "socialrx ") {
		t.Errorf("version: %d %q", c, out)
	}
	if c, _, errOut := run("", nil, "frobnicate"); c != exitUsage || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: %d %q", c, errOut)
	}
	if c, _, _ := run("", nil); c != exitUsage {
		t.Errorf("no command: %d", c)
	}
	bad := map[string]string{"SOCIALRX_LOG_LEVEL": "loud", "SOCIALRX_DATABASE_URL": "mysql://x"}
	if c, _, errOut := run("", bad, "serve"); c != exitUsage || !strings.Contains(errOut, "SOCIALRX_LOG_LEVEL") || !strings.Contains(errOut, "SOCIALRX_DATABASE_URL") {
		t.Errorf("bad settings: want exit 2 naming both, got %d %q", c, errOut)
	}
	missing := map[string]string{"SOCIALRX_CONFIG": filepath.Join(t.TempDir(), "nope.yaml"), "SOCIALRX_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "x.db")}
	if c, _, errOut := run("", missing, "serve"); c != 1 || !strings.Contains(errOut, "nope.yaml") {
		t.Errorf("missing directory file: %d %q", c, errOut)
	}
	short := map[string]string{"SOCIALRX_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "l.db"), "SOCIALRX_ADDR": "127.0.0.1:0",
		"SOCIALRX_DELIVERY_TIMEOUT": "20s", "SOCIALRX_DELIVERY_LEASE": "30s"}
	if c, _, errOut := run("", short, "serve"); c != exitUsage || !strings.Contains(errOut, "SOCIALRX_DELIVERY_LEASE") {
		t.Errorf("a lease shorter than one attempt must be refused before serving: %d %q", c, errOut)
	}
	db := map[string]string{"SOCIALRX_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "m.db")}
	if c, out, errOut := run("", db, "migrate"); c != 0 || !strings.Contains(out, "schema up to date") {
		t.Errorf("migrate: %d %q %q", c, out, errOut)
	}
	if c, _, errOut := run("", db, "outbox", "list", "--state", "lost"); c != exitUsage || !strings.Contains(errOut, "lost") {
		t.Errorf("bad state: %d %q", c, errOut)
	}
	if c, out, errOut := run("", db, "outbox", "list", "--state", "cancelled", "--json"); c != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("list cancelled: %d %q %q", c, out, errOut)
	}
}
