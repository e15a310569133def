package fhir

import (
	"encoding/json"
	"strings"

	models "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// RawResource is one resource kept as JSON, with its type read from the raw JSON (not defaulted).
type RawResource struct {
	ResourceType string
	ID           string
	JSON         json.RawMessage
}

// Submission is a referral that passed the structural and required-element stages (the 400 stages):
// a ServiceRequest, with every resource it can resolve locally. Business rules (422) are mapping's job.
type Submission struct {
	// ServiceRequest is the decoded ServiceRequest. Presence and codes were checked on the raw JSON first,
	// so Status and Intent hold what the client sent (samply's zero values are never trusted).
	ServiceRequest models.ServiceRequest
	// Raw is the ServiceRequest JSON as it will be stored, without id and meta (the store sets them). For a
	// transaction Bundle, the Bundle's other resources are moved into contained (with local ids) and every
	// urn:uuid reference to them is rewritten to "#id", so the stored ServiceRequest is self-contained.
	Raw json.RawMessage
	// Contained holds the ServiceRequest's contained resources by local id (without '#').
	Contained map[string]RawResource
	// ContainedIDs lists the contained resources' ids in their order in Raw (contained[i] has ContainedIDs[i]).
	ContainedIDs []string
	// Fingerprint is a hex SHA-256 over the canonical submitted content, ignoring id, meta, text, key order,
	// whitespace and the values of urn:uuid references; equal fingerprints mean the same referral content.
	Fingerprint string
	// FromBundle is true when the submission came as a transaction Bundle.
	FromBundle bool
	// Warnings are non-fatal issues (e.g. missing requester) the response may carry.
	Warnings []Issue
}

// Resolve returns the contained resource a local reference ("#id") points to.
func (s *Submission) Resolve(ref string) (RawResource, bool) {
	id, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return RawResource{}, false
	}
	r, ok := s.Contained[id]
	return r, ok
}
