package fhirapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// typeAuditEvent is the audit trail as FHIR: "who saw this referral", for the referring practice.
const typeAuditEvent = "AuditEvent"

// Code systems of the AuditEvents socialrx writes (IHE BALP and the R4 value sets it uses).
const (
	auditEventTypeSystem = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	restfulSystem        = "http://hl7.org/fhir/restful-interaction"
	dcmSystem            = "http://dicom.nema.org/resources/ontology/DCM"
	entityTypeSystem     = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	objectRoleSystem     = "http://terminology.hl7.org/CodeSystem/object-role"
	sourceTypeSystem     = "http://terminology.hl7.org/CodeSystem/security-source-type"
	balpEntitySystem     = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
	// ClientIDSystem names socialrx's directory clients (and engineers) in AuditEvent.agent.who.identifier.
	ClientIDSystem = "https://socialrx.dev/fhir/client-id"
	// RequestIDSystem names the server's request ids; ClientRequestIDSystem the X-Request-ID a client sent.
	RequestIDSystem       = "https://socialrx.dev/fhir/request-id"
	ClientRequestIDSystem = "https://socialrx.dev/fhir/client-request-id"
)

const defaultAuditCount, maxAuditCount = 50, 500

// searchAuditEvents is GET /fhir/AuditEvent: entity (ServiceRequest/{id} or Task/{id}), date (repeat to AND,
// prefixes eq ge gt le lt), _count (1 to 500, default 50) and _cursor (from the next link).
func (a *API) searchAuditEvents(w http.ResponseWriter, r *http.Request) {
	query := r.URL.Query()
	delete(query, "_format")
	c := web.Caller(r.Context())
	q := outbox.AuditQuery{Limit: defaultAuditCount}
	var kind referral.IDKind
	var entityID string
	var issues []fhir.Issue
	bad := func(param, msg string) {
		issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeInvalid, Diagnostics: msg, Expression: []string{param}})
	}
	for key, vals := range query {
		switch key {
		case "entity":
			if len(vals) != 1 {
				bad(key, "entity may be given once")
				continue
			}
			v := strings.TrimPrefix(vals[0], a.o.Base+"/")
			typ, id, ok := strings.Cut(v, "/")
			switch {
			case !ok || id == "" || strings.Contains(id, "/") || len(id) > 64:
				bad(key, "entity must be a reference to one of your referrals: ServiceRequest/{id} or Task/{id}")
			case typ == typeServiceRequest:
				kind, entityID = referral.ByServiceRequestID, id
			case typ == typeTask:
				kind, entityID = referral.ByTaskID, id
			default:
				bad(key, fmt.Sprintf("entity %s: only ServiceRequest and Task references are audited", typ))
			}
		case "date":
			for _, v := range vals {
				if err := auditDate(&q, v); err != nil {
					bad(key, err.Error())
				}
			}
		case "_count":
			n, err := strconv.Atoi(vals[0])
			if len(vals) != 1 || err != nil || n < 1 || n > maxAuditCount {
				bad(key, fmt.Sprintf("_count must be a whole number from 1 to %d", maxAuditCount))
				continue
			}
			q.Limit = n
		case "_cursor":
			n, err := strconv.ParseInt(vals[0], 10, 64)
			if len(vals) != 1 || err != nil || n < 0 {
				bad(key, "_cursor is not a cursor this server issued; follow the Bundle's next link unchanged")
				continue
			}
			q.AfterSeq = n
		default:
			if !lenient(r) {
				bad(key, fmt.Sprintf("unknown search parameter %q for AuditEvent (entity, date, _count)", key))
			}
		}
	}
	if len(issues) > 0 {
		a.fail(w, r, &fhir.Error{Kind: fault.Invalid, Issues: issues})
		return
	}
	entries, err := a.svc.AuditEntries(r.Context(), c, kind, entityID, q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	base := a.o.Base
	used := url.Values{}
	for k, v := range query {
		if k != "_cursor" {
			used[k] = v
		}
	}
	out := fhir.Bundle{ResourceType: "Bundle", ID: a.o.NewID(), Type: fhir.BundleSearchset,
		Meta: &fhir.Meta{LastUpdated: fhir.Instant(a.now())}}
	self := url.Values{}
	for k, v := range query {
		self[k] = v
	}
	out.Link = append(out.Link, fhir.BundleLink{Relation: "self", URL: base + "/AuditEvent?" + self.Encode()})
	if len(entries) == q.Limit {
		used.Set("_count", strconv.Itoa(q.Limit))
		used.Set("_cursor", strconv.FormatInt(entries[len(entries)-1].Seq, 10))
		out.Link = append(out.Link, fhir.BundleLink{Relation: "next", URL: base + "/AuditEvent?" + used.Encode()})
	}
	for _, e := range entries {
		body, err := json.Marshal(auditEventOf(e))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out.Entry = append(out.Entry, fhir.BundleEntry{FullURL: base + "/AuditEvent/" + strconv.FormatInt(e.Seq, 10),
			Resource: body, Search: &fhir.BundleEntrySearch{Mode: fhir.SearchMatch}})
	}
	b, err := json.Marshal(out)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	Write(w, http.StatusOK, b)
}

// auditDate applies one date value (with its prefix) to q: eq (the default) the value's whole period, ge
// and gt from it, le and lt to it (an instant exactly, a coarser value as its period).
func auditDate(q *outbox.AuditQuery, v string) error {
	prefix := "eq"
	if len(v) > 2 && v[2] >= '0' && v[2] <= '9' {
		prefix, v = v[:2], v[2:]
	}
	p, err := parsePeriod(v)
	if err != nil {
		return fmt.Errorf("date %q is not a FHIR date or dateTime (e.g. 2026-11-21, ge2026-11-21T10:00:00Z)", v)
	}
	from := func(t time.Time) {
		if q.Since.IsZero() || t.After(q.Since) {
			q.Since = t
		}
	}
	until := func(t time.Time) {
		if q.Until.IsZero() || t.Before(q.Until) {
			q.Until = t
		}
	}
	switch prefix {
	case "eq":
		from(p.start)
		until(p.end)
	case "ge":
		from(p.start)
	case "gt":
		if p.instant {
			from(p.start.Add(time.Microsecond))
		} else {
			from(p.end)
		}
	case "lt":
		until(p.start)
	case "le":
		if p.instant {
			until(p.start.Add(time.Microsecond))
		} else {
			until(p.end)
		}
	default:
		return fmt.Errorf("date prefix %q is not supported: use eq, ge, gt, le or lt", prefix)
	}
	return nil
}

// auditEventOf renders an audit record as an AuditEvent in the shape of IHE BALP.
func auditEventOf(e referral.AuditEntry) fhir.AuditEvent {
	ev := fhir.AuditEvent{ResourceType: typeAuditEvent, ID: strconv.FormatInt(e.Seq, 10),
		Recorded: fhir.Instant(e.At), Outcome: "0",
		Source: fhir.AuditEventSource{Site: e.Chain, Observer: fhir.Reference{Display: "socialrx"},
			Type: []fhir.Coding{{System: sourceTypeSystem, Code: "4", Display: "Application Server"}}}}
	interaction, action := "read", "R"
	switch e.Action {
	case outbox.AuditCreate:
		interaction, action = "create", "C"
	case outbox.AuditUpdate:
		interaction, action = "update", "U"
	case outbox.AuditRead:
	case outbox.AuditSend:
	}
	if e.Action == outbox.AuditSend {
		// A webhook delivered to the community service: the data left socialrx for the service.
		ev.Type = fhir.Coding{System: dcmSystem, Code: "110106", Display: "Export"}
	} else {
		ev.Type = fhir.Coding{System: auditEventTypeSystem, Code: "rest", Display: "RESTful Operation"}
		ev.Subtype = []fhir.Coding{{System: restfulSystem, Code: interaction}}
	}
	ev.Action = action
	who := &fhir.Reference{Identifier: &fhir.Identifier{System: ClientIDSystem, Value: e.ActorID}, Display: e.ActorID + " (" + e.ActorRole + ", " + e.Via + ")"}
	client := fhir.AuditEventAgent{Type: &fhir.CodeableConcept{Coding: []fhir.Coding{{System: dcmSystem, Code: "110153", Display: "Source Role ID"}}},
		Who: who, Requestor: true}
	if addr, err := netip.ParseAddr(e.Address); err == nil {
		client.Network = &fhir.AuditEventNetwork{Address: addr.String(), Type: "2"}
	}
	server := fhir.AuditEventAgent{Type: &fhir.CodeableConcept{Coding: []fhir.Coding{{System: dcmSystem, Code: "110152", Display: "Destination Role ID"}}},
		Who: &fhir.Reference{Display: "socialrx"}}
	if e.Action == outbox.AuditSend {
		// socialrx sent it; the community service received it.
		client.Requestor, server.Requestor = false, true
		client.Type, server.Type = server.Type, client.Type
		client.Who = &fhir.Reference{Identifier: &fhir.Identifier{System: ClientIDSystem, Value: e.ServiceID}, Display: e.ServiceID + " (community service, webhook)"}
		if e.ResourceType == "Subscription" { // a GP system's Subscription notification
			client.Who = &fhir.Reference{Reference: "Subscription/" + e.ResourceID, Display: "the practice's system (Subscription notification)"}
		}
	}
	ev.Agent = []fhir.AuditEventAgent{client, server}
	if e.ServiceRequestID != "" {
		ev.Entity = append(ev.Entity, fhir.AuditEventEntity{What: &fhir.Reference{Reference: "ServiceRequest/" + e.ServiceRequestID},
			Type: &fhir.Coding{System: entityTypeSystem, Code: "2", Display: "System Object"},
			Role: &fhir.Coding{System: objectRoleSystem, Code: "4", Display: "Domain Resource"}})
	}
	if e.Patient != "" {
		ev.Entity = append(ev.Entity, fhir.AuditEventEntity{What: &fhir.Reference{Reference: e.Patient},
			Type: &fhir.Coding{System: entityTypeSystem, Code: "1", Display: "Person"},
			Role: &fhir.Coding{System: objectRoleSystem, Code: "1", Display: "Patient"}})
	}
	switch e.ResourceType {
	case typeTask, "Observation", typeDocumentReference, "Binary": // the Task, a measure, the GP letter (issue 14)
		ev.Entity = append(ev.Entity, fhir.AuditEventEntity{What: &fhir.Reference{Reference: e.ResourceType + "/" + e.ResourceID},
			Type: &fhir.Coding{System: entityTypeSystem, Code: "2", Display: "System Object"},
			Role: &fhir.Coding{System: objectRoleSystem, Code: "4", Display: "Domain Resource"}})
	}
	for _, id := range []struct{ system, value string }{{RequestIDSystem, e.RequestID}, {ClientRequestIDSystem, e.ClientRequestID}} {
		if id.value != "" {
			ev.Entity = append(ev.Entity, fhir.AuditEventEntity{What: &fhir.Reference{Identifier: &fhir.Identifier{System: id.system, Value: id.value}},
				Type: &fhir.Coding{System: balpEntitySystem, Code: "XrequestId", Display: "X-Request-Id"}})
		}
	}
	return ev
}

// auditEventParams are AuditEvent's search parameters (declared in the CapabilityStatement and
// docs/fhir-api.md).
var auditEventParams = []fhir.SearchParam{
	{Name: "entity", Type: fhir.SearchParamReference, Documentation: "the referral: ServiceRequest/{id} or Task/{id} of one of your practices' referrals (another's: nothing found); absent: every referral of your practices"},
	{Name: "date", Type: fhir.SearchParamDate, Documentation: "AuditEvent.recorded, repeat to AND: eq (the default) the value's whole period; ge, gt, le, lt compare with an instant exactly and with a coarser value as its period"},
}

// auditEventDoc is AuditEvent's CapabilityStatement documentation.
const auditEventDoc = "Who saw or changed a referral (the audit trail), for the referring practice: one AuditEvent per access to the referral's data through any route (FHIR API, community API and inbox, admin API and console, CLI, webhooks sent), in the shape of IHE Basic Audit Log Patterns: type rest with the interaction as subtype (or DICOM 110106 Export for a webhook delivered to the community service), the client (directory client id, role, route and network address) as requestor agent, socialrx as observer, the referral's ServiceRequest and patient as entities, and the server's request id (with the client's X-Request-ID beside it) as XrequestId entities. A GP client sees its own practices' referrals only. Oldest first; _count 1 to 500 (default 50); follow the next link (its _cursor) for more."
