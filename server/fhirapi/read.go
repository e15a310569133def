package fhirapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// readServiceRequest is GET /fhir/ServiceRequest/{id}.
func (a *API) readServiceRequest(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	ref, err := a.svc.Get(r.Context(), web.Caller(r.Context()), referral.ByServiceRequestID, id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	sr, err := a.svc.ServiceRequest(r.Context(), ref) // the current status (revoked, completed …)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.setResourceHeaders(w, r, "ServiceRequest", id, sr.Version, sr.Modified)
	Write(w, http.StatusOK, sr.Body)
}

// readTask is GET /fhir/Task/{id}.
func (a *API) readTask(w http.ResponseWriter, r *http.Request) {
	ref, err := a.svc.Get(r.Context(), web.Caller(r.Context()), referral.ByTaskID, mux.Vars(r)["id"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeTask(w, r, ref)
}

// writeTask answers 200 with the referral's Task and its ETag, Last-Modified and Location.
func (a *API) writeTask(w http.ResponseWriter, r *http.Request, ref outbox.Referral) {
	b, err := json.Marshal(a.taskOf(r, ref))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.setResourceHeaders(w, r, "Task", ref.Record.TaskID, strconv.Itoa(ref.Record.Version), ref.Record.UpdatedAt)
	Write(w, http.StatusOK, b)
}

// taskOf is the referral's Task as the FHIR API shows it to the request's client: a community service's cut to
// its sharing profile (referral.Service.ViewFor), the GP's and an admin's whole.
func (a *API) taskOf(r *http.Request, ref outbox.Referral) fhir.Task {
	return mapping.TaskFor(a.svc.ViewFor(web.Caller(r.Context()).Client, ref).Referral)
}
