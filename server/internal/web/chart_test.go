package web

import (
	"encoding/xml"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
)

// parseXML checks that s is well-formed XML (the SVG and table are XHTML-clean) and returns its text.
func parseXML(t *testing.T, s string) string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return text.String()
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, s)
		}
		if c, ok := tok.(xml.CharData); ok {
			text.Write(c)
			text.WriteByte(' ')
		}
	}
}

var rectRe = regexp.MustCompile(`<rect x="12" y="(\d+)" width="(\d+)" height="14" fill="#[0-9a-f]+"><title>([^<]*)</title></rect>`)

func TestFiguresChart(t *testing.T) {
	t.Parallel()
	figs := []mapping.MonthFigures{
		{Month: "2026-10", Received: mapping.NewCount(20), Accepted: mapping.NewCount(10), Completed: mapping.NewCount(5)},
		{Month: "2026-11", Received: mapping.NewCount(3), Accepted: mapping.NewCount(0), Completed: mapping.NewCount(0)}, // 3: suppressed
		{Month: "2026-12"}, // an empty month
	}
	out := string(FiguresChart("group", `Walks <script>alert("x")</script> & co`, figs))
	text := parseXML(t, out)
	if strings.Contains(out, "<script") || !strings.Contains(out, "Walks &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co") {
		t.Errorf("the caption is not escaped:\n%s", out)
	}
	for _, want := range []string{`role="img"`, `aria-labelledby="group-title group-desc"`, `<title id="group-title">`, `<desc id="group-desc">`} {
		if !strings.Contains(out, want) {
			t.Errorf("the SVG lacks %s", want)
		}
	}
	bars := rectRe.FindAllStringSubmatch(out, -1)
	var titles []string
	for _, m := range bars {
		titles = append(titles, m[3])
	}
	// October: three bars at scale 20 (top 20 → 250 units); November's received (3) has no bar; the empty
	// December and November's zeros have bars of length 0.
	want := []string{"Received in Oct 2026: 20", "Accepted in Oct 2026: 10", "Completed in Oct 2026: 5",
		"Accepted in Nov 2026: 0", "Completed in Nov 2026: 0",
		"Received in Dec 2026: 0", "Accepted in Dec 2026: 0", "Completed in Dec 2026: 0"}
	if strings.Join(titles, "|") != strings.Join(want, "|") {
		t.Fatalf("bars %q, want %q", titles, want)
	}
	if bars[0][2] != "250" || bars[1][2] != "125" || bars[2][2] != "63" || bars[3][2] != "0" {
		t.Errorf("bar lengths %s %s %s %s, want 250 125 63 0", bars[0][2], bars[1][2], bars[2][2], bars[3][2])
	}
	if strings.Contains(out, "Received in Nov 2026: 3") || strings.Contains(text, " 3 ") {
		t.Errorf("a suppressed count is shown:\n%s", out)
	}
	if !strings.Contains(strings.Join(strings.Fields(text), " "), "Nov 2026 received: fewer than 5 Accepted in Nov 2026: 0 0 accepted") {
		t.Errorf("the suppressed bar does not say fewer than 5:\n%s", out)
	}
	for _, w := range []string{"Received Accepted Completed", "Oct 2026", "Nov 2026", "Dec 2026",
		"Received in Oct 2026: 20 20 received", "Completed in Oct 2026: 5 5 completed", "Nov 2026 fewer than 5 0 0 0 0 0 none", "Oct 2026 20 10 0 5 0 0 none"} {
		if !strings.Contains(strings.Join(strings.Fields(text), " "), w) {
			t.Errorf("text %q missing: %s", w, text)
		}
	}
	if strings.Contains(out, "NaN") || strings.Contains(out, "style=") || strings.Contains(out, "<script") {
		t.Errorf("NaN, a style attribute or a script in the chart:\n%s", out)
	}
}

func TestFiguresChartEmptyAndOdd(t *testing.T) {
	t.Parallel()
	empty := []mapping.MonthFigures{{Month: "2026-01"}, {Month: "2026-02"}}
	out := string(FiguresChart("bad id!", "Area", empty))
	text := parseXML(t, out)
	if !strings.Contains(out, `id="figures"`) || !strings.Contains(text, "No referrals were received in these months.") {
		t.Errorf("empty months: %s", out)
	}
	if got := rectRe.FindAllStringSubmatch(out, -1); len(got) != 6 {
		t.Errorf("%d bars for two empty months, want 6 of height 0", len(got))
	}
	if out := string(FiguresChart("x", "Nothing", nil)); !strings.Contains(parseXML(t, out), "No months to show.") {
		t.Errorf("no months: %s", out)
	}
	v := 2.456
	if got := statText(mapping.Stat{N: mapping.NewCount(7), Value: &v}); got != "+2.5 (n = 7)" {
		t.Errorf("stat %q", got)
	}
	if got := statText(mapping.Stat{N: mapping.NewCount(3)}); got != "not shown (fewer than 5 measured)" {
		t.Errorf("suppressed stat %q", got)
	}
	uk, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	if from, to := DefaultMonths(time.Date(2026, 3, 31, 23, 30, 0, 0, time.UTC), uk); from != "2025-05" || to != "2026-04" {
		t.Errorf("default months %s to %s (UK time is already April)", from, to)
	}
}
