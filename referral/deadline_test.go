package referral_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/referral"
)

// sharedStores opens two stores on one database, as two instances of socialrx would: one SQLite file, or
// one PostgreSQL schema.
var sharedStores = []struct {
	name string
	open func(t *testing.T) (outbox.Store, outbox.Store)
}{
	{"sqlite", func(t *testing.T) (outbox.Store, outbox.Store) {
		path := filepath.Join(t.TempDir(), "socialrx.db")
		return openTwice(t, func() (outbox.Store, error) {
			return sqlite.Open(context.Background(), path, sqlite.Options{Logger: quiet})
		})
	}},
	{"postgres", func(t *testing.T) (outbox.Store, outbox.Store) {
		url := pgtest.FreshSchema(t)
		return openTwice(t, func() (outbox.Store, error) {
			return postgres.Open(context.Background(), url, postgres.Options{Logger: quiet, MaxConns: 4, NoListen: true})
		})
	}},
}

// openTwice opens two stores with open, closed when the test ends.
func openTwice(t *testing.T, open func() (outbox.Store, error)) (outbox.Store, outbox.Store) {
	var out [2]outbox.Store
	for i := range out {
		st, err := open()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		out[i] = st
	}
	return out[0], out[1]
}

// deadlineDirectory: walks (webhook), quiet (pull-only) and the link-worker hub (the default, webhook).
func deadlineDirectory() *mapping.Directory {
	return &mapping.Directory{Services: []mapping.Service{
		{ID: "walks", Name: "Walks", Delivery: mapping.Delivery{URL: "https://walks.example/hook"}},
		{ID: "quiet", Name: "Quiet Club"},
		{ID: "hub", Name: "Link Hub", Default: true, Delivery: mapping.Delivery{URL: "https://hub.example/hook"}},
	}}
}

// createWaiting writes a requested referral to service, created at t0, with the person's details on its record.
func createWaiting(t *testing.T, st outbox.Store, id, service string, t0 time.Time) {
	t.Helper()
	in := waitingIntake(id, service, t0, mapping.BusinessDelivered)
	in.Referral.Record.Patient = mapping.Person{FirstName: "Ada", Name: "Ada Lovelace", NHSNumber: "9434765919",
		Phone: "07700 900123", Postcode: "BA11 1AA"}
	in.Referral.Record.Needs = "gentle walks"
	createIntake(t, st, in)
}

// TestDeadlineLadder climbs the ladder step by step with an injected clock, two sweepers (two instances on
// one database) racing at every step: each rung is taken exactly once (Task versions and webhooks counted),
// a referral accepted mid-ladder stops climbing, an automatic decline is coded RRNA, and the events carry
// identifiers and dates only.
func TestDeadlineLadder(t *testing.T) {
	t.Parallel()
	for _, b := range sharedStores {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			testDeadlineLadder(t, b.open)
		})
	}
}

func testDeadlineLadder(t *testing.T, open func(t *testing.T) (outbox.Store, outbox.Store)) {
	ctx := t.Context()
	a, b := open(t)
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	createWaiting(t, a, "r1", "walks", t0)
	createWaiting(t, a, "r2", "walks", t0)
	createWaiting(t, a, "r3", "quiet", t0)
	dir := deadlineDirectory()
	// Each sweeper appends to its own audit chain, as each serve instance does.
	audits := []*outbox.AuditLog{outbox.NewAuditLog(a, outbox.AuditLogOptions{Instance: "sweeper-a"}),
		outbox.NewAuditLog(b, outbox.AuditLogOptions{Instance: "sweeper-b"})}
	for _, l := range audits {
		t.Cleanup(l.Close)
	}
	// race runs two sweepers at once, one per store, and returns how many versions they wrote together.
	race := func(at time.Duration) int {
		t.Helper()
		var wg sync.WaitGroup
		counts := make([]int, 2)
		errs := make([]error, 2)
		for i, st := range []outbox.Store{a, b} {
			wg.Go(func() {
				sw := referral.OverdueSweeper{Store: st, Deadline: 10 * day, Directory: dir, Clock: func() time.Time { return t0.Add(at) },
					Audit: audits[i]}
				counts[i], errs[i] = sw.SweepOnce(ctx)
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("sweep at %s: %v", at, err)
			}
		}
		return counts[0] + counts[1]
	}
	steps := func(id string) mapping.DeadlineStep {
		r, err := b.GetReferral(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return r.Record.DeadlineStep
	}
	if n := race(2*day - time.Minute); n != 0 {
		t.Fatalf("before the reminder: %d versions", n)
	}
	if n := race(2 * day); n != 3 || steps("r1") != mapping.DeadlineReminded || steps("r3") != mapping.DeadlineReminded {
		t.Fatalf("reminders: %d versions (want 3), r1 %q, r3 %q", n, steps("r1"), steps("r3"))
	}
	if n := race(2*day + time.Hour); n != 0 {
		t.Fatalf("a second sweep must take no rung again: %d", n)
	}
	// r2's service accepts it on day 3: it climbs no further.
	if _, err := a.UpdateReferral(ctx, "r2", 0, t0.Add(3*day), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		return mapping.ApplyStatus(cur.Referral, mapping.StatusChange{To: mapping.StatusAccepted, By: mapping.ActorCommunity}, t0.Add(3*day))
	}); err != nil {
		t.Fatal(err)
	}
	if n := race(4 * day); n != 2 || steps("r1") != mapping.DeadlineEscalated || steps("r2") != mapping.DeadlineReminded {
		t.Fatalf("escalation: %d versions (want 2), r1 %q, r2 %q", n, steps("r1"), steps("r2"))
	}
	// Day 14: the overdue mark (SOCIALRX_ACK_DEADLINE, here 10 days) and the decline, each its own version.
	if n := race(14 * day); n != 4 || steps("r1") != mapping.DeadlineDeclined || steps("r3") != mapping.DeadlineDeclined {
		t.Fatalf("decline: %d versions (want 2 overdue + 2 declined), r1 %q, r3 %q", n, steps("r1"), steps("r3"))
	}
	if n := race(40 * day); n != 0 {
		t.Fatalf("past the top: %d", n)
	}

	wantTimeline := map[string]int{"r1": 5, "r2": 3, "r3": 5} // r2: created, reminded, accepted
	for id, want := range wantTimeline {
		tl, err := a.Timeline(ctx, id)
		if err != nil || len(tl) != want {
			t.Errorf("%s: %d timeline entries, want %d (%v)", id, len(tl), want, err)
		}
	}
	r1, err := a.GetReferral(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	task := mapping.TaskFor(r1.Referral)
	if task.Status != "rejected" || task.StatusReason == nil || task.StatusReason.Coding[0].Code != mapping.DeclineNoResponseCode ||
		len(task.Note) != 3 || task.Note[2].AuthorString != mapping.SystemAuthor {
		t.Errorf("declined Task: status %q, statusReason %+v, %d notes", task.Status, task.StatusReason, len(task.Note))
	}
	checkLadderMessages(t, a)
	// The audit trail has each rung once (3 reminders, 2 escalations, 2 declines), by socialrx; the overdue
	// marks are transport facts, not recorded.
	recs, err := a.ListAudit(ctx, outbox.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	rungs := map[string]int{}
	for _, r := range recs {
		if r.ActorID != "socialrx" || r.ActorRole != referral.RoleSystem || r.Via != referral.ViaSweeper || r.Action != outbox.AuditUpdate {
			t.Errorf("audit record %+v, want an update by socialrx via the sweeper", r)
		}
		rungs[r.ReferralID]++
	}
	if rungs["r1"] != 3 || rungs["r2"] != 1 || rungs["r3"] != 3 || len(recs) != 7 {
		t.Errorf("audited rungs %v (%d records), want r1 3, r2 1, r3 3", rungs, len(recs))
	}
}

// checkLadderMessages: each rung's webhooks were written once, to the right service, carrying identifiers and
// dates only.
func checkLadderMessages(t *testing.T, st outbox.Store) {
	msgs, err := st.ListMessages(t.Context(), outbox.MessageQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, m := range msgs {
		var body struct {
			Deadline mapping.DeadlineNotice `json:"deadline"`
			Data     map[string]any         `json:"data"`
		}
		if err := json.Unmarshal(m.Payload, &body); err != nil {
			t.Fatal(err)
		}
		got[m.ReferralID+" "+string(m.Type)+" "+m.Destination.ID+" "+string(body.Deadline.Step)]++
		for _, personal := range []string{"Ada", "Lovelace", "9434765919", "07700", "BA11", "gentle"} {
			if strings.Contains(string(m.Payload), personal) {
				t.Errorf("%s to %s carries %q", m.Type, m.Destination, personal)
			}
		}
		if _, ok := body.Data["patient"]; ok {
			t.Errorf("%s to %s carries the patient", m.Type, m.Destination)
		}
	}
	want := map[string]int{
		"r1 referral.reminder walks reminded":  1,
		"r2 referral.reminder walks reminded":  1,
		"r1 referral.escalated hub escalated":  1,
		"r3 referral.escalated hub escalated":  1,
		"r1 referral.cancelled walks declined": 1,
		"r1 referral.escalated hub declined":   1,
		"r3 referral.escalated hub declined":   1,
	}
	if len(got) != len(want) {
		t.Errorf("messages %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d messages, want %d", k, got[k], n)
		}
	}
}
