package fhir

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/socialrx/socialrx/fault"
)

// ParseServiceRequest decodes and validates a bare ServiceRequest (the body of POST /fhir/ServiceRequest).
//
// Validation runs in stages on the raw JSON and stops after the first failing one, reporting all of its issues
// in a *Error with Status 400: stage 1 structure (JSON, resourceType, element names, arrays, primitive formats,
// _element twins, contained resources and dom-2..dom-5), stage 2 required elements and required-binding codes.
// Business rules are not checked here (see package mapping).
func ParseServiceRequest(body []byte) (*Submission, error) {
	root, ferr := decodeDocument(body, "ServiceRequest")
	if ferr != nil {
		return nil, ferr
	}
	v := newValidator("ServiceRequest")
	v.walkResource(&root, "ServiceRequest", false)
	if issues := v.result(); len(issues) > 0 {
		return nil, &Error{Kind: fault.Invalid, Issues: issues}
	}
	sub := &Submission{Fingerprint: fingerprint(&root, nil, len(body))}
	if err := sub.finish(&root, len(body)); err != nil {
		return nil, err
	}
	return sub, nil
}

// ValidateResource runs the same two stages on any R4 resource (for example a Task update). resourceType, when
// not empty, is the only acceptable type. It returns nil or a *Error with Status 400.
func ValidateResource(body []byte, resourceType string) error {
	root := resourceType
	if root == "" {
		root = "Resource"
	}
	n, ferr := decodeDocument(body, root)
	if ferr != nil {
		return ferr
	}
	if resourceType == "" {
		if rt, ok := n.getString("resourceType"); ok && isResourceType(rt) {
			root = rt
		}
	}
	v := newValidator(root)
	v.walkResource(&n, resourceType, false)
	if issues := v.result(); len(issues) > 0 {
		return &Error{Kind: fault.Invalid, Issues: issues}
	}
	return nil
}

// decodeDocument parses the body as one strict JSON object.
func decodeDocument(body []byte, root string) (node, *Error) {
	n, _, err := parseJSON(body)
	if err != nil {
		var se *syntaxError
		var le *limitError
		msg := "json: the body is not valid JSON"
		switch {
		case errors.As(err, &le):
			return node{}, NewError(fault.TooLarge, CodeTooCostly, "limits: the body is "+le.Error()+
				"; socialrx takes documents within its decoded-size limits (docs/design.md#intake-validation-and-routing)", root)
		case errors.As(err, &se):
			msg = "json: " + se.Error()
		}
		return node{}, NewError(fault.Invalid, CodeStructure, msg, root)
	}
	if n.kind != jsonObject {
		return node{}, NewError(fault.Invalid, CodeStructure, "json-type: the body must be a JSON object (a "+root+" resource)", root)
	}
	return n, nil
}

// ParseTransaction decodes and validates a transaction Bundle (the body of POST /fhir) carrying exactly one
// ServiceRequest and, next to it, only Patient, Consent, Practitioner, PractitionerRole, Organization and
// HealthcareService resources. Every entry needs a fullUrl (urn:uuid or absolute URL), a resource and a
// request with method POST and url = the resource type.
//
// The Submission holds the ServiceRequest with the Bundle's other resources moved into its contained (each
// under its own id when unique, else a generated one such as "patient1"; meta and text are removed, as dom-4
// and dom-5 require) and every reference to a Bundle entry rewritten to "#id" ("#" for a reference back to the
// ServiceRequest). urn:uuid references that match no entry are left alone: mapping reports them (422).
// Resources moved in from the Bundle are exempt from dom-3 (they need not be referenced): dom-3 is checked on
// what the client sent, and a resource the client sent in the Bundle is part of the referral whether or not
// the ServiceRequest points at it (a Consent about the patient, say).
func ParseTransaction(body []byte) (*Submission, error) {
	root, ferr := decodeDocument(body, "Bundle")
	if ferr != nil {
		return nil, ferr
	}
	v := newValidator("Bundle")
	v.walkResource(&root, "Bundle", false)
	var tx transaction
	if rt, _ := root.getString("resourceType"); rt == "Bundle" {
		tx = v.checkTransaction(&root)
	}
	if issues := v.result(); len(issues) > 0 {
		return nil, &Error{Kind: fault.Invalid, Issues: issues}
	}
	if tx.sr == nil { // cannot happen: a transaction without a ServiceRequest has an issue
		return nil, NewError(fault.Invalid, CodeRequired, "transaction: exactly one ServiceRequest entry is required", "Bundle.entry")
	}
	return tx.submission(len(body))
}

// transaction is a validated transaction Bundle: its ServiceRequest entry and the others, in entry order.
type transaction struct {
	sr     *node
	srURL  string
	others []bundled
}

// bundled is one non-ServiceRequest entry.
type bundled struct {
	fullURL      string
	resourceType string
	res          *node
}

// checkTransaction adds the stage-1 issues of a Bundle posted to POST [base] and returns its entries.
func (v *validator) checkTransaction(root *node) transaction {
	var tx transaction
	isTx := false
	switch typ := root.get("type"); {
	case typ == nil:
		v.fail1(CodeRequired, "type", "bundle-type: Bundle.type is required; POST [base] accepts type = transaction")
	case typ.kind != jsonString: // reported by the walk
	case typ.str == "transaction":
		isTx = true
	default:
		v.fail1(CodeNotSupported, "type", "bundle-type: POST [base] processes only Bundle.type = transaction (not batch, message, document, collection or searchset)")
	}
	entries := root.get("entry")
	if entries == nil || entries.kind != jsonArray {
		if isTx && entries == nil {
			v.fail1(CodeRequired, "entry", "transaction: the Bundle has no entries; exactly one ServiceRequest is required")
		}
		return tx
	}
	seen := make(map[string]int, len(entries.items))
	var srs []int
	v.push("entry")
	for i := range entries.items {
		v.setIndex(i)
		e := &entries.items[i]
		if e.kind != jsonObject {
			continue // reported by the walk
		}
		fu, hasFU := e.getString("fullUrl")
		if hasFU {
			if !validFullURL(fu) {
				v.fail1(CodeValue, "fullUrl", "full-url: fullUrl must be an absolute URL or urn:uuid:<uuid> (R4 does not allow a relative or version-specific fullUrl)")
			} else if _, dup := seen[fu]; dup {
				v.fail1(CodeInvalid, "fullUrl", "full-url: fullUrl must be unique within the Bundle (bdl-7)")
			}
			seen[fu] = i
		}
		if !isTx {
			continue
		}
		if e.get("fullUrl") == nil {
			v.fail1(CodeRequired, "fullUrl", "transaction: every entry needs a fullUrl (urn:uuid:<uuid> or an absolute URL) so that references to it can be resolved")
		}
		res := e.get("resource")
		rt, _ := res.getString("resourceType")
		if res == nil {
			v.fail1(CodeRequired, "resource", "transaction: every entry needs a resource")
		}
		switch req := e.get("request"); {
		case req == nil:
			v.fail1(CodeRequired, "request", "transaction: every entry needs a request (method POST, url = the resource type)")
		case req.kind == jsonObject:
			if m, ok := req.getString("method"); ok && m != "POST" {
				v.fail1(CodeNotSupported, "request.method", "transaction: only POST (create) entries are supported")
			}
			if u, ok := req.getString("url"); ok && rt != "" && u != rt {
				v.fail1(CodeValue, "request.url", "transaction: request.url must be the resource type of the entry's resource")
			}
		}
		switch {
		case res == nil || rt == "" || !isResourceType(rt): // reported above or by the walk
		case rt == "ServiceRequest":
			srs = append(srs, i)
			tx.sr, tx.srURL = res, fu
		case !transactionEntryType(rt):
			v.fail1(CodeNotSupported, "resource", "transaction: next to the ServiceRequest a referral Bundle may carry only Patient, Consent, Practitioner, PractitionerRole, Organization and HealthcareService")
		case res.get("contained") != nil:
			v.fail1(CodeNotSupported, "resource.contained", "transaction: resources next to the ServiceRequest must not have contained resources (they become contained resources of the ServiceRequest)")
		default:
			tx.others = append(tx.others, bundled{fullURL: fu, resourceType: rt, res: res})
		}
	}
	v.pop()
	if isTx {
		switch {
		case len(srs) == 0:
			v.fail1(CodeRequired, "entry", "transaction: exactly one ServiceRequest entry is required")
		case len(srs) > 1:
			for _, i := range srs[1:] {
				v.add1(CodeInvalid, "Bundle.entry["+strconv.Itoa(i)+"].resource", "transaction: exactly one ServiceRequest per Bundle")
			}
		}
	}
	return tx
}

// validFullURL accepts urn:uuid:<lower-case uuid>, urn:oid:<oid> and absolute http(s) URLs that are not
// version-specific.
func validFullURL(s string) bool {
	switch {
	case strings.HasPrefix(s, "urn:uuid:"):
		return validUUIDURN(s)
	case strings.HasPrefix(s, "urn:oid:"):
		return validOID(s)
	}
	return absoluteHTTPURL(s) && !strings.Contains(s, "/_history/")
}

// absoluteHTTPURL reports whether s is an absolute http or https URL with a host.
func absoluteHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// submission builds the Submission of a validated transaction.
func (tx transaction) submission(sizeHint int) (*Submission, error) {
	others := make([]*node, len(tx.others))
	for i := range tx.others {
		others[i] = tx.others[i].res
	}
	sub := &Submission{FromBundle: true, Fingerprint: fingerprint(tx.sr, others, sizeHint)}

	// Local ids: the resource's own id when no other resource uses it, else <type><n>.
	taken := map[string]bool{}
	if c := tx.sr.get("contained"); c != nil {
		for i := range c.items {
			if id, ok := c.items[i].getString("id"); ok {
				taken[id] = true
			}
		}
	}
	count := map[string]int{}
	for _, o := range tx.others {
		if id, ok := o.res.getString("id"); ok {
			count[id]++
		}
	}
	local := make([]string, len(tx.others))
	for i, o := range tx.others {
		if id, ok := o.res.getString("id"); ok && count[id] == 1 && !taken[id] {
			local[i] = id
			taken[id] = true
		}
	}
	for i, o := range tx.others {
		if local[i] != "" {
			continue
		}
		prefix := strings.ToLower(o.resourceType)
		for n := 1; ; n++ {
			if id := prefix + strconv.Itoa(n); !taken[id] {
				local[i], taken[id] = id, true
				break
			}
		}
	}

	// Rewrite references to entries; a contained resource refers to the ServiceRequest itself as "#".
	target := make(map[string]string, len(tx.others))
	for i, o := range tx.others {
		target[o.fullURL] = "#" + local[i]
	}
	rewriteRefs(tx.sr, target)
	if tx.srURL != "" {
		target[tx.srURL] = "#"
	}
	moved := make([]node, 0, len(tx.others))
	for i, o := range tx.others {
		rewriteRefs(o.res, target)
		r := o.res.without("id", "meta", "text")
		r.members = slices.Insert(r.members, min(1, len(r.members)), member{key: "id", val: node{kind: jsonString, str: local[i]}})
		moved = append(moved, r)
	}

	sr := tx.sr.without()
	if len(moved) > 0 {
		if c := sr.get("contained"); c != nil {
			c.items = append(slices.Clip(c.items), moved...)
		} else {
			sr.members = slices.Insert(sr.members, containedPosition(&sr), member{key: "contained", val: node{kind: jsonArray, items: moved}})
		}
	}
	if err := sub.finish(&sr, sizeHint); err != nil {
		return nil, err
	}
	return sub, nil
}

// containedPosition is where "contained" goes in FHIR's element order: after resourceType, id, meta,
// implicitRules, language and text.
func containedPosition(n *node) int {
	pos := 0
	for i, m := range n.members {
		switch m.key {
		case "resourceType", "id", "meta", "implicitRules", "_implicitRules", "language", "_language", "text":
			pos = i + 1
		}
	}
	return pos
}

// rewriteRefs replaces the value of every Reference.reference found in target (validated nodes only).
func rewriteRefs(n *node, target map[string]string) {
	switch n.kind {
	case jsonString:
		if n.flags&flagReference != 0 {
			if t, ok := target[n.str]; ok {
				n.str = t
				n.flags &^= flagPlain
			}
		}
	case jsonArray:
		for i := range n.items {
			rewriteRefs(&n.items[i], target)
		}
	case jsonObject:
		for i := range n.members {
			rewriteRefs(&n.members[i].val, target)
		}
	}
}

// finish fills Raw, Contained, ServiceRequest and Warnings from the validated ServiceRequest node; sizeHint
// (the body's length) bounds the compact JSON.
func (sub *Submission) finish(sr *node, sizeHint int) error {
	// Raw is written member by member so that the contained resources' JSON can be sliced out of it and
	// samply can be given the ServiceRequest without them (it has no contained element; skipping them in
	// encoding/json costs as much as decoding).
	w := writer{buf: make([]byte, 0, sizeHint)}
	w.buf = append(w.buf, '{')
	first := true
	cutFrom, cutTo := -1, -1
	var spans [][2]int
	for i := range sr.members {
		m := &sr.members[i]
		if m.key == "id" || m.key == "meta" {
			continue
		}
		if m.key != "contained" || m.val.kind != jsonArray {
			first = w.member(m, first, nil)
			continue
		}
		cutFrom = len(w.buf)
		if !first {
			w.buf = append(w.buf, ',')
		}
		first = false
		w.buf = append(w.buf, `"contained":[`...)
		for j := range m.val.items {
			if j > 0 {
				w.buf = append(w.buf, ',')
			}
			start := len(w.buf)
			w.write(&m.val.items[j])
			spans = append(spans, [2]int{start, len(w.buf)})
		}
		w.buf = append(w.buf, ']')
		cutTo = len(w.buf)
	}
	w.buf = append(w.buf, '}')
	raw := w.buf
	sub.Raw = json.RawMessage(raw)

	if len(spans) > 0 {
		c := sr.get("contained")
		sub.Contained = make(map[string]RawResource, len(spans))
		for j, sp := range spans {
			r := &c.items[j]
			rt, _ := r.getString("resourceType")
			id, _ := r.getString("id")
			sub.Contained[id] = RawResource{ResourceType: rt, ID: id, JSON: json.RawMessage(raw[sp[0]:sp[1]:sp[1]])}
			sub.ContainedIDs = append(sub.ContainedIDs, id)
		}
	}

	decodeInput := raw
	if cutFrom >= 0 {
		if raw[cutFrom] != ',' && raw[cutTo] == ',' { // contained came first: drop the comma after it
			cutTo++
		}
		decodeInput = make([]byte, 0, len(raw)-(cutTo-cutFrom))
		decodeInput = append(append(decodeInput, raw[:cutFrom]...), raw[cutTo:]...)
	}
	if err := json.Unmarshal(decodeInput, &sub.ServiceRequest); err != nil {
		// Cannot happen for validated input unless samply disagrees with the schema; never a 500 for it.
		return NewError(fault.Invalid, CodeStructure, "decode: the validated ServiceRequest could not be decoded as an R4 ServiceRequest", "ServiceRequest")
	}
	if err := sub.checkLimits(); err != nil {
		return err
	}
	if sr.get("requester") == nil {
		sub.Warnings = append(sub.Warnings, Issue{Severity: SeverityWarning, Code: CodeRequired, Expression: []string{"ServiceRequest.requester"},
			Diagnostics: "requester-absent: the ServiceRequest names no requester (R7, a warning only)"})
	}
	return nil
}

// fingerprint is the hex SHA-256 of the canonical JSON array [ServiceRequest, others sorted by their canonical
// bytes], each without its top-level id, meta and text and with urn:uuid reference values replaced by a
// constant, so that a resend with fresh urn:uuids and ids, in any key order or entry order, is identical.
func fingerprint(sr *node, others []*node, sizeHint int) string {
	canon := func(n *node, size int) []byte {
		w := writer{canonical: true, hideUUIDRefs: true, buf: make([]byte, 0, size)}
		w.write(n, "id", "meta", "text")
		return w.buf
	}
	parts := make([][]byte, len(others))
	for i, o := range others {
		parts[i] = canon(o, 512)
	}
	slices.SortFunc(parts, bytes.Compare)
	h := sha256.New()
	h.Write([]byte{'['})
	h.Write(canon(sr, sizeHint))
	for _, p := range parts {
		h.Write([]byte{','})
		h.Write(p)
	}
	h.Write([]byte{']'})
	return hex.EncodeToString(h.Sum(nil))
}
