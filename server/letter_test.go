package server_test

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/letter/lettertest"
	"github.com/socialrx/socialrx/mapping"
)

// docRef is the part of a DocumentReference the tests read.
type docRef struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Status       string `json:"status"`
	DocStatus    string `json:"docStatus"`
	Type         struct {
		Coding []struct{ System, Code string } `json:"coding"`
	} `json:"type"`
	Subject map[string]any `json:"subject"`
	Content []struct {
		Attachment struct {
			ContentType string `json:"contentType"`
			URL         string `json:"url"`
			Size        int    `json:"size"`
			Hash        string `json:"hash"`
		} `json:"attachment"`
	} `json:"content"`
	Context struct {
		Related []struct {
			Reference string `json:"reference"`
		} `json:"related"`
	} `json:"context"`
}

// letterSearch is GET DocumentReference?related=ServiceRequest/{sr} by token: its entries' resources.
func letterSearch(h *harness, token, sr string) []docRef {
	h.t.Helper()
	r := h.do(http.MethodGet, "/fhir/DocumentReference?related="+url.QueryEscape("ServiceRequest/"+sr), token, nil)
	if r.status != http.StatusOK {
		h.t.Fatalf("search letters: %d %s", r.status, r.body)
	}
	var b struct {
		Total int `json:"total"`
		Entry []struct {
			Resource docRef `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.Total != len(b.Entry) {
		h.t.Fatalf("searchset: %s", r.body)
	}
	out := make([]docRef, len(b.Entry))
	for i, e := range b.Entry {
		out[i] = e.Resource
	}
	return out
}

// letterPDF reads the letter's Binary as the PDF itself.
func letterPDF(h *harness, token, id string) response {
	h.t.Helper()
	return h.do(http.MethodGet, "/fhir/Binary/"+id, token, nil, "Accept: application/pdf")
}

// TestGPLetter: when the group completes a referral, the GP's Task references the letter's DocumentReference
// (valid R4: the harness validates every FHIR body), found by related=ServiceRequest/{id}, typed SNOMED CT
// 371531000, about the ServiceRequest's patient; its Binary is the PDF (Accept: application/pdf) or a FHIR
// Binary; the PDF's text (pdftotext) names the person, the group, the measures before and after and the
// next steps; a follow-up recorded after the close does not change it; other practices and groups cannot
// read it; every read is audited.
func TestGPLetter(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokGP, "walking-group-performer.json")
	letterID := ref.task + "-letter"
	for _, s := range []string{`{"status":"accepted"}`, `{"status":"in-progress"}`} {
		if r := setStatus(h, tokWalks, ref.referral, s); r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", s, r.status, r.body)
		}
	}
	for _, m := range []string{
		`{"instrument":"swemwbs","timing":"baseline","date":"2026-11-21","items":[3,3,3,3,3,4,4]}`,
		`{"instrument":"ons4","timing":"baseline","date":"2026-11-21","items":[4,5,3,8]}`,
	} {
		if r := postMeasure(h, tokWalks, ref.referral, m); r.status != http.StatusCreated {
			t.Fatalf("measure: %d %s", r.status, r.body)
		}
	}
	// Open: no letter yet.
	if got := letterSearch(h, tokGP, ref.sr); len(got) != 0 {
		t.Fatalf("an open referral has a letter: %+v", got)
	}
	if r := h.do(http.MethodGet, "/fhir/DocumentReference/"+letterID, tokGP, nil); r.status != http.StatusNotFound {
		t.Fatalf("an open referral's letter: %d %s", r.status, r.body)
	}
	h.advance(30 * 24 * time.Hour)
	if r := postMeasure(h, tokWalks, ref.referral, `{"instrument":"swemwbs","timing":"follow-up","date":"2026-12-20","items":[4,4,4,4,4,4,4]}`); r.status != http.StatusCreated {
		t.Fatalf("follow-up: %d %s", r.status, r.body)
	}
	if r := setStatus(h, tokWalks, ref.referral, `{"status":"completed","outcome":"Walks every week"}`); r.status != http.StatusOK {
		t.Fatalf("complete: %d %s", r.status, r.body)
	}

	// The Task's output references the letter.
	if outs := outputs(h.task(tokGP, ref.task)); !slices.Contains(outs, [2]string{"gp-letter", "DocumentReference/" + letterID}) {
		t.Fatalf("Task.output %v lacks the letter", outs)
	}
	docs := letterSearch(h, tokGP, ref.sr)
	if len(docs) != 1 || docs[0].ID != letterID {
		t.Fatalf("letters of ServiceRequest/%s: %+v", ref.sr, docs)
	}
	r := h.do(http.MethodGet, "/fhir/DocumentReference/"+letterID, tokGP, nil)
	var doc docRef
	if r.status != http.StatusOK || json.Unmarshal(r.body, &doc) != nil || r.header.Get("ETag") != `W/"1"` {
		t.Fatalf("read the letter: %d %s", r.status, r.body)
	}
	task := h.task(tokGP, ref.task)
	att := doc.Content[0].Attachment
	if doc.Status != "current" || doc.DocStatus != "final" || doc.Type.Coding[0].System != mapping.SNOMEDSystem ||
		doc.Type.Coding[0].Code != "371531000" || !jsonEqual(t, doc.Subject, task["for"]) ||
		doc.Context.Related[0].Reference != "ServiceRequest/"+ref.sr || att.ContentType != "application/pdf" ||
		!strings.HasSuffix(att.URL, "/fhir/Binary/"+letterID) {
		t.Fatalf("DocumentReference: %s", r.body)
	}

	// The PDF, as a reader sees it.
	p := letterPDF(h, tokGP, letterID)
	if p.status != http.StatusOK || p.header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("Binary as PDF: %d %s %.200s", p.status, p.header.Get("Content-Type"), p.body)
	}
	sum := sha1.Sum(p.body)
	if att.Size != len(p.body) || att.Hash != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Errorf("attachment size %d hash %s, the PDF has %d bytes", att.Size, att.Hash, len(p.body))
	}
	text, pages := lettertest.Text(t, p.body)
	for _, want := range []string{"Person Margaret Anne Ellis", "NHS number 9999542557", "Group Frome Walking for Health",
		"SWEMWBS", "Before (baseline) 23 (metric 20.73) on 2026-11-21", "After (follow-up) 28 (metric 25.03) on 2026-12-20",
		"Change +5 (metric +4.30)", "ONS4", "life satisfaction 4, worthwhile 5, happiness 3, anxiety 8 on 2026-11-21",
		"Outcome Walks every week", "Closed as completed", "Next steps The group has finished its support",
		"Contact 01373 465000, walks@frome-walks.example.org"} {
		if !strings.Contains(text, want) {
			t.Errorf("the letter lacks %q:\n%s", want, text)
		}
	}
	if pages != 1 {
		t.Errorf("the letter has %d pages", pages)
	}

	// The Binary as FHIR JSON carries the same bytes.
	bin := h.do(http.MethodGet, "/fhir/Binary/"+letterID, tokGP, nil)
	var b struct {
		ResourceType, ContentType, Data string
	}
	if err := json.Unmarshal(bin.body, &b); err != nil || bin.status != http.StatusOK || b.ResourceType != "Binary" || b.ContentType != "application/pdf" {
		t.Fatalf("Binary as FHIR: %d %.300s", bin.status, bin.body)
	}
	if data, _ := base64.StdEncoding.DecodeString(b.Data); !bytes.Equal(data, p.body) {
		t.Error("the FHIR Binary's data is not the PDF")
	}

	// A follow-up after the close is recorded, but the letter issued does not change.
	h.advance(24 * time.Hour)
	if r := postMeasure(h, tokWalks, ref.referral, `{"instrument":"ons4","timing":"follow-up","date":"2026-12-21","items":[7,8,7,3]}`); r.status != http.StatusCreated {
		t.Fatalf("ONS4 follow-up after completion: %d %s", r.status, r.body)
	}
	if again := letterPDF(h, tokGP, letterID); !bytes.Equal(again.body, p.body) {
		t.Error("the letter changed after it was issued")
	}

	// The letter names the person beyond any sharing profile: the referral's own group is refused (403, no
	// patient data), another practice and another group find nothing.
	for _, path := range []string{"/fhir/DocumentReference/" + letterID, "/fhir/Binary/" + letterID, "/fhir/DocumentReference?related=ServiceRequest/" + ref.sr} {
		if r := h.do(http.MethodGet, path, tokWalks, nil); r.status != http.StatusForbidden || strings.Contains(string(r.body), "9999542557") {
			t.Errorf("the referral's group reads %s: %d %s", path, r.status, r.body)
		}
	}
	for _, path := range []string{"/fhir/DocumentReference/" + letterID, "/fhir/Binary/" + letterID} {
		if r := h.do(http.MethodGet, path, tokMuseum, nil); r.status != http.StatusForbidden {
			t.Errorf("another group reads %s: %d", path, r.status)
		}
		if r := h.do(http.MethodGet, path, tokGP2, nil); r.status != http.StatusNotFound {
			t.Errorf("another practice reads %s: %d", path, r.status)
		}
	}
	if got := letterSearch(h, tokGP2, ref.sr); len(got) != 0 {
		t.Errorf("another practice finds the letter")
	}
	if r := letterPDF(h, tokGP2, letterID); r.status != http.StatusNotFound || !strings.Contains(r.header.Get("Content-Type"), "fhir+json") {
		t.Errorf("a refused PDF read: %d %s", r.status, r.header.Get("Content-Type"))
	}

	// Every read is audited.
	var docReads, binReads int
	for _, rec := range readAudit(t, h, "?referral="+ref.referral+"&limit=500").Records {
		switch {
		case rec.Action == "read" && rec.Resource == "DocumentReference/"+letterID:
			docReads++
		case rec.Action == "read" && rec.Resource == "Binary/"+letterID:
			binReads++
		}
	}
	if docReads != 2 || binReads != 3 { // the practice's three PDF reads; refused reads read nothing
		t.Errorf("audited %d DocumentReference reads (want 2: the search that found it, the read) and %d Binary reads (want 3)", docReads, binReads)
	}
	// The practice sees them as AuditEvents naming the letter (validated R4 by the harness).
	ae := h.do(http.MethodGet, "/fhir/AuditEvent?entity="+url.QueryEscape("ServiceRequest/"+ref.sr), tokGP, nil)
	if ae.status != http.StatusOK || !strings.Contains(string(ae.body), `"reference":"DocumentReference/`+letterID+`"`) ||
		!strings.Contains(string(ae.body), `"reference":"Binary/`+letterID+`"`) {
		t.Errorf("AuditEvents of the referral do not name the letter: %d %.400s", ae.status, ae.body)
	}
}

// TestGPLetterDeclinedAndBadInput: a declined referral has a letter (with the declined code); a cancelled
// one has none; a search without related, or naming something else, is 400 naming related; odd ids are 404.
func TestGPLetterDeclinedAndBadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	declined := refer(h, tokGP, "walking-group-performer.json")
	if r := setStatus(h, tokWalks, declined.referral, `{"status":"rejected","reason":"The person chose not to join"}`); r.status != http.StatusOK {
		t.Fatalf("decline: %d %s", r.status, r.body)
	}
	if got := letterSearch(h, tokGP, declined.sr); len(got) != 1 {
		t.Fatalf("a declined referral's letters: %+v", got)
	}
	text, _ := lettertest.Text(t, letterPDF(h, tokGP, declined.task+"-letter").body)
	for _, want := range []string{"Closed as declined", "Reason The person chose not to join", "871711000000103", "No outcome measures were recorded."} {
		if !strings.Contains(text, want) {
			t.Errorf("the declined letter lacks %q:\n%s", want, text)
		}
	}
	cancelled := refer(h, tokGP, "walking-group-literal-subject.json")
	if r := h.do(http.MethodPatch, "/fhir/ServiceRequest/"+cancelled.sr, tokGP, []byte(`[{"op": "replace", "path": "/status", "value": "revoked"}]`), patchCT); r.status != http.StatusOK {
		t.Fatalf("the GP cancels: %d %s", r.status, r.body)
	}
	if got := letterSearch(h, tokGP, cancelled.sr); len(got) != 0 {
		t.Errorf("a cancelled referral has a letter: %+v", got)
	}
	for _, q := range []string{"", "?related=Patient/x", "?related=", "?related=" + url.QueryEscape("ServiceRequest/")} {
		r := h.do(http.MethodGet, "/fhir/DocumentReference"+q, tokGP, nil)
		if r.status != http.StatusBadRequest || !hasExpression(issues(t, r), "related") {
			t.Errorf("DocumentReference%s: want 400 naming related, got %d %s", q, r.status, r.body)
		}
	}
	for _, id := range []string{"nothing", "-letter", declined.task, cancelled.task + "-letter", declined.task + "-letterx"} {
		for _, typ := range []string{"DocumentReference", "Binary"} {
			if r := h.do(http.MethodGet, "/fhir/"+typ+"/"+id, tokGP, nil); r.status != http.StatusNotFound {
				t.Errorf("%s/%s: %d %s", typ, id, r.status, r.body)
			}
		}
	}
	if r := h.do(http.MethodGet, "/fhir/DocumentReference/"+declined.task+"-letter", tokGP, nil, "Accept: application/pdf"); r.status != http.StatusNotAcceptable {
		t.Errorf("a DocumentReference asked for as PDF: %d", r.status)
	}
}

// jsonEqual compares two decoded JSON values.
func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	return bytes.Equal(mustJSON(t, a), mustJSON(t, b))
}
