package mapping

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
)

// taskJSON renders r's Task as a map for editing.
func taskJSON(t *testing.T, r Referral) map[string]any {
	t.Helper()
	b, err := json.Marshal(TaskFor(r))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTaskUpdate(t *testing.T) {
	t.Parallel()
	onHold := referralAt(t, StatusOnHold)
	onHold.Record.StatusReason = "Waiting for spring"
	onHold.BusinessStatus = BusinessDelivered
	done := referralAt(t, StatusCompleted)
	done.Record.Outcome = &Outcome{Text: "Walks weekly"}
	noted := AppendTaskNotes(onHold, "Frome Walking for Health", later, "a", "second note")

	for _, tc := range []struct {
		name  string
		cur   Referral
		edit  func(m map[string]any)
		want  StatusChange
		exprs []string // 422 naming these, in order
	}{
		{name: "unchanged", cur: onHold, edit: func(map[string]any) {}, want: StatusChange{To: StatusOnHold}},
		{name: "server elements ignored", cur: onHold, edit: func(m map[string]any) {
			m["meta"] = map[string]any{"versionId": "99"}
			m["lastModified"] = "2020-01-01T00:00:00Z"
		}, want: StatusChange{To: StatusOnHold}},
		{name: "businessStatus left out", cur: onHold, edit: func(m map[string]any) { delete(m, "businessStatus") }, want: StatusChange{To: StatusOnHold}},
		{name: "status change, the old reason is not carried", cur: onHold, edit: func(m map[string]any) { m["status"] = "failed" },
			want: StatusChange{To: StatusFailed}},
		{name: "status change with a new reason", cur: onHold, edit: func(m map[string]any) {
			m["status"] = "failed"
			m["statusReason"] = map[string]any{"text": " Moved away "}
		}, want: StatusChange{To: StatusFailed, Reason: "Moved away"}},
		{name: "reason from a coding", cur: onHold, edit: func(m map[string]any) {
			m["status"] = "failed"
			m["statusReason"] = map[string]any{"coding": []any{map[string]any{"system": "https://x.example", "code": "moved", "display": "Moved away"}}}
		}, want: StatusChange{To: StatusFailed, Reason: "Moved away"}},
		{name: "text outcome", cur: onHold, edit: func(m map[string]any) {
			m["status"] = "completed"
			m["output"] = []any{map[string]any{"type": map[string]any{"text": "outcome"}, "valueString": "Joined"}}
		}, want: StatusChange{To: StatusCompleted, Outcome: &Outcome{Text: "Joined"}}},
		{name: "coded outcome", cur: onHold, edit: func(m map[string]any) {
			m["status"] = "completed"
			m["output"] = []any{map[string]any{"type": map[string]any{"text": "outcome"}, "valueCodeableConcept": map[string]any{
				"coding": []any{map[string]any{"system": "https://x.example", "code": "engaged", "display": "Engaged"}}, "text": "Attends"}}}
		}, want: StatusChange{To: StatusCompleted, Outcome: &Outcome{Text: "Attends", Code: &Concept{System: "https://x.example", Code: "engaged", Display: "Engaged"}}}},
		{name: "completed outcome sent back unchanged", cur: done, edit: func(map[string]any) {}, want: StatusChange{To: StatusCompleted}},
		{name: "other elements", cur: onHold, edit: func(m map[string]any) {
			m["priority"] = "urgent"
			m["intent"] = "plan"
			m["description"] = "x"
			delete(m, "owner")
		}, exprs: []string{"Task.description", "Task.intent", "Task.owner", "Task.priority"}},
		{name: "reason without status change", cur: onHold, edit: func(m map[string]any) {
			m["statusReason"] = map[string]any{"text": "Other"}
		}, exprs: []string{"Task.statusReason"}},
		{name: "outcome without status change", cur: done, edit: func(m map[string]any) {
			m["output"] = []any{map[string]any{"type": map[string]any{"text": "outcome"}, "valueString": "Other"}}
		}, exprs: []string{"Task.output"}},
		{name: "businessStatus changed", cur: onHold, edit: func(m map[string]any) { m["businessStatus"] = map[string]any{"text": "fine"} },
			exprs: []string{"Task.businessStatus"}},
		{name: "first note, client author and time ignored", cur: onHold, edit: func(m map[string]any) {
			m["note"] = []any{map[string]any{"text": " Called twice, no answer ", "authorString": "Someone else", "time": "2001-01-01T00:00:00Z"}}
		}, want: StatusChange{To: StatusOnHold, Notes: []string{" Called twice, no answer "}}},
		{name: "notes appended to existing ones", cur: noted, edit: func(m map[string]any) {
			m["note"] = append(m["note"].([]any), map[string]any{"text": "b"}, map[string]any{"text": "c"})
		}, want: StatusChange{To: StatusOnHold, Notes: []string{"b", "c"}}},
		{name: "note with a status change", cur: noted, edit: func(m map[string]any) {
			m["status"] = "in-progress"
			m["note"] = append(m["note"].([]any), map[string]any{"text": "Back from holiday"})
		}, want: StatusChange{To: StatusInProgress, Notes: []string{"Back from holiday"}}},
		{name: "existing notes sent back unchanged", cur: noted, edit: func(map[string]any) {}, want: StatusChange{To: StatusOnHold}},
		{name: "note edited", cur: noted, edit: func(m map[string]any) {
			m["note"].([]any)[1].(map[string]any)["text"] = "changed"
		}, exprs: []string{"Task.note[1]"}},
		{name: "note author rewritten", cur: noted, edit: func(m map[string]any) {
			m["note"].([]any)[0].(map[string]any)["authorString"] = "Me"
		}, exprs: []string{"Task.note[0]"}},
		{name: "note removed", cur: noted, edit: func(m map[string]any) { m["note"] = m["note"].([]any)[:1] }, exprs: []string{"Task.note[1]"}},
		{name: "notes left out", cur: noted, edit: func(m map[string]any) { delete(m, "note") }, exprs: []string{"Task.note[0]"}},
		{name: "note inserted before existing ones", cur: noted, edit: func(m map[string]any) {
			m["note"] = append([]any{map[string]any{"text": "first"}}, m["note"].([]any)...)
		}, exprs: []string{"Task.note[0]", "Task.note[1]"}},
		{name: "new note without text", cur: noted, edit: func(m map[string]any) {
			m["note"] = append(m["note"].([]any), map[string]any{"authorString": "x"}, map[string]any{"text": "  "})
		}, exprs: []string{"Task.note[2].text", "Task.note[3].text"}},
		{name: "note not an array", cur: onHold, edit: func(m map[string]any) { m["note"] = map[string]any{"text": "x"} }, exprs: []string{"Task.note"}},
		{name: "too many notes", cur: onHold, edit: func(m map[string]any) {
			var ns []any
			for range MaxTaskNotes + 1 {
				ns = append(ns, map[string]any{"text": "x"})
			}
			m["note"] = ns
		}, exprs: []string{"Task.note"}},
		{name: "primitive extension on note", cur: onHold, edit: func(m map[string]any) { m["_note"] = map[string]any{"id": "x"} }, exprs: []string{"Task._note"}},
		{name: "primitive extension", cur: onHold, edit: func(m map[string]any) { m["_status"] = map[string]any{"id": "x"} }, exprs: []string{"Task._status"}},
		{name: "unknown status", cur: onHold, edit: func(m map[string]any) { m["status"] = "ready" }, exprs: []string{"Task.status"}},
		{name: "missing status", cur: onHold, edit: func(m map[string]any) { delete(m, "status") }, exprs: []string{"Task.status"}},
		{name: "two outputs", cur: onHold, edit: func(m map[string]any) {
			m["status"] = "completed"
			o := map[string]any{"type": map[string]any{"text": "outcome"}, "valueString": "Joined"}
			m["output"] = []any{o, o}
		}, exprs: []string{"Task.output"}},
		{name: "output of another type", cur: onHold, edit: func(m map[string]any) {
			m["status"] = "completed"
			m["output"] = []any{map[string]any{"type": map[string]any{"text": "outcome"}, "valueInteger": 3}}
		}, exprs: []string{"Task.output[0].valueInteger"}},
		{name: "output without value", cur: onHold, edit: func(m map[string]any) {
			m["status"] = "completed"
			m["output"] = []any{map[string]any{"type": map[string]any{"text": "outcome"}}}
		}, exprs: []string{"Task.output[0]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := taskJSON(t, tc.cur)
			tc.edit(m)
			body, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := TaskUpdate(tc.cur, body)
			if tc.exprs == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b func() string) bool { return true })); diff != "" {
					t.Errorf("change (-want +got):\n%s", diff)
				}
				return
			}
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Kind != fault.Rule {
				t.Fatalf("want a 422 *fhir.Error, got %v", err)
			}
			var exprs []string
			for _, is := range fe.Issues {
				exprs = append(exprs, is.Expression...)
			}
			if !slices.Equal(exprs, tc.exprs) {
				t.Errorf("issues name %v, want %v", exprs, tc.exprs)
			}
		})
	}
}

// TestTaskUpdateThenApplyStatus proves the two compose: the change TaskUpdate reads from an edited Task, applied
// by ApplyStatus, renders (TaskFor) the Task the client sent, apart from socialrx's own elements.
func TestTaskUpdateThenApplyStatus(t *testing.T) {
	t.Parallel()
	cur := referralAt(t, StatusInProgress)
	m := taskJSON(t, cur)
	m["status"] = "completed"
	m["output"] = []any{map[string]any{"type": map[string]any{"text": "outcome"}, "valueString": "Joined"}}
	body, _ := json.Marshal(m)
	change, err := TaskUpdate(cur, body)
	if err != nil {
		t.Fatal(err)
	}
	change.By = ActorCommunity
	next, _, err := ApplyStatus(cur, change, later)
	if err != nil {
		t.Fatal(err)
	}
	again, err := TaskUpdate(next, body)
	if err != nil || again.To != StatusCompleted || again.Outcome != nil || again.Reason != "" {
		t.Errorf("the applied Task differs from the one sent: %+v %v", again, err)
	}
}

func TestTaskUpdateBadInput(t *testing.T) {
	t.Parallel()
	for _, body := range []string{``, `[]`, `null`, `"Task"`, `{`} {
		if _, err := TaskUpdate(referralAt(t, StatusRequested), []byte(body)); !errors.Is(err, ErrBadInput) {
			t.Errorf("%q: want ErrBadInput, got %v", body, err)
		}
	}
}

// TestTaskNotes: ApplyStatus appends notes (author and time from socialrx) with a status change or alone, a
// note-only change is not a no-op, and TaskFor renders them as Annotations.
func TestTaskNotes(t *testing.T) {
	t.Parallel()
	cur := referralAt(t, StatusAccepted)
	next, events, err := ApplyStatus(cur, StatusChange{To: StatusAccepted, By: ActorRequester, Notes: []string{" Please call after 5pm "},
		NoteAuthor: "practice-a81001"}, later)
	if err != nil || len(events) != 0 {
		t.Fatalf("note-only change: %v %v", events, err)
	}
	want := []TaskNote{{Author: "practice-a81001", Time: later.UTC(), Text: "Please call after 5pm"}}
	if diff := cmp.Diff(want, next.TaskNotes); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
	if next.Record.Status != StatusAccepted || len(cur.TaskNotes) != 0 {
		t.Errorf("note-only change moved the status or touched the current referral")
	}
	if _, _, err := ApplyStatus(next, StatusChange{To: StatusAccepted, By: ActorCommunity}, later); !errors.Is(err, ErrNoChange) {
		t.Errorf("same status without a note: %v, want ErrNoChange", err)
	}
	moved, _, err := ApplyStatus(next, StatusChange{To: StatusInProgress, By: ActorCommunity, Notes: []string{"Started"}, NoteAuthor: "Walks"}, later)
	if err != nil || len(moved.TaskNotes) != 2 || moved.TaskNotes[1].Text != "Started" || moved.Record.Status != StatusInProgress {
		t.Fatalf("status change with a note: %+v %v", moved.TaskNotes, err)
	}
	// A refused move adds no note.
	if _, _, err := ApplyStatus(next, StatusChange{To: StatusCompleted, By: ActorCommunity, Notes: []string{"x"}}, later); !errors.Is(err, ErrInvalidTransition) {
		t.Errorf("refused move with a note: %v", err)
	}
	task := TaskFor(moved)
	wantNotes := []fhir.Annotation{
		{AuthorString: "practice-a81001", Time: fhir.ExactInstant(later), Text: "Please call after 5pm"},
		{AuthorString: "Walks", Time: fhir.ExactInstant(later), Text: "Started"},
	}
	if diff := cmp.Diff(wantNotes, task.Note); diff != "" {
		t.Errorf("Task.note (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		text string
		ok   bool
	}{{"x", true}, {"", false}, {" \n ", false}, {strings.Repeat("é", MaxNoteRunes), true}, {strings.Repeat("é", MaxNoteRunes+1), false}} {
		if got := CheckNoteText(tc.text) == ""; got != tc.ok {
			t.Errorf("CheckNoteText(%d runes) ok = %v", len([]rune(tc.text)), got)
		}
	}
}
