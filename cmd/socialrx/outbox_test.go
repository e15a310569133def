package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
	"github.com/socialrx/socialrx/outbox/sqlite"
)

// cliRun runs the CLI in-process with env as its whole environment.
func cliRun(env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = CLI(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

var cliT0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

// seedDead creates, in the SQLite file at path (migrated), n referrals to service each with one dead
// referral.created (HTTP 410), and returns the message ids in order.
func seedDead(t *testing.T, path, service string, n int) []string {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, path, sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dest := mapping.Destination{Kind: mapping.DestinationService, ID: service}
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%04d", service, i)
		in := mapping.Intake{
			Referral: mapping.Referral{Record: mapping.Record{ID: id, TaskID: "t-" + id, ServiceRequestID: "sr-" + id,
				Status: mapping.StatusRequested, Service: mapping.ServiceRef{ID: service}, CreatedAt: cliT0.Add(time.Duration(i) * time.Second)},
				PracticeODS: "A81001", BusinessStatus: mapping.BusinessQueued},
			ServiceRequest: json.RawMessage(`{}`), Fingerprint: "fp-" + id,
			Identifiers: []mapping.Identifier{{System: "urn:test", Value: id}},
			Events: []mapping.Event{{ID: "m-" + id, Type: mapping.EventReferralCreated, Destination: dest,
				Payload: json.RawMessage(`{"type":"referral.created"}`)}},
		}
		if _, err := st.CreateReferral(ctx, in); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, "m-"+id)
	}
	at := cliT0.Add(time.Hour)
	for {
		ms, err := st.ClaimMessages(ctx, "seed", at, time.Minute, 1000, outbox.ClaimFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			return ids
		}
		for _, m := range ms {
			if err := st.CompleteAttempt(ctx, m.ID, at, outbox.AttemptResult{Owner: "seed", State: outbox.StateDead,
				Attempt: outbox.Attempt{StatusCode: 410, Error: "HTTP 410 Gone", Response: `{"error":"gone"}`}}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func stateCount(t *testing.T, path string, st outbox.MessageState) int {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{Existing: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	counts, _, err := s.CountMessages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return counts[st]
}

// TestCLIBulkReplayEveryMessage: 250 dead messages, more than two internal pages: list shows all 250 (and
// --limit caps it), the dry run says 250, the replay replays 250 and says so, reporting progress on stderr,
// paced; nothing dead is left.
func TestCLIBulkReplayEveryMessage(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "socialrx.db")
	ids := seedDead(t, path, "frome-walks", 250)
	env := map[string]string{"SOCIALRX_DATABASE_URL": "sqlite:" + path, "SOCIALRX_ACTOR": "alice"}

	code, out, errOut := cliRun(env, "outbox", "list", "--state", "dead")
	if code != 0 || strings.Count(out, "\nm-frome-walks-") != 250 || !strings.Contains(out, "250 message(s)") {
		t.Fatalf("list --state dead: exit %d, %d rows\n%s", code, strings.Count(out, "\nm-frome-walks-"), errOut)
	}
	if want := "… 200 listed\n… 250 listed\n"; errOut != want {
		t.Errorf("list progress on stderr %q, want %q", errOut, want)
	}
	code, out, _ = cliRun(env, "outbox", "list", "--state", "dead", "--json")
	var listed []struct{ ID string }
	if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil || len(listed) != 250 || listed[249].ID != ids[249] {
		t.Fatalf("list --json: exit %d, %d messages, %v", code, len(listed), err)
	}
	if code, out, _ = cliRun(env, "outbox", "list", "--limit", "7"); code != 0 || !strings.Contains(out, "7 message(s)") {
		t.Errorf("list --limit 7: %d %s", code, out)
	}
	// --older-than: messages created more than ten minutes before the newest… all of them, by the wall clock.
	if code, out, _ = cliRun(env, "outbox", "list", "--older-than", "1h"); code != 0 || !strings.Contains(out, "250 message(s)") {
		t.Errorf("list --older-than 1h: %d %s", code, out)
	}
	code, out, errOut = cliRun(env, "outbox", "replay", "--state", "dead", "--service", "frome-walks", "--reason", "walks back", "--dry-run")
	if code != 0 || !strings.HasPrefix(out, "would replay 250 message(s)") {
		t.Fatalf("dry run: exit %d %q %s", code, firstLine(out), errOut)
	}
	if n := stateCount(t, path, outbox.StateDead); n != 250 {
		t.Fatalf("the dry run changed messages: %d dead", n)
	}
	code, out, errOut = cliRun(env, "outbox", "replay", "--state", "dead", "--service", "frome-walks", "--reason", "walks back", "--rate", "50")
	if code != 0 || !strings.HasPrefix(out, "replayed 250 message(s), due over the next 5s (50 a second)") {
		t.Fatalf("replay: exit %d %q %s", code, firstLine(out), errOut)
	}
	if want := "… 100 of 250\n… 200 of 250\n… 250 of 250\n"; errOut != want {
		t.Errorf("progress on stderr %q, want %q", errOut, want)
	}
	if n := stateCount(t, path, outbox.StateDead); n != 0 {
		t.Errorf("%d dead messages left after replaying all", n)
	}
	code, out, _ = cliRun(env, "outbox", "show", ids[249], "--json")
	var d struct {
		Message  struct{ State string }
		Attempts []struct{ Response string }
		Replays  []struct{ Actor, Reason string }
	}
	if err := json.Unmarshal([]byte(out), &d); code != 0 || err != nil || d.Message.State != "pending" || len(d.Replays) != 1 ||
		d.Replays[0].Actor != "cli:alice" || d.Replays[0].Reason != "walks back" || d.Attempts[0].Response != `{"error":"gone"}` {
		t.Errorf("show after replay: %d %v %+v", code, err, d)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// TestCLIActor: a change needs an actor from --actor or SOCIALRX_ACTOR (never $USER), and records it.
func TestCLIActor(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "socialrx.db")
	ids := seedDead(t, path, "frome-walks", 2)
	env := map[string]string{"SOCIALRX_DATABASE_URL": "sqlite:" + path, "USER": "mallory", "LOGNAME": "mallory"}
	code, _, errOut := cliRun(env, "outbox", "replay", ids[0], "--reason", "fixed")
	if code != exitUsage || !strings.Contains(errOut, "--actor") || !strings.Contains(errOut, "SOCIALRX_ACTOR") {
		t.Errorf("replay without an actor: %d %q", code, errOut)
	}
	if code, _, errOut = cliRun(env, "outbox", "replay", ids[0], "--reason", "fixed", "--actor", "bob"); code != 0 {
		t.Fatalf("replay --actor bob: %d %s", code, errOut)
	}
	env["SOCIALRX_ACTOR"] = "carol"
	if code, _, errOut = cliRun(env, "outbox", "replay", ids[1], "--reason", "fixed"); code != 0 {
		t.Fatalf("replay with SOCIALRX_ACTOR: %d %s", code, errOut)
	}
	for id, want := range map[string]string{ids[0]: "cli:bob", ids[1]: "cli:carol"} {
		_, out, _ := cliRun(env, "outbox", "show", id)
		if !strings.Contains(out, "by "+want+" from dead: fixed") || strings.Contains(out, "mallory") {
			t.Errorf("show %s: replay not recorded as %s:\n%s", id, want, out)
		}
	}
}

// TestCLIDiscardPauseResume: discard, pause (shown in list and pauses), resume; the answers name the service.
func TestCLIDiscardPauseResume(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "socialrx.db")
	ids := seedDead(t, path, "frome-walks", 3)
	env := map[string]string{"SOCIALRX_DATABASE_URL": "sqlite:" + path, "SOCIALRX_ACTOR": "alice"}

	code, out, errOut := cliRun(env, "outbox", "discard", ids[0], "--reason", "test patient: never send")
	if code != 0 || !strings.HasPrefix(out, "discarded 1 message(s)") {
		t.Fatalf("discard: %d %s %s", code, out, errOut)
	}
	if _, out, _ = cliRun(env, "outbox", "show", ids[0]); !strings.Contains(out, "state        discarded") ||
		!strings.Contains(out, "by cli:alice (was dead): test patient: never send") {
		t.Errorf("show discarded:\n%s", out)
	}
	if code, _, errOut = cliRun(env, "outbox", "replay", ids[0], "--reason", "oops"); code != exitUsage || !strings.Contains(errOut, "discarded") {
		t.Errorf("replay of a discarded message: %d %q", code, errOut)
	}
	if code, _, errOut = cliRun(env, "outbox", "discard", "nope", "--reason", "x"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("discard of an unknown id: %d %q", code, errOut)
	}

	if code, out, errOut = cliRun(env, "outbox", "pause", "frome-walks", "--reason", "receiver down, INC-42"); code != 0 ||
		!strings.HasPrefix(out, "paused frome-walks") {
		t.Fatalf("pause: %d %s %s", code, out, errOut)
	}
	if code, out, _ = cliRun(env, "outbox", "pause", "frome-walks", "--reason", "again"); code != 0 || !strings.Contains(out, "already paused") {
		t.Errorf("second pause: %d %s", code, out)
	}
	if code, _, errOut = cliRun(env, "outbox", "pause", "nowhere", "--reason", "x"); code != exitUsage || !strings.Contains(errOut, "nowhere") {
		t.Errorf("pause of an unknown service: %d %q", code, errOut)
	}
	if code, _, errOut = cliRun(env, "outbox", "replay", ids[1], "--reason", "fixed"); code != 0 {
		t.Fatal(errOut)
	}
	_, out, _ = cliRun(env, "outbox", "list")
	if !strings.Contains(out, "PAUSED service:frome-walks") || !strings.Contains(out, "INC-42") ||
		!regexp.MustCompile(ids[1]+` +pending \(paused\)`).MatchString(out) {
		t.Errorf("list while paused:\n%s", out)
	}
	if _, out, _ = cliRun(env, "outbox", "list", "--json", "--state", "pending"); !strings.Contains(out, `"paused": true`) {
		t.Errorf("list --json while paused:\n%s", out)
	}
	if _, out, _ = cliRun(env, "outbox", "pauses"); !strings.Contains(out, "by cli:alice: receiver down, INC-42") {
		t.Errorf("pauses:\n%s", out)
	}
	if code, out, errOut = cliRun(env, "outbox", "resume", "frome-walks"); code != 0 || !strings.Contains(out, "1 message(s) waiting are due now") {
		t.Errorf("resume: %d %s %s", code, out, errOut)
	}
	if _, out, _ = cliRun(env, "outbox", "pauses"); !strings.Contains(out, "no service is paused") {
		t.Errorf("pauses after resume: %s", out)
	}
	if code, _, errOut = cliRun(env, "outbox", "resume", "frome-walks"); code != exitUsage || !strings.Contains(errOut, "not paused") {
		t.Errorf("resume again: %d %q", code, errOut)
	}
}

// TestCLINeverCreatesNorMigrates: a missing file and an unmigrated schema are errors naming the URL, and
// nothing is created or changed; on PostgreSQL too.
func TestCLINeverCreatesNorMigrates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "nothing-here.db")
	env := map[string]string{"SOCIALRX_DATABASE_URL": "sqlite:" + missing, "SOCIALRX_ACTOR": "alice"}
	for _, args := range [][]string{{"list"}, {"show", "x"}, {"replay", "--state", "dead", "--reason", "x"},
		{"discard", "x", "--reason", "x"}, {"pause", "walks", "--reason", "x"}, {"resume", "walks"}, {"pauses"}} {
		code, _, errOut := cliRun(env, append([]string{"outbox"}, args...)...)
		if code != 1 || !strings.Contains(errOut, "no socialrx database at sqlite:"+missing) || !strings.Contains(errOut, "socialrx migrate") {
			t.Errorf("outbox %s on a missing database: %d %q", args[0], code, errOut)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the CLI created %v", names(entries))
	}

	// A database of an older socialrx: migrations 1 to 4 only.
	old := filepath.Join(dir, "old.db")
	st, err := sqlite.Open(context.Background(), old, sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	downgrade(t, old)
	env["SOCIALRX_DATABASE_URL"] = "sqlite:" + old
	code, _, errOut := cliRun(env, "outbox", "list")
	if code != 1 || !strings.Contains(errOut, "sqlite:"+old) || !strings.Contains(errOut, "run socialrx migrate") ||
		!strings.Contains(errOut, "40") {
		t.Errorf("outbox list on an unmigrated schema: %d %q", code, errOut)
	}
	if code, _, errOut = cliRun(env, "migrate"); code != 0 {
		t.Fatalf("migrate: %s", errOut)
	}
	if code, _, errOut = cliRun(env, "outbox", "list"); code != 0 {
		t.Errorf("outbox list after migrate: %d %s", code, errOut)
	}

	// PostgreSQL: an empty schema is not a socialrx database; the URL is named without its password.
	dsn := pgtest.FreshSchema(t)
	env["SOCIALRX_DATABASE_URL"] = dsn
	code, _, errOut = cliRun(env, "outbox", "list")
	if code != 1 || !strings.Contains(errOut, "no socialrx database at "+pgtest.Redact(dsn)) {
		t.Errorf("outbox list on an empty PostgreSQL schema: %d %q", code, errOut)
	}
	if code, _, errOut = cliRun(env, "outbox", "pauses"); code != 1 {
		t.Errorf("pauses on an empty schema: %d %q", code, errOut)
	}
	if code, _, errOut = cliRun(env, "migrate"); code != 0 {
		t.Fatalf("migrate PostgreSQL: %s", errOut)
	}
	if code, out, errOut := cliRun(env, "outbox", "pauses"); code != 0 || !strings.Contains(out, "no service is paused") {
		t.Errorf("pauses after migrate: %d %s %s", code, out, errOut)
	}
}

func names(entries []fs.DirEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// downgrade takes the SQLite database at path back to migration 4 (the schema before issue 11), with the
// migration files of the repository.
func downgrade(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	p, err := goose.NewProvider(goose.DialectSQLite3, db, os.DirFS("../../outbox/sqlite/migrations"),
		goose.WithDisableGlobalRegistry(true), goose.WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
}
