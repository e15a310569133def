package fhirapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// TestStatusEveryKind walks every kind through the FHIR API's table.
func TestStatusEveryKind(t *testing.T) {
	t.Parallel()
	want := map[fault.Kind]struct {
		status int
		code   fhir.IssueCode
	}{
		fault.Invalid: {400, fhir.CodeInvalid}, fault.Rule: {422, fhir.CodeInvalid}, fault.NotFound: {404, fhir.CodeNotFound},
		fault.Gone:     {410, fhir.CodeDeleted},
		fault.Conflict: {409, fhir.CodeConflict}, fault.Stale: {412, fhir.CodeConflict}, fault.VersionRequired: {428, fhir.CodeInvalid},
		fault.Unauthenticated: {401, fhir.CodeLogin}, fault.Forbidden: {403, fhir.CodeForbidden}, fault.TooLarge: {413, fhir.CodeTooCostly},
		fault.UnsupportedMedia: {415, fhir.CodeNotSupported}, fault.NotAcceptable: {406, fhir.CodeNotSupported},
		fault.MethodNotAllowed: {405, fhir.CodeNotSupported}, fault.RateLimited: {429, fhir.CodeTransient},
		fault.Unavailable: {503, fhir.CodeTransient}, fault.Internal: {500, fhir.CodeInvalid},
	}
	if len(want) != len(fault.AllKinds()) {
		t.Errorf("the test lists %d kinds, fault has %d", len(want), len(fault.AllKinds()))
	}
	for _, k := range fault.AllKinds() {
		st, is := outcomeOf(fault.New(k, "some_rule", "", "message"))
		if st != want[k].status || len(is) != 1 || is[0].Code != want[k].code || is[0].Diagnostics != "message" || len(is[0].Expression) != 0 {
			t.Errorf("%s: %d %+v, want %+v", k, st, is, want[k])
		}
	}
}

// TestOutcomeRendering: neutral fields become the Task's elements; FHIR errors keep their issues; sentinels get
// their fixed answers.
func TestOutcomeRendering(t *testing.T) {
	t.Parallel()
	st, is := outcomeOf(&fault.Error{Kind: fault.Rule, Issues: []fault.Issue{
		{Code: mapping.CodeReasonRequired, Field: mapping.FieldReason, Message: "a"},
		{Code: mapping.CodeOutcomeNotAllowed, Field: mapping.FieldOutcome, Message: "b"},
		{Code: mapping.CodeTooManyNotes, Field: mapping.FieldNote, Message: "c"},
	}})
	want := []fhir.Issue{
		{Severity: fhir.SeverityError, Code: fhir.CodeRequired, Diagnostics: "a", Expression: []string{"Task.statusReason"}},
		{Severity: fhir.SeverityError, Code: fhir.CodeBusinessRule, Diagnostics: "b", Expression: []string{"Task.output"}},
		{Severity: fhir.SeverityError, Code: fhir.CodeBusinessRule, Diagnostics: "c", Expression: []string{"Task.note"}},
	}
	if st != 422 || fmt.Sprint(is) != fmt.Sprint(want) {
		t.Errorf("neutral issues: %d %+v", st, is)
	}
	he := fhir.NewError(fault.Invalid, fhir.CodeStructure, "bad", "ServiceRequest.subject")
	if st, is := outcomeOf(fmt.Errorf("parse: %w", he)); st != 400 || is[0].Code != fhir.CodeStructure || is[0].Expression[0] != "ServiceRequest.subject" {
		t.Errorf("fhir.Error: %d %+v", st, is)
	}
	for _, tc := range []struct {
		err    error
		status int
		code   fhir.IssueCode
	}{
		{&mapping.TransitionError{From: mapping.StatusCompleted, To: mapping.StatusCancelled, By: mapping.ActorRequester}, 409, fhir.CodeBusinessRule},
		{fmt.Errorf("x: %w", outbox.ErrNotFound), 404, fhir.CodeNotFound},
		{fmt.Errorf("x: %w", outbox.ErrConflict), 409, fhir.CodeDuplicate},
		{fmt.Errorf("x: %w", outbox.ErrVersionMismatch), 412, fhir.CodeConflict},
		{errors.New("bug"), 500, fhir.CodeException},
	} {
		if st, is := outcomeOf(tc.err); st != tc.status || is[0].Code != tc.code {
			t.Errorf("%v: %d %+v", tc.err, st, is)
		}
	}
}

// TestWriteErrorRetryAfter: a 429 or 503 carries Retry-After (the error's own delay, rounded up, else the
// default); other statuses carry none.
func TestWriteErrorRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		status int
		want   string
	}{
		{fault.WithRetryAfter(fault.New(fault.RateLimited, "rate_limited", "", "slow down"), 2500*time.Millisecond), 429, "3"},
		{fault.New(fault.RateLimited, "rate_limited", "", "slow down"), 429, "5"},
		{fault.WithRetryAfter(fault.New(fault.Unavailable, "database_unavailable", "", "down"), 10*time.Second), 503, "10"},
		{context.DeadlineExceeded, 503, "5"},
		{fault.New(fault.Invalid, "bad", "", "bad"), 400, ""},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/fhir/Task", nil)
		WriteError(rec, req, slog.New(slog.DiscardHandler), tc.err)
		if rec.Code != tc.status || rec.Header().Get("Retry-After") != tc.want {
			t.Errorf("%v: %d Retry-After %q, want %d %q", tc.err, rec.Code, rec.Header().Get("Retry-After"), tc.status, tc.want)
		}
		if tc.status == 429 && !strings.Contains(rec.Body.String(), `"code":"transient"`) {
			t.Errorf("429 must be an OperationOutcome with issue code transient: %s", rec.Body)
		}
	}
}
