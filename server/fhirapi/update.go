package fhirapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/jsonpatch"
	"github.com/socialrx/socialrx/server/internal/web"
)

// Updates: GP cancellation by revoking the ServiceRequest (PUT or JSON Patch; referral.Service.Revoke), and
// Task updates from FHIR-capable community platforms and GP systems (PUT or JSON Patch with If-Match;
// referral.Service.UpdateTask).

// srChangeable is what a ServiceRequest patch may change.
var srChangeable = []string{"status"}

// taskPatchable are the Task elements a JSON Patch may add, remove or replace (test may read any).
var taskPatchable = []string{"status", "statusReason", "businessStatus", "output", "note"}

// updateServiceRequest is PUT /fhir/ServiceRequest/{id}: the ServiceRequest as read, with status revoked.
func (a *API) updateServiceRequest(w http.ResponseWriter, r *http.Request) {
	c := web.Caller(r.Context())
	ref, err := a.svc.ServiceRequestForUpdate(r.Context(), c, mux.Vars(r)["id"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	body, err := a.readBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.revoke(w, r, ref, body)
}

// patchServiceRequest is PATCH /fhir/ServiceRequest/{id} with a JSON Patch replacing /status with "revoked".
func (a *API) patchServiceRequest(w http.ResponseWriter, r *http.Request) {
	c := web.Caller(r.Context())
	ref, err := a.svc.ServiceRequestForUpdate(r.Context(), c, mux.Vars(r)["id"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ops, err := a.readPatch(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	cur, err := a.svc.ServiceRequest(r.Context(), ref)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	body, err := jsonpatch.Apply(cur.Body, ops, "ServiceRequest", srChangeable)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.revoke(w, r, ref, body)
}

// revoke calls Revoke with the optional If-Match (W/"<versionId>" of the ServiceRequest) and answers with the
// ServiceRequest as it now is.
func (a *API) revoke(w http.ResponseWriter, r *http.Request, ref outbox.Referral, body []byte) {
	expect := ""
	if h := r.Header.Get("If-Match"); h != "" {
		v, ok := web.ParseETagVersion(h)
		if !ok {
			a.fail(w, r, fhir.NewError(fault.Invalid, fhir.CodeInvalid, `If-Match must name one version: W/"<versionId>"`, "If-Match"))
			return
		}
		expect = strconv.Itoa(v)
	}
	next, err := a.svc.Revoke(r.Context(), web.Caller(r.Context()), ref, expect, body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.svc.ServiceRequest(r.Context(), next)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.setResourceHeaders(w, r, "ServiceRequest", next.Record.ServiceRequestID, out.Version, out.Modified)
	a.respond(w, r, http.StatusOK, out.Body, "ServiceRequest/"+next.Record.ServiceRequestID+" is "+out.Status+"; Task/"+next.Record.TaskID+" is "+string(next.Record.Status))
}

// updateTask is PUT /fhir/Task/{id}: the full Task, with only the changeable elements changed.
func (a *API) updateTask(w http.ResponseWriter, r *http.Request) {
	ref, actor, expect, err := a.taskForUpdate(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	body, err := a.readBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.applyTask(w, r, ref, actor, expect, body)
}

// patchTask is PATCH /fhir/Task/{id} with a JSON Patch (application/json-patch+json) limited to status,
// statusReason, businessStatus, output and note. Notes are append-only: `add /note/-` with an Annotation adds
// one (also the first: the patch sees an empty note array then); author and time are socialrx's.
func (a *API) patchTask(w http.ResponseWriter, r *http.Request) {
	ref, actor, expect, err := a.taskForUpdate(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ops, err := a.readPatch(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	cur, err := patchableTask(a.svc.ViewFor(web.Caller(r.Context()).Client, ref).Referral) // the Task as this client is shown it
	if err != nil {
		a.fail(w, r, err)
		return
	}
	body, err := jsonpatch.Apply(cur, ops, "Task", taskPatchable)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if body, err = dropEmptyNote(body); err != nil {
		a.fail(w, r, err)
		return
	}
	a.applyTask(w, r, ref, actor, expect, body)
}

// taskForUpdate loads the Task for an update (who may: referral.Service.TaskForUpdate) and checks If-Match:
// required (428), one version (400), the current one (412) — before the body is even read.
func (a *API) taskForUpdate(r *http.Request) (outbox.Referral, mapping.Actor, int, error) {
	ref, actor, err := a.svc.TaskForUpdate(r.Context(), web.Caller(r.Context()), mux.Vars(r)["id"])
	if err != nil {
		return outbox.Referral{}, "", 0, err
	}
	h := r.Header.Get("If-Match")
	if h == "" {
		return outbox.Referral{}, "", 0, fhir.NewError(fault.VersionRequired, fhir.CodeRequired,
			`If-Match: W/"<versionId>" is required to update a Task: read the Task, then send its ETag so that concurrent updates cannot overwrite each other`, "If-Match")
	}
	expect, ok := web.ParseETagVersion(h)
	if !ok {
		return outbox.Referral{}, "", 0, fhir.NewError(fault.Invalid, fhir.CodeInvalid, `If-Match must name one version: W/"<versionId>"`, "If-Match")
	}
	if err := referral.ExpectVersion(ref, expect); err != nil {
		return outbox.Referral{}, "", 0, err
	}
	return ref, actor, expect, nil
}

// applyTask calls UpdateTask and answers with the new Task.
func (a *API) applyTask(w http.ResponseWriter, r *http.Request, ref outbox.Referral, actor mapping.Actor, expect int, body []byte) {
	next, err := a.svc.UpdateTask(r.Context(), web.Caller(r.Context()), ref, actor, expect, body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	b, err := json.Marshal(a.taskOf(r, next))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.setResourceHeaders(w, r, "Task", next.Record.TaskID, strconv.Itoa(next.Record.Version), next.Record.UpdatedAt)
	a.respond(w, r, http.StatusOK, b, "Task/"+next.Record.TaskID+" is "+string(next.Record.Status)+" (version "+strconv.Itoa(next.Record.Version)+")")
}

// patchableTask is the document a Task PATCH applies to: the current Task with "note" present even when it
// has no notes yet (an empty array), so that `add /note/-` appends the first note as it does the next ones.
func patchableTask(ref mapping.Referral) ([]byte, error) {
	t := mapping.TaskFor(ref)
	b, err := json.Marshal(t)
	if err != nil || len(t.Note) > 0 {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["note"] = json.RawMessage(`[]`)
	return json.Marshal(m)
}

// dropEmptyNote removes an empty "note" array left by patchableTask (FHIR JSON has no empty arrays).
func dropEmptyNote(b []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("json-patch: result: %w", err)
	}
	if raw, ok := m["note"]; !ok || !bytes.Equal(bytes.TrimSpace(raw), []byte("[]")) {
		return b, nil
	}
	delete(m, "note")
	return json.Marshal(m)
}
