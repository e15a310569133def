package referral_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/referral"
)

// TestReplayRefusesCancelled: a message withdrawn before delivery is never replayed, by id or by filter.
func TestReplayRefusesCancelled(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"), sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	walks := mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}
	_, err = s.CreateReferral(ctx, mapping.Intake{
		Referral: mapping.Referral{Record: mapping.Record{ID: "r1", TaskID: "t1", ServiceRequestID: "sr1",
			Status: mapping.StatusRequested, Service: mapping.ServiceRef{ID: "walks"}, CreatedAt: now}, PracticeODS: "A81001"},
		ServiceRequest: json.RawMessage(`{}`), Fingerprint: "fp",
		Events: []mapping.Event{{ID: "m1", Type: mapping.EventReferralCreated, Destination: walks, Payload: json.RawMessage(`{}`)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.UpdateReferral(ctx, "r1", 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.Status = mapping.StatusCancelled
		return next, []mapping.Event{{ID: "m2", Type: mapping.EventReferralCancelled, Destination: walks, Payload: json.RawMessage(`{}`)}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	op := referral.Operator{Store: s, Clock: func() time.Time { return now }}
	_, err = op.Replay(ctx, outbox.ReplayRequest{IDs: []string{"m1"}, Reason: "retry", Actor: "ops"})
	if !errors.Is(err, outbox.ErrBadRequest) || !strings.Contains(err.Error(), "withdrawn before delivery") {
		t.Errorf("replay of a cancelled message by id: %v", err)
	}
	_, err = op.Replay(ctx, outbox.ReplayRequest{Filter: &outbox.MessageQuery{States: []outbox.MessageState{outbox.StateCancelled}}, Reason: "retry", Actor: "ops"})
	if !errors.Is(err, outbox.ErrBadRequest) || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("replay of cancelled messages by filter: %v", err)
	}
	if _, err := op.Replay(ctx, outbox.ReplayRequest{IDs: []string{"nope"}, Reason: "retry", Actor: "ops"}); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("replay of an unknown id: %v", err)
	}
	if d, err := op.Show(ctx, "m1"); err != nil || d.Message.State != outbox.StateCancelled || referral.ViewOf(d.Message).State != "cancelled" {
		t.Errorf("show: %+v, %v", d.Message, err)
	}
}
