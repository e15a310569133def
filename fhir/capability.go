package fhir

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// TypeInteraction is a resource-level RESTful interaction (CapabilityStatement.rest.resource.interaction.code).
// The zero value is invalid.
type TypeInteraction string

// Resource-level interactions (http://hl7.org/fhir/restful-interaction).
const (
	InteractionRead            TypeInteraction = "read"
	InteractionVRead           TypeInteraction = "vread"
	InteractionUpdate          TypeInteraction = "update"
	InteractionPatch           TypeInteraction = "patch"
	InteractionDelete          TypeInteraction = "delete"
	InteractionHistoryInstance TypeInteraction = "history-instance"
	InteractionHistoryType     TypeInteraction = "history-type"
	InteractionCreate          TypeInteraction = "create"
	InteractionSearchType      TypeInteraction = "search-type"
)

// Valid reports whether i is an R4 resource-level interaction.
func (i TypeInteraction) Valid() bool {
	switch i {
	case InteractionRead, InteractionVRead, InteractionUpdate, InteractionPatch, InteractionDelete,
		InteractionHistoryInstance, InteractionHistoryType, InteractionCreate, InteractionSearchType:
		return true
	}
	return false
}

// SystemInteraction is a system-level interaction (CapabilityStatement.rest.interaction.code). The zero value
// is invalid.
type SystemInteraction string

// System-level interactions.
const (
	InteractionTransaction   SystemInteraction = "transaction"
	InteractionBatch         SystemInteraction = "batch"
	InteractionSearchSystem  SystemInteraction = "search-system"
	InteractionHistorySystem SystemInteraction = "history-system"
)

// Valid reports whether i is an R4 system-level interaction.
func (i SystemInteraction) Valid() bool {
	switch i {
	case InteractionTransaction, InteractionBatch, InteractionSearchSystem, InteractionHistorySystem:
		return true
	}
	return false
}

// SearchParamType is a search parameter type (http://hl7.org/fhir/search-param-type). The zero value is
// invalid.
type SearchParamType string

// Search parameter types.
const (
	SearchParamNumber    SearchParamType = "number"
	SearchParamDate      SearchParamType = "date"
	SearchParamString    SearchParamType = "string"
	SearchParamToken     SearchParamType = "token"
	SearchParamReference SearchParamType = "reference"
	SearchParamComposite SearchParamType = "composite"
	SearchParamQuantity  SearchParamType = "quantity"
	SearchParamURI       SearchParamType = "uri"
	SearchParamSpecial   SearchParamType = "special"
)

// Valid reports whether t is an R4 search parameter type.
func (t SearchParamType) Valid() bool {
	switch t {
	case SearchParamNumber, SearchParamDate, SearchParamString, SearchParamToken, SearchParamReference,
		SearchParamComposite, SearchParamQuantity, SearchParamURI, SearchParamSpecial:
		return true
	}
	return false
}

// Versioning is CapabilityStatement.rest.resource.versioning. The zero value means "not stated".
type Versioning string

// Versioning policies.
const (
	VersioningNone            Versioning = "no-version"
	VersioningVersioned       Versioning = "versioned"
	VersioningVersionedUpdate Versioning = "versioned-update"
)

// Valid reports whether v is empty or an R4 versioning policy.
func (v Versioning) Valid() bool {
	switch v {
	case "", VersioningNone, VersioningVersioned, VersioningVersionedUpdate:
		return true
	}
	return false
}

// CapabilityOptions is what the server supports; NewCapabilityStatement turns it into the statement served at
// GET /fhir/metadata.
type CapabilityOptions struct {
	BaseURL         string    // the FHIR base, e.g. "https://socialrx.example.org/fhir" (implementation.url)
	Description     string    // implementation.description; defaults to a socialrx description
	SoftwareName    string    // defaults to "socialrx"
	SoftwareVersion string    // e.g. the build version
	Date            time.Time // when the statement was last changed (e.g. build or start time); required
	Publisher       string    // optional
	// Resources lists each supported resource type with its interactions and search parameters.
	Resources []ResourceCapability
	// SystemInteractions lists whole-system interactions, e.g. transaction for POST [base].
	SystemInteractions []SystemInteraction
	// SMART, when set, declares SMART Backend Services (rest.security.service SMART-on-FHIR); TokenURL, when
	// also set, is advertised with the oauth-uris extension.
	SMART    bool
	TokenURL string
	// SecurityDescription documents authentication (rest.security.description).
	SecurityDescription string
}

// ResourceCapability is one supported resource type.
type ResourceCapability struct {
	Type              string // an R4 resource type
	Profile           string // optional canonical URL
	Documentation     string // optional
	Interactions      []TypeInteraction
	Versioning        Versioning
	ConditionalCreate bool // If-None-Exist
	ConditionalUpdate bool
	SearchParams      []SearchParam
	// SearchInclude and SearchRevInclude are the _include and _revinclude values supported (e.g. Task:focus).
	SearchInclude    []string
	SearchRevInclude []string
	// Operations are the operations on this type (e.g. $status), each with its OperationDefinition canonical.
	Operations []Operation
	// Topics are the SubscriptionTopic canonicals offered (Subscriptions R5 Backport IG, on Subscription).
	Topics []string
}

// Operation is one supported operation (CapabilityStatement.rest.resource.operation).
type Operation struct {
	Name       string // without the $
	Definition string // the OperationDefinition's canonical URL
}

// BackportTopicCanonicalURL is the extension with which an R4 CapabilityStatement lists a SubscriptionTopic the
// server offers (Subscriptions R5 Backport IG).
const BackportTopicCanonicalURL = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"

// SearchParam is one supported search parameter.
type SearchParam struct {
	Name          string
	Type          SearchParamType
	Definition    string // optional canonical URL of the SearchParameter
	Documentation string // optional
}

// CapabilityStatement is the wire form of the CapabilityStatement socialrx serves.
type CapabilityStatement struct {
	ResourceType   string                    `json:"resourceType"` // always "CapabilityStatement"
	Status         string                    `json:"status"`       // "active"
	Date           string                    `json:"date"`
	Publisher      string                    `json:"publisher,omitempty"`
	Kind           string                    `json:"kind"` // "instance"
	Software       *CapabilitySoftware       `json:"software,omitempty"`
	Implementation *CapabilityImplementation `json:"implementation,omitempty"`
	FHIRVersion    string                    `json:"fhirVersion"` // "4.0.1"
	Format         []string                  `json:"format"`
	Rest           []CapabilityRest          `json:"rest"`
}

// CapabilitySoftware is CapabilityStatement.software.
type CapabilitySoftware struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// CapabilityImplementation is CapabilityStatement.implementation.
type CapabilityImplementation struct {
	Description string `json:"description"`
	URL         string `json:"url,omitempty"`
}

// CapabilityRest is CapabilityStatement.rest.
type CapabilityRest struct {
	Mode        string                  `json:"mode"` // "server"
	Security    *CapabilitySecurity     `json:"security,omitempty"`
	Resource    []CapabilityResource    `json:"resource,omitempty"`
	Interaction []CapabilityInteraction `json:"interaction,omitempty"`
}

// CapabilitySecurity is CapabilityStatement.rest.security.
type CapabilitySecurity struct {
	Extension   []Extension       `json:"extension,omitempty"`
	Service     []CodeableConcept `json:"service,omitempty"`
	Description string            `json:"description,omitempty"`
}

// Extension is a FHIR Extension with the value types socialrx emits.
type Extension struct {
	URL            string      `json:"url"`
	Extension      []Extension `json:"extension,omitempty"`
	ValueURI       string      `json:"valueUri,omitempty"`
	ValueCanonical string      `json:"valueCanonical,omitempty"`
	ValueCode      string      `json:"valueCode,omitempty"`
}

// CapabilityResource is CapabilityStatement.rest.resource.
type CapabilityResource struct {
	Extension         []Extension             `json:"extension,omitempty"`
	Type              string                  `json:"type"`
	Profile           string                  `json:"profile,omitempty"`
	Documentation     string                  `json:"documentation,omitempty"`
	Interaction       []CapabilityInteraction `json:"interaction,omitempty"`
	Versioning        Versioning              `json:"versioning,omitempty"`
	ConditionalCreate bool                    `json:"conditionalCreate,omitempty"`
	ConditionalUpdate bool                    `json:"conditionalUpdate,omitempty"`
	SearchInclude     []string                `json:"searchInclude,omitempty"`
	SearchRevInclude  []string                `json:"searchRevInclude,omitempty"`
	SearchParam       []CapabilitySearchParam `json:"searchParam,omitempty"`
	Operation         []CapabilityOperation   `json:"operation,omitempty"`
}

// CapabilityOperation is CapabilityStatement.rest.resource.operation.
type CapabilityOperation struct {
	Name       string `json:"name"`
	Definition string `json:"definition"`
}

// CapabilityInteraction is an interaction entry (resource- or system-level).
type CapabilityInteraction struct {
	Code string `json:"code"`
}

// CapabilitySearchParam is CapabilityStatement.rest.resource.searchParam.
type CapabilitySearchParam struct {
	Name          string          `json:"name"`
	Definition    string          `json:"definition,omitempty"`
	Type          SearchParamType `json:"type"`
	Documentation string          `json:"documentation,omitempty"`
}

// ErrCapability is returned (wrapped) by NewCapabilityStatement for options that cannot make a valid statement.
var ErrCapability = errors.New("fhir: invalid capability options")

// NewCapabilityStatement builds the server's CapabilityStatement (status active, kind instance, fhirVersion
// 4.0.1, format json) from what the server supports. It is pure: the date comes from the options.
func NewCapabilityStatement(o CapabilityOptions) (CapabilityStatement, error) {
	if o.Date.IsZero() {
		return CapabilityStatement{}, fmt.Errorf("%w: date is required", ErrCapability)
	}
	if !absoluteHTTPURL(o.BaseURL) {
		return CapabilityStatement{}, fmt.Errorf("%w: base URL must be an absolute http(s) URL", ErrCapability)
	}
	name := o.SoftwareName
	if name == "" {
		name = "socialrx"
	}
	desc := o.Description
	if desc == "" {
		desc = "socialrx: FHIR R4 social-prescribing referral adapter"
	}
	rest := CapabilityRest{Mode: "server"}
	if o.SMART || o.SecurityDescription != "" {
		sec := &CapabilitySecurity{Description: o.SecurityDescription}
		if o.SMART {
			sec.Service = []CodeableConcept{{Coding: []Coding{{
				System: "http://terminology.hl7.org/CodeSystem/restful-security-service", Code: "SMART-on-FHIR", Display: "SMART-on-FHIR",
			}}}}
			if o.TokenURL != "" {
				if !absoluteHTTPURL(o.TokenURL) {
					return CapabilityStatement{}, fmt.Errorf("%w: token URL must be an absolute http(s) URL", ErrCapability)
				}
				sec.Extension = []Extension{{
					URL:       "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
					Extension: []Extension{{URL: "token", ValueURI: o.TokenURL}},
				}}
			}
		}
		rest.Security = sec
	}
	for _, r := range o.Resources {
		cr, err := capabilityResource(r)
		if err != nil {
			return CapabilityStatement{}, err
		}
		rest.Resource = append(rest.Resource, cr)
	}
	for _, i := range o.SystemInteractions {
		if !i.Valid() {
			return CapabilityStatement{}, fmt.Errorf("%w: system interaction %q", ErrCapability, i)
		}
		rest.Interaction = append(rest.Interaction, CapabilityInteraction{Code: string(i)})
	}
	cs := CapabilityStatement{
		ResourceType:   "CapabilityStatement",
		Status:         "active",
		Date:           Instant(o.Date),
		Publisher:      o.Publisher,
		Kind:           "instance",
		Software:       &CapabilitySoftware{Name: name, Version: o.SoftwareVersion},
		Implementation: &CapabilityImplementation{Description: desc, URL: o.BaseURL},
		FHIRVersion:    "4.0.1",
		Format:         []string{"json"},
		Rest:           []CapabilityRest{rest},
	}
	return cs, nil
}

// capabilityResource is one resource type's entry of the statement, its options checked.
func capabilityResource(r ResourceCapability) (CapabilityResource, error) {
	if !isResourceType(r.Type) {
		return CapabilityResource{}, fmt.Errorf("%w: %q is not an R4 resource type", ErrCapability, r.Type)
	}
	if !r.Versioning.Valid() {
		return CapabilityResource{}, fmt.Errorf("%w: %s: versioning %q", ErrCapability, r.Type, r.Versioning)
	}
	cr := CapabilityResource{Type: r.Type, Profile: r.Profile, Documentation: r.Documentation, Versioning: r.Versioning,
		ConditionalCreate: r.ConditionalCreate, ConditionalUpdate: r.ConditionalUpdate,
		SearchInclude: r.SearchInclude, SearchRevInclude: r.SearchRevInclude}
	for _, t := range r.Topics {
		if !absoluteHTTPURL(t) {
			return CapabilityResource{}, fmt.Errorf("%w: %s: topic %q is not an absolute URL", ErrCapability, r.Type, t)
		}
		cr.Extension = append(cr.Extension, Extension{URL: BackportTopicCanonicalURL, ValueCanonical: t})
	}
	for _, op := range r.Operations {
		if strings.TrimSpace(op.Name) == "" || !absoluteHTTPURL(op.Definition) {
			return CapabilityResource{}, fmt.Errorf("%w: %s: operation %q needs a name and a definition URL", ErrCapability, r.Type, op.Name)
		}
		cr.Operation = append(cr.Operation, CapabilityOperation(op))
	}
	for _, i := range r.Interactions {
		if !i.Valid() {
			return CapabilityResource{}, fmt.Errorf("%w: %s: interaction %q", ErrCapability, r.Type, i)
		}
		cr.Interaction = append(cr.Interaction, CapabilityInteraction{Code: string(i)})
	}
	for _, p := range r.SearchParams {
		if !p.Type.Valid() || strings.TrimSpace(p.Name) == "" {
			return CapabilityResource{}, fmt.Errorf("%w: %s: search parameter %q of type %q", ErrCapability, r.Type, p.Name, p.Type)
		}
		cr.SearchParam = append(cr.SearchParam, CapabilitySearchParam{Name: p.Name, Definition: p.Definition, Type: p.Type, Documentation: p.Documentation})
	}
	return cr, nil
}
