package fhirapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/referral"
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
				Documentation:     "A social-prescribing referral. create is idempotent on ServiceRequest.identifier (an identical resend returns the existing referral, 200); a different body under the same identifier is 409. Needs a recorded patient Consent in supportingInfo; a narrative must be basic XHTML (txt-1). update/patch (JSON Patch) by the requesting practice may only set status to revoked, which cancels the referral's Task (If-Match optional). vread and history: version 1 as accepted, version 2 with the status the referral's end gave it. Search is GET or POST _search; every searchset has total (unless _total=none); _summary=count or _count=0 answers the total alone.",
				Interactions:      []fhir.TypeInteraction{fhir.InteractionCreate, fhir.InteractionRead, fhir.InteractionVRead, fhir.InteractionUpdate, fhir.InteractionPatch, fhir.InteractionSearchType, fhir.InteractionHistoryInstance},
				Versioning:        fhir.VersioningVersioned,
				ConditionalCreate: true,
				SearchParams:      declaredParams(typeServiceRequest),
				SearchRevInclude:  declaredIncludes(typeServiceRequest, "_revinclude"),
			},
			{
				Type:          typeTask,
				Documentation: "The referral's fulfilment Task: status follows the community service; businessStatus carries transport facts (queued, delivered, delivery-failed, awaiting-pickup, picked-up, overdue). update and patch (JSON Patch) need If-Match: W/\"versionId\" (428 without, 412 when stale) and may change only status, statusReason and output, through the referral state machine, and append notes (note is append-only: author and time are socialrx's): the owning service makes the community's moves, the requesting practice cancels (with statusReason) or marks entered-in-error. The person's consent withdrawn: the requesting practice sets status cancelled with statusReason coding https://socialrx.dev/fhir/CodeSystem/cancel-reason|consent-withdrawn (also on a final referral, which keeps its status): the person's data is erased from socialrx, the service is told to delete it, and the Task keeps the coded reason and loses its subject. vread and history return every version exactly as it was served. Search is GET or POST _search; every searchset has total (unless _total=none); _summary=count or _count=0 answers the total alone.",
				Interactions:  []fhir.TypeInteraction{fhir.InteractionRead, fhir.InteractionVRead, fhir.InteractionUpdate, fhir.InteractionPatch, fhir.InteractionSearchType, fhir.InteractionHistoryInstance},
				Versioning:    fhir.VersioningVersionedUpdate,
				SearchParams:  declaredParams(typeTask),
				SearchInclude: declaredIncludes(typeTask, "_include"),
			},
			{
				Type:          typeAuditEvent,
				Documentation: auditEventDoc,
				Interactions:  []fhir.TypeInteraction{fhir.InteractionSearchType},
				SearchParams:  auditEventParams,
			},
			{
				Type:          "Observation",
				Documentation: "Outcome measures of a referral (ONS4, SWEMWBS, WEMWBS), each referenced from the Task's output. read: the requesting practice, the referral's service. create: the referral's community service records a measure against the Task (focus Task/{id}); code SNOMED CT 718466001 (SWEMWBS), 718426000 (WEMWBS) or https://socialrx.dev/fhir/CodeSystem/ons4|ons4; the extension " + mapping.MeasureTimingExtension + " (valueCode baseline or follow-up); effectiveDateTime the day answered (a date); one component per item, valueInteger (ONS4 0-10 coded in https://socialrx.dev/fhir/CodeSystem/ons4, SWEMWBS and WEMWBS 1-5 coded in https://socialrx.dev/fhir/CodeSystem/wellbeing-item). Every item must be answered; every problem is reported at once (400); a measure before the referral is accepted, a second baseline or a follow-up without one is 422. The SWEMWBS metric score is computed by socialrx from the published conversion table. Measures are never changed (version 1).",
				Interactions:  []fhir.TypeInteraction{fhir.InteractionCreate, fhir.InteractionRead},
				Versioning:    fhir.VersioningVersioned,
			},
			{
				Type:          typeDocumentReference,
				Documentation: "The GP letter (" + mapping.LetterDescription + "): a one-page PDF issued when a referral closes as completed, failed or rejected (declined), made from the referral as it was when it closed and never changed (version 1). type SNOMED CT " + mapping.SNOMEDLetterType + " (" + mapping.LetterTypeDisplay + "); subject the patient as the ServiceRequest names them; context.related the ServiceRequest and the Task; content.attachment application/pdf with url the Binary (GET Binary/{id} with Accept: application/pdf answers the PDF itself, otherwise a FHIR Binary), size and SHA-1. The Task's output references it (type https://socialrx.dev/fhir/CodeSystem/task-output|gp-letter). read and search: who may read the Task (the requesting practice, the referral's service); search needs related.",
				Interactions:  []fhir.TypeInteraction{fhir.InteractionRead, fhir.InteractionSearchType},
				Versioning:    fhir.VersioningVersioned,
				SearchParams:  declaredParams(typeDocumentReference),
			},
			{
				Type:          typeMeasureReport,
				Documentation: "The monthly figures (admin clients): one summary MeasureReport per UK month (measure " + mapping.FiguresMeasure + "), for the area, one practice or one service (identifier " + mapping.FiguresScopeSystem + "). A group per figure coded in " + mapping.FiguresSystem + ": counts as population initial-population (received, accepted, declined, completed, with-baseline, with-follow-up; referrals counted in the month received), statistics as measureScore with their n (median days to first contact and to completion, mean SWEMWBS metric change, mean change of each ONS4 item). A count of 1 to 4, or a statistic resting on fewer than 5 referrals, is left out and marked with the data-absent-reason extension (masked). Search only, all months on one page.",
				Interactions:  []fhir.TypeInteraction{fhir.InteractionSearchType},
				SearchParams:  measureReportParams,
			},
			{
				Type:          "Binary",
				Documentation: "The GP letter's PDF (the id of its DocumentReference). read: with Accept: application/pdf the PDF itself (Content-Type application/pdf), otherwise a FHIR Binary (contentType application/pdf, data base64). Who may read it is who may read the Task.",
				Interactions:  []fhir.TypeInteraction{fhir.InteractionRead},
			},
			{
				Type:          typeHealthcareService,
				Documentation: "The community services of socialrx's directory, each with its capacity now in the SDOH Clinical Care capacity-status extension (" + mapping.SDOHCapacityExtension + ": capacityStatus capacity, waitlist or no-capacity, and capacityNotes, e.g. the expected wait) and socialrx's " + mapping.CapacityDetailExtension + " (the group's own status, the state now, expected wait in days, the date a pause ends, the maximum and the number of open referrals). type lists the referral codes the service takes. A service with a maximum of open referrals shows no-capacity while it holds that many. Search is GET or POST _search, all matches on one page with total.",
				Interactions:  []fhir.TypeInteraction{fhir.InteractionRead, fhir.InteractionSearchType},
				SearchParams:  declaredParams(typeHealthcareService),
			},
			{
				Type:          "Subscription",
				Profile:       "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription",
				Documentation: "R4 Subscriptions, Subscriptions R5 Backport IG 1.1.0: rest-hook channel; criteria Task?requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|ODS for one of the client's practices, or the topic " + referral.TopicPracticeTasks + " with that filter in the backport-filter-criteria extension; payload application/fhir+json (full-resource or id-only); heartbeatPeriod (60 to 86400 s) honoured, timeout refused. A handshake is sent first, then every Task version change as a numbered history Bundle (SubscriptionStatus first), in order. A notification that goes dead puts the Subscription in error (read and $status show it, with why); later changes are still numbered and wait behind it; its owner re-activates it with update or patch (status requested), which replays the dead notification. $status (instance and type level) reports events-since-subscription-start for gap detection. delete sets it off; reading it is then 410.",
				Interactions:  []fhir.TypeInteraction{fhir.InteractionCreate, fhir.InteractionRead, fhir.InteractionUpdate, fhir.InteractionPatch, fhir.InteractionDelete},
				Operations:    []fhir.Operation{{Name: "status", Definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"}},
				Topics:        []string{referral.TopicPracticeTasks},
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
