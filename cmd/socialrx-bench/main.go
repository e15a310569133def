// Command socialrx-bench measures socialrx on this machine over real loopback HTTP: intake throughput and
// latency for N concurrent GP clients posting referrals to a temporary SQLite database, next to the raw
// single-writer commit rate of a bare SQLite insert loop measured in the same run (the goal: intake at no less
// than that rate); then delivery: the outbox dispatcher's throughput on a pre-loaded backlog (messages/s to a
// loopback webhook receiver) and the commit→received latency (p50/p99) at paced intake rates, to compare with
// riverqueue/river doing the same webhook job (bench/river, `make bench-river`). Run it with `make bench`; it
// prints tables and exits. -intake=false or -delivery=false runs one part only.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/server"
)

func main() {
	dur := flag.Duration("duration", 5*time.Second, "how long each intake run lasts")
	clients := flag.String("clients", "1,4,16,64", "concurrent GP clients per run")
	intake := flag.Bool("intake", true, "run the intake benchmark")
	audit := flag.Bool("audit", true, "record the audit trail as serve does: intake's requests, delivery's deliveries (false: the cost without it)")
	reads := flag.Bool("reads", false, "intake: after seeding 500 referrals, clients read them (GET ServiceRequest/{id}) instead of posting")
	delivery := flag.Bool("delivery", true, "run the delivery benchmark (throughput and commit→received latency)")
	messages := flag.Int("delivery-messages", 2000, "delivery throughput: referrals pre-loaded before the dispatcher starts")
	rates := flag.String("delivery-rates", "50,200", "delivery latency: paced intake rates (referrals/s)")
	ddur := flag.Duration("delivery-duration", 5*time.Second, "delivery latency: how long each paced run posts")
	perDest := flag.String("delivery-per-destination", fmt.Sprintf("%d,16", outbox.DefaultPerDestination),
		"the benchmark service's in-flight caps to run (its delivery.max_in_flight; concurrency = max(32, cap)); the first is the shipped default (PerDestination)")
	pgURL := flag.String("delivery-postgres", "", "run the delivery benchmark on this PostgreSQL server (a fresh schema per run) instead of SQLite, e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	saveEvent := flag.String("save-event", "", "write one received webhook body to this file (bench/river posts the same bytes)")
	hostile := flag.Bool("hostile", false, "run only the hostile-load benchmark (make bench-hostile): the real binary under maximum-size bodies and bad tokens, peak RSS and a legitimate client's latency")
	hostileBin := flag.String("hostile-binary", "", "hostile: the socialrx binary to attack (default: built from this module)")
	hostileDur := flag.Duration("hostile-duration", 20*time.Second, "hostile: how long the attack lasts")
	hostileBodies := flag.Int("hostile-bodies", 64, "hostile: connections posting maximum-size referrals")
	hostileBad := flag.Int("hostile-bad-tokens", 32, "hostile: connections flooding with bad tokens")
	hostileSize := flag.Int("hostile-body-size", (1<<20)-8<<10, "hostile: the size of the attack's referrals (bytes; the default body limit is 1 MiB)")
	hostileRate := flag.Int("hostile-legit-rate", 20, "hostile: the legitimate GP client's requests per second")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	drainProfile := flag.String("cpuprofile-drains", "", "table: write a CPU profile of each drain's measured part (pre-load excluded) to this path with the drain's name appended (not with -cpuprofile)")
	memProfile := flag.String("memprofile", "", "write an allocation profile of the whole run to this file at its end (go tool pprof)")
	table := flag.Bool("table", false, "run only the comparison table (make bench): every socialrx figure beside its peer (bare SQLite loop, pgbench, River), medians of -table-rounds interleaved rounds")
	tRounds := flag.Int("table-rounds", 3, "table: rounds (each runs every row once)")
	tIntake := flag.Duration("table-intake-duration", 10*time.Second, "table: each intake run (socialrx, the bare loop, pgbench)")
	tPaced := flag.Duration("table-paced-duration", 60*time.Second, "table: each paced intake run")
	tRates := flag.String("table-paced-rates", "200,1000", "table: paced intake rates (referrals/s)")
	tSQLiteClients := flag.String("table-sqlite-clients", "1,16,64", "table: SQLite intake clients")
	tPGClients := flag.String("table-postgres-clients", "1,8,64", "table: PostgreSQL intake clients")
	tBacklogs := flag.String("table-backlogs", "2000,20000", "table: backlogs drained whole")
	tCloneAbove := flag.Int("table-clone-above", 1000, "table: backlogs above this (multiples of 100) are 100 referrals posted through HTTP and cloned in SQL")
	tHuge := flag.Bool("table-huge", false, "table: also drain a huge backlog (-table-huge-size; its pre-load takes minutes), its rate measured over a window")
	tHugeSize := flag.Int("table-huge-size", 1_000_000, "table: the huge backlog")
	tHugeWindow := flag.Int("table-huge-window", 50_000, "table: the huge backlog's rate is measured over its first N deliveries…")
	tHugeWindowTime := flag.Duration("table-huge-window-time", 30*time.Second, "table: …or this long, whichever ends first")
	tInstances := flag.Int("table-instances", 3, "table: dispatchers (each with its own store) compared with one on one PostgreSQL schema (0: no row)")
	tInstancesSize := flag.Int("table-instances-backlog", 20_000, "table: the backlog the instances drain")
	tInFlight := flag.Int("table-in-flight", 16, "table: the benchmark service's delivery.max_in_flight in every socialrx row, and River's MaxWorkers (as many webhooks in flight on each side)")
	tDefaultDrain := flag.Int("table-default-drain", 20_000, "table: also drain this many at the shipped default (8 in flight, no max_in_flight) beside River with 8 workers (0: no such row)")
	tPG := flag.String("table-postgres", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "table: the PostgreSQL server (\"\": PostgreSQL rows skipped)")
	tServe := flag.String("socialrx-bin", "", "table: the socialrx binary (go build ./cmd/socialrx); row 5 then also drains with that many `socialrx serve` processes (\"\": no such row)")
	tRiver := flag.String("river-bench", "", "table: the river-bench binary (go build in bench/river; \"\": River columns empty)")
	tRiverDB := flag.String("river-database", "river_bench_table", "table: river-bench's scratch database")
	tRiverEvent := flag.String("river-event", "", "table: the body River posts (default: the webhook body socialrx delivered in this run)")
	tPgbench := flag.String("pgbench", "pgbench", "table: the pgbench binary")
	tOnly := flag.String("table-only", "", "table: run only the measurements whose key contains this (e.g. drain.postgres; for debugging)")
	flag.Parse()
	// The garbage collector's target as serve sets it (its in-process servers and dispatchers stand for serve).
	config.ApplyGCPercent(os.Getenv)
	if *cpuProfile != "" && *drainProfile != "" {
		fmt.Fprintln(os.Stderr, "socialrx-bench: -cpuprofile and -cpuprofile-drains cannot be used together (one CPU profile at a time)")
		os.Exit(2)
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "socialrx-bench:", err)
			os.Exit(2)
		}
		defer stop()
	}
	if *memProfile != "" {
		defer writeAllocProfile(*memProfile)
	}
	ctx := context.Background()
	if *table {
		o := tableOptions{rounds: max(*tRounds, 1), intakeDur: *tIntake, pacedDur: *tPaced, cloneAbove: *tCloneAbove,
			hugeWindow: *tHugeWindow, hugeWindowTime: *tHugeWindowTime, instances: *tInstances, instancesSize: *tInstancesSize, socialrxBin: *tServe,
			inFlight: *tInFlight, defaultDrain: *tDefaultDrain,
			postgres: *tPG, riverBench: *tRiver, riverDatabase: *tRiverDB, riverEvent: *tRiverEvent, pgbench: *tPgbench,
			only: *tOnly, drainProfile: *drainProfile, command: strings.Join(os.Args, " "), out: os.Stdout,
			log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
		if *tHuge {
			o.huge = *tHugeSize
		}
		var err error
		for _, l := range []struct {
			name string
			s    string
			dst  *[]int
		}{{"-table-paced-rates", *tRates, &o.pacedRates}, {"-table-sqlite-clients", *tSQLiteClients, &o.sqliteClients},
			{"-table-postgres-clients", *tPGClients, &o.postgresClients}, {"-table-backlogs", *tBacklogs, &o.backlogs}} {
			if err == nil {
				*l.dst, err = intList(l.name, l.s)
			}
		}
		if err == nil {
			o.dir, err = os.MkdirTemp("", "socialrx-bench-table-")
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "socialrx-bench:", err)
			os.Exit(2)
		}
		err = runTable(ctx, o)
		_ = os.RemoveAll(o.dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "socialrx-bench:", err)
			os.Exit(1)
		}
		return
	}
	if *hostile {
		fmt.Fprintf(os.Stdout, "command: %s\n%s", strings.Join(os.Args, " "), machine())
		if err := runHostile(ctx, hostileOptions{binary: *hostileBin, duration: *hostileDur, bodies: *hostileBodies,
			badTokens: *hostileBad, legitRate: max(*hostileRate, 1), bodySize: *hostileSize, out: os.Stdout}); err != nil {
			fmt.Fprintln(os.Stderr, "socialrx-bench:", err)
			os.Exit(1)
		}
		return
	}
	o := deliveryOptions{messages: *messages, duration: *ddur, saveEvent: *saveEvent, timeout: 5 * time.Minute,
		log: slog.New(slog.DiscardHandler), out: os.Stdout, ctx: ctx, postgres: *pgURL, audit: *audit}
	var err error
	if o.rates, err = intList("-delivery-rates", *rates); err == nil {
		o.inFlight, err = intList("-delivery-per-destination", *perDest)
	}
	if err == nil && o.messages < 1 {
		err = errors.New("-delivery-messages must be positive")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "socialrx-bench:", err)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stdout, "command: %s\n", strings.Join(os.Args, " "))
	if *intake {
		if err := run(ctx, intakeOptions{dur: *dur, audit: *audit, reads: *reads}, *clients, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "socialrx-bench:", err)
			os.Exit(1)
		}
	} else {
		fmt.Fprint(os.Stdout, machine())
	}
	if *delivery {
		o.dir, err = os.MkdirTemp("", "socialrx-bench-delivery-")
		if err == nil {
			err = runDelivery(o)
			_ = os.RemoveAll(o.dir)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "socialrx-bench:", err)
			os.Exit(1)
		}
	}
}

// startCPUProfile profiles the process's CPU into the file path until the returned stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// writeAllocProfile writes the allocations made since the start (pprof's allocs profile) to path; a failure is
// reported, not fatal: the run's figures are already printed.
func writeAllocProfile(path string) {
	runtime.GC() // the profile counts allocations up to the last collection
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "socialrx-bench: alloc profile:", err)
	}
}

// intList parses a comma-separated list of positive numbers.
func intList(name, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive number", name, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// intakeOptions are the intake runs' settings.
type intakeOptions struct {
	dur   time.Duration
	audit bool // record the audit trail (an outbox.AuditLog, as serve does)
	reads bool // read seeded referrals instead of posting new ones
}

func run(ctx context.Context, o intakeOptions, clientList string, out io.Writer) error {
	dur := o.dur
	dir, err := os.MkdirTemp("", "socialrx-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprint(out, machine())

	raw, err := rawInsertLoop(filepath.Join(dir, "raw.db"), dur)
	if err != nil {
		return fmt.Errorf("raw insert loop: %w", err)
	}
	fmt.Fprintf(out, "baseline: bare SQLite insert loop (WAL, synchronous=FULL, one commit per row): %.0f commits/s\n\n", raw)

	fmt.Fprintf(out, "audit trail: %v; %s\n", o.audit, map[bool]string{false: "clients post new referrals", true: "clients read seeded referrals (GET ServiceRequest/{id})"}[o.reads])
	fmt.Fprintf(out, "%-8s %10s %10s %10s %10s %8s\n", "clients", "req/s", "p50", "p99", "max", "errors")
	for i, c := range strings.Split(clientList, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(c), &n); err != nil || n < 1 {
			return fmt.Errorf("-clients: %q is not a positive number", c)
		}
		r, err := intakeRun(ctx, filepath.Join(dir, fmt.Sprintf("intake-%d.db", i)), n, o)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%-8d %10.0f %10s %10s %10s %8d   (%.2fx baseline)\n", n, r.rate, r.p50, r.p99, r.max, r.errors, r.rate/raw)
	}
	return nil
}

// rawInsertLoop is the baseline: one small row per committed transaction, one writer, same pragmas.
func rawInsertLoop(path string, dur time.Duration) (float64, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)`); err != nil {
		return 0, err
	}
	body := bytes.Repeat([]byte("x"), 2048)
	start := time.Now()
	n := 0
	for time.Since(start) < dur {
		tx, err := db.Begin()
		if err != nil {
			return 0, err
		}
		if _, err := tx.Exec(`INSERT INTO t (body) VALUES (?)`, body); err != nil {
			_ = tx.Rollback()
			return 0, err
		}
		if err := tx.Commit(); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

type result struct {
	rate          float64
	p50, p99, max time.Duration
	errors        int64
}

// intakeRun starts the real HTTP server on loopback with a fresh SQLite database and the demo directory, and
// lets n clients post unique referrals (routed to a pull-only service) for o.dur; with o.reads, it seeds 500
// referrals and the clients read them instead.
func intakeRun(ctx context.Context, path string, n int, o intakeOptions) (result, error) {
	dur := o.dur
	log := slog.New(slog.DiscardHandler)
	store, err := sqlite.Open(ctx, path, sqlite.Options{Logger: log})
	if err != nil {
		return result{}, err
	}
	defer store.Close()
	cfg, err := config.LoadDemo()
	if err != nil {
		return result{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	so := server.Options{Config: cfg, Store: store, Logger: log, BaseURL: "http://" + ln.Addr().String() + "/fhir"}
	if o.audit {
		a := outbox.NewAuditLog(store, outbox.AuditLogOptions{Instance: "bench", Logger: log})
		defer a.Close()
		so.Auditor = a
	}
	srv, err := server.New(so)
	if err != nil {
		_ = ln.Close()
		return result{}, err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	url := "http://" + ln.Addr().String() + "/fhir/ServiceRequest"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}, Timeout: 30 * time.Second}
	var seeded []string // ServiceRequest URLs to read (o.reads)
	if o.reads {
		for k := range int64(500) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(referral(-k-1)))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Authorization", "Bearer demo-gp-token")
			req.Header.Set("Prefer", "return=minimal")
			resp, err := client.Do(req)
			if err != nil {
				return result{}, err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				return result{}, fmt.Errorf("seeding: %s", resp.Status)
			}
			seeded = append(seeded, resp.Header.Get("Location"))
		}
	}

	lat, errs, elapsed := closedLoop(n, dur, func(k int64) bool {
		var req *http.Request
		if o.reads {
			req, _ = http.NewRequestWithContext(ctx, http.MethodGet, seeded[k%int64(len(seeded))], nil)
		} else {
			req, _ = http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(referral(k)))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Prefer", "return=minimal")
		}
		req.Header.Set("Authorization", "Bearer demo-gp-token")
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusCreated || (o.reads && resp.StatusCode == http.StatusOK)
	})
	all := lat
	slices.Sort(all)
	if len(all) == 0 {
		return result{}, fmt.Errorf("no referral was accepted (%d errors)", errs)
	}
	q := func(p float64) time.Duration {
		return all[min(len(all)-1, int(p*float64(len(all))))].Round(10 * time.Microsecond)
	}
	return result{rate: float64(len(all)) / elapsed.Seconds(), p50: q(0.50), p99: q(0.99), max: all[len(all)-1].Round(10 * time.Microsecond), errors: errs}, nil
}

// closedLoop runs n clients for dur, each doing one request after another (do(k) with k counting from 1
// across them, true when it succeeded), and returns the successful requests' latencies, the failures and the
// time it took.
func closedLoop(n int, dur time.Duration, do func(k int64) bool) (lat []time.Duration, errs int64, elapsed time.Duration) {
	var seq, failed atomic.Int64
	per := make([][]time.Duration, n)
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range n {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if !do(seq.Add(1)) {
					failed.Add(1)
					continue
				}
				per[w] = append(per[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	return slices.Concat(per...), failed.Load(), time.Since(start)
}

// referral returns a realistic ~3 KB social-prescribing ServiceRequest with a unique identifier and a
// patient of its own (nhsNumber), routed by performer to the demo's pull-only museum volunteering service.
func referral(n int64) []byte {
	return []byte(fmt.Sprintf(referralTemplate, n, nhsNumber(n)))
}

// nhsNumber is a valid NHS number (modulus 11) of its own for each n, spread over the range, as a practice's
// patients are: with one patient for every referral, as before issue 12's sixteenth session, a new version
// of a referral found the patient's index entries on the few pages it had just written.
func nhsNumber(n int64) string {
	for b := (uint64(n)*2_654_435_761)%800_000_000 + 100_000_000; ; b++ {
		for c := range 10 {
			if s := fmt.Sprintf("%09d%d", b, c); mapping.ValidNHSNumber(s) {
				return s
			}
		}
	}
}

const referralTemplate = `{
  "resourceType": "ServiceRequest",
  "contained": [
    {"resourceType": "Patient", "id": "pat",
     "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "%[2]s"}],
     "name": [{"use": "official", "family": "Smith", "given": ["Richard"]}],
     "telecom": [{"system": "phone", "value": "07700 900123", "use": "mobile"}],
     "gender": "male", "birthDate": "1952-03-14",
     "address": [{"line": ["12 Market Street"], "city": "Frome", "postalCode": "BA11 1AA"}]},
    {"resourceType": "Consent", "id": "consent", "status": "active",
     "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
     "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
     "patient": {"reference": "#pat"}, "dateTime": "2026-11-20T10:00:00Z",
     "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]}},
    {"resourceType": "Practitioner", "id": "gp", "name": [{"family": "Patel", "given": ["Asha"], "prefix": ["Dr"]}]}
  ],
  "identifier": [{"system": "https://fhir.a81001.example.nhs.uk/Id/referral", "value": "bench-%[1]d"}],
  "status": "active",
  "intent": "order",
  "priority": "routine",
  "code": {"coding": [{"system": "http://snomed.info/sct", "code": "871731000000106", "display": "Referral to social prescribing service"}]},
  "subject": {"reference": "#pat"},
  "authoredOn": "2026-11-20T10:05:00Z",
  "requester": {"reference": "#gp"},
  "performer": [{"identifier": {"system": "https://socialrx.dev/Id/community-service", "value": "museum-volunteers"}}],
  "reasonCode": [{"text": "Lives alone since bereavement; low mood; would like to meet people"}],
  "supportingInfo": [{"reference": "#consent"}],
  "patientInstruction": "Prefers mornings; uses a walking stick"
}`

// machine is a benchmark's header lines about the machine: its platform, and the garbage collector's target of
// this process (which stands for serve) and of the peers it starts (river-bench, pgbench and serve processes
// take GOGC from the environment).
func machine() string {
	gc := fmt.Sprintf("GOGC %s (from the environment) here and in the processes it starts", os.Getenv("GOGC"))
	if p := config.GCPercent(os.Getenv); p > 0 {
		gc = fmt.Sprintf("GOGC %d in this process (serve's default); processes it starts: GOGC unset", p)
	}
	return fmt.Sprintf("machine: %s/%s, %d CPUs, %s\ngarbage collector: %s\n", runtime.GOOS, runtime.GOARCH,
		runtime.NumCPU(), runtime.Version(), gc)
}
