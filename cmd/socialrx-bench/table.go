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
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/socialrx/socialrx/outbox"
)

// tableOptions are the -table flags.
type tableOptions struct {
	rounds          int
	intakeDur       time.Duration // each intake run (socialrx, the bare loop, pgbench)
	pacedDur        time.Duration // each paced run posts this long
	pacedRates      []int
	sqliteClients   []int
	postgresClients []int
	backlogs        []int // drained whole
	cloneAbove      int   // backlogs above this are pre-loaded as 100 referrals through HTTP, cloned in SQL
	huge            int   // 0: no huge backlog; else its size (its rate is measured over a window)
	hugeWindow      int
	hugeWindowTime  time.Duration
	instances       int // row 5: this many dispatchers vs one
	instancesSize   int
	// inFlight is the benchmark service's delivery.max_in_flight in every socialrx row, and River's MaxWorkers:
	// each side has as many webhooks in flight to the one receiver.
	inFlight int
	// defaultDrain > 0: one more drain of this many, at the shipped default (PerDestination, no
	// max_in_flight) beside River with as many workers.
	defaultDrain  int
	socialrxBin   string // the socialrx binary: row 5 also drains with that many `serve` processes ("": no such row)
	postgres      string // "" or unreachable: PostgreSQL rows skipped
	riverBench    string // the river-bench binary ("": River rows skipped)
	riverDatabase string
	riverEvent    string // the webhook body River posts ("": the one socialrx delivered in this run)
	pgbench       string // the pgbench binary
	only          string // run only the measurements whose key contains this (debugging)
	drainProfile  string // each drain's CPU profile goes to this path + "." + its name ("": none)
	command       string
	out           io.Writer
	dir           string
	log           *slog.Logger
}

// metrics are one measurement's figures by name (rates per second, durations in seconds, RSS in KiB).
type metrics map[string]float64

// measure is one measurement of a round.
type measure struct {
	key  string
	what string // printed in the progress log
	run  func(ctx context.Context) (metrics, error)
}

// metricDef is one printed line of a row.
type metricDef struct {
	name  string
	key   string
	unit  unit
	ratio bool // print socialrx ÷ peer, per round
}

// rowDef is one row of the table: socialrx's measurement beside its peer's.
type rowDef struct {
	section string
	label   string
	ours    string // measure keys
	peer    string
	metrics []metricDef
}

// roundLoad is one round's machine load.
type roundLoad struct {
	start, end string
	took       time.Duration
}

// plan is the table's measurements (in round order) and rows.
type plan struct {
	measures []measure
	rows     []rowDef
	notes    []string
}

// runTable runs every measurement once per round, rounds one after the other (so each row's runs are
// interleaved with every other row's), and prints one table of medians and ranges.
func runTable(ctx context.Context, o tableOptions) error {
	p := buildPlan(ctx, &o)
	if o.only != "" {
		p.measures = slices.DeleteFunc(p.measures, func(m measure) bool { return !strings.Contains(m.key, o.only) })
		p.rows = slices.DeleteFunc(p.rows, func(r rowDef) bool { return !strings.Contains(r.ours, o.only) })
	}
	fmt.Fprintf(o.out, "command: %s\n%s", o.command, machine())
	for _, n := range p.notes {
		fmt.Fprintln(o.out, "note:", n)
	}
	results := make(map[string][]metrics) // key → per round
	var failures []string
	var loads []roundLoad
	quiet := newSettler(o.postgres)
	defer quiet.close()
	for round := 1; round <= o.rounds; round++ {
		start := time.Now()
		l := roundLoad{start: loadavg()}
		for i, m := range p.measures {
			quiet.settle(ctx)
			t0 := time.Now()
			o.log.Info("measuring", "round", round, "of", o.rounds, "step", fmt.Sprintf("%d/%d", i+1, len(p.measures)), "what", m.what)
			res, err := m.run(ctx)
			if err != nil {
				failures = append(failures, fmt.Sprintf("round %d, %s: %v", round, m.what, err))
				o.log.Warn("measurement failed", "what", m.what, "err", err)
				res = nil
			} else {
				o.log.Info("measured", "what", m.what, "took", time.Since(t0).Round(100*time.Millisecond), "figures", fmt.Sprint(map[string]float64(res)))
			}
			results[m.key] = append(results[m.key], res)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		l.end, l.took = loadavg(), time.Since(start)
		loads = append(loads, l)
	}
	fmt.Fprintf(o.out, "\n%d round(s), each running every measurement once in the order of the table (rounds interleave the rows), each measurement after a PostgreSQL checkpoint and a sync of the kernel's dirty pages (no row's writes land in the next); figures are medians [min–max] over the rounds\n", o.rounds)
	for i, l := range loads {
		fmt.Fprintf(o.out, "round %d: load average (1, 5, 15 min) %s at start, %s at end; %s\n", i+1, l.start, l.end, l.took.Round(time.Second))
	}
	fmt.Fprintln(o.out)
	if err := writeTable(o.out, [5]string{"row", "metric", "socialrx", "peer", "socialrx ÷ peer"}, tableLines(p.rows, results)); err != nil {
		return err
	}
	if len(failures) > 0 {
		fmt.Fprintln(o.out, "\nfailed measurements (– in the table):")
		for _, f := range failures {
			fmt.Fprintln(o.out, "  "+f)
		}
		return fmt.Errorf("%d measurement(s) failed", len(failures))
	}
	return nil
}

// tableLines turns the rows and the per-round results into printed lines.
func tableLines(rows []rowDef, results map[string][]metrics) []tableLine {
	var lines []tableLine
	pick := func(key, metric string) []float64 {
		var vs []float64
		for _, m := range results[key] {
			v, ok := m[metric]
			if !ok {
				v = math.NaN()
			}
			vs = append(vs, v)
		}
		return vs
	}
	for _, r := range rows {
		for i, md := range r.metrics {
			l := tableLine{section: r.section, metric: md.name}
			if i == 0 {
				l.row = r.label
			}
			ours := pick(r.ours, md.key)
			l.ours = md.unit.cell(summarize(ours))
			l.peer = "–"
			l.ratio = ""
			if r.peer != "" {
				peer := pick(r.peer, md.key)
				l.peer = md.unit.cell(summarize(peer))
				if md.ratio {
					ratios := make([]float64, 0, len(ours))
					for k := range min(len(ours), len(peer)) {
						ratios = append(ratios, ours[k]/peer[k])
					}
					l.ratio = unitRatio.cell(summarize(ratios))
				}
			}
			lines = append(lines, l)
		}
	}
	return lines
}

// loadavg is the first three fields of /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// postgresReachable says whether the server answers.
func postgresReachable(ctx context.Context, server string) error {
	db, err := sql.Open("pgx", server)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// buildPlan lists the measurements and rows for o, with notes on what is skipped and why.
func buildPlan(ctx context.Context, o *tableOptions) plan {
	pl := newPlanner(ctx, o)
	pl.intakeSQLite()
	pl.intakePostgres()
	pl.drains()
	pl.paced()
	pl.instances()
	return pl.p
}

// planner builds the plan, one section at a time.
type planner struct {
	o                              *tableOptions
	p                              plan
	sqliteO, pgO                   deliveryOptions
	havePG, haveRiver, havePgbench bool
	inFlight                       int                    // the service's delivery.max_in_flight in every row (and River's workers)
	event                          atomic.Pointer[string] // the webhook body socialrx delivered, for River
}

// newPlanner checks what the table can reach (PostgreSQL, river-bench, pgbench) and notes what it cannot.
func newPlanner(ctx context.Context, o *tableOptions) *planner {
	// Every row records the audit trail as serve does; the schemas are never another run's.
	base := deliveryOptions{timeout: 10 * time.Minute, log: slog.New(slog.DiscardHandler), out: io.Discard, dir: o.dir, ctx: ctx,
		audit: true, schemaPrefix: fmt.Sprintf("socialrx_table_%d_", os.Getpid()), drainProfile: o.drainProfile}
	pl := &planner{o: o, sqliteO: base, pgO: base, havePG: o.postgres != "", inFlight: o.inFlight}
	pl.pgO.postgres = o.postgres
	if pl.havePG {
		if err := postgresReachable(ctx, o.postgres); err != nil {
			pl.note("PostgreSQL at %s is unreachable (%v): its rows are skipped", redact(o.postgres), err)
			pl.havePG = false
		}
	} else {
		pl.note("no -table-postgres: the PostgreSQL rows are skipped")
	}
	pl.haveRiver = o.riverBench != "" && pl.havePG
	if o.riverBench == "" {
		pl.note("no -river-bench binary: the River columns are empty")
	} else if _, err := os.Stat(o.riverBench); err != nil {
		pl.note("river-bench %s: %v: the River columns are empty", o.riverBench, err)
		pl.haveRiver = false
	}
	pl.havePgbench = pl.havePG
	if pl.havePG {
		if _, err := exec.LookPath(o.pgbench); err != nil {
			pl.note("pgbench %s: %v: the pgbench column is empty", o.pgbench, err)
			pl.havePgbench = false
		}
	}
	return pl
}

func (pl *planner) note(format string, args ...any) {
	pl.p.notes = append(pl.p.notes, fmt.Sprintf(format, args...))
}

func (pl *planner) add(key, what string, run func(ctx context.Context) (metrics, error)) {
	pl.p.measures = append(pl.p.measures, measure{key: key, what: what, run: run})
}

// benchBackend is a store backend the table measures: its key, label and options.
type benchBackend struct {
	name, label string
	o           deliveryOptions
}

// backends are the store backends the table measures (PostgreSQL when reachable).
func (pl *planner) backends() []benchBackend {
	bs := []benchBackend{{"sqlite", "SQLite", pl.sqliteO}}
	if pl.havePG {
		bs = append(bs, benchBackend{"postgres", "PostgreSQL", pl.pgO})
	}
	return bs
}

// saveSample keeps the first webhook body socialrx delivered, for River to post the same bytes.
func (pl *planner) saveSample(d drainResult) {
	if pl.o.riverEvent != "" || len(d.sample) == 0 || pl.event.Load() != nil {
		return
	}
	path := filepath.Join(pl.o.dir, "event.json")
	if os.WriteFile(path, d.sample, 0o644) == nil {
		pl.event.Store(&path)
	}
}

// eventPath is the body River posts: -river-event, else the one socialrx delivered, else the repository's.
func (pl *planner) eventPath() string {
	if pl.o.riverEvent != "" {
		return pl.o.riverEvent
	}
	if p := pl.event.Load(); p != nil {
		return *p
	}
	abs, _ := filepath.Abs(filepath.Join("bench", "river", "testdata", "event.json"))
	return abs
}

// rateMetrics are an intake row's figures.
var rateMetrics = []metricDef{{"referrals/s", "rate", unitRate, true}, {"POST p50", "p50", unitDur, false},
	{"POST p99", "p99", unitDur, false}, {"errors", "errors", unitCount, false}}

// intakeSQLite is section 1: intake on SQLite beside the bare insert loop.
func (pl *planner) intakeSQLite() {
	o := pl.o
	sec := "1. Intake, SQLite: socialrx (real server on loopback HTTP, audit trail on, dispatcher delivering to a loopback sink and auditing each delivery) vs the bare single-writer SQLite insert loop (one 2 KB row per commit, WAL, synchronous=FULL)"
	pl.add("intake.sqlite.bare", "bare SQLite insert loop", func(ctx context.Context) (metrics, error) {
		path := filepath.Join(o.dir, "bare.db")
		defer removeSQLite(path)
		removeSQLite(path)
		rate, err := rawInsertLoop(path, o.intakeDur)
		return metrics{"rate": rate}, err
	})
	for _, n := range o.sqliteClients {
		key := fmt.Sprintf("intake.sqlite.%d", n)
		pl.add(key, fmt.Sprintf("socialrx intake, SQLite, %d clients", n), func(ctx context.Context) (metrics, error) {
			so := pl.sqliteO
			so.duration = o.intakeDur
			return intakeRigRun(so, fmt.Sprintf("intake-%d", n), n)
		})
		pl.p.rows = append(pl.p.rows, rowDef{section: sec, label: clientsLabel(n), ours: key, peer: "intake.sqlite.bare", metrics: rateMetrics})
	}
}

// intakePostgres is section 2: intake on PostgreSQL beside pgbench running the same transaction.
func (pl *planner) intakePostgres() {
	if !pl.havePG {
		return
	}
	o := pl.o
	sec := "2. Intake, PostgreSQL: socialrx (as row 1, a fresh schema per run, pool of 16) vs pgbench running one CreateReferral's statements (same rows, same transaction) in a schema migrated by the store, -M prepared, one connection per client (socialrx pools 16); peer figure: tx/s"
	for _, n := range o.postgresClients {
		key := fmt.Sprintf("intake.postgres.%d", n)
		pl.add(key, fmt.Sprintf("socialrx intake, PostgreSQL, %d clients", n), func(ctx context.Context) (metrics, error) {
			po := pl.pgO
			po.duration = o.intakeDur
			return intakeRigRun(po, fmt.Sprintf("intake-%d", n), n)
		})
		peer := ""
		if pl.havePgbench {
			peer = fmt.Sprintf("intake.pgbench.%d", n)
			pl.add(peer, fmt.Sprintf("pgbench CreateReferral, %d clients", n), func(ctx context.Context) (metrics, error) {
				r, err := pgbenchRun(pl.pgO, o.pgbench, n, o.intakeDur)
				if err != nil {
					return nil, err
				}
				return metrics{"rate": r.tps, "p50": math.NaN(), "errors": float64(r.failed)}, nil
			})
		}
		pl.p.rows = append(pl.p.rows, rowDef{section: sec, label: clientsLabel(n), ours: key, peer: peer, metrics: rateMetrics})
	}
}

// drainMetricDefs are a drain row's figures.
var drainMetricDefs = []metricDef{{"msg/s", "rate", unitRate, true}, {"claim p50", "claim_p50", unitDur, false},
	{"claim p99", "claim_p99", unitDur, false}, {"max RSS", "rss", unitMiB, false}, {"dups", "dups", unitCount, false},
	{"pre-load", "preload", unitDur, false}, {"app CPU/msg", "app_cpu_per_msg", unitDur, false},
	{"PG CPU/msg", "db_cpu_per_msg", unitDur, false}, {"PG WAL/msg", "wal_per_msg", unitKiB, false}}

// drainSpecFor is the drain of size pending messages (seeded and cloned above -table-clone-above).
func (pl *planner) drainSpecFor(name string, size, instances int) drainSpec {
	sp := drainSpec{name: name, messages: size, inFlight: pl.inFlight, instances: instances, timeout: 10 * time.Minute}
	if size > pl.o.cloneAbove && size%100 == 0 {
		sp.seed = 100
	}
	return sp
}

// drains is section 3: backlog drains beside River draining as many jobs, with as many webhooks in flight
// (the service's max_in_flight, River's MaxWorkers); then, with -table-default-drain, one at the shipped
// default (PerDestination) beside River with as many workers.
func (pl *planner) drains() {
	o := pl.o
	sec := fmt.Sprintf("3. Backlog drain (msg/s): socialrx's dispatcher (the service's max_in_flight %d, concurrency %d, each delivery audited as serve does) on a pre-loaded backlog vs River (MaxWorkers %[1]d, FetchCooldown 1ms) draining as many jobs; backlogs above %[3]d are %[4]s",
		pl.inFlight, max(outbox.DefaultConcurrency, pl.inFlight), o.cloneAbove, "100 referrals posted through HTTP, cloned in SQL")
	sizes := slices.Clone(o.backlogs)
	if o.huge > 0 {
		sizes = append(sizes, o.huge)
	}
	for _, size := range sizes {
		sp := pl.drainSpecFor(fmt.Sprintf("drain-%d", size), size, 0)
		label := fmt.Sprintf("%d pending", size)
		if o.huge > 0 && size == o.huge {
			sp.window, sp.windowTime = o.hugeWindow, o.hugeWindowTime
			label = fmt.Sprintf("%d pending (rate over the first %d deliveries or %s)", size, o.hugeWindow, o.hugeWindowTime)
		}
		pl.drainRows(sec, "drain", label, sp, pl.inFlight)
	}
	if o.defaultDrain > 0 {
		sec := fmt.Sprintf("3b. Backlog drain at the shipped default: %d in flight to the one service (PerDestination; no max_in_flight), concurrency %d, vs River with MaxWorkers %[1]d (FetchCooldown 1ms)",
			outbox.DefaultPerDestination, outbox.DefaultConcurrency)
		sp := pl.drainSpecFor(fmt.Sprintf("drain-default-%d", o.defaultDrain), o.defaultDrain, 0)
		sp.inFlight = 0
		pl.drainRows(sec, "drain-default", fmt.Sprintf("%d pending", o.defaultDrain), sp, outbox.DefaultPerDestination)
	}
}

// drainRows adds the drain sp on every backend, as rows of section sec beside River draining as many jobs
// with workers workers; their keys are prefix.BACKEND.SIZE and prefix.river.SIZE.
func (pl *planner) drainRows(sec, prefix, label string, sp drainSpec, workers int) {
	o := pl.o
	riverKey := ""
	if pl.haveRiver {
		riverKey = fmt.Sprintf("%s.river.%d", prefix, sp.messages)
	}
	for _, b := range pl.backends() {
		key := fmt.Sprintf("%s.%s.%d", prefix, b.name, sp.messages)
		pl.add(key, fmt.Sprintf("socialrx %s, %s, %d", prefix, b.name, sp.messages), func(ctx context.Context) (metrics, error) {
			d, err := drainRun(b.o, sp)
			if err != nil {
				return nil, err
			}
			pl.saveSample(d)
			return drainMetrics(d), nil
		})
		pl.p.rows = append(pl.p.rows, rowDef{section: sec, label: b.label + ", " + label, ours: key, peer: riverKey, metrics: drainMetricDefs})
	}
	if !pl.haveRiver {
		return
	}
	args := []string{"-mode", "throughput", "-messages", strconv.Itoa(sp.messages)}
	if sp.window > 0 {
		args = append(args, "-window", strconv.Itoa(sp.window), "-window-time", sp.windowTime.String())
	}
	pl.add(riverKey, fmt.Sprintf("River %s, %d", prefix, sp.messages), func(ctx context.Context) (metrics, error) {
		ms, err := runRiver(ctx, *o, pl.eventPath(), workers, args...)
		if err != nil {
			return nil, err
		}
		m := metrics{"rate": ms[0].PerSecond, "dups": float64(ms[0].Dups)}
		setPerMessage(m, "app_cpu_per_msg", float64(ms[0].AppCPUUS)/1e6, ms[0].Delivered)
		setPerMessage(m, "db_cpu_per_msg", float64(ms[0].DBCPUUS)/1e6, ms[0].Delivered)
		setPerMessage(m, "wal_per_msg", float64(ms[0].WALBytes), ms[0].Delivered)
		return m, nil
	})
}

// pacedMetricDefs are a paced row's figures.
var pacedMetricDefs = []metricDef{{"accepted", "accepted", unitCount, false},
	{"c→r p50", "p50", unitDur, true}, {"c→r p99", "p99", unitDur, true}, {"c→r max", "max", unitDur, false},
	{"lag at end", "lag", unitDur, false}}

// paced is section 4: paced intake, commit→received, beside River's paced inserts.
func (pl *planner) paced() {
	o := pl.o
	sec := fmt.Sprintf("4. Paced intake for %s: commit (the GP's 201) → the receiver's arrival, socialrx vs River paced inserts (each its own commit) at the same rate", o.pacedDur)
	for _, rate := range o.pacedRates {
		riverKey := ""
		if pl.haveRiver {
			riverKey = fmt.Sprintf("paced.river.%d", rate)
		}
		for _, b := range pl.backends() {
			key := fmt.Sprintf("paced.%s.%d", b.name, rate)
			bo := b.o
			bo.duration, bo.allowRejects = o.pacedDur, true
			pl.add(key, fmt.Sprintf("socialrx paced, %s, %d/s", b.name, rate), func(ctx context.Context) (metrics, error) {
				r, err := latencyRun(bo, pl.inFlight, rate)
				if err != nil {
					return nil, err
				}
				return metrics{"accepted": float64(r.accepted), "target": float64(r.target), "p50": r.p50.Seconds(),
					"p99": r.p99.Seconds(), "max": r.max.Seconds(), "lag": r.lag.Seconds(), "dups": float64(r.dups)}, nil
			})
			pl.p.rows = append(pl.p.rows, rowDef{section: sec, label: fmt.Sprintf("%s, %d/s (target %d)", b.label, rate,
				max(int(o.pacedDur.Seconds()*float64(rate)), 1)), ours: key, peer: riverKey, metrics: pacedMetricDefs})
		}
		if pl.haveRiver {
			pl.add(riverKey, fmt.Sprintf("River paced, %d/s", rate), func(ctx context.Context) (metrics, error) {
				ms, err := runRiver(ctx, *o, pl.eventPath(), pl.inFlight, "-mode", "latency", "-rates", strconv.Itoa(rate), "-duration", o.pacedDur.String())
				if err != nil {
					return nil, err
				}
				m := ms[0]
				us := func(v int64) float64 { return float64(v) / 1e6 }
				return metrics{"accepted": float64(m.Accepted), "target": float64(m.Jobs), "p50": us(m.P50US), "p99": us(m.P99US),
					"max": us(m.MaxUS), "lag": us(m.LagUS), "dups": float64(m.Dups)}, nil
			})
		}
	}
}

// instances is section 5: several PostgreSQL instances beside one.
func (pl *planner) instances() {
	o := pl.o
	if !pl.havePG || o.instances <= 1 {
		return
	}
	sec := fmt.Sprintf("5. Several instances, PostgreSQL: %d stores (each its own pools) and dispatchers (each its own Owner) in ONE process on one schema vs one; then (with -socialrx-bin) %[1]d `socialrx serve` processes vs one, each with GOMAXPROCS its share of the cores, their rate counted once all of them serve (start-up: until then, from exec; msg/s from exec: the whole backlog over the whole run; serve CPU/msg: their whole run); each draining the same %d backlog; dups: webhook-ids the sink saw more than once",
		o.instances, o.instancesSize)
	variants := []struct {
		kind, what, label, peerLabel string
		serve                        string
		metrics                      []metricDef
	}{
		{"postgres", "instance(s)", "instances", "1", "", []metricDef{{"msg/s", "rate", unitRate, true}, {"dups", "dups", unitCount, false},
			{"claim p50", "claim_p50", unitDur, false}, {"claim p99", "claim_p99", unitDur, false}}},
		{"serve", "serve process(es)", "serve processes", "1 process", o.socialrxBin, []metricDef{{"msg/s", "rate", unitRate, true},
			{"dups", "dups", unitCount, false}, {"start-up", "startup", unitDur, false}, {"msg/s from exec", "rate_exec", unitRate, true}, {"max RSS", "rss", unitMiB, false},
			{"serve CPU/msg", "cpu_per_msg", unitDur, false}}},
	}
	for _, v := range variants {
		if v.kind == "serve" && v.serve == "" {
			continue // no -socialrx-bin
		}
		for _, n := range []int{1, o.instances} {
			key := fmt.Sprintf("instances.%s.%d", v.kind, n)
			sp := pl.drainSpecFor(fmt.Sprintf("%s-%d", v.kind, n), o.instancesSize, n)
			sp.serve = v.serve
			pl.add(key, fmt.Sprintf("socialrx drain, PostgreSQL, %d %s, %d", n, v.what, o.instancesSize), func(ctx context.Context) (metrics, error) {
				d, err := drainRun(pl.pgO, sp)
				if err != nil {
					return nil, err
				}
				return drainMetrics(d), nil
			})
		}
		pl.p.rows = append(pl.p.rows, rowDef{section: sec, label: fmt.Sprintf("%d %s (peer: %s)", o.instances, v.label, v.peerLabel),
			ours: fmt.Sprintf("instances.%s.%d", v.kind, o.instances), peer: fmt.Sprintf("instances.%s.1", v.kind), metrics: v.metrics})
	}
}

// clientsLabel is "1 client", "16 clients".
func clientsLabel(n int) string {
	if n == 1 {
		return "1 client"
	}
	return fmt.Sprintf("%d clients", n)
}

// drainMetrics are a drain's figures as the table reads them.
func drainMetrics(d drainResult) metrics {
	m := metrics{"rate": d.rate, "dups": float64(d.dups), "claim_p50": d.claimP50.Seconds(), "claim_p99": d.claimP99.Seconds(),
		"preload": d.preloadDur.Seconds()}
	if d.maxRSSKiB > 0 {
		m["rss"] = float64(d.maxRSSKiB)
	}
	if d.startup > 0 {
		m["startup"] = d.startup.Seconds()
		m["rate_exec"] = float64(d.delivered+d.earlyCount) / (d.startup + d.elapsed).Seconds()
	}
	setPerMessage(m, "cpu_per_msg", d.serveCPU.Seconds(), d.delivered+d.earlyCount) // their whole run
	setPerMessage(m, "app_cpu_per_msg", d.appCPU.Seconds(), d.delivered)
	setPerMessage(m, "db_cpu_per_msg", d.dbCPU.Seconds(), d.delivered)
	setPerMessage(m, "wal_per_msg", float64(d.walBytes), d.delivered)
	return m
}

// setPerMessage sets m[key] to total (CPU seconds, WAL bytes) per message delivered, when both are known
// (not 0).
func setPerMessage(m metrics, key string, total float64, delivered int) {
	if total > 0 && delivered > 0 {
		m[key] = total / float64(delivered)
	}
}

// removeSQLite removes an SQLite database file and its WAL and shared-memory files.
func removeSQLite(path string) {
	for _, sfx := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(path + sfx)
	}
}

// redact drops a URL's password for printing.
func redact(u string) string {
	if at := strings.Index(u, "@"); at > 0 {
		if scheme := strings.Index(u, "://"); scheme > 0 && scheme < at {
			if colon := strings.Index(u[scheme+3:at], ":"); colon >= 0 {
				return u[:scheme+3+colon] + ":…" + u[at:]
			}
		}
	}
	return u
}

// intakeRigRun lets n clients post unique referrals (routed to the loopback webhook service) to the rig's
// real server for o.intakeDur while its dispatcher delivers them, and returns referrals/s, POST p50/p99 and
// the errors.
func intakeRigRun(o deliveryOptions, name string, n int) (metrics, error) {
	r, err := newRig(o, name, math.MaxInt, outbox.DefaultPerDestination)
	if err != nil {
		return nil, err
	}
	defer r.close()
	stop := r.runDispatcher(o.ctx)
	defer func() { _ = stop() }()
	all, errs, elapsed := closedLoop(n, o.duration, func(k int64) bool {
		_, err := r.post(o.ctx, k)
		return err == nil
	})
	if len(all) == 0 {
		return nil, fmt.Errorf("no referral was accepted (%d errors)", errs)
	}
	return metrics{"rate": float64(len(all)) / elapsed.Seconds(), "p50": pct(all, 0.50).Seconds(), "p99": pct(all, 0.99).Seconds(),
		"errors": float64(errs)}, nil
}

// riverMeasurement is one line of river-bench -json (bench/river's measurement).
type riverMeasurement struct {
	Kind          string  `json:"kind"`
	MaxWorkers    int     `json:"max_workers"`
	FetchCooldown string  `json:"fetch_cooldown"`
	Jobs          int     `json:"jobs"`
	Delivered     int     `json:"delivered"`
	Seconds       float64 `json:"seconds"`
	PerSecond     float64 `json:"per_second"`
	Dups          int     `json:"dups"`
	Rate          int     `json:"rate"`
	Accepted      int     `json:"accepted"`
	P50US         int64   `json:"p50_us"`
	P99US         int64   `json:"p99_us"`
	MaxUS         int64   `json:"max_us"`
	LagUS         int64   `json:"lag_us"`
	InsertP50US   int64   `json:"insert_p50_us"`
	Early         int     `json:"early"`
	AppCPUUS      int64   `json:"app_cpu_us"`
	DBCPUUS       int64   `json:"db_cpu_us"`
	WALBytes      int64   `json:"wal_bytes"`
}

// parseRiverJSON reads river-bench -json's output: one JSON object per line (other lines are an error).
func parseRiverJSON(out []byte) ([]riverMeasurement, error) {
	var ms []riverMeasurement
	for i, line := range bytes.Split(out, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var m riverMeasurement
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, fmt.Errorf("river-bench output line %d: %w", i+1, err)
		}
		if m.Kind == "" {
			return nil, fmt.Errorf("river-bench output line %d: no kind", i+1)
		}
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return nil, errors.New("river-bench printed no measurement")
	}
	return ms, nil
}

// runRiver runs river-bench -json with River's table settings (MaxWorkers workers, FetchCooldown 1ms) and args.
func runRiver(ctx context.Context, o tableOptions, event string, workers int, args ...string) ([]riverMeasurement, error) {
	args = append([]string{"-json", "-server", o.postgres, "-database", o.riverDatabase, "-event", event,
		"-workers", strconv.Itoa(workers), "-fetch-cooldowns", "1ms"}, args...)
	cmd := exec.CommandContext(ctx, o.riverBench, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("river-bench: %w: %s", err, strings.TrimSpace(lastLines(stderr.String(), 5)))
	}
	return parseRiverJSON(stdout.Bytes())
}
