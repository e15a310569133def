package fhir

import (
	"encoding/xml"
	"errors"
	"io"
	"slices"
	"strings"
)

// Narrative XHTML (R4 narrative.html, invariants txt-1 and txt-2 of Narrative.div). socialrx stores a
// ServiceRequest's narrative and serves it back to GP systems, which render it: it must never re-serve markup a
// browser would run. txt-1: "The narrative SHALL contain only the basic html formatting elements and attributes
// described in chapters 7-11 (except section 4 of chapter 9) and 15 of the HTML 4.0 standard, <a> elements
// (either name or href), images and internally contained style attributes"; txt-2: "The narrative SHALL have
// some non-whitespace content". The div must be well-formed XML in the XHTML namespace.
//
// What is allowed here is the list the HL7 validator uses for txt-1: no script, style or link elements, no
// forms, frames or objects, no event attributes (onclick …); and, beyond the element list, no script in a URL
// (javascript:, vbscript:, data: other than an image in img src) nor in a style attribute (expression(),
// javascript:).

const xhtmlNS = "http://www.w3.org/1999/xhtml"

// narrativeElements are the elements txt-1 allows.
var narrativeElements = []string{
	"a", "abbr", "acronym", "address", "b", "bdo", "big", "blockquote", "br", "caption", "cite", "code", "col",
	"colgroup", "dd", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd",
	"li", "ol", "p", "pre", "q", "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot",
	"th", "thead", "tr", "tt", "ul", "var",
}

// narrativeAttributes are the attributes allowed on every element; narrativeElementAttributes those allowed on
// some.
var (
	narrativeAttributes        = []string{"title", "style", "class", "id", "lang", "dir", "accesskey", "tabindex"}
	narrativeElementAttributes = map[string][]string{
		"a":          {"href", "name", "rel", "shape", "coords", "charset", "type", "hreflang"},
		"img":        {"src", "alt", "height", "width", "longdesc", "usemap", "ismap", "border", "align"},
		"table":      {"summary", "width", "border", "frame", "rules", "cellspacing", "cellpadding", "align", "bgcolor"},
		"col":        {"span", "width", "align", "char", "charoff", "valign"},
		"colgroup":   {"span", "width", "align", "char", "charoff", "valign"},
		"thead":      {"align", "char", "charoff", "valign"},
		"tbody":      {"align", "char", "charoff", "valign"},
		"tfoot":      {"align", "char", "charoff", "valign"},
		"tr":         {"align", "char", "charoff", "valign", "bgcolor"},
		"td":         {"abbr", "axis", "headers", "scope", "rowspan", "colspan", "align", "char", "charoff", "valign", "width", "height", "nowrap", "bgcolor"},
		"th":         {"abbr", "axis", "headers", "scope", "rowspan", "colspan", "align", "char", "charoff", "valign", "width", "height", "nowrap", "bgcolor"},
		"ol":         {"start", "type", "compact"},
		"ul":         {"type", "compact"},
		"li":         {"value", "type"},
		"q":          {"cite"},
		"blockquote": {"cite"},
		"pre":        {"width"},
		"bdo":        {"dir"},
		"div":        {"align"},
		"p":          {"align"},
		"caption":    {"align"},
		"h1":         {"align"}, "h2": {"align"}, "h3": {"align"}, "h4": {"align"}, "h5": {"align"}, "h6": {"align"},
		"hr": {"align", "noshade", "size", "width"},
		"br": {"clear"},
	}
)

// errNarrative is a narrative that breaks txt-1 or txt-2; its text is the OperationOutcome's diagnostics.
type errNarrative struct {
	invariant string // "txt-1", "txt-2", or "" for XML that is not well-formed
	msg       string
}

// Error is the diagnostics: the invariant broken and why.
func (e *errNarrative) Error() string {
	if e.invariant == "" {
		return e.msg
	}
	return e.invariant + ": " + e.msg
}

// checkNarrative checks a Narrative.div value; nil when it is safe, basic XHTML with some content.
func checkNarrative(s string) *errNarrative {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	d.Entity = xml.HTMLEntity // &nbsp; and the other HTML 4 entities are text, as in XHTML
	depth, roots, content := 0, 0, false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return &errNarrative{msg: "xhtml: the narrative is not well-formed XHTML (" + shortXMLError(err) + ")"}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if t.Name.Local != "div" || t.Name.Space != xhtmlNS {
					return &errNarrative{invariant: "txt-1", msg: `the narrative must be one <div xmlns="` + xhtmlNS + `"> element`}
				}
			}
			if e := checkNarrativeElement(t); e != nil {
				return e
			}
			if t.Name.Local == "img" {
				content = true
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 {
				if strings.TrimSpace(string(t)) != "" {
					return &errNarrative{invariant: "txt-1", msg: "the narrative must be one <div> element, with nothing around it"}
				}
				continue
			}
			if strings.TrimSpace(string(t)) != "" {
				content = true
			}
		case xml.ProcInst:
			return &errNarrative{invariant: "txt-1", msg: "the narrative may not hold processing instructions"}
		case xml.Directive:
			return &errNarrative{invariant: "txt-1", msg: "the narrative may not hold a DOCTYPE or other directive"}
		case xml.Comment:
		}
	}
	if roots != 1 {
		return &errNarrative{invariant: "txt-1", msg: `the narrative must be exactly one <div xmlns="` + xhtmlNS + `"> element`}
	}
	if !content {
		return &errNarrative{invariant: "txt-2", msg: "the narrative must have some non-whitespace content"}
	}
	return nil
}

// checkNarrativeElement checks one element and its attributes against txt-1.
func checkNarrativeElement(t xml.StartElement) *errNarrative {
	name := t.Name.Local
	if t.Name.Space != xhtmlNS || !slices.Contains(narrativeElements, name) {
		return &errNarrative{invariant: "txt-1", msg: "<" + safeName(name) + "> is not allowed in a narrative: only basic XHTML formatting, links and images"}
	}
	for _, a := range t.Attr {
		attr := a.Name.Local
		switch {
		case a.Name.Space == "xmlns" || (a.Name.Space == "" && attr == "xmlns"):
			if a.Value != xhtmlNS && a.Name.Space == "" {
				return &errNarrative{invariant: "txt-1", msg: "the narrative's namespace must be " + xhtmlNS}
			}
			continue
		case a.Name.Space == "http://www.w3.org/XML/1998/namespace" && attr == "lang":
			continue
		case a.Name.Space != "":
			return &errNarrative{invariant: "txt-1", msg: "attribute " + safeName(attr) + " of another namespace is not allowed on <" + name + ">"}
		case !slices.Contains(narrativeAttributes, attr) && !slices.Contains(narrativeElementAttributes[name], attr):
			return &errNarrative{invariant: "txt-1", msg: "attribute " + safeName(attr) + " is not allowed on <" + name + "> in a narrative (no event handlers, no scripts)"}
		}
		if msg := unsafeValue(name, attr, a.Value); msg != "" {
			return &errNarrative{invariant: "txt-1", msg: msg}
		}
	}
	return nil
}

// unsafeValue says why an attribute value would run script (a javascript: link, an expression() style), or "".
func unsafeValue(element, attr, v string) string {
	// Browsers ignore ASCII whitespace and control characters inside a URL scheme ("java\tscript:").
	compact := strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return -1
		}
		return r
	}, strings.ToLower(v))
	switch attr {
	case "href", "src", "cite", "longdesc", "usemap":
		for _, scheme := range []string{"javascript:", "vbscript:", "livescript:"} {
			if strings.HasPrefix(compact, scheme) {
				return attr + " on <" + element + "> may not be a " + strings.TrimSuffix(scheme, ":") + ": URL"
			}
		}
		if strings.HasPrefix(compact, "data:") && !(element == "img" && attr == "src" && strings.HasPrefix(compact, "data:image/") && !strings.HasPrefix(compact, "data:image/svg")) {
			return attr + " on <" + element + "> may not be a data: URL (only img src may hold an inline raster image)"
		}
	case "style":
		for _, bad := range []string{"expression(", "javascript:", "vbscript:", "behavior:", "-moz-binding", "@import"} {
			if strings.Contains(compact, bad) {
				return "a style attribute on <" + element + "> may not hold " + bad
			}
		}
	}
	return ""
}

// shortXMLError is the XML parser's message without the document's text.
func shortXMLError(err error) string {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		msg := se.Msg
		if len(msg) > 80 {
			msg = msg[:80]
		}
		return msg
	}
	return "unreadable"
}
