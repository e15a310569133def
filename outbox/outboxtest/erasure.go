package outboxtest

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Raw is a store with a direct connection to its database, for the checks that look beneath the Store API
// (every table, every column).
type Raw struct {
	Store outbox.Store
	DB    *sql.DB
}

// RunErasure runs the consent-withdrawal conformance tests: a real referral (the walking-group fixture,
// mapped by mapping.Build) withdrawn before delivery, after delivery and after the service acted, each time
// asserting, by reading every column of every table, that neither the person's NHS number nor their name is
// left anywhere in the database.
func RunErasure(t *testing.T, open func(t *testing.T) Raw) {
	tests := []struct {
		name string
		fn   func(t *testing.T, r Raw)
	}{
		{"BeforeDelivery", testWithdrawBeforeDelivery},
		{"AfterDelivery", testWithdrawAfterDelivery},
		{"AfterServiceActed", testWithdrawAfterServiceActed},
		{"RetentionClosedReferral", testRetentionErases},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// The walking-group fixture's person (testdata/referrals/walking-group-performer.json).
const (
	fixtureNHS     = "9999542557"
	fixtureGiven   = "Margaret"
	fixtureFamily  = "Ellis"
	fixturePhone   = "07700 900123"
	fixtureAddress = "12 Vallis Way"
)

// realIntake maps the walking-group fixture into an intake routed to frome-walks (with a webhook), with
// sequential ids.
func realIntake(t *testing.T) mapping.Intake {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	body, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "testdata", "referrals", "walking-group-performer.json"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := fhir.ParseServiceRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	dir := mapping.Directory{Services: []mapping.Service{{
		ID: walks.ID, Name: "Frome Walking for Health",
		Identifiers: []mapping.Identifier{{System: mapping.ODSOrganizationSystem, Value: "XYZ01"}},
		Delivery:    mapping.Delivery{URL: "https://walks.example/hooks", Secret: "whsec_c29jaWFscngtZGVtby13ZWJob29rLXNlY3JldC0zMmI="},
		Sharing:     mapping.SharingProfile{Fields: mapping.AllSharingFields()}, // the worst case: everything was sent
	}}}
	in, err := mapping.Build(sub, mapping.BuildInput{Directory: dir, PracticeODS: "A81001", Now: at(0),
		NewID: func() string { return fmt.Sprintf("er-%03d", n.Add(1)) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Events) != 1 || !strings.Contains(string(in.Events[0].Payload), fixtureNHS) ||
		!strings.Contains(string(in.ServiceRequest), fixtureFamily) {
		t.Fatalf("the fixture does not carry the person's data where the test looks: %s", in.Events[0].Payload)
	}
	return in
}

// withdrawConsent records the consent withdrawal as the server does (the GP cancels the Task with the coded
// reason; referral.Service.UpdateTask → mapping.ApplyStatus).
func withdrawConsent(t *testing.T, s outbox.Store, id string, now time.Time) outbox.Referral {
	t.Helper()
	r, err := s.UpdateReferral(t.Context(), id, 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next, events, err := mapping.ApplyStatus(cur.Referral, mapping.StatusChange{To: mapping.StatusCancelled, By: mapping.ActorRequester,
			Reason: mapping.ConsentWithdrawnText, ConsentWithdrawn: true, ServiceHasWebhook: true, ServiceHasReferral: true,
			NewID: func() string { return "withdrawn-1" }}, now)
		if errors.Is(err, mapping.ErrNoChange) {
			return cur.Referral, nil, outbox.ErrNoChange
		}
		return next, events, err
	})
	if err != nil {
		t.Fatalf("withdraw consent: %v", err)
	}
	return r
}

// setupErasure creates the fixture's referral and a full-resource Subscription of its practice (so that
// notifications carry the Task), and returns the referral and its referral.created message id.
func setupErasure(t *testing.T, s outbox.Store) (outbox.Referral, string) {
	t.Helper()
	sub := subscription("sub-1", "A81001", at(0))
	createSub(t, s, sub)
	in := realIntake(t)
	ref := create(t, s, in)
	return ref, in.Events[0].ID
}

// deliver claims and delivers every due message, the receiver answering with echo (which a receiver may
// fill with what it was sent).
func deliver(t *testing.T, s outbox.Store, now time.Time, echo string) {
	t.Helper()
	for _, m := range claim(t, s, "owner-1", now, time.Minute, 100) {
		if err := s.CompleteAttempt(t.Context(), m.ID, now, outbox.AttemptResult{Owner: "owner-1", State: outbox.StateDelivered,
			Attempt: outbox.Attempt{StartedAt: now, StatusCode: 200, Response: echo}}); err != nil {
			t.Fatal(err)
		}
	}
}

// assertErased reads every column of every table of the database and fails on any trace of the fixture's
// person; it also checks what the store API shows.
func assertErased(t *testing.T, r Raw, ref outbox.Referral) {
	t.Helper()
	needles := []string{fixtureNHS, fixtureGiven, fixtureFamily, fixturePhone, fixtureAddress}
	for _, hit := range scanDatabase(t, r.DB, needles) {
		t.Errorf("personal data left after consent withdrawal: %s", hit)
	}
	got := get(t, r.Store, ref.Record.ID)
	if !got.Record.ConsentWithdrawn || got.Record.Patient.NHSNumber != "" || got.Record.Patient.Name != "" ||
		got.Patient != (mapping.Reference{}) {
		t.Errorf("the stored referral is not a stub: %+v", got.Referral)
	}
	vs, err := r.Store.ReferralVersions(t.Context(), ref.Record.ID)
	if err != nil || len(vs) < 2 {
		t.Fatalf("versions: %d %v", len(vs), err)
	}
	for _, m := range list(t, r.Store, outbox.MessageQuery{ReferralID: ref.Record.ID}) {
		for _, n := range needles {
			if strings.Contains(string(m.Payload), n) {
				t.Errorf("message %s (%s, %s) keeps %q", m.ID, m.Type, m.State, n)
			}
		}
	}
}

// scanDatabase lists, as "table.column", every value holding one of needles, in every table of db (SQLite's
// or the current PostgreSQL schema's).
func scanDatabase(t *testing.T, db *sql.DB, needles []string) []string {
	t.Helper()
	ctx := t.Context()
	var tables []string
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		rows, err = db.QueryContext(ctx, `SELECT table_name FROM information_schema.tables
			WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)
	}
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) < 8 {
		t.Fatalf("found only tables %v", tables)
	}
	var hits []string
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM `+table)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("%s: %v", table, err)
			}
			for i, v := range vals {
				var s string
				switch x := v.(type) {
				case string:
					s = x
				case []byte:
					s = string(x)
				default:
					continue
				}
				for _, n := range needles {
					if strings.Contains(s, n) || strings.Contains(s, jsonText(n)) {
						hits = append(hits, fmt.Sprintf("%s.%s holds %q", table, cols[i], n))
					}
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return hits
}

func jsonText(s string) string {
	b, _ := json.Marshal(s)
	return strings.Trim(string(b), `"`)
}

// testWithdrawBeforeDelivery: the referral.created is still pending (or dead) when the person withdraws: it is
// withdrawn (never sent), no referral.withdrawn is queued (the service never had the data), the Task is
// cancelled with the coded reason, and nothing of the person is left.
func testWithdrawBeforeDelivery(t *testing.T, r Raw) {
	s := r.Store
	ref, created := setupErasure(t, s)
	if hits := scanDatabase(t, r.DB, []string{fixtureNHS, fixtureFamily}); len(hits) == 0 {
		t.Fatal("the scan finds nothing before the withdrawal: it proves nothing")
	}
	got := withdrawConsent(t, s, ref.Record.ID, at(time.Minute))
	if got.Record.Status != mapping.StatusCancelled || got.ServiceRequestStatus != "revoked" ||
		got.Record.StatusReason != mapping.ConsentWithdrawnText || !got.Record.ConsentWithdrawn {
		t.Errorf("after withdrawal: %+v", got.Record)
	}
	m := message(t, s, created).Message
	if m.State != outbox.StateCancelled || m.LastError != outbox.ConsentWithdrawnError {
		t.Errorf("referral.created: %s %q, want cancelled (consent withdrawn)", m.State, m.LastError)
	}
	for _, m := range list(t, s, outbox.MessageQuery{ReferralID: ref.Record.ID}) {
		if m.Type == mapping.EventReferralWithdrawn {
			t.Errorf("referral.withdrawn %s queued for a service that never received the referral", m.ID)
		}
	}
	task, _ := json.Marshal(mapping.TaskFor(got.Referral))
	if !strings.Contains(string(task), mapping.CancelReasonSystem) || !strings.Contains(string(task), mapping.ConsentWithdrawnCode) {
		t.Errorf("the Task does not record the withdrawal: %s", task)
	}
	assertErased(t, r, ref)
	// Repeating it changes nothing.
	again := withdrawConsent(t, s, ref.Record.ID, at(2*time.Minute))
	if again.Record.Version != got.Record.Version {
		t.Errorf("a repeated withdrawal wrote version %d", again.Record.Version)
	}
}

// testWithdrawAfterDelivery: the service received the referral (the receiver even echoed the person's name
// in its answer): a referral.withdrawn with identifiers only and the request to delete is queued, every stored
// payload and answer is scrubbed.
func testWithdrawAfterDelivery(t *testing.T, r Raw) {
	s := r.Store
	ref, created := setupErasure(t, s)
	deliver(t, s, at(time.Second), `{"ok": true, "patient": "`+fixtureGiven+` `+fixtureFamily+`", "nhs": "`+fixtureNHS+`"}`)
	if m := message(t, s, created).Message; m.State != outbox.StateDelivered {
		t.Fatalf("referral.created %s", m.State)
	}
	withdrawConsent(t, s, ref.Record.ID, at(time.Minute))
	assertWithdrawnEvent(t, s, ref)
	assertErased(t, r, ref)
}

// testWithdrawAfterServiceActed: the service accepted the referral and wrote a note naming the person; then the
// person withdraws: the Task is cancelled, the note's text is erased, the service is told to delete.
func testWithdrawAfterServiceActed(t *testing.T, r Raw) {
	s := r.Store
	ref, _ := setupErasure(t, s)
	deliver(t, s, at(time.Second), "")
	if _, err := s.UpdateReferral(t.Context(), ref.Record.ID, 0, at(2*time.Second), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		return mapping.ApplyStatus(cur.Referral, mapping.StatusChange{To: mapping.StatusAccepted, By: mapping.ActorCommunity,
			ServiceHasWebhook: true, ServiceHasReferral: true, Notes: []string{"Called " + fixtureGiven + " " + fixtureFamily + " on " + fixturePhone},
			NoteAuthor: "Frome Walking for Health", NewID: func() string { return "acted-1" }}, at(2*time.Second))
	}); err != nil {
		t.Fatal(err)
	}
	got := withdrawConsent(t, s, ref.Record.ID, at(time.Minute))
	if got.Record.Status != mapping.StatusCancelled || len(got.TaskNotes) != 1 || got.TaskNotes[0].Text != mapping.ErasedNoteText {
		t.Errorf("after withdrawal: status %s notes %+v", got.Record.Status, got.TaskNotes)
	}
	assertWithdrawnEvent(t, s, ref)
	assertErased(t, r, ref)
}

// assertWithdrawnEvent checks the one referral.withdrawn queued for the service: identifiers only, the delete
// request.
func assertWithdrawnEvent(t *testing.T, s outbox.Store, ref outbox.Referral) {
	t.Helper()
	found := list(t, s, outbox.MessageQuery{ReferralID: ref.Record.ID, Types: []mapping.EventType{mapping.EventReferralWithdrawn}})
	if len(found) != 1 || found[0].State != outbox.StatePending || found[0].Destination != walks {
		t.Fatalf("referral.withdrawn messages: %+v", found)
	}
	var body struct {
		Type   string                     `json:"type"`
		Action string                     `json:"action"`
		Data   map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(found[0].Payload, &body); err != nil {
		t.Fatal(err)
	}
	if body.Type != string(mapping.EventReferralWithdrawn) || body.Action != mapping.ActionDeletePersonalData ||
		string(body.Data["id"]) != `"`+ref.Record.ID+`"` || string(body.Data["consent_withdrawn"]) != "true" {
		t.Errorf("referral.withdrawn payload: %s", found[0].Payload)
	}
	for _, k := range []string{"patient", "referrer", "reasons", "needs", "notes", "consent"} {
		if _, ok := body.Data[k]; ok {
			t.Errorf("referral.withdrawn carries %q: %s", k, found[0].Payload)
		}
	}
}

// testRetentionErases: a referral completed long ago, its messages delivered: retention (outbox.Retention)
// leaves nothing of the person in any table, except in a dead message, which it never scrubs.
func testRetentionErases(t *testing.T, r Raw) {
	s := r.Store
	ref, _ := setupErasure(t, s)
	deliver(t, s, at(time.Second), `{"echo": "`+fixtureFamily+`"}`)
	if _, err := s.UpdateReferral(t.Context(), ref.Record.ID, 0, at(2*time.Second), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.Status = mapping.StatusCompleted
		return next, []mapping.Event{{ID: "late-1", Type: mapping.EventReferralUpdated, Destination: walks,
			Payload: []byte(`{"type":"referral.updated","timestamp":"x","data":{"id":"` + ref.Record.ID + `","patient":{"nhs_number":"` + fixtureNHS + `"}}}`)}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	// The late message goes dead: retention must leave it (and only it) as it is.
	for _, m := range claim(t, s, "owner-1", at(3*time.Second), time.Minute, 100) {
		if err := s.CompleteAttempt(t.Context(), m.ID, at(3*time.Second), outbox.AttemptResult{Owner: "owner-1", State: outbox.StateDead,
			Attempt: outbox.Attempt{StartedAt: at(3 * time.Second), StatusCode: 410}}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Prune(t.Context(), at(48*time.Hour), outbox.PruneRequest{DeliveredBefore: at(time.Hour), ClosedBefore: at(time.Hour)})
	if err != nil || res.Referrals != 1 || res.Payloads < 2 {
		t.Fatalf("prune: %+v %v", res, err)
	}
	hits := scanDatabase(t, r.DB, []string{fixtureNHS, fixtureGiven, fixtureFamily, fixturePhone, fixtureAddress})
	for _, h := range hits {
		if h != "outbox_messages.payload holds \""+fixtureNHS+"\"" {
			t.Errorf("after retention, personal data is left: %s", h)
		}
	}
	if len(hits) == 0 {
		t.Error("the dead messages lost their payload")
	}
	for _, m := range list(t, s, outbox.MessageQuery{ReferralID: ref.Record.ID}) {
		if strings.Contains(string(m.Payload), fixtureNHS) && m.State != outbox.StateDead {
			t.Errorf("message %s (%s) keeps the NHS number", m.ID, m.State)
		}
	}
	if m := message(t, s, "late-1").Message; m.State != outbox.StateDead || !strings.Contains(string(m.Payload), fixtureNHS) {
		t.Errorf("the dead message was scrubbed: %s %s", m.State, m.Payload)
	}
}
