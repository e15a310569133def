package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
)

// TestDeadlineLadderEndToEnd: a referral the museum never answers is reminded (its inbox says so), escalated
// to the link-worker service (a referral.escalated with identifiers only), then declined by socialrx: the GP
// reads each step as a Task version (every body checked by the independent R4 validator), the decline coded
// RRNA.
func TestDeadlineLadderEndToEnd(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, fhirtest.NewValidator(t), func(c *config.Config) {
		for i, s := range c.Directory.Services {
			if s.ID == "link-workers" {
				c.Directory.Services[i].Delivery.URL = "https://link-workers.example/hooks"
			}
		}
	})
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	h.clock.Store(t0.UnixMicro())
	ref := refer(h, tokPCN, "museum-volunteering-bundle.json")
	day := 24 * time.Hour
	b := newBrowser(h)
	// sweep runs the sweeper at t0+at (and a minute: the harness clock ticks as the referral is made), then
	// signs the museum in again (its session has long expired).
	sweep := func(at time.Duration) {
		t.Helper()
		sweepLadder(t, h, t0, at)
		b = newBrowser(h)
		b.signIn(tokMuseum)
	}
	b.signIn(tokMuseum)
	if strings.Contains(string(b.get("/inbox/").body), "Reminder sent") {
		t.Fatal("a reminder before any is due")
	}

	sweep(2 * day)
	contains(t, "list after the reminder", b.get("/inbox/"), `<span class="tag overdue">Reminder sent</span>`)
	contains(t, "page after the reminder", b.get("/inbox/referrals/"+ref.referral), "Reminder sent: please reply to this referral.")
	task := h.do(http.MethodGet, "/fhir/Task/"+ref.task, tokPCN, nil)
	if task.status != http.StatusOK || !strings.Contains(string(task.body), `"authorString":"socialrx"`) ||
		!strings.Contains(string(task.body), "Reminder sent to Somerset Museums Volunteer Programme") {
		t.Fatalf("the GP's Task after the reminder: %d %s", task.status, task.body)
	}

	sweep(4 * day)
	escalated := messagesOf(t, h.store, mapping.EventReferralEscalated)
	if len(escalated) != 1 || escalated[0].Destination.ID != "link-workers" {
		t.Fatalf("escalation messages %+v", escalated)
	}
	for _, personal := range []string{"Okafor", "1990", "07700", "Daniel"} {
		if strings.Contains(string(escalated[0].Payload), personal) {
			t.Errorf("the escalation carries %q: %s", personal, escalated[0].Payload)
		}
	}
	contains(t, "list after the escalation", b.get("/inbox/"), `<span class="tag overdue">Escalated</span>`)

	sweep(14 * day)
	task = h.do(http.MethodGet, "/fhir/Task/"+ref.task, tokPCN, nil)
	v := task.json(t)
	reason, _ := v["statusReason"].(map[string]any)
	codings, _ := reason["coding"].([]any)
	if v["status"] != "rejected" || len(codings) != 1 || codings[0].(map[string]any)["code"] != mapping.DeclineNoResponseCode ||
		codings[0].(map[string]any)["system"] != mapping.DeclineReasonSystem {
		t.Fatalf("the declined Task: %s", task.body)
	}
	hist := h.do(http.MethodGet, "/fhir/Task/"+ref.task+"/_history", tokPCN, nil).json(t)
	// created, reminded, escalated, overdue, declined
	if n := len(hist["entry"].([]any)); n != 5 {
		t.Errorf("Task history: %d versions, want 5", n)
	}
	// The engineer's timeline has each rung as a version, the decline with its reason.
	tl := h.do(http.MethodGet, "/admin/v1/referrals/"+ref.referral+"/timeline", tokAdmin, nil)
	if tl.status != http.StatusOK || strings.Count(string(tl.body), `"version"`) < 5 || !strings.Contains(string(tl.body), mapping.DeclineNoResponseText) {
		t.Errorf("the console timeline: %d %s", tl.status, tl.body)
	}
	contains(t, "page after the decline", b.get("/inbox/referrals/"+ref.referral),
		"Declined by socialrx: no reply within the time allowed.", mapping.DeclineNoResponseText)
	if n := len(messagesOf(t, h.store, mapping.EventReferralEscalated)); n != 2 {
		t.Errorf("the link worker is told of the decline too: %d escalations, want 2", n)
	}
}

// messagesOf lists the outbox messages of type typ.
func messagesOf(t *testing.T, st outbox.Store, typ mapping.EventType) []outbox.Message {
	t.Helper()
	ms, err := st.ListMessages(context.Background(), outbox.MessageQuery{Types: []mapping.EventType{typ}, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// sweepLadder runs the overdue sweeper (overdue after 10 days, the directory's deadline ladder) at t0+at and a
// minute (the harness clock ticks as a referral is made), with the harness clock set there.
func sweepLadder(t *testing.T, h *harness, t0 time.Time, at time.Duration) {
	t.Helper()
	at += time.Minute
	h.clock.Store(t0.Add(at).UnixMicro())
	sw := referral.OverdueSweeper{Store: h.store, Deadline: 10 * 24 * time.Hour, Directory: &h.cfg.Directory,
		Clock: func() time.Time { return t0.Add(at) }}
	if _, err := sw.SweepOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
}
