package fhir

import (
	"slices"
	"strconv"
	"strings"
)

// maxIssues caps the issues reported per stage, so that garbage input cannot produce a huge OperationOutcome.
const maxIssues = 100

// validator walks a parsed document against the element table. Stage 1 (structure) and stage 2 (required
// elements, required-binding codes) issues are collected separately in one walk; the caller reports stage 2
// only when stage 1 is clean.
type validator struct {
	structural []Issue // stage 1
	content    []Issue // stage 2
	dropped    [2]int  // issues beyond maxIssues, per stage
	path       []pathSeg
	dom        *domScope
	element    typeSpec // the Element type, for _element twins
	lookup     elementLookup
}

// pathSeg is one step of an expression: an element name and, for array items, an index (-1 otherwise).
type pathSeg struct {
	name  string
	index int
}

// domScope tracks one container resource for dom-3: the local references anywhere in it (its contained
// resources included) and its contained resources.
type domScope struct {
	refs      []string
	contained []containedInfo
	current   int // index into contained of the contained resource being walked, -1 for the container itself
}

type containedInfo struct {
	id      string
	selfRef bool // the contained resource refers to its container ("#")
	expr    string
}

func newValidator(root string) *validator {
	el, _ := lookupType("Element")
	v := &validator{element: el, lookup: elementLookup{buf: make([]byte, 0, 64)}}
	v.path = append(make([]pathSeg, 0, 16), pathSeg{name: root, index: -1})
	return v
}

func (v *validator) push(name string) { v.path = append(v.path, pathSeg{name: name, index: -1}) }
func (v *validator) pop()             { v.path = v.path[:len(v.path)-1] }
func (v *validator) setIndex(i int)   { v.path[len(v.path)-1].index = i }

// expr renders the current path, optionally with one more element name.
func (v *validator) expr(extra string) string {
	var b strings.Builder
	for i, s := range v.path {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.name)
		if s.index >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		}
	}
	if extra != "" {
		b.WriteByte('.')
		b.WriteString(extra)
	}
	return b.String()
}

// fail1 adds a stage-1 issue at the current path (plus extra).
func (v *validator) fail1(code IssueCode, extra, diagnostics string) {
	if len(v.structural) >= maxIssues {
		v.dropped[0]++
		return
	}
	v.add1(code, v.expr(extra), diagnostics)
}

// add1 adds a stage-1 issue at an explicit expression.
func (v *validator) add1(code IssueCode, expr, diagnostics string) {
	if len(v.structural) >= maxIssues {
		v.dropped[0]++
		return
	}
	v.structural = append(v.structural, Issue{Severity: SeverityError, Code: code, Diagnostics: diagnostics, Expression: []string{expr}})
}

// fail2 adds a stage-2 issue at the current path (plus extra).
func (v *validator) fail2(code IssueCode, extra, diagnostics string) {
	if len(v.content) >= maxIssues {
		v.dropped[1]++
		return
	}
	v.content = append(v.content, Issue{Severity: SeverityError, Code: code, Diagnostics: diagnostics, Expression: []string{v.expr(extra)}})
}

// result returns the issues of the first failing stage, or nil.
func (v *validator) result() []Issue {
	issues, dropped := v.structural, v.dropped[0]
	if len(issues) == 0 {
		issues, dropped = v.content, v.dropped[1]
	}
	if dropped > 0 {
		issues = append(issues, Issue{Severity: SeverityError, Code: CodeTooCostly, Expression: []string{v.path[0].name},
			Diagnostics: "too-many-issues: " + strconv.Itoa(dropped) + " more issues were not reported"})
	}
	return issues
}

// safeName renders a client-sent key for an expression: identifier characters only, at most 64 bytes.
func safeName(key string) string {
	clean := len(key) <= 64
	for i := 0; clean && i < len(key); i++ {
		c := key[i]
		clean = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	if clean {
		return key
	}
	b := []byte(key[:min(len(key), 64)])
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '?'
		}
	}
	return string(b)
}

// displayType renders a schema type name as FHIR writes it: "Bundle_Entry" → "Bundle.entry".
func displayType(name string) string {
	parts := strings.Split(name, "_")
	for i := 1; i < len(parts); i++ {
		if p := parts[i]; p != "" {
			parts[i] = strings.ToLower(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, ".")
}

// walkResource validates a resource. expect, when set, is the only acceptable resourceType. contained marks a
// resource inside a container's contained (checked for dom-2, dom-4, dom-5 and, by the container, dom-3).
func (v *validator) walkResource(n *node, expect string, contained bool) {
	if n.kind != jsonObject {
		v.fail1(CodeStructure, "", "json-type: a resource must be a JSON object")
		return
	}
	rt, ok := n.getString("resourceType")
	if !ok {
		v.fail1(CodeStructure, "", "resource-type: resourceType is missing or not a string")
		return
	}
	t, ok := lookupType(rt)
	if !ok || !t.isResource() {
		v.fail1(CodeInvalid, "", "resource-type: not an R4 resource type")
		return
	}
	if expect != "" && rt != expect {
		v.fail1(CodeInvalid, "", "resource-type: expected a "+expect)
		return
	}
	if !contained {
		outer := v.dom
		v.dom = &domScope{current: -1}
		v.walkObject(n, t)
		v.checkDom3()
		v.dom = outer
		return
	}
	if n.get("contained") != nil {
		v.fail1(CodeInvariant, "contained", "dom-2: a contained resource must not contain resources")
	}
	if meta := n.get("meta"); meta != nil {
		if meta.get("versionId") != nil || meta.get("lastUpdated") != nil {
			v.fail1(CodeInvariant, "meta", "dom-4: a contained resource must not have meta.versionId or meta.lastUpdated")
		}
		if meta.get("security") != nil {
			v.fail1(CodeInvariant, "meta", "dom-5: a contained resource must not have a security label")
		}
	}
	if v.dom == nil { // cannot happen: contained resources are only reached from a resource
		v.walkObject(n, t)
		return
	}
	id, _ := n.getString("id")
	v.dom.contained = append(v.dom.contained, containedInfo{id: id, expr: v.expr("")})
	prev := v.dom.current
	v.dom.current = len(v.dom.contained) - 1
	v.walkObject(n, t)
	v.dom.current = prev
}

// checkDom3 reports contained resources that are neither referenced from their container nor refer to it,
// and duplicate contained ids.
func (v *validator) checkDom3() {
	d := v.dom
	for i, c := range d.contained {
		if c.id != "" {
			for _, o := range d.contained[:i] {
				if o.id == c.id {
					v.add1(CodeInvalid, c.expr+".id", "contained-id: contained resources must have distinct ids")
					break
				}
			}
		}
		if c.selfRef {
			continue
		}
		found := false
		for _, r := range d.refs {
			if c.id != "" && len(r) == len(c.id)+1 && r[1:] == c.id {
				found = true
				break
			}
		}
		if !found {
			v.add1(CodeInvariant, c.expr, `dom-3: a contained resource must be referenced from elsewhere in the resource ("#id") or refer to its container ("#")`)
		}
	}
}

// localRef records a local reference ("#…") for dom-3.
func (v *validator) localRef(s string) {
	if v.dom == nil {
		return
	}
	if s == "#" && v.dom.current >= 0 {
		v.dom.contained[v.dom.current].selfRef = true
		return
	}
	v.dom.refs = append(v.dom.refs, s)
}

// walkObject validates the members of an object of type t.
func (v *validator) walkObject(n *node, t typeSpec) {
	if len(n.members) == 0 {
		v.fail1(CodeInvalid, "", "empty: FHIR JSON does not allow empty objects")
		return
	}
	if n.flags&flagDupKey != 0 {
		v.reportDuplicates(n)
	}
	var choiceBuf [4][2]string // {base, name}
	choices := choiceBuf[:0]
	var twinBuf [4]string
	twins := twinBuf[:0] // primitive lists whose nulls and _element twin must line up
	for i := range n.members {
		m := &n.members[i]
		key := m.key
		if key == "resourceType" && t.isResource() {
			continue
		}
		name, twin := key, false
		if len(key) > 1 && key[0] == '_' {
			name, twin = key[1:], true
		}
		el, ok := v.lookup.element(t, name)
		if !ok || (twin && !el.twin) {
			v.fail1(CodeStructure, safeName(key), "unknown-element: not an element of R4 "+displayType(t.name))
			continue
		}
		if el.choice != "" {
			clash := false
			for _, c := range choices {
				if c[0] == el.choice && c[1] != name {
					clash = true
				}
			}
			if clash {
				v.fail1(CodeStructure, name, "choice: only one of "+el.choice+"[x] may be present")
				continue
			}
			choices = append(choices, [2]string{el.choice, name})
		}
		if el.array && el.twin && !slices.Contains(twins, name) {
			twins = append(twins, name)
		}
		v.push(name)
		switch {
		case twin:
			v.walkTwin(&m.val, el)
		default:
			v.walkElement(&m.val, el, el.typ == "ResourceList" && name == "contained" && t.isResource())
			if t.name == "Reference" && name == "reference" && m.val.kind == jsonString {
				m.val.flags |= flagReference
				if strings.HasPrefix(m.val.str, "#") {
					v.localRef(m.val.str)
				}
			}
		}
		v.pop()
	}
	for _, name := range twins {
		v.checkTwinAlignment(n, name)
	}
	v.checkRequired(n, t)
}

// reportDuplicates adds one issue per key that occurs more than once.
func (v *validator) reportDuplicates(n *node) {
	for i := 1; i < len(n.members); i++ {
		k := n.members[i].key
		first, earlier := true, false
		for j := 0; j < i; j++ {
			if n.members[j].key == k {
				if earlier {
					first = false
				}
				earlier = true
			}
		}
		if earlier && first {
			v.fail1(CodeStructure, safeName(k), "duplicate-key: the key appears more than once in the object")
		}
	}
}

// checkTwinAlignment checks a primitive array and its _element twin: equal lengths when both are present, and
// no position where both (or the only one present) are null.
func (v *validator) checkTwinAlignment(n *node, name string) {
	val, tw := n.get(name), n.get("_"+name)
	if val != nil && val.kind != jsonArray || tw != nil && tw.kind != jsonArray {
		return // already reported as a cardinality error
	}
	switch {
	case val != nil && tw != nil:
		if len(val.items) != len(tw.items) {
			v.fail1(CodeStructure, name, "twin: "+name+" and _"+name+" must have the same number of items")
			return
		}
		for i := range val.items {
			if val.items[i].kind == jsonNull && tw.items[i].kind == jsonNull {
				v.fail1(CodeStructure, name+"["+strconv.Itoa(i)+"]", "null: an item must have a value or an _element")
			}
		}
	case val != nil:
		for i := range val.items {
			if val.items[i].kind == jsonNull {
				v.fail1(CodeStructure, name+"["+strconv.Itoa(i)+"]", "null: null items are allowed only when _"+name+" has an item at the same position")
			}
		}
	case tw != nil:
		for i := range tw.items {
			if tw.items[i].kind == jsonNull {
				v.fail1(CodeStructure, name+"["+strconv.Itoa(i)+"]", "null: an item must have a value or an _element")
			}
		}
	}
}

// walkElement validates one element value against its definition (cardinality first).
func (v *validator) walkElement(n *node, el elemDef, contained bool) {
	if !el.array {
		switch n.kind {
		case jsonArray:
			v.fail1(CodeStructure, "", "cardinality: R4 allows a single value here (max 1), not a JSON array")
		case jsonNull:
			v.fail1(CodeStructure, "", "null: null is not a valid value")
		default:
			v.walkValue(n, el, contained)
		}
		return
	}
	if n.kind != jsonArray {
		v.fail1(CodeStructure, "", "cardinality: R4 defines this element as a list (max *); it must be a JSON array")
		return
	}
	if len(n.items) == 0 {
		v.fail1(CodeInvalid, "", "empty: FHIR JSON does not allow empty arrays")
		return
	}
	for i := range n.items {
		v.setIndex(i)
		it := &n.items[i]
		if it.kind == jsonNull {
			if !el.twin { // primitives with a twin: checked by checkTwinAlignment
				v.fail1(CodeStructure, "", "null: null is not a valid value")
			}
			continue
		}
		v.walkValue(it, el, contained)
	}
	v.setIndex(-1)
}

// walkTwin validates an _element twin: an Element object, or an array of them (nulls checked by alignment).
func (v *validator) walkTwin(n *node, el elemDef) {
	if !el.array {
		if n.kind != jsonObject {
			v.fail1(CodeStructure, "", "json-type: an _element must be a JSON object")
			return
		}
		v.walkObject(n, v.element)
		return
	}
	if n.kind != jsonArray {
		v.fail1(CodeStructure, "", "cardinality: the _element twin of a list must be a JSON array")
		return
	}
	if len(n.items) == 0 {
		v.fail1(CodeInvalid, "", "empty: FHIR JSON does not allow empty arrays")
		return
	}
	for i := range n.items {
		v.setIndex(i)
		switch it := &n.items[i]; it.kind {
		case jsonNull:
		case jsonObject:
			v.walkObject(it, v.element)
		default:
			v.fail1(CodeStructure, "", "json-type: an _element item must be a JSON object or null")
		}
	}
	v.setIndex(-1)
}

// walkValue validates a single (non-array) value of type el.typ.
func (v *validator) walkValue(n *node, el elemDef, contained bool) {
	switch {
	case el.typ == "ResourceList":
		v.walkResource(n, "", contained)
	case el.primitive:
		v.checkPrimitive(n, el)
	default:
		t, ok := lookupType(el.typ)
		if !ok { // the generated table is closed under its types (TestElementTableClosed)
			v.fail1(CodeStructure, "", "unknown-type: "+el.typ)
			return
		}
		if n.kind != jsonObject {
			v.fail1(CodeStructure, "", "json-type: a "+el.typ+" must be a JSON object")
			return
		}
		v.walkObject(n, t)
	}
}

// checkPrimitive checks a primitive's JSON kind and format (stage 1) and its required binding (stage 2).
func (v *validator) checkPrimitive(n *node, el elemDef) {
	want := primitiveJSONKind(el.typ)
	if n.kind != want {
		what := "string"
		switch want {
		case jsonBool:
			what = "boolean"
		case jsonNumber:
			what = "number"
		}
		v.fail1(CodeStructure, "", "json-type: a FHIR "+el.typ+" must be a JSON "+what)
		return
	}
	if n.kind == jsonString && strings.IndexByte(n.str, 0) >= 0 {
		// No FHIR primitive may hold U+0000 (and nothing socialrx stores can): name it, whatever the type.
		v.fail1(CodeValue, "", "format: contains a NUL character (U+0000), which no FHIR "+el.typ+" may hold")
		return
	}
	if !validPrimitive(el.typ, n.str) {
		v.fail1(CodeValue, "", "format: not a valid FHIR "+el.typ)
		return
	}
	if el.typ == "xhtml" {
		if e := checkNarrative(n.str); e != nil {
			code := CodeInvariant
			if e.invariant == "" {
				code = CodeValue
			}
			v.fail1(code, "", e.Error())
			return
		}
	}
	if el.codes != "" && !codeIn(el.codes, n.str) {
		v.fail2(CodeCodeInvalid, "", codeDiagnostics(el))
	}
	switch el.typ {
	case "uri", "url", "canonical":
		if strings.HasPrefix(n.str, "#") {
			v.localRef(n.str)
		}
	}
}

// codeIn reports whether code is one of the comma-separated codes.
func codeIn(codes, code string) bool {
	for c := range strings.SplitSeq(codes, ",") {
		if c == code {
			return true
		}
	}
	return false
}

func codeDiagnostics(el elemDef) string {
	list := strings.ReplaceAll(el.codes, ",", " | ")
	if n := strings.Count(el.codes, ","); n > 15 {
		list = strings.Join(strings.SplitN(el.codes, ",", 16)[:15], " | ") + " | …"
	}
	if el.valueSet != "" {
		return "code: not a code of the required value set " + el.valueSet + " (" + list + ")"
	}
	return "code: not a code of the required binding (" + list + ")"
}

// checkRequired reports missing min=1 elements: the schema's, then the hand-coded ones (rules.go).
func (v *validator) checkRequired(n *node, t typeSpec) {
	for _, list := range [2]string{t.required, extraRequired(t.name)} {
		if list == "" {
			continue
		}
		for name := range strings.SplitSeq(list, ",") {
			if base, ok := strings.CutSuffix(name, "[x]"); ok {
				if !hasChoice(n, base) {
					v.fail2(CodeRequired, base+"[x]", "required: the element is missing (min cardinality 1)")
				}
				continue
			}
			if n.get(name) == nil {
				v.fail2(CodeRequired, name, "required: the element is missing (min cardinality 1)")
			}
		}
	}
}

func hasChoice(n *node, base string) bool {
	for _, m := range n.members {
		if len(m.key) > len(base) && strings.HasPrefix(m.key, base) && m.key[len(base)] >= 'A' && m.key[len(base)] <= 'Z' {
			return true
		}
	}
	return false
}
