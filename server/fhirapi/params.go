package fhirapi

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

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
	// typeDocumentReference is the GP letter (issue 14): read and search by related.
	typeDocumentReference = "DocumentReference"
)

const (
	defaultCount = 50
	maxCount     = 500
	// maxParamValue bounds any search parameter value (the ones matched against indexed strings have their own,
	// tighter limits: fhir.MaxIdentifierValue, fhir.MaxReference).
	maxParamValue = 2048
)

// Code systems of the status search parameters (token system|code).
const (
	taskStatusSystem    = "http://hl7.org/fhir/task-status"
	requestStatusSystem = "http://hl7.org/fhir/request-status"
)

// includeFocus is the one _include (on Task) and _revinclude (on ServiceRequest) socialrx offers: a Task's
// focus is its referral's ServiceRequest.
const includeFocus = "Task:focus"

// searchParam is one declared search parameter. The table (searchParams) drives the parsing of every search
// (parseSearch), the CapabilityStatement's searchParam, searchInclude and searchRevInclude lists
// (capability.go) and the search section of docs/fhir-api.md (reference.go; TestReferenceDoc keeps it in step).
type searchParam struct {
	Name string
	// Modifiers are the modifiers accepted besides none (e.g. "identifier").
	Modifiers []string
	// Types are the resource types it applies to.
	Types []string
	Type  fhir.SearchParamType
	// Doc describes it in the CapabilityStatement; "" for a control parameter that is not declared there.
	Doc string
	// Includes are the values an _include or _revinclude takes (declared as searchInclude/searchRevInclude).
	Includes []string
	// Repeat: the parameter may be given several times (values combine: AND); otherwise exactly one non-empty
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
	{Name: "_id", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamToken, Repeat: true,
		Doc: "logical id; a comma-separated list matches any of them (_id=a,b); repeated, all must hold", apply: applyID},
	{Name: "_lastUpdated", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamDate, Repeat: true,
		Doc:   "meta.lastUpdated, repeat to AND: eq (the default) matches the value's whole precision (a day, a minute, a second …); gt, ge, lt, le, sa, eb compare with an instant given to the second or finer exactly, and with a coarser value as the period it names (gt2026-11-21: from 22 November); values without a time zone are UTC",
		apply: applyLastUpdated},
	{Name: "patient", Modifiers: []string{"identifier"}, Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamReference,
		Doc: "the subject reference as sent, or patient:identifier=https://fhir.nhs.uk/Id/nhs-number|NNNNNNNNNN", apply: applyPatient},
	{Name: "requester", Modifiers: []string{"identifier"}, Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamReference,
		Doc: "the requester reference as sent, or requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|ODS for a practice (ODS codes in any case)", apply: applyRequester},
	{Name: "identifier", Types: []string{typeServiceRequest}, Type: fhir.SearchParamToken, Doc: "ServiceRequest.identifier, system|value or value",
		apply: func(p *searchParse, key, _ string, vals []string) {
			p.use(key, vals)
			id := referral.ParseToken(vals[0])
			if id.Value == "" {
				p.bad(key, "identifier needs a value: [system|]value")
				return
			}
			p.tooLong(key, id.System, fhir.MaxIdentifierSystem)
			p.tooLong(key, id.Value, fhir.MaxIdentifierValue)
			p.q.Identifier = &id
		}},
	{Name: "focus", Types: []string{typeTask}, Type: fhir.SearchParamReference,
		Doc: "ServiceRequest/{id} (or its absolute URL on this server); a comma-separated list matches any", apply: applyFocus},
	{Name: "part-of", Types: []string{typeTask}, Type: fhir.SearchParamReference,
		Doc: "Task/{id} of a link worker's Task: the Tasks of the groups it forwarded the referral to (Task.partOf)", apply: applyPartOf},
	{Name: "owner", Modifiers: []string{"identifier"}, Types: []string{typeTask}, Type: fhir.SearchParamReference,
		Doc: "a community service id, or owner:identifier=system|value of its directory identifier",
		apply: func(p *searchParse, key, modifier string, vals []string) {
			p.use(key, vals)
			svc, found := p.svc.ServiceByReference(p.local(vals[0]), modifier == "identifier")
			if !found {
				p.q.None = true // no such service: nothing matches
				return
			}
			p.q.ServiceID = svc
		}},
	{Name: "status", Types: []string{typeTask}, Type: fhir.SearchParamToken,
		Doc: "Task.status: comma-separated codes, each code or " + taskStatusSystem + "|code", apply: applyTaskStatus},
	{Name: "status", Types: []string{typeServiceRequest}, Type: fhir.SearchParamToken,
		Doc: "ServiceRequest.status (active, revoked, completed, entered-in-error): comma-separated codes, each code or " + requestStatusSystem + "|code", apply: applyRequestStatus},
	{Name: "code", Types: []string{typeTask}, Type: fhir.SearchParamToken, Doc: "always http://hl7.org/fhir/CodeSystem/task-code|fulfill",
		apply: func(p *searchParse, key, _ string, vals []string) {
			p.use(key, vals)
			if c := referral.ParseToken(vals[0]); c.Value != "fulfill" || (c.System != "" && c.System != "http://hl7.org/fhir/CodeSystem/task-code") {
				p.q.None = true // every referral Task has code fulfill
			}
		}},
	{Name: "_include", Types: []string{typeTask}, Type: fhir.SearchParamSpecial, Includes: []string{includeFocus}, apply: applyInclude},
	{Name: "_revinclude", Types: []string{typeServiceRequest}, Type: fhir.SearchParamSpecial, Includes: []string{includeFocus}, apply: applyInclude},
	{Name: "_count", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamNumber,
		apply: func(p *searchParse, key, _ string, vals []string) {
			n, err := strconv.Atoi(vals[0])
			if err != nil || n < 0 {
				p.bad(key, "_count must be a whole number of at least 0")
				return
			}
			p.use(key, vals)
			if n == 0 { // R4: _count=0 is _summary=count
				p.countOnly = true
				return
			}
			p.q.Limit = min(n, maxCount)
		}},
	{Name: "_cursor", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamSpecial,
		apply: func(p *searchParse, key, _ string, vals []string) {
			c, err := web.DecodeCursor(vals[0])
			if err != nil {
				p.bad(key, "_cursor is not a cursor this server issued; follow the Bundle's next link unchanged")
				return
			}
			p.use(key, vals)
			p.q.After = &c
		}},
	{Name: "_summary", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamSpecial,
		Accept: func(vals []string) bool { return len(vals) == 1 && (vals[0] == "count" || vals[0] == "false") },
		apply: func(p *searchParse, key, _ string, vals []string) {
			p.use(key, vals)
			p.countOnly = p.countOnly || vals[0] == "count"
		}},
	{Name: "_total", Types: []string{typeServiceRequest, typeTask}, Type: fhir.SearchParamSpecial,
		Accept: func(vals []string) bool {
			return len(vals) == 1 && (vals[0] == "none" || vals[0] == "estimate" || vals[0] == "accurate")
		},
		apply: func(p *searchParse, key, _ string, vals []string) {
			p.use(key, vals)
			p.noTotal = vals[0] == "none"
		}},
	// _format is content negotiation (negotiate.go: json only, anything else 406); _pretty is accepted and
	// ignored (the JSON is compact).
	{Name: "_format", Types: []string{typeServiceRequest, typeTask, typeHealthcareService, typeDocumentReference}, Type: fhir.SearchParamSpecial, Repeat: true, AnyModifier: true},
	{Name: "_pretty", Types: []string{typeServiceRequest, typeTask, typeHealthcareService, typeDocumentReference}, Type: fhir.SearchParamSpecial, Repeat: true, AnyModifier: true},
	{Name: "related", Types: []string{typeDocumentReference}, Type: fhir.SearchParamReference,
		Doc: "required: the referral's ServiceRequest/{id} (or its absolute URL on this server; a comma-separated list matches any): its GP letter, once the referral closed with one", apply: applyRelated},
	{Name: "_id", Types: []string{typeHealthcareService}, Type: fhir.SearchParamToken,
		Doc: "a community service's directory id; a comma-separated list matches any", apply: applyHealthcareID},
	{Name: "service-type", Types: []string{typeHealthcareService}, Type: fhir.SearchParamToken,
		Doc: "a referral code the service takes (HealthcareService.type), system|code or code; a comma-separated list matches any", apply: applyServiceType},
	{Name: "code", Types: []string{typeHealthcareService}, Type: fhir.SearchParamToken,
		Doc: "the same as service-type (socialrx's name): a referral code the service takes, system|code or code", apply: applyServiceType},
	{Name: "capacity", Types: []string{typeHealthcareService}, Type: fhir.SearchParamToken,
		Doc: "the service's capacity now (socialrx's parameter): open, waitlist, full or paused (" + capacitySearchSystem + "), or the SDOH capacity-status codes capacity, waitlist or no-capacity (" + mapping.SDOHCapacityCodeSystem + "); a comma-separated list matches any", apply: applyCapacity},
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

// declaredIncludes are the values of the table's _include (or _revinclude, by name) on typ.
func declaredIncludes(typ, name string) []string {
	for _, sp := range searchParams {
		if sp.Name == name && slices.Contains(sp.Types, typ) {
			return sp.Includes
		}
	}
	return nil
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
	typ       string
	base      string // this server's FHIR base: absolute references under it are local
	svc       *referral.Service
	q         referral.Query
	hs        healthcareQuery // a HealthcareService search's filters
	used      url.Values      // parameters applied, echoed in the self link (the page cursor included)
	include   bool            // _include=Task:focus (Task) or _revinclude=Task:focus (ServiceRequest)
	countOnly bool            // _summary=count or _count=0: the total only
	noTotal   bool            // _total=none
	issues    []fhir.Issue
}

func (p *searchParse) use(key string, vals []string) { p.used[key] = vals }

func (p *searchParse) bad(param, msg string) {
	p.issues = append(p.issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeInvalid, Diagnostics: msg, Expression: []string{param}})
}

// tooLong adds an issue when a value matched against an indexed string is beyond its limit.
func (p *searchParse) tooLong(param, v string, limit int) {
	if is := fhir.TooLong(param, v, limit); is != nil {
		p.issues = append(p.issues, *is)
	}
}

// local is a reference value with this server's base removed ("https://…/fhir/ServiceRequest/1" is
// "ServiceRequest/1"), so that a reference to this server matches however it is written.
func (p *searchParse) local(v string) string {
	if p.base != "" {
		if rest, ok := strings.CutPrefix(v, p.base+"/"); ok {
			return rest
		}
	}
	return v
}

// parseSearch turns query parameters into a search, through the table. Unknown parameters are a 400 naming
// them, unless the client sent Prefer: handling=lenient. The caller's scope is applied by the use case.
func parseSearch(svc *referral.Service, typ, base string, query url.Values, lenient bool) (*searchParse, error) {
	p := &searchParse{typ: typ, base: base, svc: svc, used: url.Values{}}
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
				p.bad(key, fmt.Sprintf("search parameter %q (with these values) is not supported for %s (see /fhir/metadata); send Prefer: handling=lenient to ignore it", key, typ))
			}
		case !sp.Repeat && (len(vals) != 1 || vals[0] == ""):
			p.bad(key, fmt.Sprintf("%s takes exactly one non-empty value", key))
		case slices.ContainsFunc(vals, func(v string) bool { return len(v) > maxParamValue }):
			p.bad(key, fmt.Sprintf("%s: a value may be at most %d characters", key, maxParamValue))
		case sp.apply != nil:
			sp.apply(p, key, modifier, vals)
		}
	}
	if len(p.issues) > 0 {
		return p, &fhir.Error{Kind: fault.Invalid, Issues: p.issues}
	}
	return p, nil
}

// applyID: _id=a,b matches either; repeated _id parameters must all hold (their lists intersect).
func applyID(p *searchParse, key, _ string, vals []string) {
	p.use(key, vals)
	var ids []string
	for i, v := range vals {
		list := splitList(v)
		if len(list) == 0 {
			p.bad(key, "_id needs a value: an id, or a comma-separated list of ids")
			return
		}
		if i == 0 {
			ids = list
			continue
		}
		ids = slices.DeleteFunc(ids, func(id string) bool { return !slices.Contains(list, id) })
	}
	if ids == nil {
		ids = []string{}
	}
	if p.typ == typeTask {
		p.q.TaskIDs = intersect(p.q.TaskIDs, ids)
	} else {
		p.q.ServiceRequestIDs = intersect(p.q.ServiceRequestIDs, ids)
	}
}

// applyFocus: focus=ServiceRequest/{id} (or the id, or its absolute URL on this server); a comma list OR.
func applyFocus(p *searchParse, key, _ string, vals []string) {
	applyServiceRequestRef(p, key, vals, "focus must name a ServiceRequest: ServiceRequest/{id}")
}

// applyRelated is related on DocumentReference (the GP letter's context.related): ServiceRequest/{id}, or
// its absolute URL on this server; a comma-separated list matches any.
func applyRelated(p *searchParse, key, _ string, vals []string) {
	applyServiceRequestRef(p, key, vals, "related must name the referral's ServiceRequest: ServiceRequest/{id}")
}

// applyServiceRequestRef reads ServiceRequest references (a comma-separated list: any of them) into the
// query's ServiceRequest ids; msg is the issue for a value that names none.
func applyServiceRequestRef(p *searchParse, key string, vals []string, msg string) {
	p.use(key, vals)
	var ids []string
	for _, v := range splitList(vals[0]) {
		id := strings.TrimPrefix(p.local(v), "ServiceRequest/")
		if id == "" || strings.Contains(id, "/") {
			p.bad(key, msg)
			return
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		p.bad(key, msg)
		return
	}
	p.q.ServiceRequestIDs = intersect(p.q.ServiceRequestIDs, ids)
}

// applyPartOf is part-of=Task/{id}: the Tasks forwarded from that Task.
func applyPartOf(p *searchParse, key, _ string, vals []string) {
	p.use(key, vals)
	id := strings.TrimPrefix(p.local(vals[0]), "Task/")
	if id == "" || strings.Contains(id, "/") || strings.Contains(id, ",") {
		p.bad(key, "part-of must name one Task: Task/{id}")
		return
	}
	p.tooLong(key, id, fhir.MaxIdentifierValue)
	p.q.ParentTaskID = id
}

// intersect is the ids in both lists (b when a is nil: no filter yet).
func intersect(a, b []string) []string {
	if a == nil {
		return b
	}
	out := []string{}
	for _, id := range a {
		if slices.Contains(b, id) {
			out = append(out, id)
		}
	}
	return out
}

// splitList splits a comma-separated parameter value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// statusCodes reads a token status list: each item code or system|code; items of another system (or with
// "|code": no system) match nothing and are dropped.
func statusCodes(v, system string) []string {
	var out []string
	for _, item := range splitList(v) {
		sys, code, hasSystem := strings.Cut(item, "|")
		if !hasSystem {
			code = item
		} else if sys != system {
			continue
		}
		out = append(out, code)
	}
	return out
}

func applyTaskStatus(p *searchParse, key, _ string, vals []string) {
	p.use(key, vals)
	codes := statusCodes(vals[0], taskStatusSystem)
	for _, st := range codes {
		ts := mapping.TaskStatus(st)
		if !ts.Valid() {
			p.bad(key, fmt.Sprintf("%q is not a Task status socialrx uses", st))
			continue
		}
		p.q.Statuses = append(p.q.Statuses, ts)
	}
	if len(codes) == 0 {
		p.q.None = true // only codes of another system: nothing matches
	}
}

// applyRequestStatus filters ServiceRequests by their status in the store query (before paging). A code
// socialrx never gives a ServiceRequest matches nothing.
func applyRequestStatus(p *searchParse, key, _ string, vals []string) {
	p.use(key, vals)
	codes := statusCodes(vals[0], requestStatusSystem)
	if codes == nil {
		codes = []string{}
	}
	p.q.ServiceRequestStatuses = codes
}

// applyInclude takes _include=Task:focus on Task and _revinclude=Task:focus on ServiceRequest (also with the
// target type, Task:focus:ServiceRequest); anything else is a 400 naming what is offered.
func applyInclude(p *searchParse, key, _ string, vals []string) {
	p.use(key, vals)
	for _, v := range vals {
		if v != includeFocus && v != includeFocus+":ServiceRequest" {
			p.bad(key, fmt.Sprintf("%s=%s is not supported; %s offers %s=%s only", key, v, p.typ, key, includeFocus))
			return
		}
	}
	p.include = true
}

// applyLastUpdated applies each _lastUpdated value with its prefix; repeated values AND (the tightest bound
// of each kind wins).
func applyLastUpdated(p *searchParse, key, _ string, vals []string) {
	for _, v := range vals {
		if err := lastUpdated(&p.q, v); err != nil {
			p.bad(key, err.Error())
		}
	}
	p.use(key, vals)
}

// applyPatient: patient (the subject reference as sent) or patient:identifier (an NHS number).
func applyPatient(p *searchParse, key, modifier string, vals []string) {
	p.use(key, vals)
	if modifier != "identifier" {
		p.tooLong(key, vals[0], fhir.MaxReference)
		p.q.PatientRef = p.local(vals[0])
		return
	}
	id := referral.ParseToken(vals[0])
	switch {
	case id.System != "" && id.System != mapping.NHSNumberSystem:
		p.bad(key, "patient:identifier supports the NHS number system "+mapping.NHSNumberSystem)
	case id.Value == "":
		p.bad(key, "patient:identifier needs a value: "+mapping.NHSNumberSystem+"|<NHS number>")
	default:
		p.tooLong(key, id.Value, fhir.MaxIdentifierValue)
		p.q.PatientNHSNumber = id.Value
	}
}

// applyRequester: requester (the reference as sent) or requester:identifier (a practice's ODS code).
func applyRequester(p *searchParse, key, modifier string, vals []string) {
	p.use(key, vals)
	if modifier != "identifier" {
		p.tooLong(key, vals[0], fhir.MaxReference)
		p.q.RequesterRef = p.local(vals[0])
		return
	}
	id := referral.ParseToken(vals[0])
	switch {
	case id.System != "" && id.System != mapping.ODSOrganizationSystem:
		p.bad(key, "requester:identifier supports the ODS organisation code system "+mapping.ODSOrganizationSystem)
	case id.Value == "":
		p.bad(key, "requester:identifier needs a value: "+mapping.ODSOrganizationSystem+"|<ODS code>")
	default:
		p.tooLong(key, id.Value, fhir.MaxIdentifierValue)
		p.q.RequesterODS = id.Value
	}
}
