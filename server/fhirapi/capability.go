package fhirapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/socialrx/socialrx/fhir"
)

// capabilityOptions says exactly what this server supports: the routes of api.go and the search parameters of
// params.go's table. A test walks every declared interaction and search parameter against the running server.
func (a *API) capabilityOptions(base string) fhir.CapabilityOptions {
	return fhir.CapabilityOptions{
		BaseURL:         base,
		SoftwareVersion: a.o.Version,
		Date:            a.o.Started,
		Resources: []fhir.ResourceCapability{
			{
				Type:              typeServiceRequest,
				Documentation:     "A social-prescribing referral. create is idempotent on ServiceRequest.identifier (an identical resend returns the existing referral, 200); a different body under the same identifier is 409. Needs a recorded patient Consent in supportingInfo. update/patch (JSON Patch) by the requesting practice may only set status to revoked, which cancels the referral's Task (If-Match optional).",
				Interactions:      []fhir.TypeInteraction{fhir.InteractionCreate, fhir.InteractionRead, fhir.InteractionUpdate, fhir.InteractionPatch, fhir.InteractionSearchType},
				Versioning:        fhir.VersioningVersioned,
				ConditionalCreate: true,
				SearchParams:      declaredParams(typeServiceRequest),
			},
			{
				Type:          typeTask,
				Documentation: "The referral's fulfilment Task: status follows the community service; businessStatus carries transport facts (queued, delivered, delivery-failed, awaiting-pickup, overdue). update and patch (JSON Patch) need If-Match: W/\"versionId\" (428 without, 412 when stale) and may change only status, statusReason and output, through the referral state machine, and append notes (note is append-only: author and time are socialrx's): the owning service makes the community's moves, the requesting practice cancels (with statusReason) or marks entered-in-error.",
				Interactions:  []fhir.TypeInteraction{fhir.InteractionRead, fhir.InteractionUpdate, fhir.InteractionPatch, fhir.InteractionSearchType},
				Versioning:    fhir.VersioningVersionedUpdate,
				SearchParams:  declaredParams(typeTask),
			},
			{
				Type:          "Subscription",
				Documentation: "R4 Subscriptions, backport style: rest-hook channel, criteria Task?requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|ODS for one of the client's practices, payload application/fhir+json (full-resource or id-only). Every Task version change is sent as a numbered history Bundle (SubscriptionStatus first), in order; GET /fhir/Subscription/{id}/$status reports events-since-subscription-start for gap detection.",
				Interactions:  []fhir.TypeInteraction{fhir.InteractionCreate, fhir.InteractionRead, fhir.InteractionDelete},
			},
		},
		SystemInteractions:  []fhir.SystemInteraction{fhir.InteractionTransaction},
		SMART:               true,
		TokenURL:            strings.TrimSuffix(base, "/fhir") + a.o.TokenPath,
		SecurityDescription: "Every interaction except this CapabilityStatement and SMART discovery needs Authorization: Bearer <token>: the static token of a client in the socialrx directory file, or an access token from the SMART Backend Services token endpoint (client_credentials with a private_key_jwt assertion signed RS384 or ES384 by a key in the client's directory jwks; system/ scopes narrow the client's role). GP clients refer from, and read, only their own practices' referrals.",
	}
}

// metadata is GET /fhir/metadata.
func (a *API) metadata(w http.ResponseWriter, r *http.Request) {
	cs, err := fhir.NewCapabilityStatement(a.capabilityOptions(a.o.Base))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	b, err := json.Marshal(cs)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	Write(w, http.StatusOK, b)
}
