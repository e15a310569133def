package fhir

import (
	"strings"
	"testing"
)

// TestElementTableClosed checks that every type the generated table refers to is a primitive, a resource
// (ResourceList) or itself in the table, and that the flags agree with the types.
func TestElementTableClosed(t *testing.T) {
	t.Parallel()
	resources := 0
	for name := range typeTable {
		ts, ok := lookupType(name)
		if !ok || !strings.ContainsRune("RDEB", rune(ts.kind)) {
			t.Errorf("%s: bad type entry %q", name, typeTable[name])
		}
		if ts.isResource() {
			resources++
		}
		for r := range strings.SplitSeq(ts.required, ",") {
			if _, ok := elementTable[name+"."+r]; r != "" && !ok {
				t.Errorf("%s: required %s is not an element", name, r)
			}
		}
	}
	if len(typeTable) != 659 || resources != 146 {
		t.Errorf("%d types, %d resources; the R4 schema has 659 and 146", len(typeTable), resources)
	}
	for key, e := range elementTable {
		typeName, elem, _ := strings.Cut(key, ".")
		if _, ok := lookupType(typeName); !ok {
			t.Errorf("%s: no type entry", key)
		}
		refs := []string{e.typ}
		if choice := strings.HasSuffix(elem, "[x]"); choice != (e.flags&elemChoice != 0) {
			t.Errorf("%s: choice flag", key)
		} else if choice {
			refs = strings.Split(e.typ, "/")
		} else if isPrimitive(e.typ) != (e.flags&elemPrimitive != 0) || e.flags&elemTwin != 0 && !isPrimitive(e.typ) {
			t.Errorf("%s: primitive/twin flags %b for %s", key, e.flags, e.typ)
		}
		if e.codes != "" && e.typ != "code" {
			t.Errorf("%s: codes on a %s", key, e.typ)
		}
		for _, r := range refs {
			if r == "ResourceList" || isPrimitive(r) {
				continue
			}
			if _, ok := lookupType(r); !ok {
				t.Errorf("%s refers to unknown type %q", key, r)
			}
		}
	}
}

func TestElementLookup(t *testing.T) {
	t.Parallel()
	var l elementLookup
	sr, _ := lookupType("ServiceRequest")
	ext, _ := lookupType("Extension")
	entry, _ := lookupType("Bundle_Entry")
	tests := []struct {
		t     typeSpec
		key   string
		ok    bool
		want  elemDef
		codes bool
	}{
		{sr, "status", true, elemDef{typ: "code", primitive: true, twin: true, valueSet: "request-status"}, true},
		{sr, "basedOn", true, elemDef{typ: "Reference", array: true}, false},
		{sr, "instantiatesCanonical", true, elemDef{typ: "canonical", array: true, primitive: true}, false},
		{sr, "instantiatesUri", true, elemDef{typ: "uri", array: true, primitive: true, twin: true}, false},
		{sr, "occurrencePeriod", true, elemDef{typ: "Period", choice: "occurrence"}, false},
		{sr, "occurrenceDateTime", true, elemDef{typ: "dateTime", primitive: true, twin: true, choice: "occurrence"}, false},
		{sr, "asNeededCodeableConcept", true, elemDef{typ: "CodeableConcept", choice: "asNeeded"}, false},
		{sr, "contained", true, elemDef{typ: "ResourceList", array: true}, false},
		{sr, "id", true, elemDef{typ: "id", primitive: true}, false},
		{sr, "occurrenceString", false, elemDef{}, false},
		{sr, "occurrence", false, elemDef{}, false},
		{sr, "occurrence[x]", false, elemDef{}, false},
		{sr, "status.x", false, elemDef{}, false},
		{sr, "PatientInstruction", false, elemDef{}, false},
		{ext, "valueBase64Binary", true, elemDef{typ: "base64Binary", primitive: true, twin: true, choice: "value"}, false},
		{ext, "url", true, elemDef{typ: "uri", primitive: true, twin: true}, false},
		{ext, "modifierExtension", false, elemDef{}, false},
		{entry, "modifierExtension", true, elemDef{typ: "Extension", array: true}, false},
		{entry, "id", true, elemDef{typ: "string", primitive: true}, false},
		{entry, "resource", true, elemDef{typ: "ResourceList"}, false},
		{entry, "resourceType", false, elemDef{}, false},
	}
	for _, tc := range tests {
		got, ok := l.element(tc.t, tc.key)
		if tc.codes != (got.codes != "") {
			t.Errorf("%s.%s: codes %q", tc.t.name, tc.key, got.codes)
		}
		got.codes = ""
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s.%s = %+v, %v; want %+v, %v", tc.t.name, tc.key, got, ok, tc.want, tc.ok)
		}
	}
	if isResourceType("Bundle_Entry") || !isResourceType("Task") || isResourceType("Reference") {
		t.Error("isResourceType")
	}
	if got := displayType("CapabilityStatement_SearchParam"); got != "CapabilityStatement.searchParam" {
		t.Errorf("displayType = %q", got)
	}
}
