package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver for the bench schema
	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/server"
)

// deliveryOptions are the delivery benchmark's flags.
type deliveryOptions struct {
	messages  int             // throughput: referrals pre-loaded before the dispatcher starts
	rates     []int           // latency: paced intake rates (referrals/s)
	duration  time.Duration   // latency: how long each paced run posts
	perDest   []int           // dispatcher PerDestination caps to run (Concurrency = max(default, cap))
	saveEvent string          // write one received webhook body here (the river benchmark posts the same bytes)
	timeout   time.Duration   // bound for one run to deliver everything
	log       *slog.Logger    // the dispatcher's and server's logger (discard)
	out       io.Writer       // the report
	dir       string          // temp folder for the databases
	ctx       context.Context // cancels everything
	postgres  string          // when set, the rigs use this PostgreSQL server (a fresh schema each) instead of SQLite
}

// Bench directory: one GP client and one webhook service whose URL is the loopback sink.
const (
	benchGPToken = "bench-gp-token"
	benchSecret  = "whsec_c29jaWFscngtYmVuY2gtd2ViaG9vay1zZWNyZXQtMzJieXQ="
	benchService = "bench-hooks"
)

func benchDirectory(sinkURL string) (*config.Config, error) {
	y := fmt.Sprintf(`clients:
  - {id: bench-gp, role: gp, token_sha256: %q, practices: [A81001]}
services:
  - id: %s
    name: Benchmark receiver
    identifiers: [{system: "https://socialrx.dev/Id/community-service", value: %q}]
    delivery: {url: %q, secret: %q}
`, config.HashToken(benchGPToken), benchService, benchService, sinkURL, benchSecret)
	return config.Parse([]byte(y), "")
}

// deliveryReferral is the intake benchmark's ~3 KB referral, routed to the webhook service.
func deliveryReferral(n int64) []byte {
	return bytes.Replace(referral(n), []byte(`"value": "museum-volunteers"`), []byte(`"value": "`+benchService+`"`), 1)
}

// sink is the community service's receiver: it does what a real one does (read the body, verify the
// Standard Webhooks signature, decode the event, dedupe on webhook-id) and records when each referral
// (by ServiceRequest id) first arrived.
type sink struct {
	mu      sync.Mutex
	seen    map[string]bool      // webhook-ids
	arrived map[string]time.Time // service_request_id → first arrival
	target  int
	full    chan struct{} // closed when target unique webhook-ids arrived
	dups    int
	sample  []byte
	bad     atomic.Int64 // signature or decoding failures
}

func newSink(target int) *sink {
	return &sink{seen: map[string]bool{}, arrived: map[string]time.Time{}, target: target, full: make(chan struct{})}
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	now := time.Now()
	if err := outbox.Verify(benchSecret, r.Header, body, now, 5*time.Minute); err != nil {
		s.bad.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev struct {
		Type string `json:"type"`
		Data struct {
			SRID string `json:"service_request_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Data.SRID == "" {
		s.bad.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id := r.Header.Get(outbox.HeaderWebhookID)
	s.mu.Lock()
	if s.seen[id] {
		s.dups++
	} else {
		s.seen[id] = true
		if _, ok := s.arrived[ev.Data.SRID]; !ok {
			s.arrived[ev.Data.SRID] = now
		}
		if s.sample == nil {
			s.sample = body
		}
		if len(s.seen) == s.target {
			close(s.full)
		}
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// rig is the real server and dispatcher in-process on a fresh SQLite file (or PostgreSQL schema), with the
// sink on loopback.
type rig struct {
	store   outbox.Store
	intake  string // POST URL
	client  *http.Client
	sink    *sink
	disp    *outbox.Dispatcher
	closers []func()
}

func newRig(o deliveryOptions, name string, target, perDest int) (*rig, error) {
	r := &rig{sink: newSink(target)}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ss := &http.Server{Handler: r.sink, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = ss.Serve(sl) }()
	r.closers = append(r.closers, func() { _ = ss.Close() })

	cfg, err := benchDirectory("http://" + sl.Addr().String() + "/hooks/referrals")
	if err != nil {
		r.close()
		return nil, err
	}
	r.store, err = openBenchStore(o, name)
	if err != nil {
		r.close()
		return nil, err
	}
	r.closers = append(r.closers, func() { _ = r.store.Close() })
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.close()
		return nil, err
	}
	srv, err := server.New(server.Options{Config: cfg, Store: r.store, Logger: o.log, BaseURL: "http://" + hl.Addr().String() + "/fhir"})
	if err != nil {
		_ = hl.Close()
		r.close()
		return nil, err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(hl) }()
	r.closers = append(r.closers, func() { _ = hs.Close() })
	r.intake = "http://" + hl.Addr().String() + "/fhir/ServiceRequest"
	r.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}, Timeout: 30 * time.Second}
	r.disp = outbox.NewDispatcher(r.store, outbox.DirectoryEndpoints(cfg.Directory), outbox.DispatcherOptions{
		Logger: o.log, Concurrency: max(outbox.DefaultConcurrency, perDest), PerDestination: perDest,
	})
	return r, nil
}

func (r *rig) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

// runDispatcher starts the dispatcher; the returned function stops it and waits.
func (r *rig) runDispatcher(ctx context.Context) func() error {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.disp.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

// post sends one referral and returns its ServiceRequest id when it got 201.
func (r *rig) post(ctx context.Context, n int64) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.intake, bytes.NewReader(deliveryReferral(n)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+benchGPToken)
	req.Header.Set("Prefer", "return=minimal")
	resp, err := r.client.Do(req)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST ServiceRequest: %d", resp.StatusCode)
	}
	_, rest, ok := strings.Cut(resp.Header.Get("Location"), "ServiceRequest/")
	id, _, _ := strings.Cut(rest, "/")
	if !ok || id == "" {
		return "", fmt.Errorf("201 without a ServiceRequest Location: %q", resp.Header.Get("Location"))
	}
	return id, nil
}

// waitFull waits until the sink has its target or the timeout passes.
func (r *rig) waitFull(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.sink.full:
		return nil
	case <-t.C:
		return fmt.Errorf("only %d of %d webhooks arrived within %s", r.sink.count(), r.sink.target, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runDelivery prints the delivery figures: throughput of a pre-loaded backlog, then commit→received latency at
// paced intake rates, for each per-destination cap.
func runDelivery(o deliveryOptions) error {
	fmt.Fprintf(o.out, "\ndelivery: one webhook service on a loopback receiver that verifies each signature and decodes each event;\n")
	backend := "SQLite (WAL, synchronous=FULL)"
	if o.postgres != "" {
		backend = "PostgreSQL (a fresh schema per run)"
	}
	fmt.Fprintf(o.out, "socialrx server + dispatcher in-process, %s\n", backend)
	fmt.Fprintf(o.out, "\n%-38s %9s %8s %8s %6s %7s\n", "throughput (pre-loaded backlog)", "messages", "seconds", "msg/s", "dups", "body B")
	for _, pd := range o.perDest {
		if err := throughputRun(o, pd); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.out, "\n%-38s %8s %8s %9s %9s %9s %9s %6s\n", "latency (paced intake)", "target/s", "got/s", "c→r p50", "c→r p99", "c→r max", "post p50", "early")
	for _, pd := range o.perDest {
		for _, rate := range o.rates {
			if err := latencyRun(o, pd, rate); err != nil {
				return err
			}
		}
	}
	fmt.Fprintln(o.out, "\nc→r: from the moment the GP client's POST returned 201 (commit) to the receiver's arrival of the webhook;")
	fmt.Fprintln(o.out, "early: webhooks that arrived before the GP client had read its 201 (counted as 0 in the percentiles).")
	return nil
}

func throughputRun(o deliveryOptions, perDest int) error {
	r, err := newRig(o, fmt.Sprintf("throughput-%d", perDest), o.messages, perDest)
	if err != nil {
		return err
	}
	defer r.close()
	// Pre-load: the referrals (and their outbox messages) are committed before the dispatcher starts.
	var seq atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 16 {
		wg.Go(func() {
			for {
				n := seq.Add(1)
				if n > int64(o.messages) {
					return
				}
				if _, err := r.post(o.ctx, n); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("pre-load: %d referrals not accepted", f)
	}
	start := time.Now()
	stop := r.runDispatcher(o.ctx)
	err = r.waitFull(o.ctx, o.timeout)
	elapsed := time.Since(start)
	if serr := stop(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("throughput run: %w", err)
	}
	r.sink.mu.Lock()
	sample, dups := r.sink.sample, r.sink.dups
	r.sink.mu.Unlock()
	if o.saveEvent != "" {
		if err := os.WriteFile(o.saveEvent, sample, 0o644); err != nil {
			return err
		}
	}
	label := fmt.Sprintf("  per-destination %d, concurrency %d", perDest, max(outbox.DefaultConcurrency, perDest))
	fmt.Fprintf(o.out, "%-38s %9d %8.2f %8.0f %6d %7d\n", label, o.messages, elapsed.Seconds(), float64(o.messages)/elapsed.Seconds(), dups, len(sample))
	if b := r.sink.bad.Load(); b > 0 {
		return fmt.Errorf("throughput run: %d webhooks failed verification", b)
	}
	return nil
}

func latencyRun(o deliveryOptions, perDest, rate int) error {
	total := max(int(o.duration.Seconds()*float64(rate)), 1)
	r, err := newRig(o, fmt.Sprintf("latency-%d-%d", perDest, rate), total, perDest)
	if err != nil {
		return err
	}
	defer r.close()
	stop := r.runDispatcher(o.ctx)

	var mu sync.Mutex
	committed := make(map[string]time.Time, total)
	var postLat []time.Duration
	var failed atomic.Int64
	jobs := make(chan int64, total)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for n := range jobs {
				t0 := time.Now()
				id, err := r.post(o.ctx, n)
				t1 := time.Now()
				if err != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				committed[id] = t1
				postLat = append(postLat, t1.Sub(t0))
				mu.Unlock()
			}
		})
	}
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range total {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		jobs <- int64(i + 1)
	}
	close(jobs)
	wg.Wait()
	posted := time.Since(start)
	err = r.waitFull(o.ctx, o.timeout)
	if serr := stop(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("latency run at %d/s: %w", rate, err)
	}
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("latency run at %d/s: %d referrals not accepted", rate, f)
	}
	r.sink.mu.Lock()
	lat := make([]time.Duration, 0, len(committed))
	early := 0
	var missing error
	for id, c := range committed {
		a, ok := r.sink.arrived[id]
		if !ok {
			missing = errors.New("a committed referral never arrived")
			continue
		}
		d := a.Sub(c)
		if d < 0 {
			early++
			d = 0
		}
		lat = append(lat, d)
	}
	r.sink.mu.Unlock()
	if missing != nil {
		return missing
	}
	label := fmt.Sprintf("  per-destination %d", perDest)
	fmt.Fprintf(o.out, "%-38s %8d %8.0f %9s %9s %9s %9s %6d\n", label, rate, float64(total)/posted.Seconds(),
		pct(lat, 0.50), pct(lat, 0.99), pct(lat, 1), pct(postLat, 0.50), early)
	return nil
}

// pct returns the p-quantile of ds (sorted in place), rounded for printing.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	d := ds[min(len(ds)-1, int(p*float64(len(ds))))]
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(10 * time.Microsecond)
	}
}

// openBenchStore opens a fresh store for one rig: an SQLite file, or a new schema on o.postgres.
func openBenchStore(o deliveryOptions, name string) (outbox.Store, error) {
	if o.postgres == "" {
		return sqlite.Open(o.ctx, filepath.Join(o.dir, name+".db"), sqlite.Options{Logger: o.log})
	}
	schema := "socialrx_bench_" + strings.NewReplacer("-", "_", ".", "_").Replace(name)
	admin, err := sql.Open("pgx", o.postgres)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(o.ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
		return nil, fmt.Errorf("reset bench schema: %w", err)
	}
	if _, err := admin.ExecContext(o.ctx, `CREATE SCHEMA `+schema); err != nil {
		return nil, fmt.Errorf("create bench schema: %w", err)
	}
	u, err := url.Parse(o.postgres)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return postgres.Open(o.ctx, u.String(), postgres.Options{Logger: o.log})
}
