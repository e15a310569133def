package fhirapi

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// typeMeasureReport is the monthly figures as FHIR (issue 14): search only, admin clients.
const typeMeasureReport = "MeasureReport"

// measureReportParams are MeasureReport's search parameters (declared in the CapabilityStatement and
// docs/fhir-api.md).
var measureReportParams = []fhir.SearchParam{
	{Name: "period", Type: fhir.SearchParamDate, Documentation: "UK months: YYYY-MM for one, or geYYYY-MM and leYYYY-MM for a span (at most 36); absent: the last twelve months"},
	{Name: "practice", Type: fhir.SearchParamToken, Documentation: "socialrx's parameter: one practice's figures (its ODS code)"},
	{Name: "service", Type: fhir.SearchParamToken, Documentation: "socialrx's parameter: one community service's figures (its directory id); neither practice nor service: the area's"},
}

// searchMeasureReports is GET /fhir/MeasureReport: the monthly figures (mapping.MeasureReportFor), one
// summary MeasureReport per month, all on one page. Admin clients only (the route's rule).
func (a *API) searchMeasureReports(w http.ResponseWriter, r *http.Request) {
	uk := a.svc.UK()
	req, scope, used, err := parseMeasureReportSearch(r, a.now(), uk)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	figs, err := a.svc.Figures(r.Context(), web.Caller(r.Context()), req)
	if err != nil {
		a.fail(w, r, figuresFields(err))
		return
	}
	now := a.now()
	matches := make([]match, len(figs))
	for i, m := range figs {
		mr := mapping.MeasureReportFor(m, scope, uk, now)
		matches[i] = match{id: mr.ID, resource: mr}
	}
	a.writeSearchset(w, r, typeMeasureReport, used, matches)
}

// parseMeasureReportSearch reads period, practice and service (unknown parameters are a 400 unless lenient).
func parseMeasureReportSearch(r *http.Request, now time.Time, uk *time.Location) (referral.FiguresRequest, string, url.Values, error) {
	var req referral.FiguresRequest
	req.From, req.To = web.DefaultMonths(now, uk)
	used := url.Values{}
	var issues []fhir.Issue
	bad := func(key, msg string) {
		issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeInvalid, Diagnostics: msg, Expression: []string{key}})
	}
	for key, vals := range r.URL.Query() {
		switch key {
		case "_format":
		case "period":
			used[key] = vals
			for _, v := range vals {
				switch {
				case strings.HasPrefix(v, "ge"):
					req.From = v[2:]
				case strings.HasPrefix(v, "le"):
					req.To = v[2:]
				case len(v) == len("2006-01"):
					req.From, req.To = v, v
				default:
					bad(key, "period is a month YYYY-MM, or geYYYY-MM and leYYYY-MM")
				}
			}
		case "practice", "service":
			if len(vals) != 1 || vals[0] == "" {
				bad(key, key+" takes exactly one non-empty value")
				continue
			}
			used[key] = vals
			if key == "practice" {
				req.Practice = vals[0]
			} else {
				req.ServiceID = vals[0]
			}
		default:
			if !lenient(r) {
				bad(key, "unknown search parameter "+key+" for MeasureReport (period, practice, service)")
			}
		}
	}
	if req.Practice != "" && req.ServiceID != "" {
		bad("practice", "give practice or service, not both")
	}
	if len(issues) > 0 {
		return req, "", used, &fhir.Error{Kind: fault.Invalid, Issues: issues}
	}
	scope := "area"
	switch {
	case req.Practice != "":
		scope = "practice-" + strings.ToUpper(req.Practice)
	case req.ServiceID != "":
		scope = "service-" + req.ServiceID
	}
	return req, scope, used, nil
}

// figuresFields names the period for the use case's month errors (its fields from and to).
func figuresFields(err error) error {
	var fe *fault.Error
	if !errors.As(err, &fe) {
		return err
	}
	out := &fault.Error{Kind: fe.Kind, Issues: make([]fault.Issue, len(fe.Issues))}
	for i, is := range fe.Issues {
		if is.Field == "from" || is.Field == "to" {
			is.Field = "period"
		}
		out.Issues[i] = is
	}
	return out
}
