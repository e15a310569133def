package fhirapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/server/internal/web"
)

// Version history (R4 http.html#vread, #history): GET [type]/{id}/_history/{vid} reads one version exactly as
// it was served, and GET [type]/{id}/_history lists every version, newest first, in a history Bundle, for
// ServiceRequest and Task. Every Location socialrx returns (…/_history/{vid}) resolves. An unknown version is
// 404 with an OperationOutcome saying which versions exist.

// version is one version of a resource as a history entry shows it.
type version struct {
	id, vid  string
	body     []byte
	modified time.Time
}

// vreadTask is GET /fhir/Task/{id}/_history/{vid}.
func (a *API) vreadTask(w http.ResponseWriter, r *http.Request) {
	vars := mux.Vars(r)
	ref, err := a.svc.TaskVersion(r.Context(), web.Caller(r.Context()), vars["id"], vars["vid"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	b, err := json.Marshal(a.taskOf(r, ref))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeVersion(w, r, typeTask, version{id: ref.Record.TaskID, vid: strconv.Itoa(ref.Record.Version), body: b, modified: ref.Record.UpdatedAt})
}

// vreadServiceRequest is GET /fhir/ServiceRequest/{id}/_history/{vid}.
func (a *API) vreadServiceRequest(w http.ResponseWriter, r *http.Request) {
	vars := mux.Vars(r)
	sr, err := a.svc.ServiceRequestVersion(r.Context(), web.Caller(r.Context()), vars["id"], vars["vid"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeVersion(w, r, typeServiceRequest, version{id: vars["id"], vid: sr.Version, body: sr.Body, modified: sr.Modified})
}

// writeVersion answers 200 with one version: ETag and Last-Modified of that version, Content-Location its URL.
func (a *API) writeVersion(w http.ResponseWriter, r *http.Request, typ string, v version) {
	if err := historyParams(r); err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Location", a.o.Base+"/"+typ+"/"+v.id+"/_history/"+v.vid)
	w.Header().Set("ETag", `W/"`+v.vid+`"`)
	w.Header().Set("Last-Modified", v.modified.UTC().Format(http.TimeFormat))
	Write(w, http.StatusOK, v.body)
}

// historyTask is GET /fhir/Task/{id}/_history.
func (a *API) historyTask(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	refs, err := a.svc.TaskVersions(r.Context(), web.Caller(r.Context()), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	versions := make([]version, 0, len(refs))
	for _, ref := range refs {
		b, err := json.Marshal(a.taskOf(r, ref))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		versions = append(versions, version{id: id, vid: strconv.Itoa(ref.Record.Version), body: b, modified: ref.Record.UpdatedAt})
	}
	a.writeHistory(w, r, typeTask, id, versions)
}

// historyServiceRequest is GET /fhir/ServiceRequest/{id}/_history.
func (a *API) historyServiceRequest(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	srs, err := a.svc.ServiceRequestVersions(r.Context(), web.Caller(r.Context()), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	versions := make([]version, 0, len(srs))
	for _, sr := range srs {
		versions = append(versions, version{id: id, vid: sr.Version, body: sr.Body, modified: sr.Modified})
	}
	a.writeHistory(w, r, typeServiceRequest, id, versions)
}

// writeHistory answers a history Bundle of versions (given oldest first), newest first: each entry the version
// with the interaction that made it (POST for the first, PUT after) and its ETag and time.
func (a *API) writeHistory(w http.ResponseWriter, r *http.Request, typ, id string, versions []version) {
	if err := historyParams(r); err != nil {
		a.fail(w, r, err)
		return
	}
	self := a.o.Base + "/" + typ + "/" + id + "/_history"
	total := len(versions)
	out := fhir.Bundle{ResourceType: "Bundle", ID: a.o.NewID(), Type: fhir.BundleHistory, Total: &total,
		Meta: &fhir.Meta{LastUpdated: fhir.Instant(a.now())}, Link: []fhir.BundleLink{{Relation: "self", URL: self}}}
	for _, v := range slices.Backward(versions) {
		req := &fhir.BundleEntryRequest{Method: http.MethodPut, URL: typ + "/" + id}
		status := fhir.EntryStatus(http.StatusOK)
		if v.vid == "1" {
			req = &fhir.BundleEntryRequest{Method: http.MethodPost, URL: typ}
			status = fhir.EntryStatus(http.StatusCreated)
		}
		out.Entry = append(out.Entry, fhir.BundleEntry{FullURL: a.o.Base + "/" + typ + "/" + id, Resource: v.body, Request: req,
			Response: &fhir.BundleEntryResponse{Status: status, Location: typ + "/" + id + "/_history/" + v.vid,
				Etag: `W/"` + v.vid + `"`, LastModified: fhir.ExactInstant(v.modified)}})
	}
	b, err := json.Marshal(out)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	Write(w, http.StatusOK, b)
}

// historyParams refuses parameters on vread and history (400 naming them; Prefer: handling=lenient ignores
// them): socialrx returns every version, without _count, _since or _at.
func historyParams(r *http.Request) error {
	if lenient(r) {
		return nil
	}
	var issues []fhir.Issue
	for k := range r.URL.Query() {
		switch k {
		case "_format", "_pretty":
			continue
		}
		issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeNotSupported, Expression: []string{k},
			Diagnostics: fmt.Sprintf("parameter %q is not supported on history: every version is returned (send Prefer: handling=lenient to ignore it)", k)})
	}
	if len(issues) > 0 {
		slices.SortFunc(issues, func(a, b fhir.Issue) int { return strings.Compare(a.Expression[0], b.Expression[0]) })
		return &fhir.Error{Kind: fault.Invalid, Issues: issues}
	}
	return nil
}
