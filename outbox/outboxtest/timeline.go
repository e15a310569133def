package outboxtest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// RunTimelineCopies proves on a backend that a version changing only the referral's status, business status
// or status reason (a delivery's, an acknowledgement's) keeps no copy of the referral in its timeline entry,
// that every other version keeps one, and that every version still reads back exactly as it was written
// (ReferralVersions, ReferralVersion), alone or in a batch of deliveries, before and after a consent
// withdrawal scrubs the copies; a version with no copy before it (an entry from before migration 20) is not
// kept. It looks at the entries through r.DB.
func RunTimelineCopies(t *testing.T, open func(t *testing.T) Raw) {
	r := open(t)
	s, ctx := r.Store, t.Context()
	created := []outbox.Referral{create(t, s, realIntake(t)), create(t, s, intake(2))}
	id := created[0].Record.ID
	want := map[string][]outbox.Referral{id: {created[0]}, "ref-002": {created[1]}}

	// Version 2 of both: their deliveries, recorded in one batch.
	now := at(time.Minute)
	ms := claim(t, s, "d1", now, time.Minute, 10)
	if len(ms) != 2 {
		t.Fatalf("claimed %v, want both referrals' messages", ids(ms))
	}
	var batch []outbox.Completion
	for _, m := range ms {
		batch = append(batch, outbox.Completion{ID: m.ID, Now: now, Result: outbox.AttemptResult{Owner: "d1",
			State: outbox.StateDelivered, Attempt: outbox.Attempt{StartedAt: now, StatusCode: 200}, Update: delivered}})
	}
	for i, err := range s.CompleteAttempts(ctx, batch) {
		if err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	for ref := range want {
		want[ref] = append(want[ref], get(t, s, ref))
	}
	update := func(at time.Time, fn func(*mapping.Referral)) {
		t.Helper()
		v, err := s.UpdateReferral(ctx, id, 0, at, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			next := cur.Referral
			fn(&next)
			return next, nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want[id] = append(want[id], v)
	}
	// Version 3: acknowledged with a reason (status and status reason only).
	update(at(2*time.Minute), func(r *mapping.Referral) {
		r.Record.Status, r.Record.StatusReason = mapping.StatusReceived, "called the person"
	})
	// Version 4: a note (a copy), then 5: picked up (business status only, after that copy).
	update(at(3*time.Minute), func(r *mapping.Referral) {
		r.TaskNotes = append(r.TaskNotes, mapping.TaskNote{Author: "Frome Walking for Health", Time: at(3 * time.Minute),
			Text: "First walk on Tuesday"})
	})
	update(at(4*time.Minute), func(r *mapping.Referral) { r.BusinessStatus = mapping.BusinessPickedUp })
	// Version 6: reason cleared, status accepted.
	update(at(5*time.Minute), func(r *mapping.Referral) {
		r.Record.Status, r.Record.StatusReason = mapping.StatusAccepted, ""
	})

	copies := func(ref string) []bool {
		t.Helper()
		var out []bool
		if err := eachRow(ctx, r.DB, fmt.Sprintf(`SELECT length(referral) > 0, as_previous FROM referral_events
			WHERE referral_id = '%s' ORDER BY version`, ref), func(scan func(...any) error) error {
			var copied, asPrevious bool
			if err := scan(&copied, &asPrevious); err != nil {
				return err
			}
			if copied == asPrevious {
				t.Errorf("%s's entry %d: copy %v, as_previous %v (one or the other)", ref, len(out)+1, copied, asPrevious)
			}
			out = append(out, copied)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	diff(t, "which of "+id+"'s timeline entries hold a copy", copies(id), []bool{true, false, false, true, false, false})
	diff(t, "which of ref-002's timeline entries hold a copy", copies("ref-002"), []bool{true, false})

	readBack := func(what, ref string, want []outbox.Referral) {
		t.Helper()
		got, err := s.ReferralVersions(ctx, ref)
		if err != nil {
			t.Fatalf("%s: ReferralVersions(%s): %v", what, ref, err)
		}
		diff(t, what+": "+ref+"'s versions", got, want)
		for _, w := range want {
			v, err := s.ReferralVersion(ctx, ref, w.Record.Version)
			if err != nil {
				t.Fatalf("%s: ReferralVersion(%s, %d): %v", what, ref, w.Record.Version, err)
			}
			diff(t, fmt.Sprintf("%s: %s's version %d", what, ref, w.Record.Version), v, w)
		}
	}
	for ref, vs := range want {
		readBack("as written", ref, vs)
	}
	if v := want[id]; v[2].Record.StatusReason != "called the person" || v[4].BusinessStatus != mapping.BusinessPickedUp ||
		len(v[4].TaskNotes) != 1 || v[5].Record.StatusReason != "" || v[5].Record.Status != mapping.StatusAccepted {
		t.Fatalf("the versions written are not the ones meant: %+v", v)
	}

	// A consent withdrawal scrubs every copy: the versions without one read scrubbed too.
	last := withdrawConsent(t, s, id, at(6*time.Minute))
	vs, err := s.ReferralVersions(ctx, id)
	if err != nil || len(vs) != 7 {
		t.Fatalf("after the withdrawal: %d versions, %v; want 7", len(vs), err)
	}
	for i, v := range vs {
		w := want[id]
		if i == 6 {
			w = append(w, last)
		}
		if v.Record.Patient.NHSNumber != "" || v.Record.Patient.Name != "" || !v.Record.ConsentWithdrawn || v.Record.Status != w[i].Record.Status ||
			v.BusinessStatus != w[i].BusinessStatus || v.Record.StatusReason != w[i].Record.StatusReason ||
			v.Record.Version != i+1 {
			t.Errorf("after the withdrawal, version %d: %s/%s %q, patient %+v, withdrawn %v", i+1, v.Record.Status,
				v.BusinessStatus, v.Record.StatusReason, v.Record.Patient, v.Record.ConsentWithdrawn)
		}
	}
	for _, hit := range scanDatabase(t, r.DB, []string{fixtureNHS, fixtureFamily}) {
		t.Errorf("personal data left after consent withdrawal: %s", hit)
	}

	// ref-002's first entry as before migration 20 (no copy): its delivery's version has none to read.
	if _, err := r.DB.ExecContext(ctx, `UPDATE referral_events SET referral = '' WHERE referral_id = 'ref-002' AND version = 1`); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReferralVersions(ctx, "ref-002"); err != nil || len(got) != 0 {
		t.Errorf("versions of a referral without copies: %d, %v; want none", len(got), err)
	}
	for v := 1; v <= 2; v++ {
		_, err := s.ReferralVersion(ctx, "ref-002", v)
		wantErr(t, fmt.Sprintf("ReferralVersion(ref-002, %d) without a copy before it", v), err, outbox.ErrNotFound)
	}
}

// RunTimelineCopiesDown proves a backend's down migration of as_previous (SQLite's 91, PostgreSQL's 98): db is
// at that migration; rebind spells a statement's ? placeholders for the backend; down migrates to the one
// before. Every timeline entry that held no copy of its referral must then hold the latest copy before it with
// the entry's own status, business status and status reason, and the other entries stay as they were.
func RunTimelineCopiesDown(t *testing.T, db *sql.DB, rebind func(string) string, down func() error) {
	ctx := t.Context()
	first := []byte(`{"Record":{"id":"ref-1","task_id":"task-1","service_request_id":"sr-1","status":"requested",` +
		`"version":1,"patient":{"name":"Margaret Ellis"}},"BusinessStatus":"queued","PracticeODS":"A81001"}`)
	if _, err := db.ExecContext(ctx, rebind(`INSERT INTO referrals (id, task_id, service_request_id, practice_ods,
		service_id, status, business_status, patient_ref, patient_nhs_number, requester_ref, version, created_at,
		updated_at, fingerprint, identifiers, referral, service_request) VALUES ('ref-1', 'task-1', 'sr-1', 'A81001',
		'walks', 'received', 'delivered', '', '', '', 3, 1, 3, 'fp', '[]', ?, ?)`), []byte("{}"), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct {
		version                 int
		cause, status, business string
		reason                  string
		referral                []byte
		asPrevious              bool
	}{
		{1, "create", "requested", "queued", "", first, false},
		{2, "attempt", "requested", "delivered", "", []byte{}, true},
		{3, "update", "received", "delivered", "called her", []byte{}, true},
	} {
		if _, err := db.ExecContext(ctx, rebind(`INSERT INTO referral_events (referral_id, version, at, cause, status,
			business_status, status_reason, referral, as_previous) VALUES ('ref-1', ?, ?, ?, ?, ?, ?, ?, ?)`),
			e.version, e.version, e.cause, e.status, e.business, e.reason, e.referral, e.asPrevious); err != nil {
			t.Fatalf("entry %d: %v", e.version, err)
		}
	}
	if err := down(); err != nil {
		t.Fatal(err)
	}
	var got []mapping.Referral
	if err := eachRow(ctx, db, `SELECT referral FROM referral_events WHERE referral_id = 'ref-1' ORDER BY version`,
		func(sc func(...any) error) error {
			var b []byte
			var r mapping.Referral
			if err := sc(&b); err != nil {
				return err
			}
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("entry %d after down: %q: %w", len(got)+1, b, err)
			}
			got = append(got, r)
			return nil
		}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d entries after down, want 3", len(got))
	}
	for i, w := range []struct {
		status   mapping.TaskStatus
		business mapping.BusinessStatus
		reason   string
	}{{"requested", "queued", ""}, {"requested", "delivered", ""}, {"received", "delivered", "called her"}} {
		r := got[i]
		if r.Record.Status != w.status || r.BusinessStatus != w.business || r.Record.StatusReason != w.reason ||
			r.Record.Patient.Name != "Margaret Ellis" || r.PracticeODS != "A81001" || r.Record.ID != "ref-1" {
			t.Errorf("entry %d after down: %+v", i+1, r)
		}
	}
}

// eachRow runs query on db and calls fn with each row's Scan.
func eachRow(ctx context.Context, db *sql.DB, query string, fn func(scan func(...any) error) error) error {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}
