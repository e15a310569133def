package mapping

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNextDeadlineStep(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	d := DefaultDeadlines()
	day := 24 * time.Hour
	ref := func(st TaskStatus, step DeadlineStep) Referral {
		return Referral{Record: Record{ID: "r", Status: st, CreatedAt: t0, DeadlineStep: step}}
	}
	tests := []struct {
		name string
		ref  Referral
		now  time.Time
		want DeadlineStep
	}{
		{"young", ref(StatusRequested, DeadlineNone), t0.Add(2*day - time.Second), DeadlineNone},
		{"remind at 2 days", ref(StatusRequested, DeadlineNone), t0.Add(2 * day), DeadlineReminded},
		{"one rung at a time: 20 days, none yet", ref(StatusRequested, DeadlineNone), t0.Add(20 * day), DeadlineReminded},
		{"reminded, escalation not due", ref(StatusRequested, DeadlineReminded), t0.Add(4*day - time.Second), DeadlineNone},
		{"escalate at 4 days", ref(StatusRequested, DeadlineReminded), t0.Add(4 * day), DeadlineEscalated},
		{"escalated, decline not due", ref(StatusRequested, DeadlineEscalated), t0.Add(14*day - time.Second), DeadlineNone},
		{"decline at 14 days", ref(StatusRequested, DeadlineEscalated), t0.Add(14 * day), DeadlineDeclined},
		{"top of the ladder", ref(StatusRequested, DeadlineDeclined), t0.Add(40 * day), DeadlineNone},
		{"acknowledged stops the ladder", ref(StatusReceived, DeadlineReminded), t0.Add(20 * day), DeadlineNone},
		{"accepted stops the ladder", ref(StatusAccepted, DeadlineEscalated), t0.Add(20 * day), DeadlineNone},
		{"cancelled by the GP", ref(StatusCancelled, DeadlineNone), t0.Add(20 * day), DeadlineNone},
	}
	for _, tt := range tests {
		got, ok := NextDeadlineStep(tt.ref, d, tt.now)
		if got != tt.want || ok != (tt.want != DeadlineNone) {
			t.Errorf("%s: %q %v, want %q", tt.name, got, ok, tt.want)
		}
	}
	own := Deadlines{RemindAfter: time.Hour, EscalateAfter: 2 * time.Hour, DeclineAfter: 3 * time.Hour}
	if got, _ := NextDeadlineStep(ref(StatusRequested, DeadlineEscalated), own, t0.Add(3*time.Hour)); got != DeadlineDeclined {
		t.Errorf("a service's own deadlines: %q", got)
	}
}

func TestDeadlineStepsAndChecks(t *testing.T) {
	t.Parallel()
	prev := DeadlineNone
	for i, s := range AllDeadlineSteps() {
		if !s.Valid() || s.Text() == "" || s.rank() != i+1 || prev.Next() != s {
			t.Errorf("%q: valid %v, text %q, rank %d, after %q: %q", s, s.Valid(), s.Text(), s.rank(), prev, prev.Next())
		}
		prev = s
	}
	if DeadlineNone.Valid() || DeadlineDeclined.Next() != DeadlineNone || DeadlineStep("later").Valid() {
		t.Error("none, past the top and unknown rungs")
	}
	h := time.Hour
	for _, tt := range []struct {
		d    Deadlines
		want string
	}{
		{DefaultDeadlines(), ""},
		{Deadlines{h, 2 * h, 3 * h}, ""},
		{Deadlines{0, 2 * h, 3 * h}, "positive"},
		{Deadlines{2 * h, 2 * h, 3 * h}, "escalate_after"},
		{Deadlines{h, 3 * h, 3 * h}, "decline_after"},
	} {
		got := tt.d.Check()
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%+v: %q, want %q", tt.d, got, tt.want)
		}
	}
}

// TestClimbDeadline climbs the whole ladder and checks each rung's Task note, status and events, and that
// the payloads carry identifiers and dates only.
func TestClimbDeadline(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	walks := Service{ID: "walks", Name: "Walks", Delivery: Delivery{URL: "https://walks.example/hook"}}
	hub := Service{ID: "hub", Name: "Link Hub", Default: true, Delivery: Delivery{URL: "https://hub.example/hook"}}
	n := 0
	in := DeadlineInput{Deadlines: DefaultDeadlines(), Service: walks, LinkWorker: hub, LinkWorkerOK: true,
		NewID: func() string { n++; return "ev-" + strconv.Itoa(n) }}
	cur := Referral{Record: Record{ID: "r1", TaskID: "t1", ServiceRequestID: "sr1", Status: StatusRequested, Version: 1,
		CreatedAt: t0, Service: ServiceRef{ID: "walks", Name: "Walks"},
		Patient: Person{FirstName: "Ada", Name: "Ada Lovelace", NHSNumber: "9434765919", Phone: "07700 900123", Postcode: "BA11 1AA"},
		Needs:   "gentle walks"}}
	if _, _, err := ClimbDeadline(cur, in, t0.Add(day)); !errors.Is(err, ErrNoRung) {
		t.Fatalf("nothing due: %v", err)
	}
	steps := []struct {
		at     time.Duration
		step   DeadlineStep
		status TaskStatus
		events []EventType
		dests  []string
	}{
		{2 * day, DeadlineReminded, StatusRequested, []EventType{EventReferralReminder}, []string{"walks"}},
		{4 * day, DeadlineEscalated, StatusRequested, []EventType{EventReferralEscalated}, []string{"hub"}},
		{14 * day, DeadlineDeclined, StatusRejected, []EventType{EventReferralCancelled, EventReferralEscalated}, []string{"walks", "hub"}},
	}
	for i, s := range steps {
		next, evs, err := ClimbDeadline(cur, in, t0.Add(s.at))
		if err != nil {
			t.Fatalf("%s: %v", s.step, err)
		}
		if next.Record.DeadlineStep != s.step || next.Record.Status != s.status || len(next.TaskNotes) != i+1 {
			t.Fatalf("%s: step %q status %q notes %d", s.step, next.Record.DeadlineStep, next.Record.Status, len(next.TaskNotes))
		}
		if note := next.TaskNotes[i]; note.Author != SystemAuthor || strings.Contains(note.Text, "Ada") {
			t.Errorf("%s: note %+v", s.step, note)
		}
		if len(evs) != len(s.events) {
			t.Fatalf("%s: events %+v", s.step, evs)
		}
		for j, e := range evs {
			if e.Type != s.events[j] || e.Destination.ID != s.dests[j] || e.ID == "" {
				t.Errorf("%s: event %d %s to %s", s.step, j, e.Type, e.Destination)
			}
			for _, personal := range []string{"Ada", "9434765919", "07700", "BA11", "gentle"} {
				if strings.Contains(string(e.Payload), personal) {
					t.Errorf("%s: %s payload carries %q: %s", s.step, e.Type, personal, e.Payload)
				}
			}
			var body struct {
				Type     EventType      `json:"type"`
				Data     Record         `json:"data"`
				Deadline DeadlineNotice `json:"deadline"`
			}
			if err := json.Unmarshal(e.Payload, &body); err != nil || body.Type != e.Type || body.Data.ID != "r1" ||
				body.Data.TaskID != "t1" || !body.Deadline.DeclineAt.Equal(t0.Add(14*day)) {
				t.Errorf("%s: payload %s (%v)", s.step, e.Payload, err)
			}
		}
		cur = next
		cur.Record.Version++
	}
	task := TaskFor(cur)
	if task.StatusReason == nil || len(task.StatusReason.Coding) != 1 || task.StatusReason.Coding[0].Code != DeclineNoResponseCode ||
		task.StatusReason.Coding[0].System != DeclineReasonSystem {
		t.Errorf("declined Task statusReason %+v", task.StatusReason)
	}
	if cells := UnmetCells(cur); len(cells) != 1 || cells[0].Reason != UnmetDeclined {
		t.Errorf("an automatic decline counts as unmet need (declined): %+v", cells)
	}
	if _, _, err := ClimbDeadline(cur, in, t0.Add(40*day)); !errors.Is(err, ErrNoRung) {
		t.Errorf("after the decline: %v", err)
	}
}

// TestClimbDeadlineWithoutWebhooks: a pull-only service gets no reminder event (its inbox shows the rung), and
// a link-worker service that is the referral's own service, or has no webhook, is sent nothing.
func TestClimbDeadlineWithoutWebhooks(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	hub := Service{ID: "hub", Name: "Link Hub", Default: true, Delivery: Delivery{URL: "https://hub.example/hook"}}
	in := DeadlineInput{Deadlines: DefaultDeadlines(), Service: hub, LinkWorker: hub, LinkWorkerOK: true,
		NewID: func() string { return "ev" }}
	cur := Referral{Record: Record{ID: "r1", Status: StatusRequested, DeadlineStep: DeadlineReminded, CreatedAt: t0,
		Service: ServiceRef{ID: "hub"}}}
	next, evs, err := ClimbDeadline(cur, in, t0.Add(5*24*time.Hour))
	if err != nil || len(evs) != 0 || next.Record.DeadlineStep != DeadlineEscalated ||
		!strings.Contains(next.TaskNotes[0].Text, "no other link-worker service") {
		t.Errorf("escalating the link worker's own referral: %+v %+v %v", next, evs, err)
	}
	in.Service, in.LinkWorkerOK = Service{ID: "walks"}, false
	cur.Record.DeadlineStep, cur.Record.Service.ID = DeadlineNone, "walks"
	if _, evs, err := ClimbDeadline(cur, in, t0.Add(3*24*time.Hour)); err != nil || len(evs) != 0 {
		t.Errorf("pull-only reminder: %+v %v", evs, err)
	}
	in.NewID = nil
	if _, _, err := ClimbDeadline(cur, in, t0.Add(3*24*time.Hour)); err == nil {
		t.Error("no id generator must be refused")
	}
}

func TestDirectoryLinkWorker(t *testing.T) {
	t.Parallel()
	d := Directory{Services: []Service{{ID: "a"}, {ID: "def", Default: true}}}
	if s, ok := d.LinkWorker(); !ok || s.ID != "def" {
		t.Errorf("the default service: %q %v", s.ID, ok)
	}
	d.Services = append(d.Services, Service{ID: "lw", LinkWorker: true})
	if s, ok := d.LinkWorker(); !ok || s.ID != "lw" {
		t.Errorf("the marked service: %q %v", s.ID, ok)
	}
	if _, ok := (Directory{Services: []Service{{ID: "a"}}}).LinkWorker(); ok {
		t.Error("no link worker")
	}
	if (Service{}).ResponseDeadlines() != DefaultDeadlines() {
		t.Error("default deadlines")
	}
}
