package mapping

import (
	"crypto/sha1"
	"strings"

	"github.com/socialrx/socialrx/fhir"
)

// The GP letter (issue 14): when a referral closes, the GP and the referrer receive a one-page PDF "message
// back to GP and referrer" (package letter renders it), filed as a FHIR DocumentReference whose content is a
// Binary. Both share one id, LetterID.
const (
	// SNOMEDLetterType is the letter's document type: SNOMED CT 371531000 "Report of clinical encounter"
	// (an international concept; the UK code 823701000000103 is "Discharge letter", not a social
	// prescribing report, so it is not used).
	SNOMEDLetterType = "371531000"
	// LetterTypeDisplay is the display of SNOMEDLetterType.
	LetterTypeDisplay = "Report of clinical encounter"
)

// letterSuffix ends a letter's id.
const letterSuffix = "-letter"

// LetterID is the id of the referral's GP letter (its DocumentReference and its Binary): the Task's id and
// "-letter".
func LetterID(taskID string) string { return taskID + letterSuffix }

// ParseLetterID returns the Task id of a letter id.
func ParseLetterID(id string) (taskID string, ok bool) {
	taskID, ok = strings.CutSuffix(id, letterSuffix)
	return taskID, ok && taskID != ""
}

// IssuesLetter reports whether a referral that reaches status s is closed with a GP letter: completed,
// failed and rejected (declined) do; cancelled does not (the GP cancelled it, or the person withdrew
// consent and the record is erased), nor does entered-in-error, nor any open status.
func (s TaskStatus) IssuesLetter() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusRejected:
		return true
	case StatusRequested, StatusReceived, StatusAccepted, StatusInProgress, StatusOnHold, StatusCancelled, StatusEnteredInError:
		return false
	}
	return false
}

// HasLetter reports whether the referral, as it is, has a GP letter.
func (r Referral) HasLetter() bool {
	return r.Record.Status.IssuesLetter() && !r.Record.ConsentWithdrawn
}

// letterOutput is the Task.output entry referencing the GP letter.
func letterOutput(r Referral) fhir.TaskOutput {
	return fhir.TaskOutput{
		Type: fhir.CodeableConcept{Coding: []fhir.Coding{{System: TaskOutputSystem, Code: "gp-letter"}}, Text: "GP letter"},
		ValueReference: &fhir.Reference{Reference: "DocumentReference/" + LetterID(r.Record.TaskID), Type: "DocumentReference",
			Display: "Message back to GP and referrer (PDF)"},
	}
}

// PDFMediaType is the GP letter's media type.
const PDFMediaType = "application/pdf"

// LetterDescription is the GP letter's title, as its DocumentReference describes it.
const LetterDescription = "Social prescribing: message back to GP and referrer"

// DocumentReferenceFor is the FHIR R4 DocumentReference of the GP letter of the referral whose closing
// version is r (HasLetter), given the PDF and the absolute URL of its Binary:
//
//   - id LetterID; meta.versionId "1" and lastUpdated, date and the attachment's creation = the closing
//     version's time (a letter is issued once and never changes);
//   - status current, docStatus final; type SNOMED CT SNOMEDLetterType;
//   - subject the patient as the ServiceRequest names them (Task.for); author the community service;
//   - content: one attachment, application/pdf, language en-GB, url the Binary, size and SHA-1 of the PDF;
//   - context.related: the ServiceRequest and the Task.
func DocumentReferenceFor(r Referral, pdf []byte, binaryURL string) fhir.DocumentReference {
	rec := r.Record
	at := fhir.ExactInstant(rec.UpdatedAt)
	sum := sha1.Sum(pdf)
	author := fhir.Reference{Display: rec.Service.Name}
	if o := fhirRef(r.Owner); o != nil {
		author = *o
	}
	return fhir.DocumentReference{
		ResourceType: "DocumentReference",
		ID:           LetterID(rec.TaskID),
		Meta:         &fhir.Meta{VersionID: "1", LastUpdated: at},
		Status:       "current",
		DocStatus:    "final",
		Type: &fhir.CodeableConcept{Coding: []fhir.Coding{{System: SNOMEDSystem, Code: SNOMEDLetterType, Display: LetterTypeDisplay}},
			Text: LetterDescription},
		Subject:     fhirRef(r.Patient),
		Date:        at,
		Author:      []fhir.Reference{author},
		Description: LetterDescription,
		Content: []fhir.DocumentReferenceContent{{Attachment: fhir.Attachment{
			ContentType: PDFMediaType, Language: "en-GB", URL: binaryURL, Size: len(pdf), Hash: sum[:],
			Title: LetterDescription + " (PDF)", Creation: at,
		}}},
		Context: &fhir.DocumentReferenceContext{Related: []fhir.Reference{
			{Reference: "ServiceRequest/" + rec.ServiceRequestID, Type: "ServiceRequest"},
			{Reference: "Task/" + rec.TaskID, Type: "Task"},
		}},
	}
}

// BinaryFor is the GP letter's PDF as a FHIR R4 Binary (id LetterID, version 1 at the closing version's time).
func BinaryFor(r Referral, pdf []byte) fhir.Binary {
	return fhir.Binary{ResourceType: "Binary", ID: LetterID(r.Record.TaskID),
		Meta:        &fhir.Meta{VersionID: "1", LastUpdated: fhir.ExactInstant(r.Record.UpdatedAt)},
		ContentType: PDFMediaType, Data: pdf}
}
