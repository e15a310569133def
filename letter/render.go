package letter

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"

	"codeberg.org/go-pdf/fpdf"
	"golang.org/x/text/unicode/norm"

	"github.com/socialrx/socialrx/mapping"
)

// Page layout (A4, millimetres, core font Helvetica). Sizes are in points at scale 1; a letter that does not
// fit on one page is drawn again smaller (scales).
const (
	margin    = 18.0
	lineH     = 5.0
	labelW    = 42.0
	fontBody  = 10.0
	fontHead  = 12.0
	fontTitle = 15.0
)

// Title is the letter's title (also the PDF's and the DocumentReference's description).
const Title = mapping.LetterDescription

// page draws one letter: the fpdf document, its text translator (UTF-8 to the core fonts' cp1252) and the
// scale of its sizes.
type page struct {
	pdf   *fpdf.Fpdf
	tr    func(string) string
	scale float64
}

// Render is the letter as PDF bytes (PDF 1.3, A4, core fonts, one page: a letter too long for it at the usual
// size is drawn smaller, down to 70%). The same letter always renders the same bytes. Characters the core fonts lack are
// written as their base letter where there is one ("ą" as "a"), else as "?": never dropped silently, never
// a failure.
func Render(l Letter) ([]byte, error) {
	var out []byte
	for _, sc := range [...]float64{1, 0.9, 0.8, 0.7} { // smaller until it fits on one page
		b, pages, err := renderAt(l, sc)
		if err != nil {
			return nil, err
		}
		out = b
		if pages == 1 {
			break
		}
	}
	return out, nil
}

// renderAt draws the letter at scale sc and reports its pages.
func renderAt(l Letter, sc float64) ([]byte, int, error) {
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetCreationDate(l.Issued)
	pdf.SetModificationDate(l.Issued)
	pdf.SetCatalogSort(true)
	pdf.SetTitle(Title, false)
	pdf.SetCreator("socialrx", false)
	pdf.SetProducer("socialrx", false)
	pdf.SetMargins(margin, margin, margin)
	pdf.SetAutoPageBreak(true, margin)
	p := page{pdf: pdf, tr: pdf.UnicodeTranslatorFromDescriptor("cp1252"), scale: sc}
	pdf.AddPage()
	p.draw(l)
	var buf bytes.Buffer
	if err := pdf.Output(&buf); err != nil {
		return nil, 0, fmt.Errorf("letter: rendering the PDF: %w", err)
	}
	return buf.Bytes(), pdf.PageNo(), nil
}

// draw writes the letter's sections.
func (p page) draw(l Letter) {
	p.text("B", fontTitle, 7/lineH, Title)
	p.text("", 8, 4/lineH, fmt.Sprintf("Issued %s by socialrx for %s. Document %s.", l.Issued.Format("2 January 2006"), l.Group, l.ID))
	p.pdf.Ln(3 * p.scale)
	p.field("Person", l.Person)
	p.field("NHS number", l.NHSNumber)
	p.field("Date of birth", l.BirthDate)
	p.field("To (referrer)", l.To)
	p.field("Group", l.Group)
	p.field("Referred on", l.ReferredOn)
	p.field("Asked for", l.Needs)
	p.heading("What happened")
	for _, s := range l.Steps {
		line := s.Date + "  " + statusWord(s.Status)
		if s.Reason != "" {
			line += ": " + s.Reason
		}
		p.text("", fontBody, 1, line)
	}
	p.field("Closed as", statusWord(l.Closing))
	p.field("Reason", l.Reason)
	p.field("Outcome", l.Outcome)
	p.field("Episode code", l.EpisodeCode)
	p.heading("Outcome measures, before and after")
	if len(l.Measures) == 0 {
		p.text("", fontBody, 1, "No outcome measures were recorded.")
	}
	for _, m := range l.Measures {
		p.text("B", fontBody, 1, m.Instrument)
		p.field("Before (baseline)", orNone(m.Before))
		p.field("After (follow-up)", orNone(m.After))
		p.field("Change", m.Change)
	}
	p.heading("Next steps")
	p.text("", fontBody, 1, l.NextSteps)
	p.heading("Contact")
	p.field("Contact", orNone(l.Contact))
	p.field("Reference", "Task/"+l.TaskID+", ServiceRequest/"+l.ServiceRequestID)
}

// heading starts a section.
func (p page) heading(s string) {
	p.pdf.Ln(3 * p.scale)
	p.text("B", fontHead, 6/lineH, s)
}

// field writes "label  value" with the value wrapped beside the label; an empty value writes nothing.
func (p page) field(label, value string) {
	if strings.TrimSpace(value) == "" {
		return
	}
	p.pdf.SetFont("Helvetica", "B", fontBody*p.scale)
	p.pdf.CellFormat(labelW*p.scale, lineH*p.scale, p.safe(label), "", 0, "L", false, 0, "")
	p.pdf.SetFont("Helvetica", "", fontBody*p.scale)
	p.pdf.MultiCell(0, lineH*p.scale, p.safe(value), "", "L", false)
}

// text writes a wrapped paragraph in the given style and size, its lines lines times the usual height.
func (p page) text(style string, size, lines float64, s string) {
	p.pdf.SetFont("Helvetica", style, size*p.scale)
	p.pdf.MultiCell(0, lines*lineH*p.scale, p.safe(s), "", "L", false)
}

// safe is s in the core fonts' encoding (cp1252): control characters become spaces, a character cp1252
// lacks becomes its base letter (diacritics dropped) or "?".
func (p page) safe(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == utf8Error || unicode.IsControl(r):
			b.WriteByte(' ')
		case r < 0x80:
			b.WriteRune(r)
		case p.tr(string(r)) != ".":
			b.WriteString(p.tr(string(r)))
		default:
			b.WriteString(base(r))
		}
	}
	return b.String()
}

// utf8Error is the rune a range over invalid UTF-8 yields.
const utf8Error = '\uFFFD'

// base is r's ASCII base letters after canonical decomposition ("ą" → "a"), or "?" when it has none.
func base(r rune) string {
	var b strings.Builder
	for _, d := range norm.NFD.String(string(r)) {
		if d < 0x80 && !unicode.IsControl(d) {
			b.WriteRune(d)
		}
	}
	if b.Len() == 0 {
		return "?"
	}
	return b.String()
}

// orNone is s, or "none recorded".
func orNone(s string) string {
	if s == "" {
		return "none recorded"
	}
	return s
}

// statusWord is a status as the letter says it.
func statusWord(s mapping.TaskStatus) string {
	switch s {
	case mapping.StatusRequested:
		return "referred"
	case mapping.StatusRejected:
		return "declined"
	case mapping.StatusInProgress:
		return "in progress"
	case mapping.StatusOnHold:
		return "on hold"
	case mapping.StatusEnteredInError:
		return "entered in error"
	case mapping.StatusReceived, mapping.StatusAccepted, mapping.StatusCompleted, mapping.StatusFailed, mapping.StatusCancelled:
	}
	return string(s)
}
