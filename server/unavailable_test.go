package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/outbox/sqlite/disktest"
)

// want503 checks an honest "the database cannot serve now": 503 with Retry-After, in the API's format.
func want503(t *testing.T, what string, r response, format string) {
	t.Helper()
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("%s: %d %.300s, want 503", what, r.status, r.body)
		return
	}
	wantRetryAfter(t, what, r)
	switch format {
	case "fhir":
		if is := issues(t, r); len(is) != 1 || is[0].Code != "transient" {
			t.Errorf("%s: %s", what, r.body)
		}
	case "json":
		if code, _, _ := apiErr(t, r); code != "unavailable" {
			t.Errorf("%s: %s", what, r.body)
		}
	}
}

// readyAgain asks /readyz until it answers 200, a few times without waiting (the first checks after an
// outage may still report the writes that failed during it, or meet the pool's dead connections).
func readyAgain(t *testing.T, h *hostile) {
	t.Helper()
	var r response
	for range 5 {
		if r = h.do(http.MethodGet, "/readyz", "", nil); r.status == http.StatusOK {
			return
		}
		want503(t, "/readyz while recovering", r, "")
	}
	t.Fatalf("/readyz did not recover: %d %s", r.status, r.body)
}

// unavailableRequests are the requests of every API that need the database.
func unavailableRequests(t *testing.T, h *hostile, id ids) {
	t.Helper()
	referral := readFile(t, referrals+"/walking-group-performer.json")
	other := []byte(strings.Replace(string(referral), "FVMC-2025-0142", "FVMC-2025-0999", 1))
	want503(t, "POST ServiceRequest", h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, other), "fhir")
	want503(t, "GET Task", h.do(http.MethodGet, "/fhir/Task/"+id.task, tokGP, nil), "fhir")
	want503(t, "community status change", setStatus(h.harness, tokWalks, id.referral, `{"status":"received"}`), "json")
	want503(t, "community inbox", h.do(http.MethodGet, "/community/v1/referrals", tokWalks, nil), "json")
	want503(t, "admin list", h.do(http.MethodGet, "/admin/v1/messages", tokAdmin, nil), "json")
	want503(t, "/readyz", h.do(http.MethodGet, "/readyz", "", nil), "")
	want503(t, "/readyz again", h.do(http.MethodGet, "/readyz", "", nil), "")
}

// TestStoppedPostgresAnswers503 stops a private PostgreSQL cluster under a running server: every API answers
// 503 with Retry-After (OperationOutcome transient, the JSON error unavailable), never a 500, /readyz says not
// ready; when the cluster is started again socialrx recovers by itself (no restart), /readyz says ready, and
// nothing half-written is left by the refused requests.
func TestStoppedPostgresAnswers503(t *testing.T) {
	t.Parallel()
	c := pgtest.NewCluster(t)
	h, id := beforeOutage(t, func() (outbox.Store, error) {
		return postgres.Open(context.Background(), c.URL(), postgres.Options{Logger: slog.New(slog.DiscardHandler),
			MaxConns: 4, NoListen: true, ConnectTimeout: 2 * time.Second})
	})

	c.Stop()
	unavailableRequests(t, h, id)

	c.Start()
	readyAgain(t, h)
	afterOutage(t, h, id)
}

// beforeOutage serves the store open opens, with one referral in it, and checks that it is ready.
func beforeOutage(t *testing.T, open func() (outbox.Store, error)) (*hostile, ids) {
	t.Helper()
	st, err := open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	h := newHostile(t, st, nil, nil)
	id := refer(h.harness, tokGP, "walking-group-performer.json")
	if r := h.do(http.MethodGet, "/readyz", "", nil); r.status != http.StatusOK {
		t.Fatalf("/readyz before: %d %s", r.status, r.body)
	}
	return h, id
}

// afterOutage checks that the service works again and that the refused requests left nothing behind.
func afterOutage(t *testing.T, h *hostile, id ids) {
	t.Helper()
	if r := setStatus(h.harness, tokWalks, id.referral, `{"status":"received"}`); r.status != http.StatusOK {
		t.Errorf("community status change after the outage: %d %s", r.status, r.body)
	}
	if n := h.countReferrals(); n != 1 {
		t.Errorf("%d referrals after the outage, want 1 (the refused one left nothing)", n)
	}
	ms, err := h.store.ListMessages(context.Background(), outbox.MessageQuery{})
	if err != nil || len(ms) != 1 {
		t.Errorf("messages after the outage: %d %v, want the referral's 1", len(ms), err)
	}
	if r := postFixture(h.harness, "", "debt-advice-urgent.json"); r.status != http.StatusCreated {
		t.Errorf("a referral after the outage: %d %s", r.status, r.body)
	}
}

// TestFullDiskAnswers503 fills the disk under a running server on SQLite (a 16 MiB tmpfs, a filler file: the
// kernel answers ENOSPC): writes answer 503 with Retry-After on every API, never a 500, and write nothing;
// /readyz says not ready on every check while the disk is full, and ready again once space is freed.
func TestFullDiskAnswers503(t *testing.T) {
	t.Parallel()
	dir := disktest.Mount(t, 16<<20)
	h, id := beforeOutage(t, func() (outbox.Store, error) {
		return sqlite.Open(context.Background(), filepath.Join(dir, "socialrx.db"), sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	})

	free := disktest.Fill(t, dir)
	referral := readFile(t, referrals+"/walking-group-performer.json")
	for i := range 3 {
		other := []byte(strings.Replace(string(referral), "FVMC-2025-0142", fmt.Sprintf("FVMC-FULL-%d", i), 1))
		want503(t, "POST ServiceRequest on a full disk", h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, other), "fhir")
	}
	want503(t, "community status change on a full disk", setStatus(h.harness, tokWalks, id.referral, `{"status":"received"}`), "json")
	for range 3 {
		want503(t, "/readyz on a full disk", h.do(http.MethodGet, "/readyz", "", nil), "")
	}
	// Reads still answer.
	if r := h.do(http.MethodGet, "/fhir/Task/"+id.task, tokGP, nil); r.status != http.StatusOK {
		t.Errorf("a read on a full disk: %d", r.status)
	}

	free()
	readyAgain(t, h)
	afterOutage(t, h, id)
}
