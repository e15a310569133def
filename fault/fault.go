// Package fault is socialrx's vocabulary of failure: every error that a caller must answer differently carries a
// Kind (what went wrong, in domain terms), never an HTTP status. The layers below the HTTP adapters (fhir,
// mapping, outbox and its backends, the use cases in referral) return errors with a kind; each API adapter turns
// a kind into its own status, issue code and error code with one table (server/fhirapi for OperationOutcomes,
// server/internal/web for the JSON APIs).
//
// It is a top-level package because every layer needs it, down to fhir, the lowest: none of the packages
// docs/design.md#shape-and-libraries names can hold it without the layers below it importing upwards.
//
// Two error types carry a kind. Error is the neutral one: its issues name a rule (Code) and a field in the
// use cases' own words ("reason", "outcome", "note"), which each API renders in its own terms (a FHIRPath
// expression such as Task.statusReason, or a JSON field). fhir.Error is the FHIR-shaped one, for problems that
// only exist in a FHIR resource (its issues already name FHIRPath expressions and FHIR issue types). Any error
// may also carry a kind by implementing Kinded, as the stores' sentinel errors do (Sentinel).
package fault

import (
	"context"
	"errors"
	"strings"
)

// Kind is what went wrong, in domain terms. The zero value is invalid; KindOf never returns it.
type Kind string

// Kinds. Each API's table gives every kind its HTTP status.
const (
	// Invalid: the input is malformed (structure, types, a missing required member, an unknown parameter).
	Invalid Kind = "invalid"
	// Rule: the input is well-formed but breaks a business rule (consent, routing, a reason the move needs).
	Rule Kind = "rule"
	// NotFound: no such thing, or the caller may not know that it exists.
	NotFound Kind = "not-found"
	// Gone: the thing existed and was deleted (it is still known, and says so).
	Gone Kind = "gone"
	// Conflict: the current state forbids it (an illegal status move, an identifier used for other content).
	Conflict Kind = "conflict"
	// Stale: the caller named a version that is no longer the current one.
	Stale Kind = "stale"
	// VersionRequired: the caller must name the version it read before changing it.
	VersionRequired Kind = "version-required"
	// Unauthenticated: no credentials, or credentials socialrx does not recognise.
	Unauthenticated Kind = "unauthenticated"
	// Forbidden: the caller is known but may not do this.
	Forbidden Kind = "forbidden"
	// TooLarge: the input is larger than socialrx takes.
	TooLarge Kind = "too-large"
	// UnsupportedMedia: the input comes in a format socialrx does not read.
	UnsupportedMedia Kind = "unsupported-media"
	// NotAcceptable: the caller asks for an answer in a format socialrx does not write.
	NotAcceptable Kind = "not-acceptable"
	// MethodNotAllowed: the resource exists but does not take this operation.
	MethodNotAllowed Kind = "method-not-allowed"
	// RateLimited: the caller sent too much too fast; it may retry later.
	RateLimited Kind = "rate-limited"
	// Unavailable: a dependency (the database) is down or busy; the caller may retry later.
	Unavailable Kind = "unavailable"
	// Internal: a fault of socialrx itself (a bug), never the caller's.
	Internal Kind = "internal"
)

// AllKinds lists every kind (for the tables' tests).
func AllKinds() []Kind {
	return []Kind{Invalid, Rule, NotFound, Gone, Conflict, Stale, VersionRequired, Unauthenticated, Forbidden, TooLarge,
		UnsupportedMedia, NotAcceptable, MethodNotAllowed, RateLimited, Unavailable, Internal}
}

// Valid reports whether k is a kind.
func (k Kind) Valid() bool {
	switch k {
	case Invalid, Rule, NotFound, Gone, Conflict, Stale, VersionRequired, Unauthenticated, Forbidden, TooLarge,
		UnsupportedMedia, NotAcceptable, MethodNotAllowed, RateLimited, Unavailable, Internal:
		return true
	}
	return false
}

// Kinded is implemented by errors that know their kind.
type Kinded interface {
	error
	FaultKind() Kind
}

// KindOf is the kind of err: that of the first error in its chain that has one; Unavailable for a cancelled or
// timed-out context (the request ended before the work could); Internal otherwise (and for nil).
func KindOf(err error) Kind {
	var k Kinded
	switch {
	case err == nil:
		return Internal
	case errors.As(err, &k) && k.FaultKind().Valid():
		return k.FaultKind()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return Unavailable
	}
	return Internal
}

// Code is a rule's machine-readable name, stable across releases (e.g. "reason_required"). Each API renders it
// in its own vocabulary (a FHIR issue type, a JSON error code).
type Code string

// Issue is one problem: the rule broken, where, and a message a person reads. Messages name rules and fields,
// never patient data.
type Issue struct {
	Code    Code
	Message string
	// Field names where the problem is, in the use cases' terms ("reason", "outcome", "If-Match"); "" when the
	// problem is the whole input.
	Field string
}

// Error is a failure with a kind and every issue found (at least one).
type Error struct {
	Kind   Kind
	Issues []Issue
}

// New returns an Error of one issue.
func New(k Kind, code Code, field, message string) *Error {
	return &Error{Kind: k, Issues: []Issue{{Code: code, Message: message, Field: field}}}
}

// Error implements error: the issues' codes, fields and messages.
func (e *Error) Error() string {
	parts := make([]string, 0, len(e.Issues))
	for _, is := range e.Issues {
		p := string(is.Code) + ": " + is.Message
		if is.Field != "" {
			p += " (" + is.Field + ")"
		}
		parts = append(parts, p)
	}
	return string(e.Kind) + ": " + strings.Join(parts, "; ")
}

// FaultKind implements Kinded.
func (e *Error) FaultKind() Kind { return e.Kind }

// sentinel is a comparable error value with a kind.
type sentinel struct {
	kind Kind
	msg  string
}

func (s *sentinel) Error() string   { return s.msg }
func (s *sentinel) FaultKind() Kind { return s.kind }

// Sentinel returns a new error value of kind k with text msg, for use as a package-level sentinel that callers
// match with errors.Is (var ErrNotFound = fault.Sentinel(fault.NotFound, "not found")). Wrapping it with %w
// keeps both its identity and its kind.
func Sentinel(k Kind, msg string) error { return &sentinel{kind: k, msg: msg} }
