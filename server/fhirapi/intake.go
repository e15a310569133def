package fhirapi

import (
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// createServiceRequest is POST /fhir/ServiceRequest.
func (a *API) createServiceRequest(w http.ResponseWriter, r *http.Request) {
	a.post(w, r, fhir.ParseServiceRequest, func(_ []byte, res outbox.CreateResult) { a.respondCreated(w, r, res) })
}

// transaction is POST /fhir: a transaction Bundle carrying one referral.
func (a *API) transaction(w http.ResponseWriter, r *http.Request) {
	a.post(w, r, fhir.ParseTransaction, func(body []byte, res outbox.CreateResult) { a.respondTransaction(w, r, body, res) })
}

// post is the intake path shared by both: GP clients only, media type and size, strict parse, If-None-Exist,
// then the Submit use case.
func (a *API) post(w http.ResponseWriter, r *http.Request, parse func([]byte) (*fhir.Submission, error),
	respond func(body []byte, res outbox.CreateResult)) {
	res, body, err := a.submit(w, r, parse)
	if err != nil {
		a.count("rejected")
		a.fail(w, r, err)
		return
	}
	if res.Created {
		a.count("created")
	} else {
		a.count("resent")
	}
	respond(body, res)
}

func (a *API) submit(w http.ResponseWriter, r *http.Request, parse func([]byte) (*fhir.Submission, error)) (outbox.CreateResult, []byte, error) {
	c := web.Caller(r.Context())
	if err := referral.MaySubmit(c); err != nil { // before the body is even read
		return outbox.CreateResult{}, nil, err
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return outbox.CreateResult{}, nil, err
	}
	sub, err := parse(body)
	if err != nil {
		return outbox.CreateResult{}, nil, err
	}
	in := referral.Submission{Parsed: sub}
	if h := r.Header.Get("If-None-Exist"); h != "" {
		id, err := ifNoneExist(h)
		if err != nil {
			return outbox.CreateResult{}, nil, err
		}
		in.IfNoneExist = &id
	}
	res, err := a.svc.Submit(r.Context(), c, in)
	return res, body, err
}

// count counts a submission by outcome.
func (a *API) count(outcome string) {
	if a.o.Referrals != nil {
		a.o.Referrals.WithLabelValues(outcome).Inc()
	}
}

// ifNoneExist reads a conditional create's header: exactly one parameter, identifier=[system|]value.
func ifNoneExist(h string) (mapping.Identifier, error) {
	q, err := url.ParseQuery(h)
	bad := func(msg string) error {
		return fhir.NewError(fault.Invalid, fhir.CodeNotSupported, msg, "If-None-Exist")
	}
	if err != nil {
		return mapping.Identifier{}, bad("If-None-Exist must be a search query such as identifier=system|value")
	}
	vals := q["identifier"]
	if len(q) != 1 || len(vals) != 1 || vals[0] == "" {
		return mapping.Identifier{}, bad("If-None-Exist supports exactly one parameter: identifier=[system|]value")
	}
	if p := web.TextProblem(vals[0]); p != "" {
		return mapping.Identifier{}, bad("If-None-Exist: the identifier " + p)
	}
	return referral.ParseToken(vals[0]), nil
}

// respondCreated answers a ServiceRequest create: 201 for a new referral, 200 for a resend, honouring Prefer.
func (a *API) respondCreated(w http.ResponseWriter, r *http.Request, res outbox.CreateResult) {
	status := http.StatusCreated
	if !res.Created {
		status = http.StatusOK
	}
	ref := res.Referral
	sr, err := a.svc.ServiceRequest(r.Context(), ref) // a resend after a cancellation shows it revoked
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.setResourceHeaders(w, r, "ServiceRequest", ref.Record.ServiceRequestID, sr.Version, sr.Modified)
	msg := "referral created: Task/" + ref.Record.TaskID
	if !res.Created {
		msg = "identical referral already exists: Task/" + ref.Record.TaskID
	}
	a.respond(w, r, status, sr.Body, msg)
}

// respondTransaction answers a transaction Bundle with a transaction-response Bundle: one entry per request
// entry, in order. Bundled resources other than the ServiceRequest are stored inside it (contained).
func (a *API) respondTransaction(w http.ResponseWriter, r *http.Request, body []byte, res outbox.CreateResult) {
	var in struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
			} `json:"resource"`
		} `json:"entry"`
	}
	_ = json.Unmarshal(body, &in) // already validated by fhir.ParseTransaction
	ref := res.Referral
	sr, err := a.svc.ServiceRequest(r.Context(), ref)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	srStatus := fhir.EntryStatus(http.StatusCreated)
	if !res.Created {
		srStatus = fhir.EntryStatus(http.StatusOK)
	}
	out := fhir.Bundle{ResourceType: "Bundle", ID: a.o.NewID(), Type: fhir.BundleTransactionResponse}
	for _, e := range in.Entry {
		var entry fhir.BundleEntry
		if e.Resource.ResourceType == "ServiceRequest" {
			entry.FullURL = a.o.Base + "/ServiceRequest/" + ref.Record.ServiceRequestID
			entry.Response = &fhir.BundleEntryResponse{
				Status:       srStatus,
				Location:     "ServiceRequest/" + ref.Record.ServiceRequestID + "/_history/" + sr.Version,
				Etag:         `W/"` + sr.Version + `"`,
				LastModified: fhir.Instant(sr.Modified),
			}
			switch preferReturn(r) { // Prefer applies to each entry of a transaction
			case "minimal":
			case "OperationOutcome":
				entry.Response.Outcome, _ = json.Marshal(fhir.Outcome("", []fhir.Issue{{Severity: fhir.SeverityInformation,
					Code: fhir.CodeInformational, Diagnostics: "referral created: Task/" + ref.Record.TaskID}}))
			default:
				entry.Resource = sr.Body
			}
		} else {
			oo, _ := json.Marshal(fhir.Outcome("", []fhir.Issue{{Severity: fhir.SeverityInformation, Code: fhir.CodeInformational,
				Diagnostics: e.Resource.ResourceType + " stored as a contained resource of ServiceRequest/" + ref.Record.ServiceRequestID}}))
			entry.Response = &fhir.BundleEntryResponse{Status: fhir.EntryStatus(http.StatusOK), Outcome: oo}
		}
		out.Entry = append(out.Entry, entry)
	}
	b, err := json.Marshal(out)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	Write(w, http.StatusOK, b) // a transaction answers 200; each entry carries its own status
}
