package mapping

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	models "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/socialrx/socialrx/fhir"
)

// Well-known systems.
const (
	// NHSNumberSystem is the identifier system of NHS numbers.
	NHSNumberSystem = "https://fhir.nhs.uk/Id/nhs-number"
	// ODSOrganizationSystem is the identifier system of ODS organisation codes.
	ODSOrganizationSystem = "https://fhir.nhs.uk/Id/ods-organization-code"
	// TaskCodeSystem is the code system of Task.code (http://hl7.org/fhir/CodeSystem/task-code).
	TaskCodeSystem = "http://hl7.org/fhir/CodeSystem/task-code"
)

// The contained resources mapping reads are decoded from their raw JSON into the small structs below, with
// codes kept as strings: samply's enums would turn a missing Consent.status into "draft" (docs/design.md#known-traps).

type rawCoding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

type rawCC struct {
	Coding []rawCoding `json:"coding"`
	Text   string      `json:"text"`
}

type rawIdentifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type rawRef struct {
	Reference  string         `json:"reference"`
	Type       string         `json:"type"`
	Identifier *rawIdentifier `json:"identifier"`
	Display    string         `json:"display"`
}

type rawExtension struct {
	URL          string         `json:"url"`
	ValueBoolean *bool          `json:"valueBoolean"`
	Extension    []rawExtension `json:"extension"`
}

type rawPeriod struct {
	End string `json:"end"`
}

type rawHumanName struct {
	Use    string     `json:"use"`
	Text   string     `json:"text"`
	Family string     `json:"family"`
	Given  []string   `json:"given"`
	Prefix []string   `json:"prefix"`
	Period *rawPeriod `json:"period"`
}

type rawContactPoint struct {
	System string     `json:"system"`
	Value  string     `json:"value"`
	Use    string     `json:"use"`
	Rank   int        `json:"rank"`
	Period *rawPeriod `json:"period"`
}

type rawAddress struct {
	Use        string     `json:"use"`
	Type       string     `json:"type"`
	Text       string     `json:"text"`
	Line       []string   `json:"line"`
	City       string     `json:"city"`
	District   string     `json:"district"`
	PostalCode string     `json:"postalCode"`
	Period     *rawPeriod `json:"period"`
}

type rawCommunication struct {
	Language  rawCC          `json:"language"`
	Preferred *bool          `json:"preferred"`
	Extension []rawExtension `json:"extension"`
}

type rawPatient struct {
	Identifier    []rawIdentifier    `json:"identifier"`
	Name          []rawHumanName     `json:"name"`
	Telecom       []rawContactPoint  `json:"telecom"`
	Gender        string             `json:"gender"`
	BirthDate     string             `json:"birthDate"`
	Address       []rawAddress       `json:"address"`
	Communication []rawCommunication `json:"communication"`
	Extension     []rawExtension     `json:"extension"`
}

type rawConsent struct {
	Status    string  `json:"status"`
	Scope     rawCC   `json:"scope"`
	Category  []rawCC `json:"category"`
	Patient   *rawRef `json:"patient"`
	DateTime  string  `json:"dateTime"`
	Provision *struct {
		Type string `json:"type"`
	} `json:"provision"`
}

type rawPractitioner struct {
	Identifier []rawIdentifier   `json:"identifier"`
	Name       []rawHumanName    `json:"name"`
	Telecom    []rawContactPoint `json:"telecom"`
}

type rawPractitionerRole struct {
	Identifier   []rawIdentifier   `json:"identifier"`
	Practitioner *rawRef           `json:"practitioner"`
	Organization *rawRef           `json:"organization"`
	Code         []rawCC           `json:"code"`
	Telecom      []rawContactPoint `json:"telecom"`
}

type rawOrganization struct {
	Identifier []rawIdentifier   `json:"identifier"`
	Name       string            `json:"name"`
	Telecom    []rawContactPoint `json:"telecom"`
}

// rawCoded covers the resources a reasonReference may point to (Condition, Observation): their code.
type rawCoded struct {
	Code *rawCC `json:"code"`
}

// rawIdentified is any resource's identifier list (performer matching).
type rawIdentified struct {
	Identifier []rawIdentifier `json:"identifier"`
}

// decodeAs decodes a contained resource into v. The fhir stage already checked its structure; a resource
// that still fails to decode is read as empty rather than trusted halfway.
func decodeAs[T any](r fhir.RawResource) T {
	var v T
	if err := json.Unmarshal(r.JSON, &v); err != nil {
		var zero T
		return zero
	}
	return v
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func fromModelRef(r *models.Reference) rawRef {
	if r == nil {
		return rawRef{}
	}
	out := rawRef{Reference: str(r.Reference), Type: str(r.Type), Display: str(r.Display)}
	if r.Identifier != nil {
		out.Identifier = &rawIdentifier{System: str(r.Identifier.System), Value: str(r.Identifier.Value)}
	}
	return out
}

func fromModelCC(c models.CodeableConcept) rawCC {
	out := rawCC{Text: str(c.Text)}
	for _, cd := range c.Coding {
		out.Coding = append(out.Coding, rawCoding{System: str(cd.System), Code: str(cd.Code), Display: str(cd.Display)})
	}
	return out
}

// refKind classifies a Reference.reference.
type refKind int

const (
	refNone    refKind = iota + 1 // no reference string (logical or display-only)
	refLocal                      // "#id": a contained resource
	refURN                        // "urn:uuid:…" / "urn:oid:…": a Bundle entry that was not moved into contained
	refLiteral                    // "Type/id" or an absolute URL: a resource on another server
)

func kindOf(ref string) refKind {
	switch {
	case ref == "":
		return refNone
	case strings.HasPrefix(ref, "#"):
		return refLocal
	case strings.HasPrefix(ref, "urn:"):
		return refURN
	default:
		return refLiteral
	}
}

// literalType returns the resource type named by a literal reference ("Patient/1", "https://x/fhir/Patient/1",
// "Patient/1/_history/2"), or "".
func literalType(ref string) string {
	ref, _, _ = strings.Cut(ref, "?")
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(strings.TrimSuffix(ref, "/"), "/")
	if len(parts) < 2 {
		return ""
	}
	t := parts[len(parts)-2]
	if t == "" || t[0] < 'A' || t[0] > 'Z' {
		return ""
	}
	return t
}

// resolved is a reference looked up against the submission's contained resources.
type resolved struct {
	kind  refKind
	ref   rawRef
	res   fhir.RawResource // when kind == refLocal and found
	found bool
	// typ is the referenced resource type as best known: the contained resource's, else Reference.type,
	// else the type in a literal reference.
	typ string
}

// ctx is one Build's view of the submission: contained resources and where each sits in the stored JSON.
type ctx struct {
	sub   *fhir.Submission
	index map[string]int // contained id -> position in ServiceRequest.contained
}

func newCtx(sub *fhir.Submission) *ctx {
	c := &ctx{sub: sub, index: map[string]int{}}
	if len(sub.ContainedIDs) == len(sub.Contained) && sub.ContainedIDs != nil {
		for i, id := range sub.ContainedIDs {
			c.index[id] = i
		}
		return c
	}
	var shape struct {
		Contained []struct {
			ID string `json:"id"`
		} `json:"contained"`
	}
	if err := json.Unmarshal(sub.Raw, &shape); err == nil {
		for i, r := range shape.Contained {
			c.index[r.ID] = i
		}
	}
	return c
}

func (c *ctx) resolve(r rawRef) resolved {
	out := resolved{kind: kindOf(r.Reference), ref: r, typ: r.Type}
	switch out.kind {
	case refLocal:
		if res, ok := c.sub.Resolve(r.Reference); ok {
			out.res, out.found = res, true
			out.typ = res.ResourceType
		}
	case refLiteral:
		if t := literalType(r.Reference); t != "" {
			out.typ = t
		}
	case refNone, refURN:
	}
	return out
}

// containedPath is the FHIRPath of a contained resource in the stored ServiceRequest.
func (c *ctx) containedPath(id string) string {
	if i, ok := c.index[id]; ok {
		return "ServiceRequest.contained[" + strconv.Itoa(i) + "]"
	}
	return "ServiceRequest.contained.where(id = '" + id + "')"
}

func (c *ctx) resPath(r resolved) string { return c.containedPath(r.res.ID) }

// ccText is what a person reads for a CodeableConcept: its text, else the first coding's display, else code.
func ccText(c rawCC) string {
	if t := strings.TrimSpace(c.Text); t != "" {
		return t
	}
	for _, cd := range c.Coding {
		if cd.Display != "" {
			return cd.Display
		}
	}
	for _, cd := range c.Coding {
		if cd.Code != "" {
			return cd.Code
		}
	}
	return ""
}

// concepts renders a CodeableConcept as one Concept per coding (display falling back to the text), followed
// by a text-only Concept when the text says something no coding's display does.
func concepts(c rawCC) []Concept {
	var out []Concept
	for _, cd := range c.Coding {
		if cd.Code == "" && cd.Display == "" {
			continue
		}
		d := cd.Display
		if d == "" {
			d = strings.TrimSpace(c.Text)
		}
		out = append(out, Concept{System: cd.System, Code: cd.Code, Display: d})
	}
	text := strings.TrimSpace(c.Text)
	if text != "" && !slices.ContainsFunc(out, func(k Concept) bool { return k.Display == text }) {
		out = append(out, Concept{Display: text})
	}
	return out
}
