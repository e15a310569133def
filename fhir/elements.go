package fhir

//go:generate go run ./internal/schemagen -in testdata/fhir.schema.json -out elements_gen.go

import "strings"

// element is a value of the generated elementTable.
type element struct {
	typ   string // FHIR type; for a choice ("base[x]"), the types separated by '/'
	codes string // comma-separated codes of a required binding the schema enumerates
	flags uint8
}

// element flags.
const (
	elemArray     uint8 = 1 << iota // max = *: a JSON array
	elemPrimitive                   // a primitive type
	elemTwin                        // an _element twin is allowed (primitives; for a choice, its primitive variants)
	elemChoice                      // a choice element "base[x]"
)

// typeSpec is a typeTable entry (see internal/schemagen for the grammar).
type typeSpec struct {
	name     string
	kind     byte   // 'R' Resource, 'D' DomainResource, 'E' Element, 'B' BackboneElement
	required string // comma-separated elements with min=1 from the schema
}

// lookupType returns the spec of a resource, complex datatype or backbone element.
func lookupType(name string) (typeSpec, bool) {
	spec, ok := typeTable[name]
	if !ok || spec == "" {
		return typeSpec{}, false
	}
	return typeSpec{name: name, kind: spec[0], required: strings.TrimPrefix(spec[1:], "|")}, true
}

// isResource reports whether the spec describes a resource.
func (t typeSpec) isResource() bool { return t.kind == 'R' || t.kind == 'D' }

// elemDef is what the table says about one JSON property of a type.
type elemDef struct {
	typ       string // FHIR type; for a choice, the variant's type
	array     bool   // max = *
	primitive bool   // typ is a primitive type
	twin      bool   // a primitive that may have an _element twin
	codes     string // comma-separated codes of a required binding, "" if none
	valueSet  string // name of the required value set when known (hand table), for diagnostics
	choice    string // base name ("value") for choice elements, "" otherwise
}

// elementLookup resolves JSON property names (without the leading '_' of a twin); its buffer builds
// "Type.element" keys without allocating.
type elementLookup struct {
	buf []byte
}

func (l *elementLookup) entry(typeName, name, suffix string) (element, bool) {
	l.buf = append(append(append(append(l.buf[:0], typeName...), '.'), name...), suffix...)
	e, ok := elementTable[string(l.buf)]
	return e, ok
}

// element resolves key in type t.
func (l *elementLookup) element(t typeSpec, key string) (elemDef, bool) {
	if e, ok := l.entry(t.name, key, ""); ok {
		if e.flags&elemChoice != 0 { // "value[x]" is not a JSON property name
			return elemDef{}, false
		}
		d := elemDef{typ: e.typ, codes: e.codes, array: e.flags&elemArray != 0, primitive: e.flags&elemPrimitive != 0, twin: e.flags&elemTwin != 0}
		if d.typ == "code" && d.codes == "" {
			d.codes, d.valueSet = extraBinding(t.name, key)
		}
		return d, true
	}
	if d, ok := t.implied(key); ok {
		return d, true
	}
	// Choice elements: "base[x]" → "type/type…"; key must be base + capitalised type.
	for i := 1; i < len(key); i++ {
		if key[i] < 'A' || key[i] > 'Z' {
			continue
		}
		e, ok := l.entry(t.name, key[:i], "[x]")
		if !ok {
			continue
		}
		for typ := range strings.SplitSeq(e.typ, "/") {
			if capitalisedEqual(typ, key[i:]) {
				prim := isPrimitive(typ)
				return elemDef{typ: typ, primitive: prim, twin: prim && e.flags&elemTwin != 0, choice: key[:i]}, true
			}
		}
		return elemDef{}, false
	}
	return elemDef{}, false
}

// capitalisedEqual reports whether suffix is typ with its first letter upper-cased.
func capitalisedEqual(typ, suffix string) bool {
	if len(typ) != len(suffix) || typ == "" {
		return false
	}
	c := typ[0]
	if c >= 'a' && c <= 'z' {
		c -= 'a' - 'A'
	}
	return c == suffix[0] && typ[1:] == suffix[1:]
}

// implied returns the elements a kind stands for.
func (t typeSpec) implied(key string) (elemDef, bool) {
	switch t.kind {
	case 'R', 'D':
		switch key {
		case "id":
			return elemDef{typ: "id", primitive: true}, true
		case "meta":
			return elemDef{typ: "Meta"}, true
		case "implicitRules":
			return elemDef{typ: "uri", primitive: true, twin: true}, true
		case "language":
			return elemDef{typ: "code", primitive: true, twin: true}, true
		}
		if t.kind == 'D' {
			switch key {
			case "text":
				return elemDef{typ: "Narrative"}, true
			case "contained":
				return elemDef{typ: "ResourceList", array: true}, true
			case "extension", "modifierExtension":
				return elemDef{typ: "Extension", array: true}, true
			}
		}
	case 'E', 'B':
		switch key {
		case "id":
			return elemDef{typ: "string", primitive: true}, true
		case "extension":
			return elemDef{typ: "Extension", array: true}, true
		case "modifierExtension":
			if t.kind == 'B' {
				return elemDef{typ: "Extension", array: true}, true
			}
		}
	}
	return elemDef{}, false
}

// isPrimitive reports whether typ is a FHIR primitive type.
func isPrimitive(typ string) bool {
	switch typ {
	case "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id", "instant",
		"integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid", "xhtml":
		return true
	}
	return false
}

// isResourceType reports whether name is an R4 resource type.
func isResourceType(name string) bool {
	t, ok := lookupType(name)
	return ok && t.isResource()
}
