package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
	"github.com/socialrx/socialrx/outbox/sqlite"
)

// TestCLIAudit: `outbox show` records its reader (--actor) in the audit trail; `audit list` shows it with
// its filters; `audit verify` passes on the untouched trail (exit 0) and fails (exit 1, naming the record)
// once a row is changed by SQL; on SQLite and PostgreSQL.
func TestCLIAudit(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			var url string
			var exec func(q string) error
			var store func() outbox.Store
			quiet := slog.New(slog.DiscardHandler)
			switch backend {
			case "sqlite":
				path := filepath.Join(t.TempDir(), "socialrx.db")
				url = "sqlite:" + path
				seedDead(t, path, "frome-walks", 2)
				store = func() outbox.Store {
					st, err := sqlite.Open(context.Background(), path, sqlite.Options{Logger: quiet, Existing: true})
					if err != nil {
						t.Fatal(err)
					}
					return st
				}
				exec = func(q string) error {
					db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
					if err != nil {
						return err
					}
					defer db.Close()
					_, err = db.Exec(q)
					return err
				}
			case "postgres":
				url = pgtest.FreshSchema(t)
				if code, _, errOut := cliRun(map[string]string{"SOCIALRX_DATABASE_URL": url}, "migrate"); code != 0 {
					t.Fatalf("migrate: %s", errOut)
				}
				store = func() outbox.Store {
					st, err := postgres.Open(context.Background(), url, postgres.Options{Logger: quiet, NoListen: true, MaxConns: 2})
					if err != nil {
						t.Fatal(err)
					}
					return st
				}
				exec = func(q string) error {
					db, err := sql.Open("pgx", url)
					if err != nil {
						return err
					}
					defer db.Close()
					_, err = db.Exec(q) // no placeholders
					return err
				}
			}
			st := store()
			a := outbox.NewAuditLog(st, outbox.AuditLogOptions{Instance: "serve"})
			if err := a.Record(context.Background(), outbox.AuditRecord{At: cliT0, RequestID: "req-1", ActorID: "practice-a81001",
				ActorRole: "gp", Via: "fhir", Action: outbox.AuditRead, ResourceType: "Task", ResourceID: "t-1", ReferralID: "frome-walks-0000",
				PracticeODS: "A81001", Address: "192.0.2.1"}); err != nil {
				t.Fatal(err)
			}
			a.Close()
			msgs, err := st.ListMessages(context.Background(), outbox.MessageQuery{})
			if err != nil {
				t.Fatal(err)
			}
			st.Close()
			env := map[string]string{"SOCIALRX_DATABASE_URL": url}
			if len(msgs) > 0 {
				if code, _, errOut := cliRun(env, "outbox", "show", msgs[0].ID); code != exitUsage || !strings.Contains(errOut, "--actor") {
					t.Errorf("show without an actor: %d %q", code, errOut)
				}
				if code, _, errOut := cliRun(env, "outbox", "show", msgs[0].ID, "--actor", "alice"); code != 0 {
					t.Fatalf("show: %d %s", code, errOut)
				}
				code, out, errOut := cliRun(env, "audit", "list", "--client", "cli:alice", "--json")
				var views []struct {
					Actor, Role, Via, Action, Resource string
					ReferralID                         string `json:"referral_id"`
				}
				if err := json.Unmarshal([]byte(out), &views); code != 0 || err != nil || len(views) != 1 ||
					views[0].Role != "operator" || views[0].Via != "cli" || views[0].Resource != "Message/"+msgs[0].ID ||
					views[0].ReferralID != msgs[0].ReferralID {
					t.Errorf("audit list --client cli:alice: %d %s %s", code, out, errOut)
				}
			}
			code, out, errOut := cliRun(env, "audit", "list", "--referral", "frome-walks-0000")
			if code != 0 || !strings.Contains(out, "practice-a81001") || !strings.Contains(out, "192.0.2.1") {
				t.Errorf("audit list: %d %s %s", code, out, errOut)
			}
			if code, _, errOut := cliRun(env, "audit", "list", "--since", "yesterday"); code != exitUsage || !strings.Contains(errOut, "--since") {
				t.Errorf("a bad --since: %d %q", code, errOut)
			}
			if code, out, errOut := cliRun(env, "audit", "verify"); code != 0 || !strings.Contains(out, "the audit trail is intact") {
				t.Fatalf("verify: %d %s %s", code, out, errOut)
			}
			if err := exec(`UPDATE audit_records SET address = '10.0.0.1' WHERE request_id = 'req-1'`); err != nil {
				t.Fatal(err)
			}
			code, out, errOut = cliRun(env, "audit", "verify")
			if code != 1 || !strings.Contains(out, "record 1: the record's content does not match its hash (changed)") ||
				!strings.Contains(errOut, "tampered") {
				t.Errorf("verify after a change: %d %s %s", code, out, errOut)
			}
		})
	}
}
