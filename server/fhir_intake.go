package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// readFHIRBody checks the media type (415) and size (413) and returns the body.
func (s *Server) readFHIRBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || (mt != "application/fhir+json" && mt != "application/json") {
		return nil, fhir.NewError(http.StatusUnsupportedMediaType, fhir.CodeNotSupported,
			fmt.Sprintf("Content-Type %q is not supported; send application/fhir+json (FHIR R4 JSON)", ct))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return nil, fhir.NewError(http.StatusUnsupportedMediaType, fhir.CodeNotSupported, "only charset=utf-8 is supported")
	}
	if v, ok := params["fhirversion"]; ok && !strings.HasPrefix(v, "4.0") {
		return nil, fhir.NewError(http.StatusUnsupportedMediaType, fhir.CodeNotSupported, "only fhirVersion=4.0 (R4) is supported")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fhir.NewError(http.StatusRequestEntityTooLarge, fhir.CodeTooCostly,
				fmt.Sprintf("request body is larger than the limit of %d bytes", s.maxBody))
		}
		return nil, fhir.NewError(http.StatusBadRequest, fhir.CodeStructure, "could not read the request body")
	}
	return body, nil
}

// createServiceRequest is POST /fhir/ServiceRequest.
func (s *Server) createServiceRequest(w http.ResponseWriter, r *http.Request) {
	s.post(w, r, fhir.ParseServiceRequest, func(_ []byte, res outbox.CreateResult) { s.respondCreated(w, r, res) })
}

// transaction is POST /fhir: a transaction Bundle carrying one referral.
func (s *Server) transaction(w http.ResponseWriter, r *http.Request) {
	s.post(w, r, fhir.ParseTransaction, func(body []byte, res outbox.CreateResult) { s.respondTransaction(w, r, body, res) })
}

// post is the intake path shared by both: GP clients only, media type and size, strict parse, then intake.
func (s *Server) post(w http.ResponseWriter, r *http.Request, parse func([]byte) (*fhir.Submission, error),
	respond func(body []byte, res outbox.CreateResult)) {
	cl := clientFrom(r.Context())
	if cl.Role != config.RoleGP {
		s.writeFHIRError(w, r, fhir.NewError(http.StatusForbidden, fhir.CodeForbidden, "only GP clients may post referrals"))
		return
	}
	body, err := s.readFHIRBody(w, r)
	if err != nil {
		s.rejectIntake(w, r, err)
		return
	}
	sub, err := parse(body)
	if err != nil {
		s.rejectIntake(w, r, err)
		return
	}
	res, err := s.intake(r, cl, sub)
	if err != nil {
		s.rejectIntake(w, r, err)
		return
	}
	respond(body, res)
}

func (s *Server) rejectIntake(w http.ResponseWriter, r *http.Request, err error) {
	s.metrics.referrals.WithLabelValues("rejected").Inc()
	s.writeFHIRError(w, r, err)
}

// intake runs practice scoping, conditional create, mapping and the one durable write.
func (s *Server) intake(r *http.Request, cl config.Client, sub *fhir.Submission) (outbox.CreateResult, error) {
	ctx := r.Context()
	ods, expr, ok := mapping.RequesterODS(sub)
	var practiceIssue *fhir.Issue
	switch {
	case ok && !cl.MayReferFrom(ods):
		return outbox.CreateResult{}, fhir.NewError(http.StatusForbidden, fhir.CodeForbidden,
			fmt.Sprintf("this client may not refer from practice %s (requester's organisation); it acts for %s",
				ods, strings.Join(cl.Practices, ", ")), "ServiceRequest.requester", expr)
	case !ok && len(cl.Practices) == 1:
		ods = cl.Practices[0]
	case !ok:
		practiceIssue = &fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeBusinessRule,
			Diagnostics: "this client acts for several practices: identify the referring practice by the requester's organisation ODS code (https://fhir.nhs.uk/Id/ods-organization-code)",
			Expression:  []string{"ServiceRequest.requester"}}
	}
	if h := r.Header.Get("If-None-Exist"); h != "" {
		existing, found, err := s.ifNoneExist(r, cl, h)
		if err != nil || found {
			return existing, err
		}
	}
	in, err := mapping.Build(sub, mapping.BuildInput{Directory: s.cfg.Directory, PracticeODS: ods, Now: s.now().UTC().Truncate(time.Microsecond), NewID: s.newID})
	if practiceIssue != nil {
		// Report every business-rule issue at once: the practice one joins mapping's.
		var fe *fhir.Error
		if errors.As(err, &fe) && fe.Status == http.StatusUnprocessableEntity {
			return outbox.CreateResult{}, &fhir.Error{Status: fe.Status, Issues: append([]fhir.Issue{*practiceIssue}, fe.Issues...)}
		}
		if err == nil {
			return outbox.CreateResult{}, &fhir.Error{Status: http.StatusUnprocessableEntity, Issues: []fhir.Issue{*practiceIssue}}
		}
	}
	if err != nil {
		return outbox.CreateResult{}, err
	}
	res, err := s.store.CreateReferral(ctx, in)
	if err != nil {
		return outbox.CreateResult{}, err
	}
	if !res.Created && !visibleTo(cl, res.Referral) {
		// The identifier belongs to a referral this client cannot see: say no more than "taken".
		return outbox.CreateResult{}, outbox.ErrConflict
	}
	if res.Created {
		s.metrics.referrals.WithLabelValues("created").Inc()
		s.log.Info("referral created", "request_id", requestID(ctx), "referral_id", res.Referral.Record.ID,
			"service", res.Referral.Record.Service.ID, "client", cl.ID)
	} else {
		s.metrics.referrals.WithLabelValues("resent").Inc()
		s.log.Info("referral resent", "request_id", requestID(ctx), "referral_id", res.Referral.Record.ID, "client", cl.ID)
	}
	return res, nil
}

// ifNoneExist implements conditional create on identifier: one visible match is returned as it is (200).
func (s *Server) ifNoneExist(r *http.Request, cl config.Client, h string) (outbox.CreateResult, bool, error) {
	q, err := url.ParseQuery(h)
	bad := func(msg string) error {
		return fhir.NewError(http.StatusBadRequest, fhir.CodeNotSupported, msg, "If-None-Exist")
	}
	if err != nil {
		return outbox.CreateResult{}, false, bad("If-None-Exist must be a search query such as identifier=system|value")
	}
	vals := q["identifier"]
	if len(q) != 1 || len(vals) != 1 || vals[0] == "" {
		return outbox.CreateResult{}, false, bad("If-None-Exist supports exactly one parameter: identifier=[system|]value")
	}
	id := parseToken(vals[0])
	refs, _, err := s.store.SearchReferrals(r.Context(), outbox.ReferralQuery{Identifier: &id, Limit: 2})
	if err != nil {
		return outbox.CreateResult{}, false, err
	}
	switch {
	case len(refs) == 0:
		return outbox.CreateResult{}, false, nil
	case len(refs) > 1:
		return outbox.CreateResult{}, false, fhir.NewError(http.StatusPreconditionFailed, fhir.CodeDuplicate,
			"If-None-Exist matches more than one referral; use an identifier with its system", "If-None-Exist")
	case !visibleTo(cl, refs[0]):
		return outbox.CreateResult{}, false, outbox.ErrConflict
	}
	s.metrics.referrals.WithLabelValues("resent").Inc()
	return outbox.CreateResult{Referral: refs[0], Created: false}, true, nil
}

// parseToken splits a FHIR token search value "system|value" (or "value").
func parseToken(v string) mapping.Identifier {
	if sys, val, ok := strings.Cut(v, "|"); ok {
		return mapping.Identifier{System: sys, Value: val}
	}
	return mapping.Identifier{Value: v}
}

// visibleTo reports whether a client may see a referral.
func visibleTo(cl config.Client, r outbox.Referral) bool {
	switch cl.Role {
	case config.RoleGP:
		return cl.MayReferFrom(r.PracticeODS)
	case config.RoleCommunity:
		return r.Record.Service.ID == cl.Service
	case config.RoleAdmin:
		return true
	}
	return false
}

// respondCreated answers a ServiceRequest create: 201 for a new referral, 200 for a resend, honouring Prefer.
func (s *Server) respondCreated(w http.ResponseWriter, r *http.Request, res outbox.CreateResult) {
	status := http.StatusCreated
	if !res.Created {
		status = http.StatusOK
	}
	ref := res.Referral
	sr, err := s.renderServiceRequest(r.Context(), ref) // a resend after a cancellation shows it revoked
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.setResourceHeaders(w, r, "ServiceRequest", ref.Record.ServiceRequestID, sr.version, sr.modified)
	switch preferReturn(r) {
	case "minimal":
		w.WriteHeader(status)
	case "OperationOutcome":
		msg := "referral created: Task/" + ref.Record.TaskID
		if !res.Created {
			msg = "identical referral already exists: Task/" + ref.Record.TaskID
		}
		s.writeFHIR(w, status, fhir.MarshalOutcome(requestID(r.Context()),
			[]fhir.Issue{{Severity: fhir.SeverityInformation, Code: fhir.CodeInformational, Diagnostics: msg}}))
	default:
		s.writeFHIR(w, status, sr.body)
	}
}

// respondTransaction answers a transaction Bundle with a transaction-response Bundle: one entry per request
// entry, in order. Bundled resources other than the ServiceRequest are stored inside it (contained).
func (s *Server) respondTransaction(w http.ResponseWriter, r *http.Request, body []byte, res outbox.CreateResult) {
	var in struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
			} `json:"resource"`
		} `json:"entry"`
	}
	_ = json.Unmarshal(body, &in) // already validated by fhir.ParseTransaction
	ref := res.Referral
	sr, err := s.renderServiceRequest(r.Context(), ref)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	srStatus := "201 Created"
	if !res.Created {
		srStatus = "200 OK"
	}
	out := fhir.Bundle{ResourceType: "Bundle", ID: s.newID(), Type: fhir.BundleTransactionResponse}
	for _, e := range in.Entry {
		var entry fhir.BundleEntry
		if e.Resource.ResourceType == "ServiceRequest" {
			entry.FullURL = s.base(r) + "/ServiceRequest/" + ref.Record.ServiceRequestID
			if preferReturn(r) != "minimal" {
				entry.Resource = sr.body
			}
			entry.Response = &fhir.BundleEntryResponse{
				Status:       srStatus,
				Location:     "ServiceRequest/" + ref.Record.ServiceRequestID + "/_history/" + sr.version,
				Etag:         `W/"` + sr.version + `"`,
				LastModified: fhir.Instant(sr.modified),
			}
		} else {
			oo, _ := json.Marshal(fhir.Outcome("", []fhir.Issue{{Severity: fhir.SeverityInformation, Code: fhir.CodeInformational,
				Diagnostics: e.Resource.ResourceType + " stored as a contained resource of ServiceRequest/" + ref.Record.ServiceRequestID}}))
			entry.Response = &fhir.BundleEntryResponse{Status: "200 OK", Outcome: oo}
		}
		out.Entry = append(out.Entry, entry)
	}
	b, err := json.Marshal(out)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	status := http.StatusOK // a transaction answers 200; each entry carries its own status
	s.writeFHIR(w, status, b)
}
