// Command river-bench runs socialrx's delivery benchmark job on riverqueue/river, for comparison (issue 3: at
// least river's throughput and at most its latency for the same webhook job on the same machine).
//
// The job is the one socialrx's outbox dispatcher does: POST a JSON event (by default the real referral.created
// body that `socialrx-bench -save-event` captured, testdata/event.json) to a loopback receiver with Standard
// Webhooks headers (webhook-id = the job id, webhook-timestamp, webhook-signature = v1,base64 HMAC-SHA256 of
// id.timestamp.body), and treat 2xx as done and anything else as an error that river retries. The receiver is
// the same as socialrx-bench's: it reads the body, verifies the signature, decodes the event and dedupes on
// webhook-id. The HTTP transport keeps as many idle connections per host as socialrx's default client
// (GOMAXPROCS+1).
//
// It needs PostgreSQL (default postgres://postgres@127.0.0.1:5432, trust auth): it creates the scratch
// database river_bench when missing and runs river's migrations with rivermigrate. Each run starts from an
// empty river_job table. Figures:
//   - throughput: M jobs inserted (InsertMany) before the client starts, then messages/s until all arrived;
//   - latency: jobs inserted one by one (Insert, each its own commit) at a paced rate; from the moment Insert
//     returned (commit) to the receiver's arrival, p50/p99.
//
// -json prints one JSON object per measurement (a line each; see measurement) instead of the tables, for
// socialrx-bench -table; -mode runs only the throughput or only the latency runs; -window measures a large
// backlog's drain rate over its first N deliveries (or -window-time) instead of waiting for all of it.
//
// This is a separate Go module (bench/river/go.mod) so that socialrx itself never depends on river. Run it
// with `make bench-river`.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// benchSecret is socialrx-bench's signing secret.
const benchSecret = "whsec_c29jaWFscngtYmVuY2gtd2ViaG9vay1zZWNyZXQtMzJieXQ="

func main() {
	server := flag.String("server", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server (maintenance database) where the scratch database is created")
	dbName := flag.String("database", "river_bench", "scratch database (created when missing; its river_job table is emptied before each run)")
	event := flag.String("event", "testdata/event.json", "the webhook body every job posts")
	messages := flag.Int("messages", 2000, "throughput: jobs inserted before the client starts")
	rates := flag.String("rates", "50,200", "latency: paced insert rates (jobs/s)")
	dur := flag.Duration("duration", 5*time.Second, "latency: how long each paced run inserts")
	workers := flag.String("workers", "4,16", "river MaxWorkers values to run (socialrx-bench's per-destination caps)")
	cooldowns := flag.String("fetch-cooldowns", "100ms,1ms", "river FetchCooldown values to run (100ms is river's default)")
	asJSON := flag.Bool("json", false, "print one JSON object per measurement (one line each) instead of the tables")
	mode := flag.String("mode", "all", "which runs: all, throughput or latency")
	window := flag.Int("window", 0, "throughput: measure the rate over the first N deliveries (0: the whole backlog)")
	windowTime := flag.Duration("window-time", 0, "throughput: stop measuring after this long (0: no limit; the rate counts what arrived)")
	flag.Parse()
	o := options{serverURL: *server, dbName: *dbName, eventPath: *event, messages: *messages, rateList: *rates,
		dur: *dur, workerList: *workers, cooldownList: *cooldowns, json: *asJSON, mode: *mode, window: *window,
		windowTime: *windowTime}
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "river-bench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	serverURL, dbName, eventPath string
	messages                     int
	rateList                     string
	dur                          time.Duration
	workerList, cooldownList     string
	json                         bool          // one JSON object per measurement instead of the tables
	mode                         string        // all, throughput or latency
	window                       int           // throughput: deliveries the rate is measured over (0: all)
	windowTime                   time.Duration // throughput: the most the measurement may last (0: no limit)
}

// measurement is one run's figures as -json prints them (durations in microseconds).
type measurement struct {
	Kind          string  `json:"kind"` // "throughput" or "latency"
	MaxWorkers    int     `json:"max_workers"`
	FetchCooldown string  `json:"fetch_cooldown"`
	Jobs          int     `json:"jobs"`               // throughput: the backlog; latency: the paced target count
	Delivered     int     `json:"delivered"`          // throughput: deliveries the rate counts
	Seconds       float64 `json:"seconds"`            // throughput: the measurement's length
	PerSecond     float64 `json:"per_second"`         // throughput: jobs/s; latency: accepted inserts/s
	Dups          int     `json:"dups"`               // webhooks that arrived more than once
	Rate          int     `json:"rate,omitempty"`     // latency: the target rate (jobs/s)
	Accepted      int     `json:"accepted,omitempty"` // latency: inserts that committed
	P50US         int64   `json:"p50_us,omitempty"`   // latency: commit→received
	P99US         int64   `json:"p99_us,omitempty"`   // latency: commit→received
	MaxUS         int64   `json:"max_us,omitempty"`   // latency: commit→received
	LagUS         int64   `json:"lag_us,omitempty"`   // latency: last arrival − last commit
	InsertP50US   int64   `json:"insert_p50_us,omitempty"`
	Early         int     `json:"early,omitempty"`      // latency: arrivals before Insert returned
	AppCPUUS      int64   `json:"app_cpu_us,omitempty"` // throughput: this process's CPU time (River, the receiver)
	DBCPUUS       int64   `json:"db_cpu_us,omitempty"`  // throughput: the local PostgreSQL server's CPU time
	WALBytes      int64   `json:"wal_bytes,omitempty"`  // throughput: the WAL the PostgreSQL server wrote
}

// emit prints m as one JSON line.
func emit(m measurement) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(b))
	return err
}

func run(ctx context.Context, o options) error {
	serverURL, dbName, eventPath, messages, rateList, dur, workerList, cooldownList := o.serverURL, o.dbName,
		o.eventPath, o.messages, o.rateList, o.dur, o.workerList, o.cooldownList
	switch o.mode {
	case "all", "throughput", "latency":
	default:
		return fmt.Errorf("-mode: %q is not all, throughput or latency", o.mode)
	}
	body, err := os.ReadFile(eventPath)
	if err != nil {
		return fmt.Errorf("event body: %w", err)
	}
	rates, err := intList("-rates", rateList)
	if err != nil {
		return err
	}
	workers, err := intList("-workers", workerList)
	if err != nil {
		return err
	}
	var cooldowns []time.Duration
	for _, f := range strings.Split(cooldownList, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d < time.Millisecond {
			return fmt.Errorf("-fetch-cooldowns: %q is not a duration of at least 1ms", f)
		}
		cooldowns = append(cooldowns, d)
	}
	dbURL, pgVersion, syncCommit, err := prepareDatabase(ctx, serverURL, dbName)
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}

	if !o.json {
		fmt.Printf("command: %s\n", strings.Join(os.Args, " "))
		fmt.Printf("machine: %s/%s, %d CPUs, %s; river %s; PostgreSQL %s (synchronous_commit=%s), database %s\n",
			runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), riverVersion, pgVersion, syncCommit, dbName)
		fmt.Printf("job: POST a %d-byte JSON event with Standard Webhooks headers (HMAC-SHA256) to a loopback receiver that verifies and decodes it\n", len(body))
	}

	if o.mode != "latency" {
		if !o.json {
			fmt.Printf("\n%-40s %9s %8s %8s %6s\n", "throughput (pre-inserted backlog)", "jobs", "seconds", "jobs/s", "dups")
		}
		for _, cd := range cooldowns {
			for _, w := range workers {
				m, err := throughputRun(ctx, pool, body, messages, w, cd, o.window, o.windowTime)
				if err != nil {
					return err
				}
				if o.json {
					if err := emit(m); err != nil {
						return err
					}
					continue
				}
				fmt.Printf("%-40s %9d %8.2f %8.0f %6d\n", label(w, cd), m.Delivered, m.Seconds, m.PerSecond, m.Dups)
			}
		}
	}
	if o.mode != "throughput" {
		if !o.json {
			fmt.Printf("\n%-40s %8s %8s %9s %9s %9s %9s %6s\n", "latency (paced inserts)", "target/s", "got/s", "c→r p50", "c→r p99", "c→r max", "ins p50", "early")
		}
		for _, cd := range cooldowns {
			for _, w := range workers {
				for _, rate := range rates {
					m, err := latencyRun(ctx, pool, body, w, cd, rate, dur)
					if err != nil {
						return err
					}
					if o.json {
						if err := emit(m); err != nil {
							return err
						}
						continue
					}
					us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
					fmt.Printf("%-40s %8d %8.0f %9s %9s %9s %9s %6d\n", label(w, cd), rate, m.PerSecond,
						us(m.P50US), us(m.P99US), us(m.MaxUS), us(m.InsertP50US), m.Early)
				}
			}
		}
	}
	if !o.json && o.mode != "throughput" {
		fmt.Println("\nc→r: from the moment Insert returned (commit) to the receiver's arrival of the webhook;")
		fmt.Println("early: webhooks that arrived before Insert returned (counted as 0 in the percentiles).")
	}
	return nil
}

// riverVersion is the pinned river version (bench/river/go.mod).
const riverVersion = "v0.51.1"

// prepareDatabase creates dbName on the server when missing and returns its URL and the server's facts.
func prepareDatabase(ctx context.Context, serverURL, dbName string) (string, string, string, error) {
	if !validIdent(dbName) {
		return "", "", "", fmt.Errorf("-database: %q must be letters, digits and _", dbName)
	}
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return "", "", "", fmt.Errorf("connect to PostgreSQL (%s): %w", serverURL, err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, dbName).Scan(&exists); err != nil {
		return "", "", "", err
	}
	if !exists {
		if _, err := conn.Exec(ctx, `CREATE DATABASE `+dbName); err != nil {
			return "", "", "", fmt.Errorf("create database %s: %w", dbName, err)
		}
	}
	var version, syncCommit string
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('synchronous_commit')`).Scan(&version, &syncCommit); err != nil {
		return "", "", "", err
	}
	cfg, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return "", "", "", err
	}
	u := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, dbName)
	if cfg.Password != "" {
		return "", "", "", errors.New("-server: use trust auth or a PGPASSWORD/.pgpass, not a password in the URL")
	}
	return u, version, syncCommit, nil
}

func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func intList(name, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive number", name, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// WebhookArgs is the job: POST Body to URL. Body is a string, not raw JSON, so that PostgreSQL's jsonb keeps
// its bytes exactly (the signature covers them).
type WebhookArgs struct {
	URL  string `json:"url"`
	Body string `json:"body"`
}

// Kind implements river.JobArgs.
func (WebhookArgs) Kind() string { return "webhook" }

// WebhookWorker delivers one webhook.
type WebhookWorker struct {
	river.WorkerDefaults[WebhookArgs]
	client *http.Client
	key    []byte
}

// Work signs and posts the body; 2xx is done, anything else an error (river retries with backoff).
func (w *WebhookWorker) Work(ctx context.Context, job *river.Job[WebhookArgs]) error {
	id := strconv.FormatInt(job.ID, 10)
	ts := time.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, job.Args.URL, strings.NewReader(job.Args.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "river-bench")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(mac(w.key, id, ts, []byte(job.Args.Body))))
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook: HTTP %d", resp.StatusCode)
	}
	return nil
}

func mac(key []byte, id string, ts int64, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(strconv.FormatInt(ts, 10)))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

func signingKey() ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(benchSecret, "whsec_"))
	if err != nil || len(k) == 0 {
		return nil, fmt.Errorf("signing secret: %v", err)
	}
	return k, nil
}

// sink is socialrx-bench's receiver: read, verify, decode, dedupe on webhook-id, record the first arrival.
type sink struct {
	key     []byte
	mu      sync.Mutex
	arrived map[string]time.Time // webhook-id → first arrival
	target  int
	full    chan struct{}
	dups    int
	bad     atomic.Int64
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	now := time.Now()
	id, tsText := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil || ts < now.Unix()-300 || ts > now.Unix()+300 || !verify(s.key, id, ts, body, r.Header.Get("webhook-signature")) {
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
	s.mu.Lock()
	if _, ok := s.arrived[id]; ok {
		s.dups++
	} else {
		s.arrived[id] = now
		if len(s.arrived) == s.target {
			close(s.full)
		}
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func verify(key []byte, id string, ts int64, body []byte, sigs string) bool {
	want := mac(key, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		v, sig, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

// rig is a fresh river client (not started) with its receiver.
type rig struct {
	client *river.Client[pgx.Tx]
	sink   *sink
	url    string
	close  func()
}

func newRig(ctx context.Context, pool *pgxpool.Pool, target, maxWorkers int, cooldown time.Duration) (*rig, error) {
	if _, err := pool.Exec(ctx, `TRUNCATE river_job`); err != nil {
		return nil, fmt.Errorf("empty river_job: %w", err)
	}
	key, err := signingKey()
	if err != nil {
		return nil, err
	}
	s := &sink{key: key, arrived: map[string]time.Time{}, target: target, full: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = runtime.GOMAXPROCS(0) + 1 // as socialrx's default webhook client
	workers := river.NewWorkers()
	river.AddWorker(workers, &WebhookWorker{client: &http.Client{Transport: transport, Timeout: 10 * time.Second}, key: key})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Logger:        slog.New(slog.DiscardHandler),
		Queues:        map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: maxWorkers}},
		FetchCooldown: cooldown,
		Workers:       workers,
	})
	if err != nil {
		_ = hs.Close()
		return nil, err
	}
	return &rig{client: client, sink: s, url: "http://" + ln.Addr().String() + "/hooks/referrals", close: func() { _ = hs.Close() }}, nil
}

func (r *rig) waitFull(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.sink.full:
		return nil
	case <-t.C:
		r.sink.mu.Lock()
		n := len(r.sink.arrived)
		r.sink.mu.Unlock()
		return fmt.Errorf("only %d of %d webhooks arrived within %s", n, r.sink.target, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *rig) stop(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := r.client.Stop(sctx)
	r.close()
	return err
}

func label(w int, cd time.Duration) string {
	return fmt.Sprintf("  MaxWorkers %d, FetchCooldown %s", w, cd)
}

// throughputRun inserts m jobs, starts the client and measures messages/s until every job arrived, or (window
// > 0) the first window of them, or (windowTime > 0) what arrived within windowTime.
func throughputRun(ctx context.Context, pool *pgxpool.Pool, body []byte, m, maxWorkers int, cooldown time.Duration, window int, windowTime time.Duration) (measurement, error) {
	target := m
	if window > 0 {
		target = min(window, m)
	}
	r, err := newRig(ctx, pool, target, maxWorkers, cooldown)
	if err != nil {
		return measurement{}, err
	}
	params := make([]river.InsertManyParams, 0, 1000)
	for left := m; left > 0; left -= len(params) {
		params = params[:0]
		for range min(left, 1000) {
			params = append(params, river.InsertManyParams{Args: WebhookArgs{URL: r.url, Body: string(body)}})
		}
		if _, err := r.client.InsertMany(ctx, params); err != nil {
			r.close()
			return measurement{}, fmt.Errorf("insert: %w", err)
		}
	}
	_, _ = pool.Exec(ctx, `CHECKPOINT`) // as socialrx-bench does before its drains (best effort)
	wal0, walOK := walPosition(ctx, pool)
	db0, dbOK := processCPU("postgres")
	app0 := selfCPU()
	start := time.Now()
	if err := r.client.Start(ctx); err != nil {
		r.close()
		return measurement{}, err
	}
	timeout := 5 * time.Minute
	if windowTime > 0 {
		timeout = windowTime
	}
	err = r.waitFull(ctx, timeout)
	elapsed := time.Since(start)
	appCPU := selfCPU() - app0
	db1, dbOK1 := processCPU("postgres")
	var dbCPU time.Duration
	if dbOK && dbOK1 {
		dbCPU = db1 - db0
	}
	var walBytes int64
	if wal1, walOK1 := walPosition(ctx, pool); walOK && walOK1 {
		walBytes = wal1 - wal0
	}
	r.sink.mu.Lock()
	delivered, dups := len(r.sink.arrived), r.sink.dups
	r.sink.mu.Unlock()
	if err != nil && windowTime > 0 && ctx.Err() == nil && delivered > 0 {
		err = nil // the time window ended first: the rate counts what arrived
	}
	if serr := r.stop(ctx); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return measurement{}, fmt.Errorf("throughput run: %w", err)
	}
	if b := r.sink.bad.Load(); b > 0 {
		return measurement{}, fmt.Errorf("throughput run: %d webhooks failed verification", b)
	}
	return measurement{Kind: "throughput", MaxWorkers: maxWorkers, FetchCooldown: cooldown.String(), Jobs: m,
		Delivered: delivered, Seconds: elapsed.Seconds(), PerSecond: float64(delivered) / elapsed.Seconds(), Dups: dups,
		AppCPUUS: appCPU.Microseconds(), DBCPUUS: dbCPU.Microseconds(), WALBytes: walBytes}, nil
}

// latencyRun inserts jobs one by one at rate for dur and measures commit→received.
func latencyRun(ctx context.Context, pool *pgxpool.Pool, body []byte, maxWorkers int, cooldown time.Duration, rate int, dur time.Duration) (measurement, error) {
	total := max(int(dur.Seconds()*float64(rate)), 1)
	r, err := newRig(ctx, pool, total, maxWorkers, cooldown)
	if err != nil {
		return measurement{}, err
	}
	if err := r.client.Start(ctx); err != nil {
		r.close()
		return measurement{}, err
	}
	var mu sync.Mutex
	committed := make(map[string]time.Time, total)
	var insLat []time.Duration
	var failed atomic.Int64
	jobs := make(chan int, total)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range jobs {
				t0 := time.Now()
				res, err := r.client.Insert(ctx, WebhookArgs{URL: r.url, Body: string(body)}, nil)
				t1 := time.Now()
				if err != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				committed[strconv.FormatInt(res.Job.ID, 10)] = t1
				insLat = append(insLat, t1.Sub(t0))
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
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	posted := time.Since(start)
	err = r.waitFull(ctx, 5*time.Minute)
	if serr := r.stop(ctx); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return measurement{}, fmt.Errorf("latency run at %d/s: %w", rate, err)
	}
	if f := failed.Load(); f > 0 {
		return measurement{}, fmt.Errorf("latency run at %d/s: %d inserts failed", rate, f)
	}
	r.sink.mu.Lock()
	lat := make([]time.Duration, 0, len(committed))
	early := 0
	var lastCommit, lastArrival time.Time
	for id, c := range committed {
		a, ok := r.sink.arrived[id]
		if !ok {
			r.sink.mu.Unlock()
			return measurement{}, fmt.Errorf("latency run at %d/s: job %s never arrived", rate, id)
		}
		if c.After(lastCommit) {
			lastCommit = c
		}
		if a.After(lastArrival) {
			lastArrival = a
		}
		d := a.Sub(c)
		if d < 0 {
			early++
			d = 0
		}
		lat = append(lat, d)
	}
	dups := r.sink.dups
	r.sink.mu.Unlock()
	return measurement{Kind: "latency", MaxWorkers: maxWorkers, FetchCooldown: cooldown.String(), Jobs: total,
		Delivered: len(committed), Seconds: posted.Seconds(), PerSecond: float64(len(committed)) / posted.Seconds(),
		Dups: dups, Rate: rate, Accepted: len(committed), P50US: pct(lat, 0.50).Microseconds(),
		P99US: pct(lat, 0.99).Microseconds(), MaxUS: pct(lat, 1).Microseconds(),
		LagUS: lastArrival.Sub(lastCommit).Microseconds(), InsertP50US: pct(insLat, 0.50).Microseconds(),
		Early: early}, nil
}

// pct returns the p-quantile of ds (sorted in place), rounded for printing (as socialrx-bench does).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	d := ds[min(len(ds)-1, int(p*float64(len(ds))))]
	if d >= 10*time.Millisecond {
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(10 * time.Microsecond)
}
