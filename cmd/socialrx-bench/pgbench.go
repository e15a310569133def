package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// pgbenchResult is one pgbench run's figures.
type pgbenchResult struct {
	tps       float64 // transactions/s (without initial connection time)
	latencyMS float64 // average latency (ms)
	failed    int64   // failed transactions (PostgreSQL 15 reports them)
}

// pgbenchRun measures PostgreSQL itself doing what one CreateReferral does, as a pgbench script: a fresh
// schema is migrated by the real store (postgres.Open), one referral is posted through the real server, and
// its rows become the script's literals (pgbenchPrepare); then pgbench -c clients -j min(clients, 2) -T dur
// runs it in that schema (PGOPTIONS=-csearch_path=…), prepared statements as pgx uses them.
func pgbenchRun(o deliveryOptions, bin string, clients int, dur time.Duration) (pgbenchResult, error) {
	name := fmt.Sprintf("pgbench-%d", clients)
	r, err := newRig(o, name, 1, 0)
	if err != nil {
		return pgbenchResult{}, err
	}
	defer r.close()
	path, err := pgbenchPrepare(o, r, name, clients)
	if err != nil {
		return pgbenchResult{}, err
	}
	defer os.Remove(path)
	secs := max(int(dur.Round(time.Second)/time.Second), 1)
	return runPgbench(o, bin, name, path, clients, "-T", strconv.Itoa(secs))
}

// pgbenchPrepare posts one referral through rig r's server and writes its pgbench script (pgbenchScript) to
// a file of o.dir, whose path it returns; when the create appended its audit record, it also starts the
// chain ('pgbench-' and its client id) each of clients pgbench clients appends to.
func pgbenchPrepare(o deliveryOptions, r *rig, name string, clients int) (string, error) {
	id, err := r.post(o.ctx, 1)
	if err != nil {
		return "", fmt.Errorf("pgbench sample: %w", err)
	}
	db, err := openRaw(r)
	if err != nil {
		return "", err
	}
	defer db.Close()
	script, audited, err := pgbenchScript(o.ctx, db, id)
	if err != nil {
		return "", fmt.Errorf("pgbench script: %w", err)
	}
	if audited {
		if _, err := db.ExecContext(o.ctx, `INSERT INTO audit_chains (chain, instance, started_at, head_seq, head_hash)
			SELECT 'pgbench-' || g, 'pgbench', 0, 0, 'genesis' FROM generate_series(0, $1::int - 1) g`, clients); err != nil {
			return "", fmt.Errorf("pgbench chains: %w", err)
		}
	}
	path := filepath.Join(o.dir, name+".sql")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// runPgbench runs the script at path with clients clients in rig name's schema, for as long as limit says
// (-T seconds, or -t transactions per client).
func runPgbench(o deliveryOptions, bin, name, path string, clients int, limit ...string) (pgbenchResult, error) {
	args := append([]string{"-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2))}, limit...)
	cmd := exec.CommandContext(o.ctx, bin, append(args, "-f", path, o.postgres)...)
	cmd.Env = append(os.Environ(), "PGOPTIONS=-csearch_path="+benchSchema(o.schemaPrefix, name))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return pgbenchResult{}, fmt.Errorf("pgbench: %w: %s", err, strings.TrimSpace(lastLines(stderr.String(), 5)))
	}
	return parsePgbench(stdout.String())
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var (
	pgbenchTPS     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	pgbenchLatency = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	pgbenchFailed  = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

// parsePgbench reads pgbench's summary.
func parsePgbench(out string) (pgbenchResult, error) {
	m := pgbenchTPS.FindStringSubmatch(out)
	if m == nil {
		return pgbenchResult{}, fmt.Errorf("pgbench printed no tps line: %q", lastLines(out, 3))
	}
	var res pgbenchResult
	var err error
	if res.tps, err = strconv.ParseFloat(m[1], 64); err != nil {
		return pgbenchResult{}, fmt.Errorf("pgbench tps: %w", err)
	}
	if m := pgbenchLatency.FindStringSubmatch(out); m != nil {
		res.latencyMS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := pgbenchFailed.FindStringSubmatch(out); m != nil {
		res.failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return res, nil
}

// sampleRows are the rows one CreateReferral wrote, as column names and values, per table.
type sampleRows struct {
	table string
	cols  []string
	vals  []any
}

// readSample reads every row the create of ServiceRequest srID wrote (referrals, referral_identifiers,
// outbox_messages, referral_events), generated and identity columns left out.
func readSample(ctx context.Context, db *sql.DB, srID string) ([]sampleRows, error) {
	var id string
	if err := db.QueryRowContext(ctx, `SELECT id FROM referrals WHERE service_request_id = $1`, srID).Scan(&id); err != nil {
		return nil, fmt.Errorf("the sample referral: %w", err)
	}
	var out []sampleRows
	for _, t := range []struct{ table, where string }{
		{"referrals", "id = $1"}, {"referral_identifiers", "referral_id = $1"},
		{"outbox_messages", "referral_id = $1"}, {"referral_events", "referral_id = $1"},
		{"audit_records", "referral_id = $1 AND action = 'create'"},
	} {
		cols, err := tableColumns(ctx, db, true, t.table)
		if err != nil {
			return nil, err
		}
		names := make([]string, len(cols))
		for i, c := range cols {
			names[i] = c.name
		}
		rows, err := db.QueryContext(ctx, `SELECT `+strings.Join(names, ", ")+` FROM `+t.table+` WHERE `+t.where, id)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, sampleRows{table: t.table, cols: names, vals: vals})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pgbenchScript writes the pgbench script of one CreateReferral as the PostgreSQL store runs it (see
// outbox/internal/sqlstore createIn and outbox/postgres): the stamp reservation (the store makes it on a
// separate autocommit connection; here it is an autocommit statement before the transaction, with its own
// transaction id), then in one transaction the identifier's advisory lock, the lookup of an existing
// referral by identifier, the transaction id, the referral row, its identifier, its outbox message(s), the
// fan-out's subscription query, its timeline entry, the audit record of its creation when the create
// appended one (audited; one statement moving the head of the pgbench client's own chain, 'pgbench-' and
// :client_id, and inserting the record after it, as the store's append after a known head does; its hashes
// are the sample's) and the
// NOTIFY that wakes other instances. Row values are ServiceRequest srID's referral's rows (literals; ids made
// unique per transaction from :client_id and a random :n).
func pgbenchScript(ctx context.Context, db *sql.DB, srID string) (script string, audited bool, err error) {
	rows, err := readSample(ctx, db, srID)
	if err != nil {
		return "", false, err
	}
	if len(rows) < 4 {
		return "", false, fmt.Errorf("the sample referral has %d rows, want at least 4", len(rows))
	}
	ids := map[string]string{} // a sample id → its per-transaction expression
	var practice, system, value string
	for _, r := range rows {
		get := func(col string) string {
			for i, c := range r.cols {
				if c == col {
					if s, ok := r.vals[i].(string); ok {
						return s
					}
				}
			}
			return ""
		}
		switch r.table {
		case "referrals":
			ids[get("id")] = `'r-' || :client_id::text || '-' || :n::text`
			ids[get("task_id")] = `'t-' || :client_id::text || '-' || :n::text`
			ids[get("service_request_id")] = `'s-' || :client_id::text || '-' || :n::text`
		case "referral_identifiers":
			practice, system, value = get("practice_ods"), get("system"), get("value")
			ids[value] = `'v-' || :client_id::text || '-' || :n::text`
		case "outbox_messages":
			ids[get("id")] = `'m-' || :client_id::text || '-' || :n::text || '-' || '` + strconv.Itoa(len(ids)) + `'`
		}
	}
	var channel string
	if err := db.QueryRowContext(ctx, `SELECT 'socialrx_pgbench_' || current_schema()`).Scan(&channel); err != nil {
		return "", false, err
	}
	insert := func(r sampleRows) string {
		vals := make([]string, len(r.vals))
		for i, v := range r.vals {
			vals[i] = sqlLiteral(v, ids)
			if r.cols[i] == "updated_at" || (r.table == "referral_events" && r.cols[i] == "at") {
				vals[i] = ":stamp"
			}
		}
		return `INSERT INTO ` + r.table + ` (` + strings.Join(r.cols, ", ") + `) VALUES (` + strings.Join(vals, ", ") + `);`
	}
	var b strings.Builder
	b.WriteString("-- One CreateReferral of socialrx's PostgreSQL store (written by socialrx-bench -table from a real referral).\n")
	b.WriteString("\\set n random(1, 9000000000000000000)\n")
	b.WriteString("SELECT socialrx_reserve_stamp((extract(epoch FROM clock_timestamp()) * 1000000)::bigint, pg_current_xact_id()) AS stamp \\gset\n")
	b.WriteString("BEGIN;\n")
	b.WriteString("SELECT pg_advisory_xact_lock(:n);\n")
	fmt.Fprintf(&b, "SELECT referral_id FROM referral_identifiers WHERE practice_ods = %s AND system = %s AND value = %s;\n",
		sqlLiteral(practice, nil), sqlLiteral(system, nil), sqlLiteral(value, ids))
	b.WriteString("SELECT pg_current_xact_id()::text;\n")
	for _, table := range []string{"referrals", "referral_identifiers", "outbox_messages"} {
		for _, r := range rows {
			if r.table == table {
				b.WriteString(insert(r) + "\n")
			}
		}
	}
	fmt.Fprintf(&b, "SELECT id, owner_client_id, practice_ods, criteria, endpoint, headers, payload, status, events_since_start, base_url, created_at, updated_at, resource, error, topic, heartbeat_period FROM subscriptions WHERE lower(practice_ods) = lower(%s) AND status IN ('active', 'error') ORDER BY id;\n",
		sqlLiteral(practice, nil))
	for _, r := range rows {
		if r.table == "referral_events" {
			b.WriteString(insert(r) + "\n")
		}
	}
	for _, r := range rows {
		if r.table != "audit_records" {
			continue
		}
		audited = true
		vals := make([]string, len(r.vals))
		var hash string
		for i, v := range r.vals {
			switch r.cols[i] {
			case "chain":
				vals[i] = "h.chain"
			case "chain_seq":
				vals[i] = "h.head_seq"
			case "hash":
				vals[i] = sqlLiteral(v, ids)
				hash = vals[i]
			default:
				vals[i] = sqlLiteral(v, ids)
			}
		}
		fmt.Fprintf(&b, "WITH h AS (UPDATE audit_chains SET head_seq = head_seq + 1, head_hash = %s "+
			"WHERE chain = 'pgbench-' || :client_id::text RETURNING chain, head_seq) "+
			"INSERT INTO audit_records (%s) SELECT %s FROM h;\n", hash, strings.Join(r.cols, ", "), strings.Join(vals, ", "))
	}
	fmt.Fprintf(&b, "SELECT pg_notify('%s', 'pgbench');\n", channel)
	b.WriteString("END;\n")
	return b.String(), audited, nil
}

// sqlLiteral spells v as an SQL literal; a string that is one of ids' keys becomes its expression.
func sqlLiteral(v any, ids map[string]string) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case string:
		if e, ok := ids[v]; ok && v != "" {
			return "(" + e + ")"
		}
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	case []byte:
		return `'\x` + hex.EncodeToString(v) + `'::bytea`
	case int64:
		return strconv.FormatInt(v, 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case bool:
		return strconv.FormatBool(v)
	default:
		return "'" + strings.ReplaceAll(fmt.Sprint(v), "'", "''") + "'"
	}
}
