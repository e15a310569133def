package main

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in               []float64
		median, min, max float64
		n                int
	}{
		{[]float64{3, 1, 2}, 2, 1, 3, 3},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4, 4},
		{[]float64{5}, 5, 5, 5, 1},
		{[]float64{math.NaN(), 7, 1}, 4, 1, 7, 2},
	} {
		s := summarize(tc.in)
		if s.median != tc.median || s.min != tc.min || s.max != tc.max || s.n != tc.n {
			t.Errorf("summarize(%v) = %+v, want median %v range %v–%v n %d", tc.in, s, tc.median, tc.min, tc.max, tc.n)
		}
	}
	if s := summarize([]float64{math.NaN()}); s.n != 0 || !math.IsNaN(s.median) {
		t.Errorf("summarize(NaN) = %+v, want nothing", s)
	}
}

func TestUnitCell(t *testing.T) {
	for _, tc := range []struct {
		u    unit
		s    summary
		want string
	}{
		{unitRate, summarize([]float64{812.4, 790, 830}), "812 [790–830]"},
		{unitRate, summarize([]float64{4.25}), "4.2"},
		{unitDur, summarize([]float64{0.00121, 0.0011, 0.0013}), "1.21ms [1.1ms–1.3ms]"},
		{unitDur, summarize([]float64{12.34}), "12.3s"},
		{unitCount, summarize([]float64{0, 0, 0}), "0"},
		{unitMiB, summarize([]float64{43196}), "42 MiB"},
		{unitKiB, summarize([]float64{25600, 30720}), "27.5 KiB [25.0 KiB–30.0 KiB]"},
		{unitRatio, summarize([]float64{0.5, 1, 2}), "1.00× [0.50×–2.00×]"},
		{unitRate, summarize(nil), "–"},
	} {
		if got := tc.u.cell(tc.s); got != tc.want {
			t.Errorf("cell(%+v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestTableLines(t *testing.T) {
	rows := []rowDef{{section: "S", label: "16 clients", ours: "a", peer: "b", metrics: []metricDef{
		{"referrals/s", "rate", unitRate, true}, {"p99", "p99", unitDur, false}}}}
	results := map[string][]metrics{
		"a": {{"rate": 100, "p99": 0.01}, {"rate": 300, "p99": 0.02}, nil},
		"b": {{"rate": 200}, {"rate": 200}, {"rate": 100}},
	}
	lines := tableLines(rows, results)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	if l := lines[0]; l.row != "16 clients" || l.ours != "200 [100–300]" || l.peer != "200 [100–200]" || l.ratio != "1.00× [0.50×–1.50×]" {
		t.Errorf("first line %+v", l)
	}
	if l := lines[1]; l.row != "" || l.peer != "–" || l.ratio != "" || l.ours != "15ms [10ms–20ms]" {
		t.Errorf("second line %+v", l)
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	err := writeTable(&b, [5]string{"row", "metric", "socialrx", "peer", "ratio"}, []tableLine{
		{section: "1. Intake", row: "1 client", metric: "referrals/s", ours: "812", peer: "950", ratio: "0.85×"},
		{section: "1. Intake", metric: "p99", ours: "3ms", peer: "–"},
		{section: "2. Drain", row: "2000 pending", metric: "msg/s", ours: "1200", peer: "900", ratio: "1.33×"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `row           metric       socialrx  peer  ratio
────────────────────────────────────────────────
1. Intake
1 client      referrals/s  812       950   0.85×
              p99          3ms       –
2. Drain
2000 pending  msg/s        1200      900   1.33×
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestParseRiverJSON(t *testing.T) {
	out := `{"kind":"throughput","max_workers":16,"fetch_cooldown":"1ms","jobs":300,"delivered":300,"seconds":0.13,"per_second":2270.5,"dups":0}
{"kind":"latency","max_workers":16,"fetch_cooldown":"1ms","jobs":100,"delivered":100,"seconds":0.99,"per_second":100.7,"dups":1,"rate":100,"accepted":100,"p50_us":800,"p99_us":25500,"max_us":25600,"lag_us":924,"insert_p50_us":1120}
`
	ms, err := parseRiverJSON([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Kind != "throughput" || ms[0].PerSecond != 2270.5 || ms[1].P99US != 25500 || ms[1].LagUS != 924 || ms[1].Dups != 1 || ms[1].Accepted != 100 {
		t.Errorf("parsed %+v", ms)
	}
	for _, bad := range []string{"", "command: river-bench\n", `{"jobs":1}`} {
		if _, err := parseRiverJSON([]byte(bad)); err == nil {
			t.Errorf("parseRiverJSON(%q): no error", bad)
		}
	}
}

func TestParsePgbench(t *testing.T) {
	out := `pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: /tmp/pgbench-8.sql
scaling factor: 1
query mode: prepared
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 1274
number of failed transactions: 3 (0.235%)
latency average = 12.561 ms
initial connection time = 9.125 ms
tps = 635.732243 (without initial connection time)
`
	r, err := parsePgbench(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.tps != 635.732243 || r.latencyMS != 12.561 || r.failed != 3 {
		t.Errorf("parsed %+v", r)
	}
	if _, err := parsePgbench("pgbench: error: connection to server failed\n"); err == nil {
		t.Error("no tps line: no error")
	}
}

func TestParseVmHWM(t *testing.T) {
	status := "Name:\tsocialrx-bench\nVmPeak:\t 1000 kB\nVmHWM:\t   43196 kB\nVmRSS:\t 40000 kB\n"
	if v, err := parseVmHWM(status); err != nil || v != 43196 {
		t.Errorf("parseVmHWM = %d, %v; want 43196", v, err)
	}
	if _, err := parseVmHWM("Name:\tx\n"); err == nil {
		t.Error("no VmHWM: no error")
	}
}

func TestSQLLiteral(t *testing.T) {
	ids := map[string]string{"abc": "'r-' || :n::text"}
	for _, tc := range []struct {
		v    any
		want string
	}{
		{"it's", "'it''s'"}, {"abc", "('r-' || :n::text)"}, {[]byte("{}"), `'\x7b7d'::bytea`}, {int64(7), "7"},
		{nil, "NULL"}, {"", "''"},
	} {
		if got := sqlLiteral(tc.v, ids); got != tc.want {
			t.Errorf("sqlLiteral(%v) = %s, want %s", tc.v, got, tc.want)
		}
	}
}

func TestCloneSQL(t *testing.T) {
	cols := []column{{name: "id", text: true}, {name: "seq"}, {name: "payload", text: true, blob: true}}
	pg := cloneSQL(true, "outbox_messages", "m a JOIN referrals r ON r.id = a.referral_id", cols, nil)
	for _, want := range []string{"INSERT INTO outbox_messages (id, seq, payload) SELECT ",
		"replace(a.id, a.id, a.id || '-c' || s.c)", "convert_to(", "generate_series($1::int, $2::int) AS s(c)"} {
		if !strings.Contains(pg, want) {
			t.Errorf("PostgreSQL clone lacks %q:\n%s", want, pg)
		}
	}
	lite := cloneSQL(false, "outbox_messages", "m a", cols, map[string]string{"seq": "a.seq + s.c * 10"})
	for _, want := range []string{"WITH RECURSIVE s(c) AS (SELECT ? UNION ALL SELECT c + 1 FROM s WHERE c < ?)",
		"a.seq + s.c * 10", "CAST(replace(", " AS BLOB)"} {
		if !strings.Contains(lite, want) {
			t.Errorf("SQLite clone lacks %q:\n%s", want, lite)
		}
	}
}

// TestPgbenchScriptWritesWhatACreateWrites: pgbench running the script of a real referral's create, on a real
// PostgreSQL server, writes per transaction what the create wrote: a referral, its message and its timeline
// entry, and (the server auditing as serve does) one audit record on the pgbench client's own chain, whose
// head follows it; no transaction fails.
func TestPgbenchScriptWritesWhatACreateWrites(t *testing.T) {
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("pgbench not found")
		}
		t.Skip("pgbench not found")
	}
	pgtest.FreshSchema(t) // skips without a server (fails under CI)
	o := deliveryOptions{timeout: time.Minute, log: slog.New(slog.DiscardHandler), out: io.Discard, dir: t.TempDir(),
		ctx: t.Context(), postgres: pgtest.ServerURL(), audit: true,
		schemaPrefix: fmt.Sprintf("socialrx_pgbenchtest_%d_", os.Getpid())}
	r, err := newRig(o, "script", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	const clients, each = 2, 3
	path, err := pgbenchPrepare(o, r, "script", clients)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runPgbench(o, bin, "script", path, clients, "-t", fmt.Sprint(each))
	if err != nil || res.failed != 0 {
		t.Fatalf("pgbench: %+v, %v", res, err)
	}
	db, err := openRaw(r)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var perReferral int // the sample's messages
	if err := db.QueryRowContext(t.Context(), `SELECT count(*) FROM outbox_messages WHERE referral_id = (SELECT min(id) FROM referrals WHERE id NOT LIKE 'r-%')`).Scan(&perReferral); err != nil || perReferral == 0 {
		t.Fatalf("the sample's messages: %d, %v", perReferral, err)
	}
	for _, c := range []struct {
		query string
		want  int
	}{
		{`SELECT count(*) FROM referrals`, 1 + clients*each},
		{`SELECT count(*) FROM referral_events WHERE cause = 'create'`, 1 + clients*each},
		{`SELECT count(*) FROM outbox_messages`, perReferral * (1 + clients*each)},
		{`SELECT count(*) FROM audit_records WHERE chain LIKE 'pgbench-%' AND action = 'create'`, clients * each},
		{`SELECT count(DISTINCT chain) FROM audit_records WHERE chain LIKE 'pgbench-%'`, clients},
		{`SELECT count(*) FROM audit_chains WHERE chain LIKE 'pgbench-%' AND head_seq = ` + fmt.Sprint(each), clients},
	} {
		var n int
		if err := db.QueryRowContext(t.Context(), c.query).Scan(&n); err != nil || n != c.want {
			t.Errorf("%s: %d, %v; want %d", c.query, n, err, c.want)
		}
	}
}
