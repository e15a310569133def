package fhirapi

import (
	"fmt"
	"slices"
	"strings"

	"github.com/socialrx/socialrx/server/internal/web"
)

// Reference renders the FHIR API's routes (api.go) and search parameters (params.go's table) as the Markdown of
// docs/fhir-api.md, so that the documentation is generated from what the code declares (TestReferenceDoc keeps
// the file in step; regenerate with go test ./server/fhirapi -run TestReferenceDoc -update).
func (a *API) Reference() string {
	var b strings.Builder
	b.WriteString("# FHIR API reference\n\nGenerated from `server/fhirapi` (routes in `api.go`, search parameters in `params.go`); do not edit by hand.\n\n")
	b.WriteString("## Routes\n\n| path | methods | who |\n|---|---|---|\n")
	for _, rt := range a.Routes() {
		methods := make([]string, 0, len(rt.Methods))
		for m := range rt.Methods {
			methods = append(methods, m)
		}
		slices.Sort(methods)
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", rt.Path, strings.Join(methods, ", "), accessText(rt.Access))
	}
	b.WriteString("\nEvery `[type]` search is also `POST [type]/_search` with the parameters as an `application/x-www-form-urlencoded` body (and in the URL). ")
	b.WriteString("A searchset carries `total` (every match, whatever the page), a `self` link that repeats the search with its page cursor and a `next` link while more match. ")
	b.WriteString("`[type]/{id}/_history` lists every version (newest first) and `[type]/{id}/_history/{vid}` reads one as it was served. ")
	b.WriteString("The base also answers with a trailing slash (`POST /fhir/`, `GET /fhir/Task/`). socialrx speaks FHIR JSON only: `_format=xml` or an `Accept` without JSON is 406.\n")
	for _, typ := range []string{typeServiceRequest, typeTask, typeHealthcareService, typeDocumentReference} {
		fmt.Fprintf(&b, "\n## Searching %s\n\n| parameter | type | meaning |\n|---|---|---|\n", typ)
		for _, sp := range searchParams {
			if !slices.Contains(sp.Types, typ) {
				continue
			}
			name := "`" + sp.Name + "`"
			for _, m := range sp.Modifiers {
				name += ", `" + sp.Name + ":" + m + "`"
			}
			doc := sp.Doc
			if doc == "" {
				doc = controlDoc(sp.Name)
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", name, sp.Type, strings.ReplaceAll(doc, "|", `\|`))
		}
	}
	fmt.Fprintf(&b, "\n## Searching %s\n\n| parameter | type | meaning |\n|---|---|---|\n", typeMeasureReport)
	for _, sp := range measureReportParams {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", sp.Name, sp.Type, strings.ReplaceAll(sp.Documentation, "|", `\|`))
	}
	fmt.Fprintf(&b, "\n## Searching %s\n\n| parameter | type | meaning |\n|---|---|---|\n", typeAuditEvent)
	for _, sp := range auditEventParams {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", sp.Name, sp.Type, strings.ReplaceAll(sp.Documentation, "|", `\|`))
	}
	fmt.Fprintf(&b, "| `_count` | number | page size, 1 to %d (default %d) |\n", maxAuditCount, defaultAuditCount)
	b.WriteString("| `_cursor` | special | the position of the next page: follow the Bundle's `next` link unchanged |\n")
	b.WriteString("\nUnknown parameters are a 400 naming them, unless the request sends `Prefer: handling=lenient`.\n")
	return b.String()
}

// controlDoc describes a control parameter the CapabilityStatement does not declare.
func controlDoc(name string) string {
	switch name {
	case "_count":
		return fmt.Sprintf("page size, 1 to %d (default %d); 0 answers the total alone (as `_summary=count`)", maxCount, defaultCount)
	case "_cursor":
		return "the position of the next page: follow the Bundle's `next` link unchanged"
	case "_format":
		return "`json`, `application/fhir+json` or `application/json` (answered as such); anything else is 406"
	case "_pretty":
		return "accepted and ignored"
	case "_summary":
		return "`count` (the total alone, no entries) or `false`"
	case "_total":
		return "`none` (no total), `estimate` or `accurate` (the default: exact)"
	case "_include":
		return "`Task:focus`: each Task's ServiceRequest too (search mode include)"
	case "_revinclude":
		return "`Task:focus`: each ServiceRequest's Task too (search mode include)"
	}
	return ""
}

func accessText(a web.Access) string {
	switch a {
	case web.Public:
		return "anyone"
	case web.AnyClient:
		return "any client (scoped to its practices or service)"
	case web.GPOrAdmin:
		return "GP and admin clients"
	case web.CommunityOnly:
		return "community clients"
	case web.AdminOnly:
		return "admin clients"
	}
	return "?"
}
