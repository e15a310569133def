package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// setResourceHeaders sets Location, ETag and Last-Modified for one resource version.
func (s *Server) setResourceHeaders(w http.ResponseWriter, r *http.Request, typ, id, version string, modified time.Time) {
	w.Header().Set("Location", s.base(r)+"/"+typ+"/"+id+"/_history/"+version)
	w.Header().Set("ETag", `W/"`+version+`"`)
	w.Header().Set("Last-Modified", modified.UTC().Format(http.TimeFormat))
}

// srVersion reads meta.versionId of the stored ServiceRequest (without decoding the whole document).
func srVersion(ref outbox.Referral) string {
	if meta, ok := topLevel(ref.ServiceRequest, "meta"); ok {
		if v, ok := topLevelString(meta, "versionId"); ok && v != "" {
			return v
		}
	}
	return "1"
}

// preferReturn reads Prefer: return=minimal|representation|OperationOutcome.
func preferReturn(r *http.Request) string {
	for _, part := range strings.Split(r.Header.Get("Prefer"), ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "return="); ok {
			return v
		}
	}
	return "representation"
}

// lenient reports Prefer: handling=lenient (unknown search parameters are then ignored, not refused).
func lenient(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Prefer"), "handling=lenient")
}

// base is the FHIR base URL as clients see it.
func (s *Server) base(r *http.Request) string {
	if s.baseURL != "" {
		return s.baseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/fhir"
}

// getReferral loads a referral by any of its ids and applies the client's visibility (404 when not visible).
func (s *Server) getReferral(r *http.Request, id string) (outbox.Referral, error) {
	ref, err := s.store.GetReferral(r.Context(), id)
	if err != nil {
		return outbox.Referral{}, err
	}
	if !visibleTo(clientFrom(r.Context()), ref) {
		return outbox.Referral{}, outbox.ErrNotFound
	}
	return ref, nil
}

// readServiceRequest is GET /fhir/ServiceRequest/{id}.
func (s *Server) readServiceRequest(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	ref, err := s.getReferral(r, id)
	if err == nil && ref.Record.ServiceRequestID != id {
		err = outbox.ErrNotFound
	}
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	sr, err := s.renderServiceRequest(r.Context(), ref) // the current status (revoked, completed …)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.setResourceHeaders(w, r, "ServiceRequest", id, sr.version, sr.modified)
	s.writeFHIR(w, http.StatusOK, sr.body)
}

// readTask is GET /fhir/Task/{id}.
func (s *Server) readTask(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	ref, err := s.getReferral(r, id)
	if err == nil && ref.Record.TaskID != id {
		err = outbox.ErrNotFound
	}
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	b, err := json.Marshal(mapping.TaskFor(ref.Referral))
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.setResourceHeaders(w, r, "Task", id, strconv.Itoa(ref.Record.Version), ref.Record.UpdatedAt)
	s.writeFHIR(w, http.StatusOK, b)
}

const (
	defaultCount = 50
	maxCount     = 500
)

// searchParams is the parsed common part of a search.
type searchParams struct {
	q        outbox.ReferralQuery
	used     url.Values // parameters applied, echoed in the self link
	statuses []string   // ServiceRequest status filter (applied after the query)
}

// parseSearch turns query parameters into a ReferralQuery, scoped to the client. Unknown parameters are a 400
// naming them, unless the client sent Prefer: handling=lenient.
func (s *Server) parseSearch(r *http.Request, typ string) (searchParams, error) {
	cl := clientFrom(r.Context())
	sp := searchParams{used: url.Values{}}
	q := &sp.q
	q.Limit = defaultCount
	switch cl.Role {
	case config.RoleGP:
		q.Practices = cl.Practices
	case config.RoleCommunity:
		q.ServiceID = cl.Service
	case config.RoleAdmin:
	}
	var issues []fhir.Issue
	bad := func(param, msg string) {
		issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeInvalid, Diagnostics: msg, Expression: []string{param}})
	}
	keys := make([]string, 0, len(r.URL.Query()))
	for k := range r.URL.Query() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		vals := r.URL.Query()[key]
		name, modifier, _ := strings.Cut(key, ":")
		use := func() { sp.used[key] = vals }
		one := func() (string, bool) {
			if len(vals) != 1 || vals[0] == "" {
				bad(key, fmt.Sprintf("%s takes exactly one non-empty value", key))
				return "", false
			}
			return vals[0], true
		}
		switch {
		case name == "_id" && modifier == "":
			if v, ok := one(); ok {
				use()
				if typ == "Task" {
					q.TaskID = v
				} else {
					q.ServiceRequestID = v
				}
			}
		case name == "_count" && modifier == "":
			if v, ok := one(); ok {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 {
					bad(key, "_count must be a whole number of at least 1")
					continue
				}
				use()
				q.Limit = min(n, maxCount)
			}
		case name == "_cursor" && modifier == "":
			if v, ok := one(); ok {
				c, err := decodeCursor(v)
				if err != nil {
					bad(key, "_cursor is not a cursor this server issued; follow the Bundle's next link unchanged")
					continue
				}
				q.After = &c
			}
		case name == "_lastUpdated" && modifier == "":
			for _, v := range vals {
				if err := applyLastUpdated(q, v); err != nil {
					bad(key, err.Error())
				}
			}
			use()
		case name == "patient" && (modifier == "" || modifier == "identifier"):
			if v, ok := one(); ok {
				use()
				if modifier == "identifier" {
					id := parseToken(v)
					if id.System != "" && id.System != mapping.NHSNumberSystem {
						bad(key, "patient:identifier supports the NHS number system "+mapping.NHSNumberSystem)
						continue
					}
					if id.Value == "" {
						bad(key, "patient:identifier needs a value: "+mapping.NHSNumberSystem+"|<NHS number>")
						continue
					}
					q.PatientNHSNumber = id.Value
				} else {
					q.PatientRef = v
				}
			}
		case name == "requester" && (modifier == "" || modifier == "identifier"):
			if v, ok := one(); ok {
				use()
				if modifier == "identifier" {
					id := parseToken(v)
					if id.System != "" && id.System != mapping.ODSOrganizationSystem {
						bad(key, "requester:identifier supports the ODS organisation code system "+mapping.ODSOrganizationSystem)
						continue
					}
					if id.Value == "" {
						bad(key, "requester:identifier needs a value: "+mapping.ODSOrganizationSystem+"|<ODS code>")
						continue
					}
					q.Practices = intersectPractices(cl, q.Practices, id.Value)
				} else {
					q.RequesterRef = v
				}
			}
		case name == "identifier" && modifier == "" && typ == "ServiceRequest":
			if v, ok := one(); ok {
				use()
				id := parseToken(v)
				if id.Value == "" {
					bad(key, "identifier needs a value: [system|]value")
					continue
				}
				q.Identifier = &id
			}
		case name == "focus" && modifier == "" && typ == "Task":
			if v, ok := one(); ok {
				use()
				id := strings.TrimPrefix(v, "ServiceRequest/")
				if id == "" {
					bad(key, "focus must name a ServiceRequest: ServiceRequest/{id}")
					continue
				}
				q.ServiceRequestID = id
			}
		case name == "owner" && (modifier == "" || modifier == "identifier") && typ == "Task":
			if v, ok := one(); ok {
				use()
				svc, found := s.resolveOwner(modifier, v)
				if !found {
					svc = "\x00no-such-service"
				}
				if q.ServiceID != "" && q.ServiceID != svc {
					svc = "\x00no-such-service"
				}
				q.ServiceID = svc
			}
		case name == "status" && modifier == "":
			if v, ok := one(); ok {
				use()
				for _, st := range strings.Split(v, ",") {
					if typ == "Task" {
						ts := mapping.TaskStatus(st)
						if !ts.Valid() {
							bad(key, fmt.Sprintf("%q is not a Task status socialrx uses", st))
							continue
						}
						q.Statuses = append(q.Statuses, ts)
					} else {
						sp.statuses = append(sp.statuses, st)
					}
				}
			}
		case name == "code" && modifier == "" && typ == "Task":
			if v, ok := one(); ok {
				use()
				if c := parseToken(v); c.Value != "fulfill" || (c.System != "" && c.System != "http://hl7.org/fhir/CodeSystem/task-code") {
					q.ServiceID = "\x00no-such-service" // every referral Task has code fulfill
				}
			}
		case name == "_format" || name == "_pretty" || name == "_summary" && vals[0] == "false":
			// accepted and ignored: socialrx only speaks JSON
		default:
			if !lenient(r) {
				bad(key, fmt.Sprintf("search parameter %q is not supported for %s (see /fhir/metadata); send Prefer: handling=lenient to ignore it", key, typ))
			}
		}
	}
	if len(issues) > 0 {
		return sp, &fhir.Error{Status: http.StatusBadRequest, Issues: issues}
	}
	return sp, nil
}

// intersectPractices narrows a GP client's practice scope to one ODS code (admins: just that code).
func intersectPractices(cl config.Client, scope []string, ods string) []string {
	if cl.Role == config.RoleGP && !cl.MayReferFrom(ods) {
		return []string{"\x00none"}
	}
	if cl.Role == config.RoleCommunity && scope == nil {
		return []string{ods}
	}
	return []string{strings.ToUpper(ods)}
}

// resolveOwner maps an owner search value to a service id: "frome-walks", "Organization/frome-walks", or with
// :identifier, "system|value" of a directory identifier.
func (s *Server) resolveOwner(modifier, v string) (string, bool) {
	for _, svc := range s.cfg.Directory.Services {
		if modifier == "identifier" {
			want := parseToken(v)
			for _, id := range svc.Identifiers {
				if id.Value == want.Value && (want.System == "" || want.System == id.System) {
					return svc.ID, true
				}
			}
			continue
		}
		if v == svc.ID || strings.TrimPrefix(v, "Organization/") == svc.ID || strings.TrimPrefix(v, "HealthcareService/") == svc.ID {
			return svc.ID, true
		}
	}
	return "", false
}

// applyLastUpdated applies one _lastUpdated value with its prefix (eq, gt, ge, lt, le; default eq meaning the
// value's whole precision, treated here as ge start-of-value).
func applyLastUpdated(q *outbox.ReferralQuery, v string) error {
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

func encodeCursor(c outbox.Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.UpdatedAt.UnixMicro(), 10) + "." + c.ID))
}

func decodeCursor(v string) (outbox.Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return outbox.Cursor{}, err
	}
	ts, id, ok := strings.Cut(string(b), ".")
	us, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || id == "" {
		return outbox.Cursor{}, fmt.Errorf("bad cursor")
	}
	return outbox.Cursor{UpdatedAt: time.UnixMicro(us).UTC(), ID: id}, nil
}

// search is GET /fhir/Task and GET /fhir/ServiceRequest: a searchset Bundle with self and next links.
func (s *Server) search(typ string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sp, err := s.parseSearch(r, typ)
		if err != nil {
			s.writeFHIRError(w, r, err)
			return
		}
		refs, next, err := s.store.SearchReferrals(r.Context(), sp.q)
		if err != nil {
			s.writeFHIRError(w, r, err)
			return
		}
		base := s.base(r)
		out := fhir.Bundle{ResourceType: "Bundle", ID: s.newID(), Type: fhir.BundleSearchset,
			Meta: &fhir.Meta{LastUpdated: fhir.Instant(s.now())}}
		self := url.Values{}
		for k, v := range sp.used {
			self[k] = v
		}
		out.Link = append(out.Link, fhir.BundleLink{Relation: "self", URL: base + "/" + typ + "?" + self.Encode()})
		if next != nil {
			nv := url.Values{}
			for k, v := range sp.used {
				nv[k] = v
			}
			nv.Set("_count", strconv.Itoa(sp.q.Limit))
			nv.Set("_cursor", encodeCursor(*next))
			out.Link = append(out.Link, fhir.BundleLink{Relation: "next", URL: base + "/" + typ + "?" + nv.Encode()})
		}
		for _, ref := range refs {
			var body []byte
			var id string
			if typ == "Task" {
				id = ref.Record.TaskID
				body, err = json.Marshal(mapping.TaskFor(ref.Referral))
				if err != nil {
					s.writeFHIRError(w, r, err)
					return
				}
			} else {
				if len(sp.statuses) > 0 && !slices.Contains(sp.statuses, ref.ServiceRequestStatus) {
					continue
				}
				sr, err := s.renderServiceRequest(r.Context(), ref)
				if err != nil {
					s.writeFHIRError(w, r, err)
					return
				}
				id, body = ref.Record.ServiceRequestID, sr.body
			}
			out.Entry = append(out.Entry, fhir.BundleEntry{FullURL: base + "/" + typ + "/" + id, Resource: body,
				Search: &fhir.BundleEntrySearch{Mode: fhir.SearchMatch}})
		}
		b, err := json.Marshal(out)
		if err != nil {
			s.writeFHIRError(w, r, err)
			return
		}
		s.writeFHIR(w, http.StatusOK, b)
	}
}
