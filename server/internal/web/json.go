package web

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// APIError is the JSON error body of the community and admin APIs.
type APIError struct {
	Error     string `json:"error"`           // machine-readable rule, e.g. "invalid_status"
	Message   string `json:"message"`         // what a person reads
	Field     string `json:"field,omitempty"` // the offending field or parameter
	RequestID string `json:"request_id"`
	// Issues lists every problem when there is more than one (the first is also in error, message and
	// field): an outcome measure's validation reports all its problems at once.
	Issues []APIIssue `json:"issues,omitempty"`
}

// APIIssue is one problem of several in an APIError.
type APIIssue struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// jsonStatus is the JSON APIs' status of each kind. A stale version is a 409 here (the FHIR API answers 412).
func jsonStatus(k fault.Kind) int {
	switch k {
	case fault.Invalid:
		return http.StatusBadRequest
	case fault.Rule:
		return http.StatusUnprocessableEntity
	case fault.NotFound:
		return http.StatusNotFound
	case fault.Gone:
		return http.StatusGone
	case fault.Conflict, fault.Stale:
		return http.StatusConflict
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

// jsonCode is the JSON APIs' error code of a neutral rule (the rule's own name unless listed).
func jsonCode(c fault.Code) string {
	switch c {
	case mapping.CodeOutcomeNotAllowed, mapping.CodeOutcomeRequired:
		return "invalid_outcome"
	}
	return string(c)
}

// JSONError is the one status table of the JSON APIs: the status and body fields a client gets for err.
func JSONError(err error) (int, APIError) {
	var fe *fault.Error
	var he *fhir.Error
	var te *mapping.TransitionError
	switch {
	case errors.As(err, &te):
		return http.StatusConflict, APIError{Error: string(mapping.CodeIllegalTransition), Message: te.Error(), Field: mapping.FieldStatus}
	case errors.As(err, &fe) && len(fe.Issues) > 0:
		is := fe.Issues[0]
		msg := is.Message
		if is.Code == mapping.CodeReasonRequired {
			msg = strings.Replace(msg, "a reason is required", "reason is required", 1)
		}
		out := APIError{Error: jsonCode(is.Code), Message: msg, Field: is.Field}
		if len(fe.Issues) > 1 {
			for _, i := range fe.Issues {
				out.Issues = append(out.Issues, APIIssue{Error: jsonCode(i.Code), Message: i.Message, Field: i.Field})
			}
		}
		return jsonStatus(fe.Kind), out
	case errors.As(err, &he) && len(he.Issues) > 0:
		is := he.Issues[0]
		out := APIError{Error: string(is.Code), Message: is.Diagnostics}
		if len(is.Expression) > 0 {
			out.Field = is.Expression[0]
		}
		return jsonStatus(he.Kind), out
	case errors.Is(err, outbox.ErrNotFound):
		return http.StatusNotFound, APIError{Error: "not_found", Message: "no such resource, or not visible to this client"}
	case errors.Is(err, outbox.ErrVersionMismatch):
		return http.StatusConflict, APIError{Error: "version_conflict", Message: "the referral changed meanwhile; read it again and retry"}
	}
	switch k := fault.KindOf(err); k {
	case fault.Unavailable:
		return http.StatusServiceUnavailable, APIError{Error: "unavailable", Message: "the service is busy; retry after the Retry-After delay"}
	case fault.Internal:
	default:
		return jsonStatus(k), APIError{Error: strings.ReplaceAll(string(k), "-", "_"), Message: err.Error()}
	}
	return http.StatusInternalServerError, APIError{Error: "internal", Message: "internal error; quote request_id to the operator"}
}

// WriteError answers a JSON API request with the error body the table gives err, Retry-After on 429 and 503,
// and logs it (the detail stays in the log; the client gets the correlation id).
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, body := JSONError(err)
	LogFailure(log, r, status, err)
	SetRetryAfter(w, status, err)
	body.RequestID = RequestID(r.Context())
	WriteJSON(w, log, status, body)
}

// DefaultRetryAfter is the Retry-After of a 503 whose error carries no delay of its own (fault.WithRetryAfter).
const DefaultRetryAfter = 5 * time.Second

// SetRetryAfter sets Retry-After on a 429 or 503 answer: the delay err carries (fault.WithRetryAfter), else
// DefaultRetryAfter. Other statuses get none.
func SetRetryAfter(w http.ResponseWriter, status int, err error) {
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(fault.RetryAfterSeconds(err, DefaultRetryAfter)))
	}
}

// LogFailure logs a failed request: at debug for a client's mistake, at error for a server fault.
func LogFailure(log *slog.Logger, r *http.Request, status int, err error) {
	level := slog.LevelDebug
	if status >= 500 {
		level = slog.LevelError
	}
	log.Log(r.Context(), level, "request failed", "request_id", RequestID(r.Context()), "status", status, "err", err)
}

// WriteJSON writes v as a JSON body.
func WriteJSON(w http.ResponseWriter, log *slog.Logger, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		log.Error("encode response", "err", err)
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal","message":"could not encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
