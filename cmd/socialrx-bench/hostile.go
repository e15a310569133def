package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	"time"
)

// The hostile-load benchmark (issue 9, `make bench-hostile`): one real socialrx process (the binary, as it
// runs in production, with its default limits and the demo directory on a temporary SQLite file) under 64
// connections posting maximum-size referrals with one GP token and a flood of requests with bad tokens,
// while a legitimate GP client posts and reads referrals at a steady pace. It reports the server's peak RSS
// (the kernel's VmHWM) and the legitimate client's latency and errors during the attack. Run it against
// another build with -hostile-binary (the "before" figures: a binary built from an older commit).

// hostileOptions are the flags of the hostile run.
type hostileOptions struct {
	binary    string        // the socialrx binary; empty: built from this module
	duration  time.Duration // how long the attack lasts
	bodies    int           // connections posting maximum-size bodies
	badTokens int           // connections flooding with bad tokens
	legitRate int           // the legitimate client's requests per second
	bodySize  int           // the size of the attack's bodies (bytes)
	out       io.Writer
}

// hostileResult is what one run measured.
type hostileResult struct {
	baseRSS, peakRSS    int64 // kB: before the attack, and the peak over the run (VmHWM)
	legit, legitPost    []time.Duration
	legitErrors         int
	legitStatuses       map[int]int
	attackStatus        map[int]int
	badStatus           map[int]int
	attackSent, badSent int64
}

func runHostile(ctx context.Context, o hostileOptions) error {
	dir, err := os.MkdirTemp("", "socialrx-bench-hostile-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := o.binary
	if bin == "" {
		bin = filepath.Join(dir, "socialrx")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/socialrx")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build socialrx: %w", err)
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin, "serve")
	cmd.Env = append(os.Environ(), "SOCIALRX_ADDR="+addr, "SOCIALRX_DATABASE_URL=sqlite:"+filepath.Join(dir, "socialrx.db"),
		"SOCIALRX_CONFIG=", "SOCIALRX_LOG_FORMAT=json")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	base := "http://" + addr
	if err := waitHealthy(ctx, base); err != nil {
		return err
	}
	res, err := attack(ctx, o, base, cmd.Process.Pid)
	if err != nil {
		return err
	}
	report(o.out, o, bin, res)
	return nil
}

// freeAddr is a free loopback port.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitHealthy(ctx context.Context, base string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("the server did not become healthy within 60s")
}

// rss reads a process's VmRSS and VmHWM (kB) from /proc.
func rss(pid int) (cur, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for _, k := range []struct {
			name string
			dst  *int64
		}{{"VmRSS:", &cur}, {"VmHWM:", &peak}} {
			if v, ok := strings.CutPrefix(line, k.name); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				*k.dst = n
			}
		}
	}
	return cur, peak, sc.Err()
}

// paddedReferral is a valid referral (from the single practice of the client that posts it) padded with notes
// to about size bytes: an attack body that is processed all the way, not refused on its first byte.
func paddedReferral(ident string, size int) []byte {
	var top map[string]any
	_ = json.Unmarshal(referral(0), &top)
	top["identifier"] = []any{map[string]any{"system": "https://gp.example/Id/referral", "value": ident}}
	b, _ := json.Marshal(top)
	text := strings.Repeat("Prefers mornings; walks with a stick; lives alone. ", 80) // about 4 KB
	var notes []any
	for range max(size-len(b), 0) / (len(text) + 12) {
		notes = append(notes, map[string]any{"text": text})
	}
	if len(notes) > 0 {
		top["note"] = notes
	}
	out, _ := json.Marshal(top)
	return out
}

// attackRig is one hostile run's client side.
type attackRig struct {
	ctx    context.Context // ends with the attack
	base   string
	client *http.Client
	mu     sync.Mutex
}

// count adds one answer to a tally.
func (g *attackRig) count(m map[int]int, code int) {
	g.mu.Lock()
	m[code]++
	g.mu.Unlock()
}

// do sends one request and returns its status.
func (g *attackRig) do(method, path, token string, body []byte) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(g.ctx, method, g.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Prefer", "return=minimal")
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// flood runs n connections, each sending request(i, k) (its k-th) until the attack ends, tallying the answers.
func (g *attackRig) flood(wg *sync.WaitGroup, n int, tally map[int]int, sent *int64, request func(i, k int) (string, string, string, []byte)) {
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; g.ctx.Err() == nil; k++ {
				method, path, token, body := request(i, k)
				if code, err := g.do(method, path, token, body); err == nil {
					g.count(tally, code)
				}
				atomic.AddInt64(sent, 1)
			}
		}()
	}
}

// legitimate is the legitimate GP: a small referral, then a read of its referrals, at a steady pace.
func (g *attackRig) legitimate(rate int, res *hostileResult) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for n := 1; g.ctx.Err() == nil; n++ {
		select {
		case <-g.ctx.Done():
			return
		case <-tick.C:
		}
		method, path, body := http.MethodGet, "/fhir/Task?_count=5", []byte(nil)
		if n%2 == 1 {
			method, path, body = http.MethodPost, "/fhir/ServiceRequest", referral(1_000_000+int64(n))
		}
		t0 := time.Now()
		code, err := g.do(method, path, "demo-gp-token", body)
		if g.ctx.Err() != nil {
			return
		}
		res.legit = append(res.legit, time.Since(t0))
		if method == http.MethodPost {
			res.legitPost = append(res.legitPost, time.Since(t0))
		}
		g.count(res.legitStatuses, code)
		if err != nil || (code != http.StatusCreated && code != http.StatusOK) {
			res.legitErrors++
		}
	}
}

func attack(ctx context.Context, o hostileOptions, base string, pid int) (hostileResult, error) {
	res := hostileResult{attackStatus: map[int]int{}, badStatus: map[int]int{}, legitStatuses: map[int]int{}}
	var err error
	if res.baseRSS, _, err = rss(pid); err != nil {
		return res, fmt.Errorf("read the server's RSS: %w", err)
	}
	actx, stop := context.WithTimeout(ctx, o.duration)
	defer stop()
	g := &attackRig{ctx: actx, base: base, client: &http.Client{Timeout: 60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: o.bodies + o.badTokens + 4}}}
	// Each connection keeps its own copy of the body and writes a new identifier into it in place, so that the
	// attacker spends its CPU sending, not copying megabytes.
	big := paddedReferral("ATTACK-0000000000", o.bodySize)
	at := bytes.Index(big, []byte("ATTACK-")) + len("ATTACK-")
	bodies := make([][]byte, o.bodies)
	for i := range bodies {
		bodies[i] = bytes.Clone(big)
	}
	var wg sync.WaitGroup
	var seq atomic.Int64
	g.flood(&wg, o.bodies, res.attackStatus, &res.attackSent, func(i, _ int) (string, string, string, []byte) {
		copy(bodies[i][at:at+10], fmt.Sprintf("%010d", seq.Add(1)))
		return http.MethodPost, "/fhir/ServiceRequest", "demo-gp2-token", bodies[i]
	})
	g.flood(&wg, o.badTokens, res.badStatus, &res.badSent, func(i, k int) (string, string, string, []byte) {
		return http.MethodGet, "/fhir/Task", fmt.Sprintf("guess-%d-%d", i, k), nil
	})
	g.legitimate(o.legitRate, &res)
	wg.Wait()
	_, res.peakRSS, err = rss(pid) // VmHWM: the kernel's own record of the peak
	return res, err
}

func report(out io.Writer, o hostileOptions, bin string, r hostileResult) {
	slices.Sort(r.legit)
	slices.Sort(r.legitPost)
	quantile := func(ds []time.Duration, p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(10 * time.Microsecond)
	}
	q := func(p float64) time.Duration { return quantile(r.legit, p) }
	fmt.Fprintf(out, "hostile load: %s for %s: %d connections posting %d-byte referrals (one GP token), %d connections with bad tokens\n",
		bin, o.duration, o.bodies, o.bodySize, o.badTokens)
	fmt.Fprintf(out, "server RSS: %.1f MB before, peak %.1f MB (VmHWM)\n", float64(r.baseRSS)/1024, float64(r.peakRSS)/1024)
	fmt.Fprintf(out, "legitimate GP (%d req/s, POST then GET): %d requests, %d errors, p50 %s, p99 %s, max %s, statuses %v\n",
		o.legitRate, len(r.legit), r.legitErrors, q(0.50), q(0.99), q(1), r.legitStatuses)
	fmt.Fprintf(out, "  of which its referral POSTs: p50 %s, p99 %s; its reads: the rest\n", quantile(r.legitPost, 0.5), quantile(r.legitPost, 0.99))
	fmt.Fprintf(out, "attack answers: maximum-size bodies %v (%d sent); bad tokens %v (%d sent)\n",
		r.attackStatus, r.attackSent, r.badStatus, r.badSent)
}
