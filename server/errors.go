package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// errUnavailable marks a transient server-side condition (database busy or unreachable): 503 + Retry-After.
var errUnavailable = errors.New("temporarily unavailable")

// fhirError maps any error from the layers below to the OperationOutcome issues and HTTP status a FHIR client
// gets. This is the one status table of the FHIR API.
func fhirError(err error) (int, []fhir.Issue) {
	var fe *fhir.Error
	switch {
	case errors.As(err, &fe):
		return fe.Status, fe.Issues
	case errors.Is(err, outbox.ErrNotFound):
		return http.StatusNotFound, issue(fhir.CodeNotFound, "no such resource, or not visible to this client")
	case errors.Is(err, outbox.ErrConflict):
		return http.StatusConflict, issue(fhir.CodeDuplicate,
			"ServiceRequest.identifier is already used by a referral with different content; resend the original unchanged, or use a new identifier",
			"ServiceRequest.identifier")
	case errors.Is(err, outbox.ErrVersionMismatch):
		return http.StatusPreconditionFailed, issue(fhir.CodeConflict, "If-Match does not name the current version; read the resource again and retry")
	case isTransitionError(err):
		return http.StatusConflict, issue(fhir.CodeBusinessRule, err.Error(), "Task.status")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, errUnavailable):
		return http.StatusServiceUnavailable, issue(fhir.CodeTransient, "the service is busy; retry after the Retry-After delay")
	}
	return http.StatusInternalServerError, issue(fhir.CodeException, "internal error; quote the OperationOutcome id to the operator")
}

func issue(code fhir.IssueCode, diag string, expr ...string) []fhir.Issue {
	return []fhir.Issue{{Severity: fhir.SeverityError, Code: code, Diagnostics: diag, Expression: expr}}
}

// writeFHIRError answers with an OperationOutcome. Server faults are logged with their detail; the client gets
// the correlation id only.
func (s *Server) writeFHIRError(w http.ResponseWriter, r *http.Request, err error) {
	status, issues := fhirError(err)
	s.logFailure(r, status, err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	s.writeFHIR(w, status, fhir.MarshalOutcome(requestID(r.Context()), issues))
}

func (s *Server) logFailure(r *http.Request, status int, err error) {
	level := slog.LevelDebug
	if status >= 500 {
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "request failed", "request_id", requestID(r.Context()), "status", status, "err", err)
}

// writeFHIR writes a FHIR JSON body.
func (s *Server) writeFHIR(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// apiError is the JSON error body of the community and admin APIs.
type apiError struct {
	Error     string `json:"error"`           // machine-readable rule, e.g. "invalid_status"
	Message   string `json:"message"`         // what a person reads
	Field     string `json:"field,omitempty"` // the offending field or parameter
	RequestID string `json:"request_id"`
}

// jsonError is an error for the JSON APIs carrying its status and rule.
type jsonError struct {
	Status  int
	Code    string
	Message string
	Field   string
}

func (e *jsonError) Error() string { return e.Code + ": " + e.Message }

// apiErrorFor is the status table of the JSON APIs.
func apiErrorFor(err error) *jsonError {
	var je *jsonError
	var fe *fhir.Error
	switch {
	case errors.As(err, &je):
		return je
	case errors.As(err, &fe):
		out := &jsonError{Status: fe.Status, Code: "invalid", Message: fe.Error()}
		if len(fe.Issues) > 0 {
			out.Code, out.Message = string(fe.Issues[0].Code), fe.Issues[0].Diagnostics
			if len(fe.Issues[0].Expression) > 0 {
				out.Field = fe.Issues[0].Expression[0]
			}
		}
		return out
	case errors.Is(err, outbox.ErrNotFound):
		return &jsonError{Status: http.StatusNotFound, Code: "not_found", Message: "no such resource, or not visible to this client"}
	case errors.Is(err, outbox.ErrVersionMismatch):
		return &jsonError{Status: http.StatusConflict, Code: "version_conflict", Message: "the referral changed meanwhile; read it again and retry"}
	case isTransitionError(err):
		return &jsonError{Status: http.StatusConflict, Code: "illegal_transition", Message: err.Error(), Field: "status"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, errUnavailable):
		return &jsonError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the service is busy; retry after the Retry-After delay"}
	}
	return &jsonError{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error; quote request_id to the operator"}
}

func (s *Server) writeAPIError(w http.ResponseWriter, r *http.Request, err error) {
	je := apiErrorFor(err)
	s.logFailure(r, je.Status, err)
	if je.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	s.writeJSON(w, je.Status, apiError{Error: je.Code, Message: je.Message, Field: je.Field, RequestID: requestID(r.Context())})
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode response", "err", err)
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal","message":"could not encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// isTransitionError reports whether err is the state machine refusing a move (409).
func isTransitionError(err error) bool { return errors.Is(err, mapping.ErrInvalidTransition) }
