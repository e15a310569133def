package fhirapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/referral"
)

// typeHealthcareService is the directory's services as FHIR (issue 13): read and search, any client.
const typeHealthcareService = "HealthcareService"

// capacitySearchSystem is the code system of socialrx's own capacity states in the capacity search parameter
// (open, waitlist, full, paused); the SDOH codes (capacity, waitlist, no-capacity) are also accepted, with
// their system or without.
const capacitySearchSystem = "https://socialrx.dev/fhir/CodeSystem/capacity-status"

// healthcareQuery is what a HealthcareService search selects (zero fields do not filter).
type healthcareQuery struct {
	ids      []string // nil: any; empty: none
	types    [][]mapping.Identifier
	capacity [][]string // effective states, each list ORed, lists ANDed
}

// applyServiceType is service-type and code: a directory code (system|code, or code alone), comma-separated
// for any of them.
func applyServiceType(p *searchParse, key, _ string, vals []string) {
	p.use(key, vals)
	var toks []mapping.Identifier
	for _, v := range splitList(vals[0]) {
		t := referral.ParseToken(v)
		if t.Value == "" {
			p.bad(key, key+" needs a code: [system|]code")
			return
		}
		toks = append(toks, t)
	}
	if len(toks) == 0 {
		p.bad(key, key+" needs a code: [system|]code")
		return
	}
	p.hs.types = append(p.hs.types, toks)
}

// applyCapacity is capacity: the state now, comma-separated for any of them: open, waitlist, full, paused
// (socialrx's, optionally with capacitySearchSystem) or the SDOH codes capacity, waitlist, no-capacity
// (optionally with mapping.SDOHCapacityCodeSystem).
func applyCapacity(p *searchParse, key, _ string, vals []string) {
	p.use(key, vals)
	var states []string
	for _, v := range splitList(vals[0]) {
		sys, code, hasSystem := strings.Cut(v, "|")
		if !hasSystem {
			code, sys = v, ""
		}
		var add []mapping.CapacityStatus
		switch {
		case (sys == "" || sys == capacitySearchSystem) && mapping.CapacityStatus(code).Valid():
			add = []mapping.CapacityStatus{mapping.CapacityStatus(code)}
		case (sys == "" || sys == mapping.SDOHCapacityCodeSystem) && code == "capacity":
			add = []mapping.CapacityStatus{mapping.CapacityOpen}
		case (sys == "" || sys == mapping.SDOHCapacityCodeSystem) && code == "no-capacity":
			add = []mapping.CapacityStatus{mapping.CapacityFull, mapping.CapacityPaused}
		default:
			p.bad(key, fmt.Sprintf("capacity %q is not a capacity state: use open, waitlist, full or paused (%s), or capacity, waitlist or no-capacity (%s)", v, capacitySearchSystem, mapping.SDOHCapacityCodeSystem))
			return
		}
		for _, st := range add {
			states = append(states, string(st))
		}
	}
	if len(states) == 0 {
		p.bad(key, "capacity needs a state: open, waitlist, full or paused")
		return
	}
	p.hs.capacity = append(p.hs.capacity, states)
}

// applyHealthcareID is _id on HealthcareService: a directory service id, comma-separated for any.
func applyHealthcareID(p *searchParse, key, _ string, vals []string) {
	p.use(key, vals)
	ids := splitList(vals[0])
	if len(ids) == 0 {
		p.bad(key, "_id needs a value: a service id, or a comma-separated list")
		return
	}
	p.hs.ids = intersect(p.hs.ids, ids)
}

// matches reports whether the service sc, in capacity state st now, is selected by q.
func (q healthcareQuery) matches(sc referral.ServiceCapacity, st mapping.CapacityStatus) bool {
	if q.ids != nil && !slices.Contains(q.ids, sc.Service.ID) {
		return false
	}
	for _, alts := range q.types {
		if !slices.ContainsFunc(alts, func(t mapping.Identifier) bool {
			return slices.ContainsFunc(sc.Service.Codes, func(k string) bool {
				sys, code, _ := strings.Cut(k, "|")
				return code == t.Value && (t.System == "" || t.System == sys)
			})
		}) {
			return false
		}
	}
	for _, alts := range q.capacity {
		if !slices.Contains(alts, string(st)) {
			return false
		}
	}
	return true
}

// readHealthcareService is GET /fhir/HealthcareService/{id}: one directory service with its capacity now.
func (a *API) readHealthcareService(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	all, err := a.svc.ServiceCapacities(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	i := slices.IndexFunc(all, func(sc referral.ServiceCapacity) bool { return sc.Service.ID == id })
	if i < 0 {
		a.fail(w, r, fhir.NewError(fault.NotFound, fhir.CodeNotFound, fmt.Sprintf("HealthcareService/%s is not a community service of this directory", id)))
		return
	}
	b, err := json.Marshal(mapping.HealthcareService(all[i].Service, all[i].Capacity, a.now()))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	Write(w, http.StatusOK, b)
}

// searchHealthcareServices is GET /fhir/HealthcareService and POST /fhir/HealthcareService/_search: the
// directory's services (all on one page: a directory is small), filtered by _id, service-type/code and
// capacity (the state now).
func (a *API) searchHealthcareServices(w http.ResponseWriter, r *http.Request) {
	query, err := a.searchParams(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	delete(query, "_format")
	p, err := parseSearch(a.svc, typeHealthcareService, a.o.Base, query, lenient(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	all, err := a.svc.ServiceCapacities(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	now := a.now()
	var matches []match
	for _, sc := range all {
		if p.hs.matches(sc, sc.Capacity.Effective(now)) {
			matches = append(matches, match{id: sc.Service.ID, resource: mapping.HealthcareService(sc.Service, sc.Capacity, now)})
		}
	}
	a.writeSearchset(w, r, typeHealthcareService, p.used, matches)
}

// match is one resource of a searchset that fits on one page.
type match struct {
	id       string
	resource any
}

// writeSearchset answers with a searchset Bundle holding every match on one page (total: their number) and
// a self link with the parameters used.
func (a *API) writeSearchset(w http.ResponseWriter, r *http.Request, typ string, used url.Values, matches []match) {
	out := fhir.Bundle{ResourceType: "Bundle", ID: a.o.NewID(), Type: fhir.BundleSearchset, Meta: &fhir.Meta{LastUpdated: fhir.Instant(a.now())}}
	out.Link = append(out.Link, fhir.BundleLink{Relation: "self", URL: a.o.Base + "/" + typ + "?" + used.Encode()})
	for _, m := range matches {
		body, err := json.Marshal(m.resource)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out.Entry = append(out.Entry, fhir.BundleEntry{FullURL: a.o.Base + "/" + typ + "/" + m.id,
			Resource: body, Search: &fhir.BundleEntrySearch{Mode: fhir.SearchMatch}})
	}
	n := len(out.Entry)
	out.Total = &n
	b, err := json.Marshal(out)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	Write(w, http.StatusOK, b)
}
