package web

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/mapping"
)

// The monthly figures as a chart a volunteer can read (issue 14): an inline SVG drawn on the server (no
// script; only presentation attributes, which the pages' Content-Security-Policy allows), with a <title> and
// a <desc>, every bar labelled with its number, a legend in words, and a table of the same figures below it.
// A suppressed count (1 to 4) draws no bar: the chart and the table say "fewer than 5".

// Chart geometry (SVG user units): one block per month, down the page (it reads on a phone as on a laptop),
// each with the month's name and a horizontal bar per count.
const (
	chartW   = 360
	barLeft  = 12
	barMax   = 250 // the longest bar
	legendH  = 34
	monthH   = 20 // the month's name above its bars
	barH     = 14
	barGap   = 4
	monthGap = 10
)

// FewerThan5 is how a suppressed count reads on the pages.
const FewerThan5 = "fewer than 5"

// series is one bar of each month: its label, colour and count.
type series struct {
	label, colour string
	count         func(mapping.MonthFigures) mapping.Count
}

// chartSeries are the bars of each month, in order.
func chartSeries() [3]series {
	return [3]series{
		{"Received", "#005eb8", func(m mapping.MonthFigures) mapping.Count { return m.Received }},
		{"Accepted", "#007f3b", func(m mapping.MonthFigures) mapping.Count { return m.Accepted }},
		{"Completed", "#330072", func(m mapping.MonthFigures) mapping.Count { return m.Completed }},
	}
}

// chartID is what an id prefix may be.
var chartID = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// FiguresChart renders the figures as a <figure>: the SVG bar chart (referrals received, accepted and
// completed per month) and a table with those and the other figures (declined, measures, SWEMWBS change).
// id prefixes the elements' ids (lower-case letters, digits, '-'; anything else becomes "figures"); caption
// says whose figures they are (escaped).
func FiguresChart(id, caption string, figs []mapping.MonthFigures) template.HTML {
	if !chartID.MatchString(id) {
		id = "figures"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<figure class="chart" id="%s">`, id)
	writeSVG(&b, id, caption, figs)
	writeTable(&b, id, caption, figs)
	b.WriteString(`</figure>`)
	return template.HTML(b.String()) // every text in it was escaped (esc) or is a number
}

// writeSVG writes the bar chart.
func writeSVG(b *strings.Builder, id, caption string, figs []mapping.MonthFigures) {
	all := chartSeries()
	block := monthH + len(all)*(barH+barGap) + monthGap
	height := legendH + len(figs)*block + 4
	top := chartMax(figs)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="%s-title %s-desc" font-family="system-ui, Arial, sans-serif" font-size="13">`,
		chartW, height, chartW, height, id, id)
	fmt.Fprintf(b, `<title id="%s-title">%s</title>`, id, esc(caption+": referrals per month"))
	fmt.Fprintf(b, `<desc id="%s-desc">%s</desc>`, id, esc(chartDesc(figs)))
	for i, s := range all { // the legend, in words
		x := barLeft + i*112
		fmt.Fprintf(b, `<rect x="%d" y="8" width="14" height="14" fill="%s"/><text x="%d" y="20">%s</text>`, x, s.colour, x+19, s.label)
	}
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#4c6272"/>`, barLeft, legendH, barLeft, height-4)
	for mi, m := range figs {
		y0 := legendH + mi*block
		fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s</text>`, barLeft+4, y0+14, esc(monthLabel(m.Month)))
		for si, s := range all {
			writeBar(b, y0+monthH+si*(barH+barGap), top, s, monthLabel(m.Month), s.count(m))
		}
	}
	b.WriteString(`</svg>`)
}

// writeBar writes one count: a bar with "6 received" after it, or, suppressed, no bar and "received: fewer
// than 5".
func writeBar(b *strings.Builder, y, top int, s series, month string, c mapping.Count) {
	word := strings.ToLower(s.label)
	if c.Suppressed {
		fmt.Fprintf(b, `<text x="%d" y="%d" font-size="12">%s: %s</text>`, barLeft+4, y+11, word, FewerThan5)
		return
	}
	w := scaled(c.N, top)
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s</title></rect>`,
		barLeft, y, w, barH, s.colour, esc(fmt.Sprintf("%s in %s: %d", s.label, month, c.N)))
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="12">%d %s</text>`, barLeft+w+5, y+11, c.N, word)
}

// chartMax is the scale's top: the largest count shown, rounded up to a multiple of 10 (at least 10).
func chartMax(figs []mapping.MonthFigures) int {
	top := 0
	for _, m := range figs {
		for _, s := range chartSeries() {
			if c := s.count(m); !c.Suppressed {
				top = max(top, c.N)
			}
		}
	}
	return max(10, int(math.Ceil(float64(top)/10))*10)
}

// scaled is n's length on a scale whose top is top.
func scaled(n, top int) int { return int(math.Round(float64(n) * barMax / float64(top))) }

// chartDesc says in words what the chart shows.
func chartDesc(figs []mapping.MonthFigures) string {
	if len(figs) == 0 {
		return "No months to show."
	}
	d := fmt.Sprintf("Bar chart of the referrals received, accepted and completed in each month from %s to %s, counted in the month they were received. "+
		"Each bar is labelled with its number. A number from 1 to 4 is not shown: the chart says %q instead of a bar. The table below gives the same figures.",
		monthLabel(figs[0].Month), monthLabel(figs[len(figs)-1].Month), FewerThan5)
	total, hidden := 0, false
	for _, m := range figs {
		total += m.Received.N
		hidden = hidden || m.Received.Suppressed
	}
	if total == 0 && !hidden {
		d += " No referrals were received in these months."
	}
	return d
}

// writeTable writes the figures as a table.
func writeTable(b *strings.Builder, id, caption string, figs []mapping.MonthFigures) {
	fmt.Fprintf(b, `<table id="%s-table"><caption>%s</caption><thead><tr><th scope="col">Month</th><th scope="col">Received</th><th scope="col">Accepted</th><th scope="col">Declined</th><th scope="col">Completed</th><th scope="col">With a baseline measure</th><th scope="col">With a follow-up</th><th scope="col">Mean SWEMWBS change</th></tr></thead><tbody>`,
		id, esc(caption+": the figures in the chart, and more"))
	for _, m := range figs {
		fmt.Fprintf(b, `<tr><th scope="row">%s</th>`, esc(monthLabel(m.Month)))
		for _, c := range []mapping.Count{m.Received, m.Accepted, m.Declined, m.Completed, m.WithBaseline, m.WithFollowUp} {
			fmt.Fprintf(b, `<td>%s</td>`, CountText(c))
		}
		fmt.Fprintf(b, `<td>%s</td></tr>`, esc(statText(m.SWEMWBSChange)))
	}
	b.WriteString(`</tbody></table>`)
}

// CountText is a count as the pages say it: the number, or "fewer than 5".
func CountText(c mapping.Count) string {
	if c.Suppressed {
		return FewerThan5
	}
	return strconv.Itoa(c.N)
}

// statText is a mean as the table says it: signed to one decimal place with its n, "not shown" when it rests
// on fewer than 5 referrals, "none" when on none.
func statText(s mapping.Stat) string {
	switch {
	case s.Value != nil:
		return fmt.Sprintf("%+.1f (n = %s)", *s.Value, CountText(s.N))
	case s.N.Suppressed || s.N.N > 0:
		return "not shown (" + FewerThan5 + " measured)"
	}
	return "none"
}

// monthLabel is "2026-11" as "Nov 2026".
func monthLabel(m string) string {
	t, err := time.Parse("2006-01", m)
	if err != nil {
		return m
	}
	return t.Format("Jan 2006")
}

// esc escapes text for HTML and SVG.
func esc(s string) string { return html.EscapeString(s) }

// DefaultMonths are the twelve UK months up to and including now's: the chart pages' default span.
func DefaultMonths(now time.Time, uk *time.Location) (from, to string) {
	t := now.In(uk)
	first := time.Date(t.Year(), t.Month(), 1, 12, 0, 0, 0, uk)
	return first.AddDate(0, -11, 0).Format("2006-01"), first.Format("2006-01")
}
