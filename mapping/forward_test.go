package mapping

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
)

func TestCheckForward(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	dir := Directory{Services: []Service{
		{ID: "hub", Name: "Hub", Default: true},
		{ID: "walks", Name: "Walks", CanMeet: []SupportNeed{NeedWheelchair}},
		{ID: "lunch", Name: "Lunch"},
		{ID: "museum", Name: "Museum"},
	}}
	caps := map[string]Capacity{"museum": {Status: CapacityFull}}
	held := Referral{Record: Record{ID: "r", TaskID: "t", Status: StatusAccepted, Service: ServiceRef{ID: "hub"}}}
	needy := held
	needy.Record.SupportNeeds = []SupportNeed{NeedOneToOne}
	closed := held
	closed.Record.Status = StatusCompleted
	child := held
	child.Parent = &LinkRef{ReferralID: "p", TaskID: "pt"}
	notLW := held
	notLW.Record.Service.ID = "walks"
	suggested := held
	suggested.Children = []LinkRef{{ReferralID: "c", TaskID: "ct", ServiceID: "lunch"}}
	tests := []struct {
		name     string
		ref      Referral
		services []string
		kind     fault.Kind
		code     fault.Code
		field    string
	}{
		{"two open groups", held, []string{"walks", "lunch"}, "", "", ""},
		{"not the link worker", notLW, []string{"lunch"}, fault.Forbidden, CodeForwardNotLinkWorker, ""},
		{"closed", closed, []string{"lunch"}, fault.Conflict, CodeForwardClosed, ""},
		{"itself forwarded", child, []string{"lunch"}, fault.Conflict, CodeForwardClosed, ""},
		{"none chosen", held, nil, fault.Invalid, CodeForwardService, FieldServices},
		{"unknown", held, []string{"nowhere"}, fault.Invalid, CodeForwardService, "services[0]"},
		{"to itself", held, []string{"hub"}, fault.Invalid, CodeForwardService, "services[0]"},
		{"twice", held, []string{"lunch", "lunch"}, fault.Invalid, CodeForwardService, "services[1]"},
		{"full", held, []string{"lunch", "museum"}, fault.Conflict, CodeForwardFull, "services[1]"},
		{"needs unmet", needy, []string{"walks"}, fault.Rule, CodeForwardNeeds, "services[0]"},
		{"needs undeclared are not checked", needy, []string{"lunch"}, "", "", ""},
		{"already suggested", suggested, []string{"lunch"}, fault.Conflict, CodeForwardService, "services[0]"},
		{"conflict wins over rule", needy, []string{"walks", "museum"}, fault.Conflict, CodeForwardNeeds, "services[0]"},
	}
	for _, tt := range tests {
		err := CheckForward(tt.ref, ForwardInput{Directory: dir, Capacities: caps, Services: tt.services, Now: now})
		if tt.kind == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		var fe *fault.Error
		if !errors.As(err, &fe) || fe.Kind != tt.kind || fe.Issues[0].Code != tt.code || fe.Issues[0].Field != tt.field {
			t.Errorf("%s: %v, want %s %s at %q", tt.name, err, tt.kind, tt.code, tt.field)
		}
	}
}

func TestForwardChildren(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	dir := Directory{Services: []Service{{ID: "hub", Default: true}, {ID: "walks", Name: "Walks", Delivery: Delivery{URL: "https://w.example"},
		Sharing: SharingProfile{Fields: []SharingField{ShareFirstName}}}, {ID: "lunch", Name: "Lunch"}}}
	n := 0
	in := ForwardInput{Directory: dir, Services: []string{"walks", "lunch"}, Note: "Fridays", NoteAuthor: "Hub", Now: now,
		NewID: func() string { n++; return "id" + strconv.Itoa(n) }}
	cur := Referral{Record: Record{ID: "r", TaskID: "t", ServiceRequestID: "sr", Status: StatusReceived, Version: 3,
		Service: ServiceRef{ID: "hub"}, Patient: Person{FirstName: "Ada", Name: "Ada Lovelace"}, DeadlineStep: DeadlineReminded}}
	parent, kids, err := Forward(cur, in)
	if err != nil || len(kids) != 2 || len(parent.Children) != 2 || len(parent.TaskNotes) != 1 {
		t.Fatalf("forward: %v, %d children", err, len(kids))
	}
	w, l := kids[0].Referral, kids[1].Referral
	if w.Record.Status != StatusRequested || w.Record.Version != 1 || w.Record.ServiceRequestID != "sr" || w.Parent.TaskID != "t" ||
		w.Record.DeadlineStep != DeadlineNone || w.Record.Service.ID != "walks" || w.TaskNotes[0].Text != "Fridays" {
		t.Errorf("walks child %+v", w)
	}
	if w.BusinessStatus != BusinessQueued || l.BusinessStatus != BusinessAwaitingPickup || len(kids[0].Events) != 1 || len(kids[1].Events) != 0 {
		t.Errorf("transport: %s %s, events %d %d", w.BusinessStatus, l.BusinessStatus, len(kids[0].Events), len(kids[1].Events))
	}
	if p := string(kids[0].Events[0].Payload); !strings.Contains(p, `"first_name":"Ada"`) || strings.Contains(p, "Lovelace") {
		t.Errorf("the walking group's referral.created is not cut by its sharing profile: %s", p)
	}
	sib, evs, err := SiblingCancel(l, w.Record.ID, true, now, in.NewID)
	if err != nil || sib.Record.Status != StatusCancelled || sib.Record.StatusReason != ChoseAnotherGroup || len(evs) != 1 {
		t.Errorf("sibling cancel: %+v %v", sib.Record, err)
	}
	if _, _, err := SiblingCancel(w, w.Record.ID, true, now, in.NewID); !errors.Is(err, ErrNoChange) {
		t.Errorf("the chosen child is not cancelled: %v", err)
	}
}
