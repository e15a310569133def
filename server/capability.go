package server

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/socialrx/socialrx/fhir"
)

// capabilityOptions says exactly what this server supports. Keep it in step with routes.go and parseSearch:
// a test walks every declared interaction and search parameter against the running server.
func (s *Server) capabilityOptions(base string) fhir.CapabilityOptions {
	sp := func(name string, typ fhir.SearchParamType, doc string) fhir.SearchParam {
		return fhir.SearchParam{Name: name, Type: typ, Documentation: doc}
	}
	common := []fhir.SearchParam{
		sp("_id", fhir.SearchParamToken, "logical id"),
		sp("_lastUpdated", fhir.SearchParamDate, "prefixes gt, ge, lt, le; repeat for a range"),
		sp("patient", fhir.SearchParamReference, "the subject reference as sent, or patient:identifier=https://fhir.nhs.uk/Id/nhs-number|NNNNNNNNNN"),
		sp("requester", fhir.SearchParamReference, "the requester reference as sent, or requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|ODS for a practice"),
	}
	return fhir.CapabilityOptions{
		BaseURL:         base,
		SoftwareVersion: s.version,
		Date:            s.started,
		Resources: []fhir.ResourceCapability{
			{
				Type:              "ServiceRequest",
				Documentation:     "A social-prescribing referral. create is idempotent on ServiceRequest.identifier (an identical resend returns the existing referral, 200); a different body under the same identifier is 409. Needs a recorded patient Consent in supportingInfo. update/patch (JSON Patch) by the requesting practice may only set status to revoked, which cancels the referral's Task (If-Match optional).",
				Interactions:      []fhir.TypeInteraction{fhir.InteractionCreate, fhir.InteractionRead, fhir.InteractionUpdate, fhir.InteractionPatch, fhir.InteractionSearchType},
				Versioning:        fhir.VersioningVersioned,
				ConditionalCreate: true,
				SearchParams: append(append([]fhir.SearchParam{}, common...),
					sp("identifier", fhir.SearchParamToken, "ServiceRequest.identifier, system|value or value")),
			},
			{
				Type:          "Task",
				Documentation: "The referral's fulfilment Task: status follows the community service; businessStatus carries transport facts (queued, delivered, delivery-failed, awaiting-pickup, overdue). update and patch (JSON Patch) need If-Match: W/\"versionId\" (428 without, 412 when stale) and may change only status, statusReason and output, through the referral state machine: the owning service makes the community's moves, the requesting practice cancels (with statusReason) or marks entered-in-error.",
				Interactions:  []fhir.TypeInteraction{fhir.InteractionRead, fhir.InteractionUpdate, fhir.InteractionPatch, fhir.InteractionSearchType},
				Versioning:    fhir.VersioningVersionedUpdate,
				SearchParams: append(append([]fhir.SearchParam{}, common...),
					sp("focus", fhir.SearchParamReference, "ServiceRequest/{id}"),
					sp("owner", fhir.SearchParamReference, "a community service id, or owner:identifier=system|value of its directory identifier"),
					sp("status", fhir.SearchParamToken, "comma-separated Task statuses"),
					sp("code", fhir.SearchParamToken, "always http://hl7.org/fhir/CodeSystem/task-code|fulfill"),
				),
			},
			{
				Type:          "Subscription",
				Documentation: "R4 Subscriptions, backport style: rest-hook channel, criteria Task?requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|ODS for one of the client's practices, payload application/fhir+json (full-resource or id-only). Every Task version change is sent as a numbered history Bundle (SubscriptionStatus first), in order; GET /fhir/Subscription/{id}/$status reports events-since-subscription-start for gap detection.",
				Interactions:  []fhir.TypeInteraction{fhir.InteractionCreate, fhir.InteractionRead, fhir.InteractionDelete},
			},
		},
		SystemInteractions:  []fhir.SystemInteraction{fhir.InteractionTransaction},
		SMART:               true,
		TokenURL:            strings.TrimSuffix(base, "/fhir") + tokenPath,
		SecurityDescription: "Every interaction except this CapabilityStatement and SMART discovery needs Authorization: Bearer <token>: the static token of a client in the socialrx directory file, or an access token from the SMART Backend Services token endpoint (client_credentials with a private_key_jwt assertion signed RS384 or ES384 by a key in the client's directory jwks; system/ scopes narrow the client's role). GP clients refer from, and read, only their own practices' referrals.",
	}
}

// metadata is GET /fhir/metadata.
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	cs, err := fhir.NewCapabilityStatement(s.capabilityOptions(s.base(r)))
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	b, err := json.Marshal(cs)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.writeFHIR(w, http.StatusOK, b)
}
