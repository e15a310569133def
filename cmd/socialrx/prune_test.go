package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/sqlite"
)

// seedRetention creates, in a new SQLite file, n referrals to walks from long ago (2020), each with its
// referral.created: the first delivered ones are delivered, every third of those completed; the last dead
// ones go dead. It returns the file's path.
func seedRetention(t *testing.T, n, delivered int) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "socialrx.db")
	st, err := sqlite.Open(ctx, path, sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2020, 1, 6, 9, 0, 0, 0, time.UTC)
	dest := mapping.Destination{Kind: mapping.DestinationService, ID: "frome-walks"}
	for i := range n {
		id := fmt.Sprintf("r-%04d", i)
		in := mapping.Intake{
			Referral: mapping.Referral{Record: mapping.Record{ID: id, TaskID: "t-" + id, ServiceRequestID: "sr-" + id,
				Status: mapping.StatusRequested, Service: mapping.ServiceRef{ID: dest.ID}, CreatedAt: t0,
				Patient: mapping.Person{NHSNumber: "9999542557", Name: "Margaret Ellis"}},
				PracticeODS: "A81001", BusinessStatus: mapping.BusinessQueued},
			ServiceRequest: json.RawMessage(`{"resourceType":"ServiceRequest"}`), Fingerprint: "fp-" + id,
			Identifiers: []mapping.Identifier{{System: "urn:test", Value: id}},
			Events: []mapping.Event{{ID: "m-" + id, Type: mapping.EventReferralCreated, Destination: dest,
				Payload: json.RawMessage(`{"type":"referral.created","data":{"id":"` + id + `","patient":{"nhs_number":"9999542557"}}}`)}},
		}
		if _, err := st.CreateReferral(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	at := t0.Add(time.Hour)
	ms, err := st.ClaimMessages(ctx, "seed", at, time.Minute, n, outbox.ClaimFilter{})
	if err != nil || len(ms) != n {
		t.Fatalf("claimed %d: %v", len(ms), err)
	}
	for i, m := range ms {
		res := outbox.AttemptResult{Owner: "seed", State: outbox.StateDelivered, Attempt: outbox.Attempt{StartedAt: at, StatusCode: 200}}
		if i >= delivered {
			res.State, res.Attempt.StatusCode = outbox.StateDead, 410
		}
		if err := st.CompleteAttempt(ctx, m.ID, at, res); err != nil {
			t.Fatal(err)
		}
		if i < delivered && i%3 == 0 {
			if _, err := st.UpdateReferral(ctx, m.ReferralID, 0, at.Add(time.Minute), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
				next := cur.Referral
				next.Record.Status = mapping.StatusCompleted
				return next, nil, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return path
}

// TestCLIPrune: 150 referrals from 2020 (120 delivered, 40 of them completed; 30 dead): the dry run counts
// 120 payloads and 40 referrals and changes nothing; prune scrubs exactly that, reporting progress on
// stderr; a second dry run finds nothing; the dead messages keep their payloads.
func TestCLIPrune(t *testing.T) {
	t.Parallel()
	path := seedRetention(t, 150, 120)
	env := map[string]string{"SOCIALRX_DATABASE_URL": "sqlite:" + path, "SOCIALRX_LOG_LEVEL": "error"}
	type counts struct {
		DryRun    bool `json:"dry_run"`
		Payloads  int  `json:"payloads"`
		Referrals int  `json:"referrals"`
	}
	prune := func(args ...string) (counts, string) {
		t.Helper()
		code, out, errOut := cliRun(env, append([]string{"prune", "--json", "--delivered-days", "30", "--closed-months", "12"}, args...)...)
		if code != 0 {
			t.Fatalf("prune %v: %d %s", args, code, errOut)
		}
		var c counts
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatalf("prune %v: %v %q", args, err, out)
		}
		return c, errOut
	}
	dry, _ := prune("--dry-run")
	if dry != (counts{DryRun: true, Payloads: 120, Referrals: 40}) {
		t.Errorf("dry run: %+v, want 120 payloads and 40 referrals", dry)
	}
	if again, _ := prune("--dry-run"); again != dry {
		t.Errorf("the dry run changed something: %+v then %+v", dry, again)
	}
	real, progress := prune()
	if real.Payloads != dry.Payloads || real.Referrals != dry.Referrals {
		t.Errorf("prune scrubbed %+v, the dry run counted %+v", real, dry)
	}
	if !strings.Contains(progress, "… 100 payloads, 0 referrals scrubbed") || !strings.Contains(progress, "… 120 payloads, 40 referrals scrubbed") {
		t.Errorf("progress on stderr: %q", progress)
	}
	if after, _ := prune("--dry-run"); after.Payloads != 0 || after.Referrals != 0 {
		t.Errorf("after the prune a dry run still finds %+v", after)
	}
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{Existing: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dead, err := st.ListMessages(context.Background(), outbox.MessageQuery{States: []outbox.MessageState{outbox.StateDead}, Limit: 1000})
	if err != nil || len(dead) != 30 {
		t.Fatalf("dead: %d %v", len(dead), err)
	}
	for _, m := range dead {
		if !strings.Contains(string(m.Payload), "9999542557") {
			t.Errorf("dead message %s was scrubbed: %q", m.ID, m.Payload)
		}
	}
	// Human output.
	code, out, _ := cliRun(env, "prune", "--dry-run")
	if code != 0 || !strings.HasPrefix(out, "would scrub 0 delivered payloads (older than 30 days) and 0 closed referrals (older than 24 months)") {
		t.Errorf("prune --dry-run: %d %q", code, out)
	}
	if code, _, errOut := cliRun(env, "prune", "extra"); code != exitUsage || !strings.Contains(errOut, "no arguments") {
		t.Errorf("prune extra: %d %q", code, errOut)
	}
	if code, _, errOut := cliRun(map[string]string{"SOCIALRX_DATABASE_URL": "sqlite:" + path, "SOCIALRX_RETAIN_CLOSED_MONTHS": "-3"}, "prune"); code != exitUsage || !strings.Contains(errOut, "SOCIALRX_RETAIN_CLOSED_MONTHS") {
		t.Errorf("a bad setting: %d %q", code, errOut)
	}
}
