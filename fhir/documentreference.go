package fhir

// DocumentReference and Binary wire types: socialrx writes the GP letter (issue 14) as an R4 DocumentReference
// whose attachment is a Binary holding the PDF, spelled out here like the Task (docs/design.md#known-traps).

// Attachment is a FHIR Attachment: the document's media type, where to fetch it, its size, SHA-1 and title.
type Attachment struct {
	ContentType string `json:"contentType,omitempty"`
	Language    string `json:"language,omitempty"`
	URL         string `json:"url,omitempty"`
	Size        int    `json:"size,omitempty"`
	Hash        []byte `json:"hash,omitempty"` // base64Binary: the SHA-1 of the data
	Title       string `json:"title,omitempty"`
	Creation    string `json:"creation,omitempty"`
}

// DocumentReferenceContent is DocumentReference.content.
type DocumentReferenceContent struct {
	Attachment Attachment `json:"attachment"`
	Format     *Coding    `json:"format,omitempty"`
}

// DocumentReferenceContext is DocumentReference.context.
type DocumentReferenceContext struct {
	Period  *Period     `json:"period,omitempty"`
	Related []Reference `json:"related,omitempty"`
}

// Period is a FHIR Period.
type Period struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

// DocumentReference is an R4 DocumentReference as socialrx writes it: the GP letter.
type DocumentReference struct {
	ResourceType string                     `json:"resourceType"` // always "DocumentReference"
	ID           string                     `json:"id"`
	Meta         *Meta                      `json:"meta,omitempty"`
	Identifier   []Identifier               `json:"identifier,omitempty"`
	Status       string                     `json:"status"`
	DocStatus    string                     `json:"docStatus,omitempty"`
	Type         *CodeableConcept           `json:"type,omitempty"`
	Category     []CodeableConcept          `json:"category,omitempty"`
	Subject      *Reference                 `json:"subject,omitempty"`
	Date         string                     `json:"date,omitempty"`
	Author       []Reference                `json:"author,omitempty"`
	Custodian    *Reference                 `json:"custodian,omitempty"`
	Description  string                     `json:"description,omitempty"`
	Content      []DocumentReferenceContent `json:"content"`
	Context      *DocumentReferenceContext  `json:"context,omitempty"`
}

// Binary is an R4 Binary: raw content (data, base64 in JSON) and its media type.
type Binary struct {
	ResourceType string `json:"resourceType"` // always "Binary"
	ID           string `json:"id"`
	Meta         *Meta  `json:"meta,omitempty"`
	ContentType  string `json:"contentType"`
	Data         []byte `json:"data,omitempty"`
}
