//go:build unix

package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
)

// binPath is the socialrx binary TestMain builds once for every test of the package.
var binPath string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	// go test puts the GOROOT/bin of the go command running it first on the test binary's PATH, so this is
	// the same toolchain.
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashtest: find the go command:", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "socialrx-crashtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashtest:", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "socialrx")
	start := time.Now()
	out, err := exec.Command(goTool, "build", "-o", binPath, "github.com/socialrx/socialrx/cmd/socialrx").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "crashtest: go build ./cmd/socialrx: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	if testing.Verbose() {
		fmt.Printf("crashtest: built %s in %s\n", binPath, time.Since(start).Round(time.Millisecond))
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// Test settings (environment), see the package doc.
const (
	envReferrals = "CRASH_REFERRALS"
	envKills     = "CRASH_KILLS"
	envClients   = "CRASH_CLIENTS"
	envSeed      = "CRASH_SEED"
)

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a whole number", name, v)
	}
	return n
}

// seedFor returns CRASH_SEED, or a fresh seed.
func seedFor(t *testing.T) uint64 {
	t.Helper()
	if v := os.Getenv(envSeed); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want an unsigned number", envSeed, v)
		}
		return s
	}
	return rand.Uint64() >> 1
}

// Tokens and secrets of the test directory (the binary reads them from a directory file and secret files).
const (
	gpToken     = "crashtest-gp-token"
	walksSecret = "whsec_Y3Jhc2h0ZXN0LXdhbGtzLXNpZ25pbmcta2V5LTMyYg=="
	artsSecret  = "whsec_Y3Jhc2h0ZXN0LWFydHMtc2lnbmluZy1rZXktMzJieQ=="
)

// services are the two webhook services: receiver path, secret, and the performer value that routes to it.
var services = []struct{ id, path, secret, ods string }{
	{"frome-walks", "/hooks/walks", walksSecret, "XYZ01"},
	{"arts-on-prescription", "/hooks/arts", artsSecret, "XYZ02"},
}

// writeDirectory writes the directory file (one GP client, two webhook services with secret_file) and
// returns its path.
func writeDirectory(t *testing.T, receiverURL string) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "clients:\n  - {id: practice, role: gp, token_sha256: %q, practices: [A81001]}\nservices:\n", config.HashToken(gpToken))
	for _, s := range services {
		file := s.id + ".secret"
		if err := os.WriteFile(filepath.Join(dir, file), []byte(s.secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  - id: %s\n    name: %s\n    identifiers: [{system: \"https://fhir.nhs.uk/Id/ods-organization-code\", value: %q}]\n    delivery: {url: %q, secret_file: %s}\n",
			s.id, s.id, s.ods, receiverURL+s.path, file)
	}
	p := filepath.Join(dir, "directory.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// referralBody is the walking-group fixture with identifier value ident, routed to services[svc].
func referralBody(t *testing.T, fixture []byte, ident string, svc int) []byte {
	t.Helper()
	const fixtureIdent, fixtureODS = `"FVMC-2025-0142"`, `"XYZ01"`
	if bytes.Count(fixture, []byte(fixtureIdent)) != 1 || bytes.Count(fixture, []byte(fixtureODS)) != 1 {
		t.Fatal("fixture changed: walking-group-performer.json must carry its identifier value and performer ODS code once each")
	}
	b := bytes.Replace(fixture, []byte(fixtureIdent), []byte(strconv.Quote(ident)), 1)
	return bytes.Replace(b, []byte(fixtureODS), []byte(strconv.Quote(services[svc].ods)), 1)
}

func loadFixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "referrals", "walking-group-performer.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// freePort returns a loopback address that was free a moment ago; the binary listens there on every start so
// that the GP clients keep one base URL across kills.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// proc runs the socialrx binary: start, kill -9, SIGTERM, and the outbox CLI against its database. It is used
// by one goroutine at a time.
type proc struct {
	t      *testing.T
	env    []string
	base   string
	logDir string
	runs   int
	kills  []time.Time // when each SIGKILL was sent

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// newProc prepares (does not start) the binary with a fresh database and the directory file; extraEnv
// ("NAME=value") overrides the test's settings.
func newProc(t *testing.T, directory string, extraEnv ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	addr := freePort(t)
	p := &proc{
		t:      t,
		base:   "http://" + addr,
		logDir: dir,
		env: []string{
			"SOCIALRX_ADDR=" + addr,
			"SOCIALRX_DATABASE_URL=sqlite:" + filepath.Join(dir, "socialrx.db"),
			"SOCIALRX_CONFIG=" + directory,
			"SOCIALRX_LOG_FORMAT=json",
			"SOCIALRX_LOG_LEVEL=info",
			"SOCIALRX_DELIVERY_TIMEOUT=1s",
			"SOCIALRX_DELIVERY_LEASE=" + crashLease.String(),
			"TMPDIR=" + os.TempDir(),
		},
	}
	p.env = append(p.env, extraEnv...) // os/exec uses the last value of a duplicated name
	t.Cleanup(func() {
		if p.running() {
			_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	})
	return p
}

func (p *proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// start starts the binary and waits (bounded by ctx and 30 s) until /readyz answers 200.
func (p *proc) start(ctx context.Context) error {
	p.runs++
	logf, err := os.Create(filepath.Join(p.logDir, fmt.Sprintf("run-%02d.jsonl", p.runs)))
	if err != nil {
		return err
	}
	cmd := exec.Command(binPath, "serve")
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start socialrx: %w", err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() {
		p.waitErr = cmd.Wait()
		_ = logf.Close()
		close(exited)
	}()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/readyz", nil)
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("socialrx run %d exited before ready: %v\n%s", p.runs, p.waitErr, p.tail(p.runs, 20))
		case <-ctx.Done():
			return fmt.Errorf("socialrx run %d not ready: %w", p.runs, ctx.Err())
		case <-tick.C:
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() error {
	at := time.Now()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill -9: %w", err)
	}
	p.kills = append(p.kills, at)
	<-p.exited
	return nil
}

// crash kills the process with SIGKILL, leaves it down for down and starts it again.
func (p *proc) crash(ctx context.Context, down time.Duration) error {
	if err := p.kill(); err != nil {
		return err
	}
	time.Sleep(down)
	return p.start(ctx)
}

// terminate sends SIGTERM and waits up to bound; it returns how long the process took and its exit code.
func (p *proc) terminate(bound time.Duration) (time.Duration, int, error) {
	start := time.Now()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		return 0, 0, fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-p.exited:
	case <-time.After(bound):
		return time.Since(start), -1, fmt.Errorf("socialrx did not exit within %s of SIGTERM", bound)
	}
	took := time.Since(start)
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return took, ee.ExitCode(), nil
	}
	if p.waitErr != nil {
		return took, -1, p.waitErr
	}
	return took, 0, nil
}

// tail returns the last n lines of run's log.
func (p *proc) tail(run, n int) string {
	b, _ := os.ReadFile(filepath.Join(p.logDir, fmt.Sprintf("run-%02d.jsonl", run)))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// cliMessage is what `socialrx outbox list --json` prints per message (the fields the test reads).
type cliMessage struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error"`
}

// outboxList runs `socialrx outbox list --state STATE --json` against the binary's database.
func (p *proc) outboxList(ctx context.Context, state string) ([]cliMessage, error) {
	cmd := exec.CommandContext(ctx, binPath, "outbox", "list", "--state", state, "--json", "--limit", "1000")
	cmd.Env = p.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("socialrx outbox list --state %s: %w: %s", state, err, stderr.String())
	}
	var msgs []cliMessage
	if err := json.Unmarshal(out, &msgs); err != nil {
		return nil, fmt.Errorf("socialrx outbox list --state %s: %w: %s", state, err, out)
	}
	return msgs, nil
}

// checkDeliveriesAudited: every message on record as delivered has its audit record (action send, the
// message's id as request id), and the trail verifies. A delivery's record is written in the transaction that
// records its attempt, so no kill can come between the two.
func (p *proc) checkDeliveriesAudited(ctx context.Context, t *testing.T) {
	t.Helper()
	delivered, err := p.outboxList(ctx, "delivered")
	if err != nil {
		t.Fatal(err)
	}
	recs := p.auditList(ctx, t, "--client", "socialrx")
	sent := map[string]bool{}
	for _, r := range recs {
		sent[r.RequestID] = sent[r.RequestID] || r.Action == "send"
	}
	var missing []string
	for _, m := range delivered {
		if !sent[m.ID] {
			missing = append(missing, m.ID)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d delivered messages have no audit record of their sending, e.g. %v", len(missing),
			len(delivered), missing[:min(len(missing), 5)])
	}
	cmd := exec.CommandContext(ctx, binPath, "audit", "verify")
	cmd.Env = p.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("socialrx audit verify: %v: %s", err, out)
	}
	t.Logf("delivered messages: %d; audit records of the dispatcher: %d", len(delivered), len(recs))
}

// cliAuditRecord is what `socialrx audit list --json` prints per record (the fields the tests read).
type cliAuditRecord struct {
	RequestID string `json:"request_id"`
	Action    string `json:"action"`
	Resource  string `json:"resource"`
}

// auditList runs `socialrx audit list --json` with filters against the binary's database.
func (p *proc) auditList(ctx context.Context, t *testing.T, filters ...string) []cliAuditRecord {
	t.Helper()
	cmd := exec.CommandContext(ctx, binPath, append(append([]string{"audit", "list"}, filters...), "--json")...)
	cmd.Env = p.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("socialrx audit list: %v", err)
	}
	var recs []cliAuditRecord
	if err := json.Unmarshal(out, &recs); err != nil {
		t.Fatalf("socialrx audit list: %v: %.200s", err, out)
	}
	return recs
}

// checkCreationsAudited: every referral a GP client was told is accepted (its ServiceRequest id in srIDs;
// "" for one that was not) has the audit record of its creation (action create on that ServiceRequest). The
// record is appended in the transaction that creates the referral, so no kill can come between the two.
func (p *proc) checkCreationsAudited(ctx context.Context, t *testing.T, srIDs []string) {
	t.Helper()
	recs := p.auditList(ctx, t)
	created := map[string]int{}
	for _, r := range recs {
		if id, ok := strings.CutPrefix(r.Resource, "ServiceRequest/"); ok && r.Action == "create" {
			created[id]++
		}
	}
	var missing, twice []string
	accepted := 0
	for _, id := range srIDs {
		if id == "" {
			continue
		}
		accepted++
		switch created[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			twice = append(twice, id)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d accepted referrals have no audit record of their creation, e.g. %v", len(missing),
			accepted, missing[:min(len(missing), 5)])
	}
	if len(twice) > 0 {
		t.Errorf("%d referrals have more than one record of their creation, e.g. %v", len(twice), twice[:min(len(twice), 5)])
	}
	t.Logf("accepted referrals: %d; records of their creation: %d", accepted, accepted-len(missing))
}

// describeUnsettled lists the messages not delivered yet (pending, inflight, dead; at most 5) with their
// attempts, for a failure's report. It runs on a context of its own: the test's may have expired.
func (p *proc) describeUnsettled() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "outbox", "list", "--state", "pending,inflight,dead", "--json", "--limit", "5")
	cmd.Env = p.env
	out, err := cmd.Output()
	if err != nil {
		return fmt.Sprintf("socialrx outbox list: %v", err)
	}
	var msgs []cliMessage
	_ = json.Unmarshal(out, &msgs)
	var b strings.Builder
	fmt.Fprintf(&b, "unsettled messages (first 5): %s", out)
	for _, m := range msgs {
		fmt.Fprintf(&b, "\n%s: %s", m.ID, p.outboxAttempts(ctx, m.ID))
	}
	return b.String()
}

// attempt is one delivery attempt as `socialrx outbox show --json` prints it.
type attempt struct {
	N          int       `json:"n"`
	StartedAt  time.Time `json:"started_at"`
	LatencyMS  float64   `json:"latency_ms"`
	StatusCode int       `json:"status_code"`
	Error      string    `json:"error"`
}

// outboxShow runs `socialrx outbox show ID --json` and returns the message and its attempts.
func (p *proc) outboxShow(ctx context.Context, id string) (cliMessage, []attempt, error) {
	cmd := exec.CommandContext(ctx, binPath, "outbox", "show", id, "--json", "--actor", "crashtest")
	cmd.Env = p.env
	out, err := cmd.Output()
	if err != nil {
		return cliMessage{}, nil, fmt.Errorf("socialrx outbox show %s: %w", id, err)
	}
	var d struct {
		Message  cliMessage
		Attempts []attempt
	}
	if err := json.Unmarshal(out, &d); err != nil {
		return cliMessage{}, nil, fmt.Errorf("socialrx outbox show %s: %w", id, err)
	}
	return d.Message, d.Attempts, nil
}

// outboxAttempts describes a message's attempts in one line.
func (p *proc) outboxAttempts(ctx context.Context, id string) string {
	m, atts, err := p.outboxShow(ctx, id)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "state %s, %d attempts:", m.State, m.Attempts)
	for _, a := range atts {
		fmt.Fprintf(&b, " [#%d %s %d %.1fms %s]", a.N, a.StartedAt.Format("15:04:05.000"), a.StatusCode, a.LatencyMS, a.Error)
	}
	return b.String()
}

// unsettled returns the messages not delivered yet (pending, inflight, dead).
func (p *proc) unsettled(ctx context.Context) (map[string][]cliMessage, error) {
	// One listing of the three states, so one statement, one snapshot. A listing per state could miss a
	// message that moved between two of them: inflight when pending was listed, back to pending (a retry)
	// by the time inflight was listed.
	msgs, err := p.outboxList(ctx, "pending,inflight,dead")
	if err != nil {
		return nil, err
	}
	out := map[string][]cliMessage{}
	for _, m := range msgs {
		out[m.State] = append(out[m.State], m)
	}
	return out, nil
}

// waitSettled polls the outbox CLI until no message is pending, inflight or dead (bounded by ctx). A dead
// message fails at once: nothing in these tests is permanent.
func (p *proc) waitSettled(ctx context.Context) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		left, err := p.unsettled(ctx)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return nil
		}
		if dead := left["dead"]; len(dead) > 0 {
			return fmt.Errorf("%d message(s) dead, e.g. %s after %d attempts: %s", len(dead), dead[0].ID, dead[0].Attempts, dead[0].LastError)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("outbox not settled (pending %d, inflight %d): %w", len(left["pending"]), len(left["inflight"]), ctx.Err())
		case <-tick.C:
		}
	}
}

// logSummary reads every run's JSON log: delivery-attempt outcomes and the ERROR messages (counted by text).
func (p *proc) logSummary() (outcomes, errs map[string]int, panics int) {
	outcomes, errs = map[string]int{}, map[string]int{}
	for run := 1; run <= p.runs; run++ {
		f, err := os.Open(filepath.Join(p.logDir, fmt.Sprintf("run-%02d.jsonl", run)))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if bytes.Contains(line, []byte("panic")) || bytes.HasPrefix(line, []byte("goroutine ")) {
				panics++
			}
			var l struct {
				Level, Msg, Outcome, Err string
			}
			if json.Unmarshal(line, &l) != nil {
				continue
			}
			if l.Msg == "outbox delivery attempt" {
				outcomes[l.Outcome]++
			}
			if l.Level == "ERROR" {
				errs[l.Msg+" "+l.Err]++
			}
		}
		_ = f.Close()
	}
	return outcomes, errs, panics
}

// gpClient posts referrals the way a GP system does: a request that got no answer, or a 5xx, is resent
// unchanged until it gets 201 or 200 (an identical resend is idempotent). With several bases it is a GP system
// behind a round-robin load balancer: each request, and each resend, goes to the next instance.
type gpClient struct {
	bases   []string
	next    atomic.Uint64
	hc      *http.Client
	resends atomic.Int64 // requests sent again after a network error or a 5xx
	got200  atomic.Int64 // resends answered 200 (the first attempt had committed)
}

func newGPClient(bases ...string) *gpClient {
	return &gpClient{bases: bases, hc: &http.Client{Timeout: 10 * time.Second}}
}

// base is the instance the next request goes to.
func (g *gpClient) base() string {
	return g.bases[(g.next.Add(1)-1)%uint64(len(g.bases))]
}

// post sends body until accepted and returns the ServiceRequest id.
func (g *gpClient) post(ctx context.Context, body []byte) (string, error) {
	b, code, err := g.send(ctx, http.MethodPost, "/fhir/ServiceRequest", "application/fhir+json", body)
	if err != nil {
		return "", err
	}
	var sr struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &sr); err != nil || sr.ID == "" {
		return "", fmt.Errorf("%d without a ServiceRequest id: %.200s", code, b)
	}
	return sr.ID, nil
}

// revoke cancels the referral of ServiceRequest id as its GP does, with a JSON Patch setting status revoked
// (resent like a POST: revoking a revoked ServiceRequest again changes nothing).
func (g *gpClient) revoke(ctx context.Context, id string) error {
	_, _, err := g.send(ctx, http.MethodPatch, "/fhir/ServiceRequest/"+id, "application/json-patch+json",
		[]byte(`[{"op": "replace", "path": "/status", "value": "revoked"}]`))
	return err
}

// send sends the request until it is answered 201 or 200 and returns that answer's body and status. A request
// with no answer, or answered 5xx or 429 (over the GP's rate limit), is sent again after a short wait.
func (g *gpClient) send(ctx context.Context, method, path, contentType string, body []byte) ([]byte, int, error) {
	wait := 5 * time.Millisecond
	for try := 0; ; try++ {
		if try > 0 {
			g.resends.Add(1)
			select {
			case <-ctx.Done():
				return nil, 0, fmt.Errorf("%s %s not accepted after %d tries: %w", method, path, try, ctx.Err())
			case <-time.After(wait):
			}
			wait = min(2*wait, 100*time.Millisecond)
		}
		req, err := http.NewRequestWithContext(ctx, method, g.base()+path, bytes.NewReader(body))
		if err != nil {
			return nil, 0, err
		}
		req.Header.Set("Authorization", "Bearer "+gpToken)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := g.hc.Do(req)
		if err != nil {
			continue // cut by a kill, refused while down: resend
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			continue // down, or over its limits (429, Retry-After): a GP system sends again
		}
		switch resp.StatusCode {
		case http.StatusCreated, http.StatusOK:
			if method == http.MethodPost && try > 0 && resp.StatusCode == http.StatusOK {
				g.got200.Add(1)
			}
			return b, resp.StatusCode, nil
		}
		return nil, resp.StatusCode, fmt.Errorf("%s %s: %d %.300s", method, path, resp.StatusCode, b)
	}
}

// task returns the status and businessStatus code ("" when it has none) of the Task of ServiceRequest srID,
// as the GP sees it.
func (g *gpClient) task(ctx context.Context, srID string) (status, businessStatus string, err error) {
	body, _, err := g.send(ctx, http.MethodGet, "/fhir/Task?focus=ServiceRequest/"+srID, "", nil) // a 429 is sent again
	if err != nil {
		return "", "", err
	}
	var b struct {
		Entry []struct {
			Resource struct {
				Status         string
				BusinessStatus struct {
					Coding []struct{ Code string }
				}
			}
		}
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return "", "", err
	}
	if len(b.Entry) != 1 {
		return "", "", fmt.Errorf("GET Task?focus: %d tasks", len(b.Entry))
	}
	r := b.Entry[0].Resource
	if len(r.BusinessStatus.Coding) > 0 {
		businessStatus = r.BusinessStatus.Coding[0].Code
	}
	return r.Status, businessStatus, nil // no businessStatus: no transport fact (a referral withdrawn unsent)
}

// checkDelivered asserts that the GP sees every referral's Task as delivered (businessStatus).
func (g *gpClient) checkDelivered(ctx context.Context, t *testing.T, ids []string) {
	t.Helper()
	bad := 0
	for _, id := range ids {
		_, code, err := g.task(ctx, id)
		if err == nil && code == "delivered" {
			continue
		}
		if bad++; bad <= 5 {
			t.Errorf("Task of ServiceRequest %s: businessStatus %q, %v (want delivered)", id, code, err)
		}
	}
	if bad > 5 {
		t.Errorf("%d Tasks in all not delivered", bad)
	}
}

// dbFiles returns the sizes of the database and its WAL (a note for the report).
func (p *proc) dbFiles() string {
	var parts []string
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(filepath.Join(p.logDir, "socialrx.db"+suffix)); err == nil {
			parts = append(parts, fmt.Sprintf("socialrx.db%s %d KiB", suffix, fi.Size()>>10))
		}
	}
	return strings.Join(parts, ", ")
}

// receiverConfig says how often the receiver fails or answers slowly.
type receiverConfig struct {
	failP            float64 // answer 500
	slowP            float64 // answer after a pause in [slowMin, slowMax)
	slowMin, slowMax time.Duration
	slowStatus       int // what a slow answer is (0: 204, recorded as a delivery)
}

// receiver is a community service's webhook endpoint (both services, one path each): it verifies every
// signature and records, for each 2xx it answers, the webhook-id and the referral it carried.
type receiver struct {
	cfg receiverConfig

	active  atomic.Int64  // requests being handled now
	entered chan struct{} // one token per request that came in (while there is room)

	mu         sync.Mutex
	rng        *rand.Rand
	requests   int
	failed     int                        // 500s answered
	slowed     int                        // slow answers
	deliveries int                        // 2xx answered
	count      map[string]int             // webhook-id → 2xx answers
	first      map[string][2]time.Time    // webhook-id → arrival and answer of its first 2xx
	arrivals   map[string][]time.Time     // webhook-id → arrival of each request answered 2xx
	srOf       map[string]string          // webhook-id → service_request_id
	bySR       map[string]map[string]bool // service_request_id → webhook-ids of referral.created
	cancelsOf  map[string]map[string]bool // service_request_id → webhook-ids of referral.cancelled
	createdAck map[string]time.Time       // service_request_id → when its referral.created was first answered 2xx
	handling   map[string]int             // webhook-id → requests carrying it being handled now
	overlaps   []string                   // webhook-ids that came again while a request carrying them was being handled
	problems   []string
	changed    chan struct{} // signalled (coalescing) when a new referral arrives
}

func newReceiver(seed uint64, cfg receiverConfig) *receiver {
	return &receiver{
		cfg: cfg, rng: rand.New(rand.NewPCG(seed, 1)),
		count: map[string]int{}, first: map[string][2]time.Time{}, arrivals: map[string][]time.Time{}, srOf: map[string]string{}, bySR: map[string]map[string]bool{},
		cancelsOf: map[string]map[string]bool{}, createdAck: map[string]time.Time{}, handling: map[string]int{},
		changed: make(chan struct{}, 1), entered: make(chan struct{}, 4096),
	}
}

func (rc *receiver) problem(format string, args ...any) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.problems) < 50 {
		rc.problems = append(rc.problems, fmt.Sprintf(format, args...))
	}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.active.Add(1)
	defer rc.active.Add(-1)
	select {
	case rc.entered <- struct{}{}:
	default:
	}
	arrived := time.Now()
	i := slices.IndexFunc(services, func(s struct{ id, path, secret, ods string }) bool { return s.path == r.URL.Path })
	if i < 0 || r.Method != http.MethodPost {
		rc.problem("unexpected request %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the sender died mid-request
	}
	if err := outbox.Verify(services[i].secret, r.Header, body, time.Now(), 5*time.Minute); err != nil {
		rc.problem("%s: signature: %v", services[i].id, err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev struct {
		Type string `json:"type"`
		Data struct {
			SRID    string `json:"service_request_id"`
			Service struct {
				ID string `json:"id"`
			} `json:"service"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || (ev.Type != "referral.created" && ev.Type != "referral.cancelled") ||
		ev.Data.SRID == "" || ev.Data.Service.ID != services[i].id {
		rc.problem("%s: unexpected event (%v): %.200s", services[i].id, err, body)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id := r.Header.Get(outbox.HeaderWebhookID)
	rc.mu.Lock()
	if rc.handling[id] > 0 {
		rc.overlaps = append(rc.overlaps, id)
	}
	rc.handling[id]++
	if ack, ok := rc.createdAck[ev.Data.SRID]; ev.Type == "referral.cancelled" && (!ok || arrived.Before(ack)) {
		rc.problems = append(rc.problems, fmt.Sprintf("ServiceRequest %s: referral.cancelled arrived at %s, before its referral.created was answered 2xx (%s)",
			ev.Data.SRID, arrived.Format("15:04:05.000"), ack.Format("15:04:05.000")))
	}
	rc.requests++
	roll := rc.rng.Float64()
	pause := rc.cfg.slowMin
	if d := rc.cfg.slowMax - rc.cfg.slowMin; d > 0 {
		pause += time.Duration(rc.rng.Int64N(int64(d)))
	}
	fail := roll < rc.cfg.failP
	slow := !fail && roll < rc.cfg.failP+rc.cfg.slowP
	if fail {
		rc.failed++
	}
	if slow {
		rc.slowed++
	}
	rc.mu.Unlock()
	defer func() {
		rc.mu.Lock()
		rc.handling[id]--
		rc.mu.Unlock()
	}()
	if fail {
		http.Error(w, "try later", http.StatusInternalServerError)
		return
	}
	if slow {
		t := time.NewTimer(pause) // a slow receiver, not a wait: it keeps deliveries in flight
		<-t.C
		if rc.cfg.slowStatus != 0 {
			w.WriteHeader(rc.cfg.slowStatus)
			return
		}
	}
	rc.mu.Lock()
	if prev, ok := rc.srOf[id]; ok && prev != ev.Data.SRID {
		rc.problems = append(rc.problems, fmt.Sprintf("webhook-id %s carried referrals %s and %s", id, prev, ev.Data.SRID))
	}
	rc.srOf[id] = ev.Data.SRID
	if rc.count[id] == 0 {
		rc.first[id] = [2]time.Time{arrived, time.Now()}
	}
	rc.count[id]++
	rc.arrivals[id] = append(rc.arrivals[id], arrived)
	rc.deliveries++
	byType := rc.bySR
	if ev.Type == "referral.cancelled" {
		byType = rc.cancelsOf
	} else if _, ok := rc.createdAck[ev.Data.SRID]; !ok {
		rc.createdAck[ev.Data.SRID] = time.Now()
	}
	set := byType[ev.Data.SRID]
	if set == nil {
		set = map[string]bool{}
		byType[ev.Data.SRID] = set
		select {
		case rc.changed <- struct{}{}:
		default:
		}
	}
	set[id] = true
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// missing returns the referrals of want not received yet.
func (rc *receiver) missing(want []string) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, id := range want {
		if rc.bySR[id] == nil {
			out = append(out, id)
		}
	}
	return out
}

// waitAll waits (bounded by ctx) until every referral of want was received at least once.
func (rc *receiver) waitAll(ctx context.Context, want []string) error {
	for {
		left := rc.missing(want)
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d accepted referrals never delivered, e.g. ServiceRequest %s: %w", len(left), len(want), left[0], ctx.Err())
		case <-rc.changed:
		}
	}
}

// overlapping returns the webhook-ids that were sent again while an earlier request carrying them was still
// being answered.
func (rc *receiver) overlapping() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.overlaps)
}

// stats is the receiver's summary.
type stats struct {
	requests, failed, slowed, deliveries, uniqueIDs, duplicates, maxCopies int
	// A duplicate is expected only for a delivery the killed process could not record: its first copy was
	// still being answered at the kill (inFlightDups), or was answered shortly before it, so that the
	// process died before committing the attempt (answeredGaps: kill time minus answer time).
	inFlightDups int
	answeredGaps []time.Duration
	otherDups    []string // webhook-ids whose first copy arrived after the last kill: no crash explains them
	dupIDs       []string // duplicated webhook-ids with their arrival times
}

// stats summarises the deliveries; kills are the times of the kills, in order.
func (rc *receiver) stats(kills []time.Time) stats {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	s := stats{requests: rc.requests, failed: rc.failed, slowed: rc.slowed, deliveries: rc.deliveries, uniqueIDs: len(rc.count)}
	for id, n := range rc.count {
		s.duplicates += n - 1
		s.maxCopies = max(s.maxCopies, n)
		if n < 2 {
			continue
		}
		s.dupIDs = append(s.dupIDs, fmt.Sprintf("%s (arrived %v)", id, fmtTimes(rc.arrivals[id])))
		f := rc.first[id]
		k := slices.IndexFunc(kills, func(k time.Time) bool { return !k.Before(f[0]) })
		switch {
		case k < 0 && len(kills) > 0 && killedOwnersCopy(kills[len(kills)-1], f[0], rc.arrivals[id]):
			s.inFlightDups++
		case k < 0:
			s.otherDups = append(s.otherDups, id)
		case !f[1].Before(kills[k]):
			s.inFlightDups++
		default:
			s.answeredGaps = append(s.answeredGaps, kills[k].Sub(f[1]))
		}
	}
	slices.Sort(s.answeredGaps)
	slices.Sort(s.dupIDs)
	return s
}

// check asserts the delivery guarantees for the accepted referrals: each received at least once under exactly
// one webhook-id, nothing received that was not accepted, no cancellation before its referral, and no
// signature or payload problem. A revoked referral arrives with its cancellation (each under one webhook-id of
// its own), or not at all: revoked before its referral.created was sent, the message is withdrawn and the
// service told nothing (mapping.Withdrawal). It returns how many were withdrawn so.
func (rc *receiver) check(t *testing.T, accepted, revoked []string) (withdrawn int) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, p := range rc.problems {
		t.Errorf("receiver: %s", p)
	}
	cancelled := map[string]bool{}
	for _, id := range revoked {
		cancelled[id] = true
	}
	want := map[string]bool{}
	for _, id := range accepted {
		if want[id] {
			t.Errorf("two accepted referrals share ServiceRequest id %s", id)
		}
		want[id] = true
		if cancelled[id] && len(rc.bySR[id]) == 0 && len(rc.cancelsOf[id]) == 0 {
			withdrawn++
			continue
		}
		switch ids := rc.bySR[id]; len(ids) {
		case 0:
			t.Errorf("accepted ServiceRequest %s was never delivered", id)
		case 1:
		default:
			t.Errorf("ServiceRequest %s arrived under %d webhook-ids (one outbox message per referral expected): %v", id, len(ids), ids)
		}
		if ids := rc.cancelsOf[id]; cancelled[id] && len(ids) != 1 {
			t.Errorf("revoked ServiceRequest %s was delivered, and its cancellation arrived under %d webhook-ids (want 1): %v", id, len(ids), ids)
		}
	}
	for id := range rc.bySR {
		if !want[id] {
			t.Errorf("receiver got ServiceRequest %s that no GP client was told is accepted", id)
		}
	}
	for id := range rc.cancelsOf {
		if !cancelled[id] {
			t.Errorf("receiver got a cancellation of ServiceRequest %s that no GP client revoked", id)
		}
	}
	if n := len(accepted) + len(revoked) - 2*withdrawn; len(rc.count) != n {
		t.Errorf("unique webhook-ids: %d, want %d (accepted referrals: %d, revoked: %d, withdrawn before sending: %d)",
			len(rc.count), n, len(accepted), len(revoked), withdrawn)
	}
	return withdrawn
}

// crashLease is the delivery lease the crash tests run socialrx with: a delivery cut by a kill is re-claimed
// once it expires.
const crashLease = 8 * time.Second

// killGrace bounds how long after SIGKILL the receiver may still read a request the killed process had already
// written to its socket (the receiver's goroutine is scheduled late on a loaded machine).
const killGrace = time.Second

// killedOwnersCopy reports whether a duplicate is the signature of a delivery cut by the last kill: its first
// copy was read within killGrace after the kill, and a later copy came when the killed owner's lease expired.
func killedOwnersCopy(kill, first time.Time, arrivals []time.Time) bool {
	if first.Sub(kill) > killGrace {
		return false
	}
	return slices.ContainsFunc(arrivals, func(a time.Time) bool { return a.Sub(kill) >= crashLease-killGrace })
}

func fmtTimes(ts []time.Time) string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Format("15:04:05.000"))
	}
	return strings.Join(out, ", ")
}
