package fhirapi

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// Resource types that are searched.
const (
	typeServiceRequest = "ServiceRequest"
	typeTask           = "Task"
)

const (
	defaultCount = 50
	maxCount     = 500
)

// searchParam is one declared search parameter. The table (searchParams) drives the parsing of every search
// (parseSearch), the CapabilityStatement's searchParam lists (capability.go) and the search section of the
// route documentation (docs/fhir-search.md, kept in step by TestSearchParameterDocs).
type searchParam struct {
	Name string
	// Modifiers are the modifiers accepted besides none (e.g. "identifier").
	Modifiers []string
	// Types are the resource types it applies to.
	Types []string
	Type  fhir.SearchParamType
	// Doc describes it in the CapabilityStatement; "" for a control parameter that is not declared there.
	Doc string
	// Repeat: the parameter may be given several times (values combine); otherwise exactly one non-empty
	// value is required.
	Repeat bool
	// AnyModifier: control parameters accepted with any modifier (and ignored).
	AnyModifier bool
	// Accept, when set, decides whether the values are taken at all (else the parameter is unknown).
	Accept func(vals []string) bool
	// apply applies the values to the search (adding issues for bad values).
	apply func(p *searchParse, key, modifier string, vals []string)
}

// searchParams is the table of every search parameter the FHIR API takes.
var searchParams = []searchParam{
	{Name: "_id", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamToken, Doc: "logical id",
		apply: func(p *searchParse, key, _ string, vals []string) {
			if p.typ == typeTask {
				p.q.TaskID = vals[0]
			} else {
				p.q.ServiceRequestID = vals[0]
			}
			p.use(key, vals)
		}},
	{Name: "_lastUpdated", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamDate, Repeat: true,
		Doc: "prefixes gt, ge, lt, le; repeat for a range", apply: applyLastUpdated},
	{Name: "patient", Modifiers: []string{"identifier"}, Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamReference,
		Doc: "the subject reference as sent, or patient:identifier=https://fhir.nhs.uk/Id/nhs-number|NNNNNNNNNN", apply: applyPatient},
	{Name: "requester", Modifiers: []string{"identifier"}, Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamReference,
		Doc: "the requester reference as sent, or requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|ODS for a practice", apply: applyRequester},
	{Name: "identifier", Types: []string{typeServiceRequest}, Type: fhir.SearchParamToken, Doc: "ServiceRequest.identifier, system|value or value",
		apply: func(p *searchParse, key, _ string, vals []string) {
			p.use(key, vals)
			id := referral.ParseToken(vals[0])
			if id.Value == "" {
				p.bad(key, "identifier needs a value: [system|]value")
				return
			}
			p.q.Identifier = &id
		}},
	{Name: "focus", Types: []string{typeTask}, Type: fhir.SearchParamReference, Doc: "ServiceRequest/{id}",
		apply: func(p *searchParse, key, _ string, vals []string) {
			p.use(key, vals)
			id := strings.TrimPrefix(vals[0], "ServiceRequest/")
			if id == "" {
				p.bad(key, "focus must name a ServiceRequest: ServiceRequest/{id}")
				return
			}
			p.q.ServiceRequestID = id
		}},
	{Name: "owner", Modifiers: []string{"identifier"}, Types: []string{typeTask}, Type: fhir.SearchParamReference,
		Doc: "a community service id, or owner:identifier=system|value of its directory identifier",
		apply: func(p *searchParse, key, modifier string, vals []string) {
			p.use(key, vals)
			svc, found := p.svc.ServiceByReference(vals[0], modifier == "identifier")
			if !found {
				p.q.None = true // no such service: nothing matches
				return
			}
			p.q.ServiceID = svc
		}},
	{Name: "status", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamToken, Doc: "comma-separated Task statuses",
		apply: func(p *searchParse, key, _ string, vals []string) {
			p.use(key, vals)
			for _, st := range strings.Split(vals[0], ",") {
				if p.typ != typeTask {
					p.srStatuses = append(p.srStatuses, st)
					continue
				}
				ts := mapping.TaskStatus(st)
				if !ts.Valid() {
					p.bad(key, fmt.Sprintf("%q is not a Task status socialrx uses", st))
					continue
				}
				p.q.Statuses = append(p.q.Statuses, ts)
			}
		}},
	{Name: "code", Types: []string{typeTask}, Type: fhir.SearchParamToken, Doc: "always http://hl7.org/fhir/CodeSystem/task-code|fulfill",
		apply: func(p *searchParse, key, _ string, vals []string) {
			p.use(key, vals)
			if c := referral.ParseToken(vals[0]); c.Value != "fulfill" || (c.System != "" && c.System != "http://hl7.org/fhir/CodeSystem/task-code") {
				p.q.None = true // every referral Task has code fulfill
			}
		}},
	{Name: "_count", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamNumber,
		apply: func(p *searchParse, key, _ string, vals []string) {
			n, err := strconv.Atoi(vals[0])
			if err != nil || n < 1 {
				p.bad(key, "_count must be a whole number of at least 1")
				return
			}
			p.use(key, vals)
			p.q.Limit = min(n, maxCount)
		}},
	{Name: "_cursor", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamSpecial,
		apply: func(p *searchParse, key, _ string, vals []string) {
			c, err := web.DecodeCursor(vals[0])
			if err != nil {
				p.bad(key, "_cursor is not a cursor this server issued; follow the Bundle's next link unchanged")
				return
			}
			p.q.After = &c
		}},
	// Accepted and ignored: socialrx only speaks JSON.
	{Name: "_format", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamSpecial, Repeat: true, AnyModifier: true},
	{Name: "_pretty", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamSpecial, Repeat: true, AnyModifier: true},
	{Name: "_summary", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamSpecial, Repeat: true, AnyModifier: true,
		Accept: func(vals []string) bool { return vals[0] == "false" }},
}

// declaredParams are the parameters of typ the CapabilityStatement declares, in table order.
func declaredParams(typ string) []fhir.SearchParam {
	var out []fhir.SearchParam
	for _, sp := range searchParams {
		if sp.Doc != "" && slices.Contains(sp.Types, typ) {
			out = append(out, fhir.SearchParam{Name: sp.Name, Type: sp.Type, Documentation: sp.Doc})
		}
	}
	return out
}

// findParam is the table entry for a query key's name and modifier on typ.
func findParam(typ, name, modifier string, vals []string) (searchParam, bool) {
	for _, sp := range searchParams {
		if sp.Name != name || !slices.Contains(sp.Types, typ) {
			continue
		}
		if modifier != "" && !sp.AnyModifier && !slices.Contains(sp.Modifiers, modifier) {
			continue
		}
		if sp.Accept != nil && !sp.Accept(vals) {
			continue
		}
		return sp, true
	}
	return searchParam{}, false
}

// searchParse is one search being parsed.
type searchParse struct {
	typ        string
	svc        *referral.Service
	q          referral.Query
	used       url.Values // parameters applied, echoed in the self link
	srStatuses []string   // ServiceRequest status filter (applied after the query)
	issues     []fhir.Issue
}

func (p *searchParse) use(key string, vals []string) { p.used[key] = vals }

func (p *searchParse) bad(param, msg string) {
	p.issues = append(p.issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeInvalid, Diagnostics: msg, Expression: []string{param}})
}

// parseSearch turns query parameters into a search, through the table. Unknown parameters are a 400 naming
// them, unless the client sent Prefer: handling=lenient. The caller's scope is applied by the use case.
func parseSearch(svc *referral.Service, typ string, query url.Values, lenient bool) (*searchParse, error) {
	p := &searchParse{typ: typ, svc: svc, used: url.Values{}}
	p.q.Limit = defaultCount
	keys := make([]string, 0, len(query))
	for k := range query {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		vals := query[key]
		name, modifier, _ := strings.Cut(key, ":")
		sp, ok := findParam(typ, name, modifier, vals)
		switch {
		case !ok:
			if !lenient {
				p.bad(key, fmt.Sprintf("search parameter %q is not supported for %s (see /fhir/metadata); send Prefer: handling=lenient to ignore it", key, typ))
			}
		case !sp.Repeat && (len(vals) != 1 || vals[0] == ""):
			p.bad(key, fmt.Sprintf("%s takes exactly one non-empty value", key))
		case sp.apply != nil:
			sp.apply(p, key, modifier, vals)
		}
	}
	if len(p.issues) > 0 {
		return p, &fhir.Error{Kind: fault.Invalid, Issues: p.issues}
	}
	return p, nil
}

// applyLastUpdated applies each _lastUpdated value with its prefix (eq, gt, ge, lt, le; default eq meaning
// the value's whole precision, treated here as ge start-of-value).
func applyLastUpdated(p *searchParse, key, _ string, vals []string) {
	for _, v := range vals {
		if err := lastUpdated(&p.q, v); err != nil {
			p.bad(key, err.Error())
		}
	}
	p.use(key, vals)
}

func lastUpdated(q *referral.Query, v string) error {
	prefix := "eq"
	if len(v) > 2 && strings.Contains("eqgtgeltlesaeb", v[:2]) && (v[2] >= '0' && v[2] <= '9') {
		prefix, v = v[:2], v[2:]
	}
	t, err := parseFHIRTime(v)
	if err != nil {
		return fmt.Errorf("_lastUpdated %q is not a FHIR dateTime/instant (e.g. gt2026-11-21T10:00:00Z)", v)
	}
	switch prefix {
	case "gt", "sa":
		q.UpdatedAfter = t
	case "ge", "eq":
		q.UpdatedFrom = t
	case "lt", "eb":
		q.UpdatedBefore = t
	case "le":
		q.UpdatedUntil = t
	default:
		return fmt.Errorf("_lastUpdated prefix %q is not supported (use gt, ge, lt or le)", prefix)
	}
	return nil
}

func parseFHIRTime(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z07:00", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("bad time %q", v)
}

// applyPatient: patient (the subject reference as sent) or patient:identifier (an NHS number).
func applyPatient(p *searchParse, key, modifier string, vals []string) {
	p.use(key, vals)
	if modifier != "identifier" {
		p.q.PatientRef = vals[0]
		return
	}
	id := referral.ParseToken(vals[0])
	switch {
	case id.System != "" && id.System != mapping.NHSNumberSystem:
		p.bad(key, "patient:identifier supports the NHS number system "+mapping.NHSNumberSystem)
	case id.Value == "":
		p.bad(key, "patient:identifier needs a value: "+mapping.NHSNumberSystem+"|<NHS number>")
	default:
		p.q.PatientNHSNumber = id.Value
	}
}

// applyRequester: requester (the reference as sent) or requester:identifier (a practice's ODS code).
func applyRequester(p *searchParse, key, modifier string, vals []string) {
	p.use(key, vals)
	if modifier != "identifier" {
		p.q.RequesterRef = vals[0]
		return
	}
	id := referral.ParseToken(vals[0])
	switch {
	case id.System != "" && id.System != mapping.ODSOrganizationSystem:
		p.bad(key, "requester:identifier supports the ODS organisation code system "+mapping.ODSOrganizationSystem)
	case id.Value == "":
		p.bad(key, "requester:identifier needs a value: "+mapping.ODSOrganizationSystem+"|<ODS code>")
	default:
		p.q.RequesterODS = id.Value
	}
}
