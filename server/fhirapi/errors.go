package fhirapi

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/server/internal/web"
)

// This file is the FHIR API's one status table: every error from the layers below becomes an HTTP status and
// OperationOutcome issues here, by its kind (fault.KindOf) and, for neutral issues, its rule and field.

// status is the FHIR API's HTTP status of each kind.
func status(k fault.Kind) int {
	switch k {
	case fault.Invalid:
		return http.StatusBadRequest
	case fault.Rule:
		return http.StatusUnprocessableEntity
	case fault.NotFound:
		return http.StatusNotFound
	case fault.Gone:
		return http.StatusGone
	case fault.Conflict:
		return http.StatusConflict
	case fault.Stale:
		return http.StatusPreconditionFailed
	case fault.VersionRequired:
		return http.StatusPreconditionRequired
	case fault.Unauthenticated:
		return http.StatusUnauthorized
	case fault.Forbidden:
		return http.StatusForbidden
	case fault.TooLarge:
		return http.StatusRequestEntityTooLarge
	case fault.UnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case fault.NotAcceptable:
		return http.StatusNotAcceptable
	case fault.MethodNotAllowed:
		return http.StatusMethodNotAllowed
	case fault.RateLimited:
		return http.StatusTooManyRequests
	case fault.Unavailable:
		return http.StatusServiceUnavailable
	case fault.Internal:
	}
	return http.StatusInternalServerError
}

// issueType is the OperationOutcome issue type of a kind, for issues that name no FHIR type of their own.
func issueType(k fault.Kind) fhir.IssueCode {
	switch k {
	case fault.Unauthenticated:
		return fhir.CodeLogin
	case fault.Forbidden:
		return fhir.CodeForbidden
	case fault.NotFound:
		return fhir.CodeNotFound
	case fault.Gone:
		return fhir.CodeDeleted
	case fault.MethodNotAllowed, fault.UnsupportedMedia, fault.NotAcceptable:
		return fhir.CodeNotSupported
	case fault.TooLarge:
		return fhir.CodeTooCostly
	case fault.Conflict, fault.Stale:
		return fhir.CodeConflict
	case fault.Unavailable, fault.RateLimited:
		return fhir.CodeTransient
	case fault.Invalid, fault.Rule, fault.VersionRequired, fault.Internal:
	}
	return fhir.CodeInvalid
}

// ruleType is the issue type of a neutral rule ("" when the kind decides).
func ruleType(c fault.Code) fhir.IssueCode {
	switch c {
	case mapping.CodeReasonRequired, mapping.CodeOutcomeRequired:
		return fhir.CodeRequired
	case mapping.CodeOutcomeNotAllowed, mapping.CodeTooManyNotes, mapping.CodeIllegalTransition, mapping.CodeMeasureNotAllowed:
		return fhir.CodeBusinessRule
	case web.CodeUnreadable:
		return fhir.CodeStructure
	case mapping.CodeInvalidMeasure:
		return fhir.CodeValue
	}
	return ""
}

// taskExpression renders a neutral field of the referral as the Task element that holds it (the state
// machine's fields); other fields are rendered as they are.
func taskExpression(field string) string {
	switch field {
	case mapping.FieldStatus:
		return "Task.status"
	case mapping.FieldReason:
		return "Task.statusReason"
	case mapping.FieldOutcome:
		return "Task.output"
	case mapping.FieldNote:
		return "Task.note"
	}
	return field
}

// outcomeOf is the status and OperationOutcome issues a FHIR client gets for err.
func outcomeOf(err error) (int, []fhir.Issue) {
	var he *fhir.Error
	var fe *fault.Error
	var te *mapping.TransitionError
	switch {
	case errors.As(err, &he):
		return status(he.Kind), he.Issues
	case errors.As(err, &te):
		return http.StatusConflict, issue(fhir.CodeBusinessRule, te.Error(), "Task.status")
	case errors.As(err, &fe):
		out := make([]fhir.Issue, 0, len(fe.Issues))
		for _, is := range fe.Issues {
			code := ruleType(is.Code)
			if code == "" {
				code = issueType(fe.Kind)
			}
			i := fhir.Issue{Severity: fhir.SeverityError, Code: code, Diagnostics: is.Message}
			if is.Field != "" {
				i.Expression = []string{taskExpression(is.Field)}
			}
			out = append(out, i)
		}
		return status(fe.Kind), out
	case errors.Is(err, outbox.ErrNotFound):
		return http.StatusNotFound, issue(fhir.CodeNotFound, "no such resource, or not visible to this client")
	case errors.Is(err, outbox.ErrConflict):
		return http.StatusConflict, issue(fhir.CodeDuplicate,
			"ServiceRequest.identifier is already used by a referral with different content; resend the original unchanged, or use a new identifier",
			"ServiceRequest.identifier")
	case errors.Is(err, outbox.ErrVersionMismatch):
		return http.StatusPreconditionFailed, issue(fhir.CodeConflict, "If-Match does not name the current version; read the resource again and retry")
	}
	switch k := fault.KindOf(err); k {
	case fault.Unavailable:
		return http.StatusServiceUnavailable, issue(fhir.CodeTransient, "the service is busy; retry after the Retry-After delay")
	case fault.Internal:
	default:
		return status(k), issue(issueType(k), err.Error())
	}
	return http.StatusInternalServerError, issue(fhir.CodeException, "internal error; quote the OperationOutcome id to the operator")
}

func issue(code fhir.IssueCode, diag string, expr ...string) []fhir.Issue {
	return []fhir.Issue{{Severity: fhir.SeverityError, Code: code, Diagnostics: diag, Expression: expr}}
}

// WriteError answers with an OperationOutcome. Server faults are logged with their detail; the client gets the
// correlation id only.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	st, issues := outcomeOf(err)
	web.LogFailure(log, r, st, err)
	web.SetRetryAfter(w, st, err)
	Write(w, st, fhir.MarshalOutcome(web.RequestID(r.Context()), issues))
}

// Write writes a FHIR JSON body.
func Write(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
