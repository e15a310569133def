package fhirapi

import (
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// The GP letter (issue 14): a closed referral's one-page PDF as a DocumentReference
// (GET /fhir/DocumentReference/{id}, GET /fhir/DocumentReference?related=ServiceRequest/{id}) whose attachment
// is a Binary (GET /fhir/Binary/{id}: the PDF itself with Accept: application/pdf, a FHIR Binary otherwise).
// Who may read it is who may read the referral's Task; every read is audited.

// readDocumentReference is GET /fhir/DocumentReference/{id}.
func (a *API) readDocumentReference(w http.ResponseWriter, r *http.Request) {
	gl, err := a.svc.Letter(r.Context(), web.Caller(r.Context()), mux.Vars(r)["id"], referral.LetterDocument)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	b, err := json.Marshal(a.documentReference(gl))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.setResourceHeaders(w, r, typeDocumentReference, gl.Letter.ID, "1", gl.Referral.Record.UpdatedAt)
	Write(w, http.StatusOK, b)
}

// documentReference is the letter's DocumentReference, its attachment's url the Binary on this server.
func (a *API) documentReference(gl referral.GPLetter) fhir.DocumentReference {
	return mapping.DocumentReferenceFor(gl.Referral.Referral, gl.PDF, a.o.Base+"/Binary/"+gl.Letter.ID)
}

// searchDocumentReferences is GET /fhir/DocumentReference?related=ServiceRequest/{id}: the GP letters of the
// named referrals the caller may see (all on one page: at most one letter per referral). related is required:
// a search without it would list every letter.
func (a *API) searchDocumentReferences(w http.ResponseWriter, r *http.Request) {
	query := r.URL.Query()
	delete(query, "_format")
	p, err := parseSearch(a.svc, typeDocumentReference, a.o.Base, query, lenient(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if p.q.ServiceRequestIDs == nil {
		a.fail(w, r, fhir.NewError(fault.Invalid, fhir.CodeRequired,
			"a DocumentReference search needs related=ServiceRequest/{id}: the referral whose GP letter is wanted", "related"))
		return
	}
	letters, err := a.svc.LettersFor(r.Context(), web.Caller(r.Context()), p.q.ServiceRequestIDs)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	matches := make([]match, len(letters))
	for i, gl := range letters {
		matches[i] = match{id: gl.Letter.ID, resource: a.documentReference(gl)}
	}
	a.writeSearchset(w, r, typeDocumentReference, p.used, matches)
}

// readBinary is GET /fhir/Binary/{id}: the letter's PDF as it is (Content-Type application/pdf) when the
// client's Accept asks for application/pdf (pdfWanted), else a FHIR Binary with the PDF base64 in data.
func (a *API) readBinary(w http.ResponseWriter, r *http.Request) {
	gl, err := a.svc.Letter(r.Context(), web.Caller(r.Context()), mux.Vars(r)["id"], referral.LetterBinary)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.setResourceHeaders(w, r, "Binary", gl.Letter.ID, "1", gl.Referral.Record.UpdatedAt)
	if pdfWanted(r) {
		w.Header().Set("Content-Type", mapping.PDFMediaType)
		w.Header().Set("Content-Length", strconv.Itoa(len(gl.PDF)))
		w.Header().Set("Content-Disposition", `inline; filename="`+gl.Letter.ID+`.pdf"`)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(gl.PDF)
		return
	}
	b, err := json.Marshal(mapping.BinaryFor(gl.Referral.Referral, gl.PDF))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	Write(w, http.StatusOK, b)
}

// pdfWanted reports whether a request asks for the raw PDF (R4 binary.html: a Binary is served in its own
// content type when the client asks for it): no _format, and Accept names application/pdf with a quality
// above zero and at least that of any JSON type it names.
func pdfWanted(r *http.Request) bool {
	if _, ok := r.URL.Query()["_format"]; ok {
		return false
	}
	var pdfQ, jsonQ float64
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				q = f
			}
		}
		switch mt {
		case mapping.PDFMediaType:
			pdfQ = max(pdfQ, q)
		case mediaFHIRJSON, mediaJSON, "application/json+fhir":
			jsonQ = max(jsonQ, q)
		}
	}
	return pdfQ > 0 && pdfQ >= jsonQ
}

// isBinaryRead reports whether path is a Binary read (GET /fhir/Binary/{id}), the one FHIR route that may
// answer in a media type other than JSON.
func isBinaryRead(path string) bool {
	rest, ok := strings.CutPrefix(path, "/fhir/Binary/")
	return ok && rest != "" && !strings.Contains(rest, "/")
}
