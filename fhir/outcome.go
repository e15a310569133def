package fhir

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/socialrx/socialrx/fault"
)

// IssueCode is an OperationOutcome issue type (http://hl7.org/fhir/issue-type).
// Only the codes socialrx emits are listed.
type IssueCode string

// Issue codes used by socialrx.
const (
	CodeInvalid       IssueCode = "invalid"
	CodeStructure     IssueCode = "structure"
	CodeRequired      IssueCode = "required"
	CodeValue         IssueCode = "value"
	CodeInvariant     IssueCode = "invariant"
	CodeBusinessRule  IssueCode = "business-rule"
	CodeCodeInvalid   IssueCode = "code-invalid"
	CodeNotFound      IssueCode = "not-found"
	CodeDeleted       IssueCode = "deleted"
	CodeNotSupported  IssueCode = "not-supported"
	CodeDuplicate     IssueCode = "duplicate"
	CodeConflict      IssueCode = "conflict"
	CodeSecurity      IssueCode = "security"
	CodeLogin         IssueCode = "login"
	CodeForbidden     IssueCode = "forbidden"
	CodeTooCostly     IssueCode = "too-costly"
	CodeTooLong       IssueCode = "too-long"
	CodeTransient     IssueCode = "transient"
	CodeException     IssueCode = "exception"
	CodeProcessing    IssueCode = "processing"
	CodeInformational IssueCode = "informational"
)

// Severity is an OperationOutcome issue severity.
type Severity string

// Severities.
const (
	SeverityFatal       Severity = "fatal"
	SeverityError       Severity = "error"
	SeverityWarning     Severity = "warning"
	SeverityInformation Severity = "information"
)

// Issue is one OperationOutcome.issue. Diagnostics name the rule that was broken; they never carry patient data.
type Issue struct {
	Severity    Severity
	Code        IssueCode
	Diagnostics string
	// Expression holds FHIRPath-style locations of the problem, e.g. "ServiceRequest.status".
	Expression []string
}

// Error is a failure found in a FHIR resource: its kind (fault.Invalid for what R4 itself forbids,
// fault.Rule for socialrx's business rules) and every issue found, each naming a FHIRPath expression and an
// issue type. It is the error type the validators and mapping return for a mistake in a resource; the FHIR
// API renders it as an OperationOutcome, with the status its table gives the kind.
type Error struct {
	Kind   fault.Kind
	Issues []Issue
}

// FaultKind implements fault.Kinded.
func (e *Error) FaultKind() fault.Kind { return e.Kind }

// Error implements error; the message lists rules and locations only.
func (e *Error) Error() string {
	parts := make([]string, 0, len(e.Issues))
	for _, is := range e.Issues {
		p := string(is.Code) + ": " + is.Diagnostics
		if len(is.Expression) > 0 {
			p += " (" + strings.Join(is.Expression, ", ") + ")"
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("fhir: %s: %s", e.Kind, strings.Join(parts, "; "))
}

// NewError returns an Error with a single error-severity issue.
func NewError(kind fault.Kind, code IssueCode, diagnostics string, expression ...string) *Error {
	return &Error{Kind: kind, Issues: []Issue{{Severity: SeverityError, Code: code, Diagnostics: diagnostics, Expression: expression}}}
}

// OperationOutcome is the wire form of an OperationOutcome resource.
type OperationOutcome struct {
	ResourceType string             `json:"resourceType"`
	ID           string             `json:"id,omitempty"`
	Issue        []OutcomeIssueJSON `json:"issue"`
}

// OutcomeIssueJSON is the wire form of OperationOutcome.issue.
type OutcomeIssueJSON struct {
	Severity    Severity  `json:"severity"`
	Code        IssueCode `json:"code"`
	Diagnostics string    `json:"diagnostics,omitempty"`
	Expression  []string  `json:"expression,omitempty"`
}

// Outcome renders issues as an OperationOutcome. The id carries the request's correlation id so that a
// client's report can be matched with the server's log line.
func Outcome(correlationID string, issues []Issue) OperationOutcome {
	oo := OperationOutcome{ResourceType: "OperationOutcome", ID: correlationID}
	for _, is := range issues {
		oo.Issue = append(oo.Issue, OutcomeIssueJSON(is))
	}
	if len(oo.Issue) == 0 {
		oo.Issue = []OutcomeIssueJSON{{Severity: SeverityInformation, Code: CodeInformational, Diagnostics: "ok"}}
	}
	return oo
}

// MarshalOutcome is Outcome followed by json.Marshal.
func MarshalOutcome(correlationID string, issues []Issue) []byte {
	b, err := json.Marshal(Outcome(correlationID, issues))
	if err != nil { // cannot happen: only strings
		panic(err)
	}
	return b
}
