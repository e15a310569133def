package fhirapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// search is GET [type] and POST [type]/_search (R4 http.html#search: a SHALL; the parameters come as an
// application/x-www-form-urlencoded body, and may also be in the URL). The answer is a searchset Bundle: total
// (every match, whatever the page, unless _total=none), a self link that repeats the search with its page
// cursor, a next link while more match, the matches and, with _include=Task:focus (Task) or
// _revinclude=Task:focus (ServiceRequest), the other resource of each matched referral (mode include).
// _summary=count or _count=0 answers the total alone.
func (a *API) search(typ string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		query, err := a.searchParams(w, r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		delete(query, "_format") // content negotiation, done before (negotiate.go)
		p, err := parseSearch(a.svc, typ, a.o.Base, query, lenient(r))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		b, err := a.searchBundle(r, typ, p)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		Write(w, http.StatusOK, b)
	}
}

// searchParams are a search's parameters: the URL's query and, for POST [type]/_search, its form body's
// after them.
func (a *API) searchParams(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	query := r.URL.Query()
	if r.Method != http.MethodPost {
		return query, nil
	}
	form, err := a.searchForm(w, r)
	if err != nil {
		return nil, err
	}
	for k, vs := range form {
		query[k] = append(query[k], vs...)
	}
	return query, nil
}

// searchForm reads the form body of POST [type]/_search (415 for another media type, 413 beyond the limit).
func (a *API) searchForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if mt, _, ok := web.MediaType(r); ok && mt != "application/x-www-form-urlencoded" || !ok && r.ContentLength > 0 {
		return nil, fhir.NewError(fault.UnsupportedMedia, fhir.CodeNotSupported,
			fmt.Sprintf("Content-Type %q is not supported for POST _search: send the parameters as application/x-www-form-urlencoded", r.Header.Get("Content-Type")))
	}
	body, err := web.ReadAll(w, r, a.o.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fhir.NewError(fault.Invalid, fhir.CodeStructure, "the body is not a valid application/x-www-form-urlencoded form")
	}
	return form, nil
}

// searchBundle runs the parsed search for the caller and renders its searchset Bundle.
func (a *API) searchBundle(r *http.Request, typ string, p *searchParse) ([]byte, error) {
	ctx, c := r.Context(), web.Caller(r.Context())
	if typ == typeServiceRequest || p.include {
		if err := referral.MayReadGPRecord(c); err != nil {
			return nil, err
		}
	}
	base := a.o.Base
	out := fhir.Bundle{ResourceType: "Bundle", ID: a.o.NewID(), Type: fhir.BundleSearchset,
		Meta: &fhir.Meta{LastUpdated: fhir.Instant(a.now())}}
	out.Link = append(out.Link, fhir.BundleLink{Relation: "self", URL: base + "/" + typ + "?" + p.used.Encode()})
	if !p.noTotal || p.countOnly {
		n, err := a.svc.Count(ctx, c, p.q)
		if err != nil {
			return nil, err
		}
		out.Total = &n
	}
	if p.countOnly {
		return json.Marshal(out)
	}
	p.q.Resource = referral.ByServiceRequestID
	if typ == typeTask {
		p.q.Resource = referral.ByTaskID
	}
	refs, next, err := a.svc.Search(ctx, c, p.q)
	if err != nil {
		return nil, err
	}
	if next != nil {
		nv := url.Values{}
		for k, v := range p.used {
			nv[k] = v
		}
		nv.Set("_count", strconv.Itoa(p.q.Limit))
		nv.Set("_cursor", web.EncodeCursor(*next))
		out.Link = append(out.Link, fhir.BundleLink{Relation: "next", URL: base + "/" + typ + "?" + nv.Encode()})
	}
	var included []fhir.BundleEntry
	for _, ref := range refs {
		task, sr, err := a.entries(r, ref, typ == typeTask || p.include, typ == typeServiceRequest || p.include)
		if err != nil {
			return nil, err
		}
		match, other := task, sr
		if typ == typeServiceRequest {
			match, other = sr, task
		}
		match.Search = &fhir.BundleEntrySearch{Mode: fhir.SearchMatch}
		out.Entry = append(out.Entry, match)
		if p.include {
			other.Search = &fhir.BundleEntrySearch{Mode: fhir.SearchInclude}
			included = append(included, other)
		}
	}
	out.Entry = append(out.Entry, included...)
	return json.Marshal(out)
}

// entries renders a referral's Task and ServiceRequest as Bundle entries (each only when asked for).
func (a *API) entries(r *http.Request, ref outbox.Referral, wantTask, wantSR bool) (task, sr fhir.BundleEntry, err error) {
	if wantTask {
		body, err := json.Marshal(a.taskOf(r, ref))
		if err != nil {
			return task, sr, err
		}
		task = fhir.BundleEntry{FullURL: a.o.Base + "/Task/" + ref.Record.TaskID, Resource: body}
	}
	if wantSR {
		rendered, err := a.svc.ServiceRequest(r.Context(), ref)
		if err != nil {
			return task, sr, err
		}
		sr = fhir.BundleEntry{FullURL: a.o.Base + "/ServiceRequest/" + ref.Record.ServiceRequestID, Resource: rendered.Body}
	}
	return task, sr, nil
}
