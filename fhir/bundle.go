package fhir

import (
	"encoding/json"
	"strconv"
)

// BundleType is the Bundle.type of a Bundle socialrx returns. The zero value is invalid.
type BundleType string

// Bundle types socialrx returns.
const (
	BundleSearchset           BundleType = "searchset"
	BundleTransactionResponse BundleType = "transaction-response"
	BundleHistory             BundleType = "history"
)

// Valid reports whether t is a Bundle type socialrx returns.
func (t BundleType) Valid() bool {
	switch t {
	case BundleSearchset, BundleTransactionResponse, BundleHistory:
		return true
	}
	return false
}

// SearchMode is Bundle.entry.search.mode. The zero value is invalid.
type SearchMode string

// Search modes.
const (
	SearchMatch   SearchMode = "match"
	SearchInclude SearchMode = "include"
	SearchOutcome SearchMode = "outcome"
)

// Valid reports whether m is an R4 search mode.
func (m SearchMode) Valid() bool {
	switch m {
	case SearchMatch, SearchInclude, SearchOutcome:
		return true
	}
	return false
}

// Bundle is the wire form of the Bundles socialrx returns (search results, transaction responses, histories).
type Bundle struct {
	ResourceType string        `json:"resourceType"` // always "Bundle"
	ID           string        `json:"id,omitempty"`
	Meta         *Meta         `json:"meta,omitempty"`
	Type         BundleType    `json:"type"`
	Timestamp    string        `json:"timestamp,omitempty"` // FHIR instant
	Total        *int          `json:"total,omitempty"`     // searchset only; a pointer so that 0 is sent
	Link         []BundleLink  `json:"link,omitempty"`
	Entry        []BundleEntry `json:"entry,omitempty"`
}

// BundleLink is Bundle.link (relation "self", "next", "previous").
type BundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// BundleEntry is Bundle.entry.
type BundleEntry struct {
	FullURL  string               `json:"fullUrl,omitempty"`
	Resource json.RawMessage      `json:"resource,omitempty"`
	Search   *BundleEntrySearch   `json:"search,omitempty"`
	Request  *BundleEntryRequest  `json:"request,omitempty"`
	Response *BundleEntryResponse `json:"response,omitempty"`
}

// BundleEntryRequest is Bundle.entry.request: in a history Bundle, the interaction that made the version.
type BundleEntryRequest struct {
	Method string `json:"method"` // POST, PUT, DELETE …
	URL    string `json:"url"`    // e.g. "Task" (create) or "Task/123" (update)
}

// BundleEntrySearch is Bundle.entry.search.
type BundleEntrySearch struct {
	Mode SearchMode `json:"mode,omitempty"`
}

// BundleEntryResponse is Bundle.entry.response of a transaction-response.
type BundleEntryResponse struct {
	Status       string          `json:"status"`             // e.g. "201 Created"; see EntryStatus
	Location     string          `json:"location,omitempty"` // e.g. "ServiceRequest/123/_history/1"
	Etag         string          `json:"etag,omitempty"`     // e.g. `W/"1"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"` // an OperationOutcome
}

// NewSearchset returns a searchset Bundle with its total, links (self first, then next/previous) and entries.
func NewSearchset(total int, links []BundleLink, entries []BundleEntry) Bundle {
	return Bundle{ResourceType: "Bundle", Type: BundleSearchset, Total: &total, Link: links, Entry: entries}
}

// NewTransactionResponse returns a transaction-response Bundle with one entry per request entry, in order.
func NewTransactionResponse(entries []BundleEntry) Bundle {
	return Bundle{ResourceType: "Bundle", Type: BundleTransactionResponse, Entry: entries}
}

// EntryStatus renders the status of one entry of a transaction response as Bundle.entry.response.status
// ("201 Created"): the HTTP status code and, for the codes an entry can have, its reason phrase (RFC 9110).
func EntryStatus(code int) string {
	text := ""
	switch code {
	case 200:
		text = "OK"
	case 201:
		text = "Created"
	case 204:
		text = "No Content"
	case 304:
		text = "Not Modified"
	case 400:
		text = "Bad Request"
	case 404:
		text = "Not Found"
	case 409:
		text = "Conflict"
	case 412:
		text = "Precondition Failed"
	case 422:
		text = "Unprocessable Content"
	}
	if text == "" {
		return strconv.Itoa(code)
	}
	return strconv.Itoa(code) + " " + text
}
