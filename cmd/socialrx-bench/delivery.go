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
	inFlight  []int           // the service's in-flight caps to run (its delivery.max_in_flight; Concurrency = max(default, cap))
	saveEvent string          // write one received webhook body here (the river benchmark posts the same bytes)
	timeout   time.Duration   // bound for one run to deliver everything
	log       *slog.Logger    // the dispatcher's and server's logger (discard)
	out       io.Writer       // the report
	dir       string          // temp folder for the databases
	ctx       context.Context // cancels everything
	postgres  string          // when set, the rigs use this PostgreSQL server (a fresh schema each) instead of SQLite
	// allowRejects: a paced run reports referrals the server did not accept (at a rate beyond capacity)
	// instead of failing.
	allowRejects bool
	audit        bool // the rig records the audit trail as serve does (its server's requests, its dispatcher's deliveries)
	// schemaPrefix names the rigs' PostgreSQL schemas ("": socialrx_bench_); each is dropped and created
	// afresh, so concurrent runs need different prefixes.
	schemaPrefix string
	// drainProfile: when set, each drain writes a CPU profile of its measured part (dispatcher start to the
	// last webhook, pre-load excluded) to this path with the drain's name appended.
	drainProfile string
}

// Bench directory: one GP client and one webhook service whose URL is the loopback sink.
const (
	benchGPToken = "bench-gp-token"
	benchSecret  = "whsec_c29jaWFscngtYmVuY2gtd2ViaG9vay1zZWNyZXQtMzJieXQ="
	benchService = "bench-hooks"
)

func benchDirectory(sinkURL string, inFlight int) (*config.Config, error) {
	return config.Parse([]byte(benchDirectoryYAML(sinkURL, inFlight)), "")
}

// benchDirectoryYAML is benchDirectory's text (a `socialrx serve` process reads it from a file). inFlight > 0
// is the service's delivery.max_in_flight (0: none, the dispatcher's PerDestination).
func benchDirectoryYAML(sinkURL string, inFlight int) string {
	own := ""
	if inFlight > 0 {
		own = fmt.Sprintf(", max_in_flight: %d", inFlight)
	}
	return fmt.Sprintf(`clients:
  - {id: bench-gp, role: gp, token_sha256: %q, practices: [A81001]}
services:
  - id: %s
    name: Benchmark receiver
    identifiers: [{system: "https://socialrx.dev/Id/community-service", value: %q}]
    delivery: {url: %q, secret: %q%s}
`, config.HashToken(benchGPToken), benchService, benchService, sinkURL, benchSecret, own)
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

// arrivedBefore counts the referrals whose webhook first arrived before t.
func (s *sink) arrivedBefore(t time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.arrived {
		if a.Before(t) {
			n++
		}
	}
	return n
}

// count is how many distinct webhooks arrived.
func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// rig is the real server and dispatcher in-process on a fresh SQLite file (or PostgreSQL schema), with the
// sink on loopback.
type rig struct {
	store   outbox.Store
	dsn     string // the PostgreSQL schema's URL ("" on SQLite)
	path    string // the SQLite file ("" on PostgreSQL)
	intake  string // POST URL
	client  *http.Client
	sink    *sink
	sinkURL string // the sink's webhook URL (the directory's one service)
	cfg     *config.Config
	// inFlight is the service's delivery.max_in_flight in cfg (0: none): every dispatcher of the rig, and
	// every serve process, takes it from the directory as serve does (outbox.DirectoryInFlight).
	inFlight int
	disp     *outbox.Dispatcher
	claims   *claimTimer // times the dispatcher's claims
	closers  []func()
}

// newRig starts the rig; inFlight is the service's delivery.max_in_flight (0: the dispatcher's PerDestination).
func newRig(o deliveryOptions, name string, target, inFlight int) (*rig, error) {
	r := &rig{sink: newSink(target), claims: &claimTimer{}, inFlight: inFlight}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ss := &http.Server{Handler: r.sink, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = ss.Serve(sl) }()
	r.closers = append(r.closers, func() { _ = ss.Close() })

	r.sinkURL = "http://" + sl.Addr().String() + "/hooks/referrals"
	cfg, err := benchDirectory(r.sinkURL, inFlight)
	if err != nil {
		r.close()
		return nil, err
	}
	r.cfg = cfg
	var cleanup func()
	r.store, r.dsn, cleanup, err = openBenchStore(o, name)
	if o.postgres == "" {
		r.path = filepath.Join(o.dir, name+".db")
	}
	if err != nil {
		r.close()
		return nil, err
	}
	r.closers = append(r.closers, cleanup, func() { _ = r.store.Close() })
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.close()
		return nil, err
	}
	so := server.Options{Config: cfg, Store: r.store, Logger: o.log, BaseURL: "http://" + hl.Addr().String() + "/fhir"}
	var audit *outbox.AuditLog
	if o.audit {
		audit = outbox.NewAuditLog(r.store, outbox.AuditLogOptions{Instance: "bench", Logger: o.log})
		r.closers = append(r.closers, audit.Close)
		so.Auditor = audit
	}
	srv, err := server.New(so)
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
	r.disp = outbox.NewDispatcher(&timedStore{Store: r.store, t: r.claims}, outbox.DirectoryEndpoints(cfg.Directory),
		outbox.DispatcherOptions{Logger: o.log, InFlight: outbox.DirectoryInFlight(cfg.Directory), Audit: audit})
	return r, nil
}

// claimTimer records how long each of a dispatcher's claims (Store.ClaimMessages) took.
type claimTimer struct {
	mu sync.Mutex
	ds []time.Duration
}

func (t *claimTimer) add(d time.Duration) {
	t.mu.Lock()
	t.ds = append(t.ds, d)
	t.mu.Unlock()
}

// reset forgets what was recorded.
func (t *claimTimer) reset() {
	t.mu.Lock()
	t.ds = nil
	t.mu.Unlock()
}

// quantiles returns the claims' count, p50 and p99.
func (t *claimTimer) quantiles() (int, time.Duration, time.Duration) {
	t.mu.Lock()
	ds := slices.Clone(t.ds)
	t.mu.Unlock()
	return len(ds), pct(ds, 0.50), pct(ds, 0.99)
}

// timedStore is the store as the dispatcher sees it: every claim is timed (outbox.DispatcherOptions has no
// claim hook; the dispatcher uses the store only through outbox.Store).
type timedStore struct {
	outbox.Store
	t *claimTimer
}

// ClaimMessages times the store's ClaimMessages.
func (s *timedStore) ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, f outbox.ClaimFilter) ([]outbox.Message, error) {
	t0 := time.Now()
	m, err := s.Store.ClaimMessages(ctx, owner, now, lease, limit, f)
	s.t.add(time.Since(t0))
	return m, err
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
	for _, n := range o.inFlight {
		d, err := throughputRun(o, n)
		if err != nil {
			return err
		}
		if o.saveEvent != "" {
			if err := os.WriteFile(o.saveEvent, d.sample, 0o644); err != nil {
				return err
			}
		}
		label := fmt.Sprintf("  %d in flight, concurrency %d", n, max(outbox.DefaultConcurrency, n))
		fmt.Fprintf(o.out, "%-38s %9d %8.2f %8.0f %6d %7d\n", label, d.delivered, d.elapsed.Seconds(), d.rate, d.dups, len(d.sample))
	}
	fmt.Fprintf(o.out, "\n%-38s %8s %8s %9s %9s %9s %9s %6s\n", "latency (paced intake)", "target/s", "got/s", "c→r p50", "c→r p99", "c→r max", "post p50", "early")
	for _, n := range o.inFlight {
		for _, rate := range o.rates {
			p, err := latencyRun(o, n, rate)
			if err != nil {
				return err
			}
			label := fmt.Sprintf("  %d in flight", n)
			fmt.Fprintf(o.out, "%-38s %8d %8.0f %9s %9s %9s %9s %6d\n", label, rate, p.gotRate,
				p.p50, p.p99, p.max, p.postP50, p.early)
		}
	}
	fmt.Fprintln(o.out, "\nc→r: from the moment the GP client's POST returned 201 (commit) to the receiver's arrival of the webhook;")
	fmt.Fprintln(o.out, "early: webhooks that arrived before the GP client had read its 201 (counted as 0 in the percentiles).")
	return nil
}

// drainResult is one backlog drain's figures.
type drainResult struct {
	messages   int           // the backlog
	delivered  int           // unique webhooks the rate counts (the whole backlog, or the window's)
	elapsed    time.Duration // from the dispatcher's start (serve processes: from when all serve) to the last counted arrival (or the window's end)
	rate       float64       // delivered / elapsed
	dups       int           // webhook-ids the sink saw more than once
	sample     []byte        // one received body
	claims     int           // claims made (timedStore)
	claimP50   time.Duration // claim latency
	claimP99   time.Duration
	maxRSSKiB  int64 // the process's peak RSS during the drain (VmHWM after resetting it; 0: unknown)
	instances  int   // dispatchers (and stores) that drained it
	preloadDur time.Duration
	serveCPU   time.Duration // `socialrx serve` processes: the CPU time they used together (user and system)
	startup    time.Duration // `socialrx serve` processes: from their start until all of them served (serveDrain)
	earlyCount int           // `socialrx serve` processes: webhooks that arrived before all of them served
	appCPU     time.Duration // this process's CPU time during the drain: dispatchers, SQLite, the receiver
	dbCPU      time.Duration // the local PostgreSQL server's CPU time during the drain (0: not PostgreSQL, or not local)
	walBytes   int64         // the WAL the PostgreSQL server wrote during the drain (0: not PostgreSQL)
}

// throughputRun pre-loads o.messages referrals through HTTP and measures how fast one dispatcher delivers them.
func throughputRun(o deliveryOptions, inFlight int) (drainResult, error) {
	return drainRun(o, drainSpec{name: fmt.Sprintf("throughput-%d", inFlight), messages: o.messages, inFlight: inFlight, timeout: o.timeout})
}

// pacedResult is one paced intake run's figures.
type pacedResult struct {
	rate     int     // target referrals/s
	target   int     // rate × duration
	accepted int     // POSTs answered 201
	gotRate  float64 // accepted / posting time
	// commit→received: from the GP client's 201 to the receiver's first arrival of the referral's webhook.
	p50, p99, max time.Duration
	postP50       time.Duration // the POST's own latency
	early         int           // arrivals before the client read its 201 (counted as 0)
	lag           time.Duration // last arrival − last commit
	dups          int
}

func latencyRun(o deliveryOptions, inFlight, rate int) (pacedResult, error) {
	total := max(int(o.duration.Seconds()*float64(rate)), 1)
	r, err := newRig(o, fmt.Sprintf("latency-%d-%d", inFlight, rate), total, inFlight)
	if err != nil {
		return pacedResult{}, err
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
	if f := failed.Load(); f > 0 {
		// Only what was accepted can arrive.
		r.sink.mu.Lock()
		r.sink.target = total - int(f)
		if len(r.sink.seen) >= r.sink.target {
			close(r.sink.full)
		}
		r.sink.mu.Unlock()
	}
	err = r.waitFull(o.ctx, o.timeout)
	if serr := stop(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return pacedResult{}, fmt.Errorf("latency run at %d/s: %w", rate, err)
	}
	if f := failed.Load(); f > 0 && !o.allowRejects {
		return pacedResult{}, fmt.Errorf("latency run at %d/s: %d referrals not accepted", rate, f)
	}
	r.sink.mu.Lock()
	lat := make([]time.Duration, 0, len(committed))
	early := 0
	var missing error
	var lastCommit, lastArrival time.Time
	for id, c := range committed {
		a, ok := r.sink.arrived[id]
		if !ok {
			missing = errors.New("a committed referral never arrived")
			continue
		}
		lastCommit, lastArrival = later(lastCommit, c), later(lastArrival, a)
		d := a.Sub(c)
		if d < 0 {
			early++
			d = 0
		}
		lat = append(lat, d)
	}
	dups := r.sink.dups
	r.sink.mu.Unlock()
	if missing != nil {
		return pacedResult{}, missing
	}
	return pacedResult{rate: rate, target: total, accepted: len(committed), gotRate: float64(len(committed)) / posted.Seconds(),
		p50: pct(lat, 0.50), p99: pct(lat, 0.99), max: pct(lat, 1), postP50: pct(postLat, 0.50), early: early,
		lag: lastArrival.Sub(lastCommit), dups: dups}, nil
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
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

// openBenchStore opens a fresh store for one rig: an SQLite file, or a new schema on o.postgres (dsn: its URL).
// cleanup removes the file or drops the schema (after the store is closed).
func openBenchStore(o deliveryOptions, name string) (st outbox.Store, dsn string, cleanup func(), err error) {
	if o.postgres == "" {
		path := filepath.Join(o.dir, name+".db")
		cleanup = func() {
			for _, sfx := range []string{"", "-wal", "-shm"} {
				_ = os.Remove(path + sfx)
			}
		}
		cleanup()
		st, err := sqlite.Open(o.ctx, path, sqlite.Options{Logger: o.log})
		return st, "", cleanup, err
	}
	schema := benchSchema(o.schemaPrefix, name)
	dsn, err = freshSchema(o.ctx, o.postgres, schema)
	if err != nil {
		return nil, "", nil, err
	}
	cleanup = func() { _ = dropSchema(context.WithoutCancel(o.ctx), o.postgres, schema) }
	st, err = postgres.Open(o.ctx, dsn, postgres.Options{Logger: o.log, Warm: true}) // as serve opens it
	if err != nil {
		cleanup()
		return nil, "", nil, err
	}
	return st, dsn, cleanup, nil
}

// benchSchema is the PostgreSQL schema of the rig called name (prefix "": socialrx_bench_).
func benchSchema(prefix, name string) string {
	if prefix == "" {
		prefix = "socialrx_bench_"
	}
	return prefix + strings.NewReplacer("-", "_", ".", "_").Replace(name)
}

// freshSchema drops and creates schema on server and returns server's URL with that search_path.
func freshSchema(ctx context.Context, server, schema string) (string, error) {
	admin, err := sql.Open("pgx", server)
	if err != nil {
		return "", err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
		return "", fmt.Errorf("reset bench schema: %w", err)
	}
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		return "", fmt.Errorf("create bench schema: %w", err)
	}
	u, err := url.Parse(server)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// dropSchema drops schema on server.
func dropSchema(ctx context.Context, server, schema string) error {
	admin, err := sql.Open("pgx", server)
	if err != nil {
		return err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
		return fmt.Errorf("drop bench schema: %w", err)
	}
	return nil
}
