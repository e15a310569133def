package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
)

// drainSpec is one backlog drain: how big, how it is pre-loaded and what is measured.
type drainSpec struct {
	name     string
	messages int // the backlog (one referral, one webhook each)
	inFlight int // the service's delivery.max_in_flight (0: none; the dispatcher's PerDestination)
	// seed > 0: pre-load seed referrals through HTTP and clone them in SQL up to messages (seed must divide
	// messages); 0: every referral through HTTP.
	seed int
	// window > 0: measure the rate over the first window deliveries only; windowTime > 0: stop measuring
	// after that long (the rate counts what arrived).
	window     int
	windowTime time.Duration
	// instances > 1 (PostgreSQL only): that many stores (each its own pools) and dispatchers (each its own
	// Owner) in this process drain the one schema.
	instances int
	// serve, when set, is the socialrx binary: instances `socialrx serve` processes (PostgreSQL only) drain
	// the backlog instead of dispatchers in this process (claims are then not timed; RSS is the largest
	// process's peak).
	serve   string
	timeout time.Duration // bound on the whole drain when no window ends it
}

// drainRun pre-loads a backlog with the dispatcher stopped, then starts the dispatcher(s) and measures how fast
// the sink receives the webhooks (each webhook-id counted once; repeats are dups), how long the claims take
// and the process's peak RSS meanwhile.
func drainRun(o deliveryOptions, sp drainSpec) (drainResult, error) {
	target := sp.messages
	if sp.window > 0 {
		target = min(sp.window, sp.messages)
	}
	r, err := newRig(o, sp.name, target, sp.inFlight)
	if err != nil {
		return drainResult{}, err
	}
	defer r.close()
	t0 := time.Now()
	http := sp.messages
	if sp.seed > 0 && sp.seed < sp.messages {
		if sp.messages%sp.seed != 0 {
			return drainResult{}, fmt.Errorf("drain %s: seed %d does not divide %d", sp.name, sp.seed, sp.messages)
		}
		http = sp.seed
	}
	if err := r.preload(o.ctx, 1, http); err != nil {
		return drainResult{}, err
	}
	if http < sp.messages {
		if err := cloneBacklog(o.ctx, r, sp.messages/http); err != nil {
			return drainResult{}, fmt.Errorf("drain %s: clone the backlog: %w", sp.name, err)
		}
	}
	preload := time.Since(t0)
	if n, err := pendingCount(o.ctx, r); err != nil {
		return drainResult{}, err
	} else if n != sp.messages {
		return drainResult{}, fmt.Errorf("drain %s: %d messages pending after the pre-load, want %d", sp.name, n, sp.messages)
	}

	instances := max(sp.instances, 1)
	if sp.serve != "" {
		return serveDrain(o, sp, r, target, preload)
	}
	var stops []func() error
	if instances > 1 && r.dsn == "" {
		return drainResult{}, fmt.Errorf("drain %s: several instances need PostgreSQL", sp.name)
	}
	for i := 1; i < instances; i++ {
		st, err := postgres.Open(o.ctx, r.dsn, postgres.Options{Logger: o.log, SkipMigrations: true})
		if err != nil {
			return drainResult{}, fmt.Errorf("drain %s: instance %d: %w", sp.name, i+1, err)
		}
		defer st.Close()
		var audit *outbox.AuditLog // each instance audits its deliveries, as the first does (o.audit)
		if o.audit {
			audit = outbox.NewAuditLog(st, outbox.AuditLogOptions{Instance: fmt.Sprintf("bench-%d", i+1), Logger: o.log})
			defer audit.Close()
		}
		d := outbox.NewDispatcher(&timedStore{Store: st, t: r.claims}, outbox.DirectoryEndpoints(r.cfg.Directory),
			outbox.DispatcherOptions{Logger: o.log, Owner: fmt.Sprintf("bench-instance-%d", i+1),
				InFlight: outbox.DirectoryInFlight(r.cfg.Directory), Audit: audit})
		stops = append(stops, runDispatcher(o.ctx, d))
	}
	var raw *sql.DB // PostgreSQL: reads the server's WAL position around the drain
	if r.dsn != "" {
		if raw, err = openRaw(r); err != nil {
			return drainResult{}, err
		}
		defer raw.Close()
	}
	checkpoint(o.ctx, raw)
	debug.FreeOSMemory()
	rssReset := resetPeakRSS() == nil
	r.claims.reset()
	wal0, walOK := walPosition(o.ctx, raw)
	db0, dbOK := processCPU("postgres")
	app0 := selfCPU()
	stopProfile := func() {}
	if o.drainProfile != "" {
		if stopProfile, err = startCPUProfile(o.drainProfile + "." + sp.name); err != nil {
			for _, stop := range stops { // the other instances' dispatchers, already running
				_ = stop()
			}
			return drainResult{}, err
		}
	}
	start := time.Now()
	stops = append(stops, r.runDispatcher(o.ctx))
	timeout := sp.timeout
	if sp.windowTime > 0 {
		timeout = sp.windowTime
	}
	err = r.waitFull(o.ctx, timeout)
	elapsed := time.Since(start)
	appCPU := selfCPU() - app0
	stopProfile()
	var dbCPU time.Duration // unknown (0) unless PostgreSQL is the store and runs here
	if db1, dbOK1 := processCPU("postgres"); r.dsn != "" && dbOK && dbOK1 {
		dbCPU = db1 - db0
	}
	var walBytes int64
	if wal1, walOK1 := walPosition(o.ctx, raw); walOK && walOK1 {
		walBytes = wal1 - wal0
	}
	delivered := r.sink.count()
	if err != nil && sp.windowTime > 0 && o.ctx.Err() == nil && delivered > 0 {
		err = nil // the time window ended first: the rate counts what arrived
	}
	var rss int64
	if rssReset {
		rss, _ = peakRSS()
	}
	claims, c50, c99 := r.claims.quantiles()
	for _, stop := range stops {
		if serr := stop(); serr != nil && err == nil {
			err = serr
		}
	}
	if err != nil {
		return drainResult{}, fmt.Errorf("drain %s: %w", sp.name, err)
	}
	return r.drained(sp, drainResult{delivered: min(delivered, target), elapsed: elapsed, claims: claims,
		claimP50: c50, claimP99: c99, maxRSSKiB: rss, instances: instances, preloadDur: preload, appCPU: appCPU,
		dbCPU: dbCPU, walBytes: walBytes})
}

// drained completes a drain's result d (delivered and elapsed set) from the sink: the rate, dups and sample,
// or an error when any webhook failed verification.
func (r *rig) drained(sp drainSpec, d drainResult) (drainResult, error) {
	if b := r.sink.bad.Load(); b > 0 {
		return drainResult{}, fmt.Errorf("drain %s: %d webhooks failed verification", sp.name, b)
	}
	r.sink.mu.Lock()
	d.sample, d.dups = r.sink.sample, r.sink.dups
	r.sink.mu.Unlock()
	d.messages, d.rate = sp.messages, float64(d.delivered)/d.elapsed.Seconds()
	return d, nil
}

// serveDrain is drainRun's second half with `socialrx serve` processes: start them on the pre-loaded schema,
// wait for the sink, stop them (SIGTERM; each must exit 0). The rate is the processes' once all of them serve
// (from the moment the last answers /healthz, after its store's warm-up, to the sink's last arrival; what
// arrived before is left out of the count), so that n processes starting at once on the same cores are
// compared with one at delivering, not at starting; the time they took to start is its own figure (startup),
// and their CPU per message counts their whole run, start included.
func serveDrain(o deliveryOptions, sp drainSpec, r *rig, target int, preload time.Duration) (drainResult, error) {
	instances := max(sp.instances, 1)
	// The rig's own store, done with once the backlog is loaded, holds sessions the processes under test
	// would otherwise find taken (each warms its pools as it starts).
	if err := r.store.Close(); err != nil {
		return drainResult{}, fmt.Errorf("drain %s: close the pre-load's store: %w", sp.name, err)
	}
	start := time.Now()
	procs, err := startServe(o.ctx, sp.serve, o.dir, r, instances)
	if err != nil {
		return drainResult{}, fmt.Errorf("drain %s: %w", sp.name, err)
	}
	serving, err := procs.waitServing(time.Minute)
	if err == nil {
		err = r.waitFull(procs.ctx, sp.timeout)
	}
	end := time.Now()
	delivered := r.sink.count()
	if err != nil && o.ctx.Err() == nil {
		if e := procs.early(); e != nil {
			err = e
		}
	}
	rss, cpu, serr := procs.stop()
	if err == nil {
		err = serr
	}
	if err != nil {
		return drainResult{}, fmt.Errorf("drain %s: %w", sp.name, err)
	}
	before := r.sink.arrivedBefore(serving)
	counted := min(delivered, target) - before
	if counted < target/2 {
		return drainResult{}, fmt.Errorf("drain %s: %d of %d messages arrived before every process served, %d after: too few to measure; drain a larger backlog",
			sp.name, before, target, counted)
	}
	return r.drained(sp, drainResult{delivered: counted, elapsed: end.Sub(serving),
		maxRSSKiB: rss, instances: instances, preloadDur: preload, serveCPU: cpu, startup: serving.Sub(start),
		earlyCount: before})
}

// runDispatcher starts d; the returned function stops it and waits.
func runDispatcher(ctx context.Context, d *outbox.Dispatcher) func() error {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

// preload posts referrals first..first+n-1 through HTTP (16 clients), the dispatcher stopped.
func (r *rig) preload(ctx context.Context, first, n int) error {
	var seq atomic.Int64
	seq.Store(int64(first) - 1)
	last := int64(first + n - 1)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				k := seq.Add(1)
				if k > last {
					return
				}
				if _, err := r.post(ctx, k); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("pre-load: %d referrals not accepted", f)
	}
	return nil
}

// resetPeakRSS resets this process's peak RSS (VmHWM) to its current RSS (Linux: clear_refs 5).
func resetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS reads this process's peak RSS (VmHWM) in KiB.
func peakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	return parseVmHWM(string(b))
}

// parseVmHWM finds the VmHWM line of a /proc/PID/status text (KiB).
func parseVmHWM(status string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in the process status")
}

// openRaw opens the rig's database directly (the SQLite file with the store's busy timeout, or the
// PostgreSQL schema), for the bench's own SQL.
func openRaw(r *rig) (*sql.DB, error) {
	if r.dsn != "" {
		return sql.Open("pgx", r.dsn)
	}
	db, err := sql.Open("sqlite", "file:"+r.path+"?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// pendingCount counts the rig's pending messages.
func pendingCount(ctx context.Context, r *rig) (int, error) {
	counts, _, err := r.store.CountMessages(ctx)
	if err != nil {
		return 0, fmt.Errorf("count messages: %w", err)
	}
	return counts[outbox.StatePending], nil
}

// column is one column of a table as the clone copies it.
type column struct {
	name string
	text bool // text or blob: may hold a referral's ids
	blob bool
}

// tableColumns lists the columns of table that an INSERT may set (generated and identity columns left out).
func tableColumns(ctx context.Context, db *sql.DB, pg bool, table string) ([]column, error) {
	var out []column
	if pg {
		rows, err := db.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER'
			AND (identity_generation IS NULL OR identity_generation <> 'ALWAYS') ORDER BY ordinal_position`, table)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var name, typ string
			if err := rows.Scan(&name, &typ); err != nil {
				return nil, err
			}
			out = append(out, column{name: name, text: typ == "text" || typ == "bytea", blob: typ == "bytea"})
		}
		return out, rows.Err()
	}
	rows, err := db.QueryContext(ctx, `SELECT name, upper(type), hidden FROM pragma_table_xinfo(?) ORDER BY cid`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var name, typ string
		var hidden int
		if err := rows.Scan(&name, &typ, &hidden); err != nil {
			return nil, err
		}
		if hidden != 0 {
			continue // generated
		}
		out = append(out, column{name: name, text: typ == "TEXT" || typ == "BLOB", blob: typ == "BLOB"})
	}
	return out, rows.Err()
}

// cloneSQL builds the statement that copies table's rows of the seed referrals (alias a, joined to their
// referral r) once per clone number in the series s(c) between two bounds (placeholders 1 and 2): every
// text or blob column has the referral's id, task id and ServiceRequest id (and, for messages, the message
// id) suffixed with "-c<n>", so ids stay unique, foreign keys point at the clone's own rows and the webhook
// bodies name the clone. special overrides a column's expression.
func cloneSQL(pg bool, table, from string, cols []column, special map[string]string) string {
	sfx := `'-c' || s.c`
	repl := func(x string, ids []string) string {
		for _, id := range ids {
			x = fmt.Sprintf("replace(%s, %s, %s || %s)", x, id, id, sfx)
		}
		return x
	}
	ids := []string{"r.id", "r.task_id", "r.service_request_id"}
	if table == "outbox_messages" {
		ids = append([]string{"a.id"}, ids...)
	}
	names := make([]string, 0, len(cols))
	exprs := make([]string, 0, len(cols))
	for _, c := range cols {
		names = append(names, c.name)
		e := "a." + c.name
		switch {
		case special[c.name] != "":
			e = special[c.name]
		case c.blob && pg:
			e = "convert_to(" + repl("convert_from(a."+c.name+", 'UTF8')", ids) + ", 'UTF8')"
		case c.blob:
			e = "CAST(" + repl("CAST(a."+c.name+" AS TEXT)", ids) + " AS BLOB)"
		case c.text:
			e = repl(e, ids)
		}
		exprs = append(exprs, e)
	}
	series := `generate_series($1::int, $2::int) AS s(c)`
	with := ""
	if !pg {
		series = `s`
		with = `WITH RECURSIVE s(c) AS (SELECT ? UNION ALL SELECT c + 1 FROM s WHERE c < ?) `
	}
	return with + `INSERT INTO ` + table + ` (` + strings.Join(names, ", ") + `) SELECT ` + strings.Join(exprs, ", ") +
		` FROM ` + from + ` CROSS JOIN ` + series
}

// cloneBacklog copies the rig's referrals (its seed, pre-loaded through HTTP, each with one pending webhook
// message) copies-1 more times in SQL, in batches: referrals, identifiers, timeline entries and messages.
func cloneBacklog(ctx context.Context, r *rig, copies int) error {
	pg := r.dsn != ""
	db, err := openRaw(r)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE bench_seed AS SELECT id FROM referrals`); err != nil {
		return err
	}
	var maxSeq int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM outbox_messages`).Scan(&maxSeq); err != nil {
		return err
	}
	tables := []struct{ name, from string }{
		{"referrals", "bench_seed b JOIN referrals a ON a.id = b.id JOIN referrals r ON r.id = a.id"},
		{"referral_identifiers", "bench_seed b JOIN referral_identifiers a ON a.referral_id = b.id JOIN referrals r ON r.id = a.referral_id"},
		{"referral_events", "bench_seed b JOIN referral_events a ON a.referral_id = b.id JOIN referrals r ON r.id = a.referral_id"},
		{"outbox_messages", "bench_seed b JOIN outbox_messages a ON a.referral_id = b.id JOIN referrals r ON r.id = a.referral_id"},
	}
	stmts := make([]string, 0, len(tables))
	for _, t := range tables {
		cols, err := tableColumns(ctx, db, pg, t.name)
		if err != nil {
			return fmt.Errorf("columns of %s: %w", t.name, err)
		}
		special := map[string]string{}
		switch t.name {
		case "referral_identifiers":
			special["value"] = `a.value || '-c' || s.c`
		case "outbox_messages":
			if !pg {
				special["seq"] = fmt.Sprintf("a.seq + s.c * %d", maxSeq)
			}
		}
		stmts = append(stmts, cloneSQL(pg, t.name, t.from, cols, special))
	}
	var seed int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM bench_seed`).Scan(&seed); err != nil {
		return err
	}
	batch := max(1, 50_000/max(seed, 1)) // clones per transaction: about 50,000 referrals
	for lo := 1; lo < copies; lo += batch {
		hi := min(lo+batch, copies) - 1
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for i, q := range stmts {
			if _, err := tx.ExecContext(ctx, q, lo, hi); err != nil {
				_ = tx.Rollback()
				return fmt.Errorf("clone %s: %w", tables[i].name, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	if _, err := db.ExecContext(ctx, `DROP TABLE bench_seed`); err != nil {
		return err
	}
	if pg {
		// What autovacuum would have done for a backlog that grew over time.
		if _, err := db.ExecContext(ctx, `ANALYZE`); err != nil {
			return err
		}
	}
	return nil
}
