package fhir

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/fault"
)

// narrativeSR is a ServiceRequest whose narrative div is div (as XHTML text).
func narrativeSR(div string) []byte {
	b, _ := json.Marshal(div)
	return sr(`"text":{"status":"generated","div":` + string(b) + `}`)
}

// TestNarrativeTxt1Txt2: a narrative with anything beyond basic XHTML (scripts, event attributes,
// javascript: links, forms, frames, styles that run code) breaks txt-1, an empty one txt-2: 400 naming
// ServiceRequest.text.div. Real narratives (tables, links, images, entities) pass.
func TestNarrativeTxt1Txt2(t *testing.T) {
	t.Parallel()
	const ns = `xmlns="http://www.w3.org/1999/xhtml"`
	ok := []string{
		`<div ` + ns + `>Alex Smith</div>`,
		`<div ` + ns + `><p>Refer to <b>walking</b> group&nbsp;&amp; <a href="https://example.org/x">info</a>, <a name="n">anchor</a></p></div>`,
		`<div ` + ns + ` xml:lang="en-GB" lang="en-GB"><table class="grid" border="1"><thead><tr><th colspan="2">Name</th></tr></thead><tbody><tr><td style="color: red">A</td><td>B</td></tr></tbody></table></div>`,
		`<div ` + ns + `><img src="#photo" alt="photo"/></div>`,
		`<div ` + ns + `><img src="data:image/png;base64,iVBORw0KGgo=" alt=""/></div>`,
		`<div ` + ns + `><ul><li>a</li></ul><ol start="2"><li>b</li></ol><dl><dt>t</dt><dd>d</dd></dl><!-- a comment --><br/><hr/></div>`,
		"<div " + ns + ">\n  <h1>Referral</h1>\n  <pre>  x  </pre>\n</div>",
	}
	for _, div := range ok {
		if _, err := ParseServiceRequest(narrativeSR(div)); err != nil {
			t.Errorf("safe narrative refused: %s\n%v", div, err)
		}
	}
	bad := []struct{ div, code, says string }{
		{`<div ` + ns + `><script>alert(1)</script></div>`, "invariant", "txt-1: <script>"},
		{`<div ` + ns + `><p onclick="alert(1)">x</p></div>`, "invariant", "onclick"},
		{`<div ` + ns + `><img src="x" onerror="alert(1)"/></div>`, "invariant", "onerror"},
		{`<div ` + ns + `><a href="javascript:alert(1)">x</a></div>`, "invariant", "javascript"},
		{`<div ` + ns + `><a href=" JaVa&#x09;Script:alert(1)">x</a></div>`, "invariant", "javascript"},
		{`<div ` + ns + `><a href="data:text/html;base64,PHNjcmlwdD4=">x</a></div>`, "invariant", "data:"},
		{`<div ` + ns + `><img src="data:image/svg+xml;base64,PHN2Zz4=" alt=""/></div>`, "invariant", "data:"},
		{`<div ` + ns + `><span style="background:url(javascript:alert(1))">x</span></div>`, "invariant", "javascript:"},
		{`<div ` + ns + `><span style="width: expression(alert(1))">x</span></div>`, "invariant", "expression("},
		{`<div ` + ns + `><iframe src="https://example.org"></iframe>x</div>`, "invariant", "<iframe>"},
		{`<div ` + ns + `><form action="https://example.org"><input name="q"/></form></div>`, "invariant", "<form>"},
		{`<div ` + ns + `><style>body{}</style>x</div>`, "invariant", "<style>"},
		{`<div ` + ns + `><object data="x">x</object></div>`, "invariant", "<object>"},
		{`<div ` + ns + `><svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg></div>`, "invariant", "<svg>"},
		{`<div ` + ns + ` xmlns:x="http://www.w3.org/1999/xlink"><a x:href="javascript:alert(1)">x</a></div>`, "invariant", "another namespace"},
		{`<div ` + ns + `>   </div>`, "invariant", "txt-2"},
		{`<div ` + ns + `><p> </p></div>`, "invariant", "txt-2"},
		{`<div>no namespace</div>`, "invariant", "txt-1"},
		{`<div ` + ns + `>a</div><div ` + ns + `>b</div>`, "invariant", "exactly one"},
		{`<div ` + ns + `><p>unclosed</div>`, "value", "not well-formed"},
		{`<div ` + ns + `><?php echo 1 ?>x</div>`, "invariant", "processing instructions"},
	}
	for _, tc := range bad {
		_, err := ParseServiceRequest(narrativeSR(tc.div))
		fe, okErr := err.(*Error)
		if !okErr || len(fe.Issues) != 1 {
			t.Errorf("unsafe narrative accepted or odd error: %s\n%v", tc.div, err)
			continue
		}
		is := fe.Issues[0]
		if string(is.Code) != tc.code || len(is.Expression) != 1 || is.Expression[0] != "ServiceRequest.text.div" || !strings.Contains(is.Diagnostics, tc.says) {
			t.Errorf("%s: issue %+v, want %s at ServiceRequest.text.div saying %q", tc.div, is, tc.code, tc.says)
		}
		if fe.Kind != fault.Invalid {
			t.Errorf("%s: kind %v, want invalid (400)", tc.div, fe.Kind)
		}
	}
	// A contained resource's narrative is checked too.
	_, err := ParseServiceRequest(sr(`"contained":[{"resourceType":"Patient","id":"p","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>x</script></div>"}}],"supportingInfo":[{"reference":"#p"}]`))
	if fe, ok := err.(*Error); !ok || fe.Issues[0].Expression[0] != "ServiceRequest.contained[0].text.div" {
		t.Errorf("contained narrative: %v", err)
	}
}

// TestIndexedLengthLimits: identifiers and references beyond the documented limits are 400 naming the
// element (too-long); at the limit they pass.
func TestIndexedLengthLimits(t *testing.T) {
	t.Parallel()
	at := func(n int) string { return strings.Repeat("a", n) }
	for _, tc := range []struct {
		name, extra, expr string
	}{
		{"identifier value", `"identifier":[{"system":"https://example.org/ids","value":"` + at(MaxIdentifierValue+1) + `"}]`, "ServiceRequest.identifier[0].value"},
		{"identifier system", `"identifier":[{"value":"x"},{"system":"https://example.org/` + at(MaxIdentifierSystem) + `","value":"y"}]`, "ServiceRequest.identifier[1].system"},
		{"requester reference", `"requester":{"reference":"Organization/` + at(MaxReference) + `"}`, "ServiceRequest.requester.reference"},
		{"requester identifier", `"requester":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"` + at(MaxIdentifierValue+1) + `"}}`, "ServiceRequest.requester.identifier.value"},
	} {
		_, err := ParseServiceRequest(sr(tc.extra))
		fe, ok := err.(*Error)
		if !ok || len(fe.Issues) != 1 || fe.Issues[0].Code != CodeTooLong || fe.Issues[0].Expression[0] != tc.expr || fe.Kind != fault.Invalid {
			t.Errorf("%s: %v, want one too-long issue at %s", tc.name, err, tc.expr)
		}
	}
	long := `"subject":{"reference":"Patient/` + at(MaxReference) + `"}`
	if _, err := ParseServiceRequest(sr(long, "subject")); err == nil || !strings.Contains(err.Error(), "ServiceRequest.subject.reference") {
		t.Errorf("subject reference: %v", err)
	}
	fits := `"identifier":[{"system":"https://example.org/` + at(MaxIdentifierSystem-len("https://example.org/")) + `","value":"` + at(MaxIdentifierValue) + `"}]`
	if _, err := ParseServiceRequest(sr(fits)); err != nil {
		t.Errorf("values at the limits refused: %v", err)
	}
}
