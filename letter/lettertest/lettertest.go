// Package lettertest reads the text of a GP letter's PDF in tests with an independent extractor: pdftotext
// (Debian's poppler-utils, installed by .ci/run), so a test checks what a reader of the PDF sees, not what
// socialrx meant to write.
package lettertest

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// Text is the PDF's text as pdftotext extracts it, with runs of white space made single spaces, and its
// number of pages (pdftotext ends each page with a form feed).
func Text(t testing.TB, pdf []byte) (text string, pages int) {
	t.Helper()
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		t.Fatalf("not a PDF: %.40q", pdf)
	}
	cmd := exec.Command("pdftotext", "-layout", "-enc", "UTF-8", "-", "-")
	cmd.Stdin = bytes.NewReader(pdf)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("pdftotext (Debian poppler-utils) could not read the PDF: %v: %s", err, errOut.String())
	}
	raw := out.String()
	return strings.Join(strings.Fields(raw), " "), strings.Count(raw, "\f")
}
