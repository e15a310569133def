package fhirapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/server/internal/web"
)

// search is GET /fhir/Task and GET /fhir/ServiceRequest: a searchset Bundle with self and next links.
func (a *API) search(typ string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := parseSearch(a.svc, typ, r.URL.Query(), lenient(r))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		refs, next, err := a.svc.Search(r.Context(), web.Caller(r.Context()), p.q)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		base := a.o.Base
		out := fhir.Bundle{ResourceType: "Bundle", ID: a.o.NewID(), Type: fhir.BundleSearchset,
			Meta: &fhir.Meta{LastUpdated: fhir.Instant(a.now())}}
		out.Link = append(out.Link, fhir.BundleLink{Relation: "self", URL: base + "/" + typ + "?" + p.used.Encode()})
		if next != nil {
			nv := url.Values{}
			for k, v := range p.used {
				nv[k] = v
			}
			nv.Set("_count", strconv.Itoa(p.q.Limit))
			nv.Set("_cursor", web.EncodeCursor(*next))
			out.Link = append(out.Link, fhir.BundleLink{Relation: "next", URL: base + "/" + typ + "?" + nv.Encode()})
		}
		for _, ref := range refs {
			var body []byte
			var id string
			if typ == typeTask {
				id = ref.Record.TaskID
				if body, err = json.Marshal(taskOf(ref)); err != nil {
					a.fail(w, r, err)
					return
				}
			} else {
				if len(p.srStatuses) > 0 && !slices.Contains(p.srStatuses, ref.ServiceRequestStatus) {
					continue
				}
				sr, err := a.svc.ServiceRequest(r.Context(), ref)
				if err != nil {
					a.fail(w, r, err)
					return
				}
				id, body = ref.Record.ServiceRequestID, sr.Body
			}
			out.Entry = append(out.Entry, fhir.BundleEntry{FullURL: base + "/" + typ + "/" + id, Resource: body,
				Search: &fhir.BundleEntrySearch{Mode: fhir.SearchMatch}})
		}
		b, err := json.Marshal(out)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		Write(w, http.StatusOK, b)
	}
}
