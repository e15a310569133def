package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
)

func benchIntake(n int, payload json.RawMessage) mapping.Intake {
	at := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Millisecond)
	return mapping.Intake{
		Referral: mapping.Referral{
			Record: mapping.Record{ID: fmt.Sprintf("ref-%d", n), TaskID: fmt.Sprintf("task-%d", n),
				ServiceRequestID: fmt.Sprintf("sr-%d", n), Status: mapping.StatusRequested, Version: 1,
				Service: mapping.ServiceRef{ID: "walks", Name: "Frome Walking for Health"}, Priority: "routine",
				CreatedAt: at, UpdatedAt: at,
				Patient:  mapping.Person{NHSNumber: "9434765919", Name: "Ann Example", Phone: "07700 900123", Postcode: "BA11 1AA"},
				Referrer: mapping.Referrer{Name: "Dr A Example", Organisation: "Frome Medical Practice", ODSCode: "A81001"},
				Consent:  mapping.Consent{Recorded: true, Status: "active", Source: "Consent"},
				Reasons:  []string{"Social isolation", "Low mood"},
			},
			PracticeODS: "A81001", BusinessStatus: mapping.BusinessQueued,
			Patient:   mapping.Reference{Reference: "Patient/pat-1"},
			Requester: mapping.Reference{Reference: "PractitionerRole/gp-1"},
			Owner:     mapping.Reference{Reference: "Organization/walks"},
		},
		ServiceRequest: payload,
		Identifiers:    []mapping.Identifier{{System: "https://example.nhs.uk/referral-id", Value: fmt.Sprint("REF-", n)}},
		Fingerprint:    fmt.Sprintf("%064d", n),
		Events: []mapping.Event{{ID: fmt.Sprintf("msg-%d", n), Type: mapping.EventReferralCreated,
			Destination: mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}, Payload: payload}},
	}
}

// TestGroupCommitOneBatch holds the writer while eight creates queue up, then checks that they commit as
// ONE batch in which the failing one rolls back alone.
func TestGroupCommitOneBatch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	injected := errors.New("injected")
	s, err := Open(ctx, filepath.Join(t.TempDir(), "db"), Options{
		Logger: slog.New(slog.DiscardHandler),
		FailAfter: func(stage string, in mapping.Intake) error {
			if stage == "identifiers" && in.Referral.Record.ID == "ref-3" {
				return injected
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mu sync.Mutex
	var sizes []int
	s.afterBatch = func(n int) {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, n)
	}

	started, release := make(chan struct{}), make(chan struct{})
	blocked := make(chan error, 1)
	go func() {
		blocked <- s.write(ctx, func(*wtx) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started

	const n = 8
	errs := make([]error, n)
	created := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := s.CreateReferral(ctx, benchIntake(i, json.RawMessage(`{}`)))
			errs[i], created[i] = err, res.Created
		})
	}
	for len(s.jobs) < n {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if i == 3 {
			if !errors.Is(errs[i], injected) {
				t.Errorf("create 3: %v, want the injected error", errs[i])
			}
			continue
		}
		if errs[i] != nil || !created[i] {
			t.Errorf("create %d: created %v, %v", i, created[i], errs[i])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(sizes, []int{1, n}) {
		t.Errorf("batch sizes %v, want [1 %d]: the queued creates should share one commit", sizes, n)
	}
	var rows int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM referrals").Scan(&rows); err != nil || rows != n-1 {
		t.Errorf("referrals: %d, %v; want %d", rows, err, n-1)
	}
}

// TestCancelQueuedAndTaken: a write cancelled while queued never runs; a write cancelled once the writer has
// taken it reports its true outcome.
func TestCancelQueuedAndTaken(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "db"), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	takenCtx, cancelTaken := context.WithCancel(ctx)
	running, proceed := make(chan struct{}), make(chan struct{})
	takenErr := make(chan error, 1)
	go func() {
		takenErr <- s.write(takenCtx, func(w *wtx) error {
			close(running)
			<-proceed
			_, err := w.ExecContext(w.ctx, `CREATE TABLE taken (v INTEGER)`)
			return err
		})
	}()
	<-running

	queuedCtx, cancelQueued := context.WithCancel(ctx)
	queuedErr := make(chan error, 1)
	go func() {
		_, err := s.CreateReferral(queuedCtx, benchIntake(1, json.RawMessage(`{}`)))
		queuedErr <- err
	}()
	for len(s.jobs) < 1 {
		runtime.Gosched()
	}
	cancelQueued()
	if err := <-queuedErr; !errors.Is(err, context.Canceled) {
		t.Errorf("queued create cancelled: %v, want context.Canceled", err)
	}
	cancelTaken()
	close(proceed)
	if err := <-takenErr; err != nil {
		t.Errorf("taken write cancelled mid-commit: %v, want its true result (nil)", err)
	}
	if _, err := s.CreateReferral(ctx, benchIntake(2, json.RawMessage(`{}`))); err != nil {
		t.Fatal(err)
	}
	var events, referrals int
	if err := s.db.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM sqlite_schema WHERE name = 'taken'),
		(SELECT COUNT(*) FROM referrals WHERE id = 'ref-1')`).Scan(&events, &referrals); err != nil {
		t.Fatal(err)
	}
	if events != 1 || referrals != 0 {
		t.Errorf("taken write's table %d (want 1), abandoned create's rows %d (want 0)", events, referrals)
	}
}
