package console

import (
	_ "embed"
	"fmt"
	"html/template"
	"time"
)

//go:embed console.html.tmpl
var templateText string

// templates parses the console's templates (html/template: every value is escaped for its context).
func templates() (*template.Template, error) {
	return template.New("console").Funcs(template.FuncMap{
		"when":  func(t time.Time) string { return when(t) },
		"age":   age,
		"ms":    func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) },
		"short": short,
	}).Parse(templateText)
}

// when is a time as the console shows it: UTC, to the second ("—" for none).
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2 Jan 2006 15:04:05 UTC")
}

// age is a duration as a person reads it: "3d 4h", "2h 5m", "4m 10s", "12s" ("—" for none).
func age(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d <= 0:
		return "—"
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", d/time.Hour, (d%time.Hour)/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm %ds", d/time.Minute, (d%time.Minute)/time.Second)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// short is the end of a message id, enough to tell messages apart in a table (the start of a UUIDv7 is its
// time, the same for messages written together; the link holds the whole id).
func short(id string) string {
	if len(id) > 13 {
		return "…" + id[len(id)-12:]
	}
	return id
}
