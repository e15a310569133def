package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// summary is a figure over the rounds: its median and range.
type summary struct {
	median, min, max float64
	n                int
}

// summarize returns the median (the mean of the middle two for an even count) and the range of vs; NaNs
// (a round that did not measure it) are left out.
func summarize(vs []float64) summary {
	xs := make([]float64, 0, len(vs))
	for _, v := range vs {
		if !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return summary{median: math.NaN(), min: math.NaN(), max: math.NaN()}
	}
	slices.Sort(xs)
	m := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		m = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return summary{median: m, min: xs[0], max: xs[len(xs)-1], n: len(xs)}
}

// unit says how a metric is printed.
type unit int

const (
	unitRate  unit = iota // per second, no decimals
	unitDur               // a duration in seconds
	unitCount             // a whole number
	unitMiB               // KiB printed as MiB
	unitKiB               // bytes printed as KiB
	unitRatio             // two decimals and ×
)

// format prints v in u.
func (u unit) format(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	switch u {
	case unitDur:
		d := time.Duration(v * float64(time.Second))
		switch {
		case d >= 10*time.Second:
			return d.Round(100 * time.Millisecond).String()
		case d >= 10*time.Millisecond:
			return d.Round(100 * time.Microsecond).String()
		default:
			return d.Round(10 * time.Microsecond).String()
		}
	case unitCount:
		return fmt.Sprintf("%.0f", v)
	case unitMiB:
		return fmt.Sprintf("%.0f MiB", v/1024)
	case unitKiB:
		return fmt.Sprintf("%.1f KiB", v/1024)
	case unitRatio:
		return fmt.Sprintf("%.2f×", v)
	default:
		if v < 10 {
			return fmt.Sprintf("%.1f", v)
		}
		return fmt.Sprintf("%.0f", v)
	}
}

// cell prints a summary: the median, and the range when there was more than one round.
func (u unit) cell(s summary) string {
	if s.n == 0 {
		return "–"
	}
	if s.n == 1 || s.min == s.max {
		return u.format(s.median)
	}
	return fmt.Sprintf("%s [%s–%s]", u.format(s.median), u.format(s.min), u.format(s.max))
}

// tableLine is one printed line of the table: a row's metric, socialrx's figure, the peer's and their ratio.
type tableLine struct {
	section string // printed once, above its lines
	row     string // printed on the row's first line
	metric  string
	ours    string
	peer    string
	ratio   string
}

// writeTable prints lines as aligned columns under a header, with each section's title above its lines.
func writeTable(w io.Writer, header [5]string, lines []tableLine) error {
	widths := [5]int{}
	for i, h := range header {
		widths[i] = len([]rune(h))
	}
	cells := func(l tableLine) [5]string { return [5]string{l.row, l.metric, l.ours, l.peer, l.ratio} }
	for _, l := range lines {
		for i, c := range cells(l) {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	pad := func(s string, n int) string { return s + strings.Repeat(" ", max(0, n-len([]rune(s)))) }
	row := func(c [5]string) string {
		var b strings.Builder
		for i, s := range c {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(pad(s, widths[i]))
		}
		return strings.TrimRight(b.String(), " ") + "\n"
	}
	var b strings.Builder
	b.WriteString(row(header))
	total := 8
	for _, n := range widths {
		total += n
	}
	b.WriteString(strings.Repeat("─", total) + "\n")
	section := ""
	for _, l := range lines {
		if l.section != section {
			section = l.section
			b.WriteString(section + "\n")
		}
		b.WriteString(row(cells(l)))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
