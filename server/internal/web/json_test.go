package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// TestJSONStatusEveryKind walks every kind through the JSON APIs' table.
func TestJSONStatusEveryKind(t *testing.T) {
	t.Parallel()
	want := map[fault.Kind]int{
		fault.Invalid: 400, fault.Rule: 422, fault.NotFound: 404, fault.Gone: 410, fault.Conflict: 409, fault.Stale: 409,
		fault.VersionRequired: 428, fault.Unauthenticated: 401, fault.Forbidden: 403, fault.TooLarge: 413,
		fault.UnsupportedMedia: 415, fault.NotAcceptable: 406, fault.MethodNotAllowed: 405, fault.RateLimited: 429,
		fault.Unavailable: 503, fault.Internal: 500,
	}
	for _, k := range fault.AllKinds() {
		if got := jsonStatus(k); got != want[k] {
			t.Errorf("%s: status %d, want %d", k, got, want[k])
		}
		st, body := JSONError(fault.New(k, "some_rule", "field", "message"))
		if st != want[k] || body.Error != "some_rule" || body.Field != "field" || body.Message != "message" {
			t.Errorf("%s: %d %+v", k, st, body)
		}
	}
	if len(want) != len(fault.AllKinds()) {
		t.Errorf("the test lists %d kinds, fault has %d", len(want), len(fault.AllKinds()))
	}
}

// TestJSONErrorRendering: the neutral rules, the stores' sentinels and the state machine's refusals as a
// community service reads them.
func TestJSONErrorRendering(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err                 error
		status              int
		code, field, prefix string
	}{
		{fault.New(fault.Rule, mapping.CodeReasonRequired, mapping.FieldReason, "a reason is required to move a referral to rejected"),
			422, "reason_required", "reason", "reason is required to move"},
		{fault.New(fault.Rule, mapping.CodeOutcomeNotAllowed, mapping.FieldOutcome, "x"), 422, "invalid_outcome", "outcome", "x"},
		{fault.New(fault.Rule, mapping.CodeOutcomeRequired, mapping.FieldOutcome, "y"), 422, "invalid_outcome", "outcome", "y"},
		{&mapping.TransitionError{From: mapping.StatusCompleted, To: mapping.StatusAccepted, By: mapping.ActorCommunity},
			409, "illegal_transition", "status", "the referral is completed"},
		{fmt.Errorf("lookup: %w", outbox.ErrNotFound), 404, "not_found", "", "no such resource"},
		{fmt.Errorf("update: %w", outbox.ErrVersionMismatch), 409, "version_conflict", "", "the referral changed"},
		{fmt.Errorf("replay: %w", outbox.ErrBadRequest), 400, "invalid", "", "replay: bad request"},
		{context.DeadlineExceeded, 503, "unavailable", "", "the service is busy"},
		{errors.New("disk on fire"), 500, "internal", "", "internal error"},
	} {
		st, body := JSONError(tc.err)
		if st != tc.status || body.Error != tc.code || body.Field != tc.field || len(body.Message) < len(tc.prefix) || body.Message[:len(tc.prefix)] != tc.prefix {
			t.Errorf("%v: %d %+v, want %d %s %s %q…", tc.err, st, body, tc.status, tc.code, tc.field, tc.prefix)
		}
	}
	if http.StatusText(jsonStatus(fault.Kind("nonsense"))) != "Internal Server Error" {
		t.Error("an unknown kind must be a 500")
	}
}

// TestWriteErrorRetryAfter: a 429 or 503 carries Retry-After (the error's own delay, rounded up, else the
// default) and the JSON error; other statuses carry none.
func TestWriteErrorRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		status int
		code   string
		want   string
	}{
		{fault.WithRetryAfter(fault.New(fault.RateLimited, "rate_limited", "", "slow down"), 1200*time.Millisecond), 429, "rate_limited", "2"},
		{fault.WithRetryAfter(fault.New(fault.Unavailable, "database_unavailable", "", "down"), 7*time.Second), 503, "database_unavailable", "7"},
		{context.Canceled, 503, "unavailable", "5"},
		{fault.New(fault.NotFound, "not_found", "", "gone"), 404, "not_found", ""},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/community/v1/referrals", nil)
		WriteError(rec, req, slog.New(slog.DiscardHandler), tc.err)
		var body APIError
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if rec.Code != tc.status || body.Error != tc.code || rec.Header().Get("Retry-After") != tc.want {
			t.Errorf("%v: %d %q Retry-After %q, want %d %q %q", tc.err, rec.Code, body.Error, rec.Header().Get("Retry-After"), tc.status, tc.code, tc.want)
		}
	}
}
