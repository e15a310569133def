package fhirapi

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/server/internal/jsonpatch"
	"github.com/socialrx/socialrx/server/internal/web"
)

// readBody checks the media type (415) and size (413) of a FHIR request body and returns it.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	mt, params, ok := web.MediaType(r)
	if !ok || (mt != "application/fhir+json" && mt != "application/json") {
		return nil, fhir.NewError(fault.UnsupportedMedia, fhir.CodeNotSupported,
			fmt.Sprintf("Content-Type %q is not supported; send application/fhir+json (FHIR R4 JSON)", r.Header.Get("Content-Type")))
	}
	if !web.UTF8Charset(params) {
		return nil, fhir.NewError(fault.UnsupportedMedia, fhir.CodeNotSupported, "only charset=utf-8 is supported")
	}
	if v, ok := params["fhirversion"]; ok && !strings.HasPrefix(v, "4.0") {
		return nil, fhir.NewError(fault.UnsupportedMedia, fhir.CodeNotSupported, "only fhirVersion=4.0 (R4) is supported")
	}
	return web.ReadAll(w, r, a.o.MaxBodyBytes)
}

// readPatch reads a JSON Patch document: Content-Type application/json-patch+json (415), the body limit
// (413), strict JSON (400), known ops with the members they need (400).
func (a *API) readPatch(w http.ResponseWriter, r *http.Request) ([]jsonpatch.Op, error) {
	if mt, _, ok := web.MediaType(r); !ok || mt != "application/json-patch+json" {
		return nil, fhir.NewError(fault.UnsupportedMedia, fhir.CodeNotSupported,
			fmt.Sprintf("Content-Type %q is not supported for PATCH; send a JSON Patch as application/json-patch+json (FHIRPath Patch is not supported)", r.Header.Get("Content-Type")))
	}
	body, err := web.ReadAll(w, r, a.o.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	return jsonpatch.Parse(body)
}
