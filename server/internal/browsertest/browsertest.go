// Package browsertest drives a real headless Chromium through socialrx's server-rendered pages, as a person
// uses them: it opens pages, types into fields, presses buttons and follows the navigation they cause, and
// reads what the browser shows. Tests of the community inbox use it, and any later page (the operations
// console) can do the same. The browser sends its own headers (Origin, Sec-Fetch-*, Referer, Cookie): nothing
// here sets them, so a test sees exactly what a person's browser would do.
//
// Chromium is found on PATH (chromium, chromium-browser, google-chrome, headless_shell) or at
// $SOCIALRX_CHROMIUM. Without one a test is skipped with a message, except when CI is set: then it fails,
// so that CI never passes without having run the browser. Each Browser is its own Chromium process with a
// fresh profile in the test's temporary folder, headless, sandbox off (containers), GPU, sync, component
// updates and background networking off.
//
// Screenshots (Browser.Shot) are written to $SCREENSHOT_DIR/<test name>/ when SCREENSHOT_DIR is set (CI
// keeps them), else to the test's temporary folder; their paths are logged.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Viewports people use.
const (
	// PhoneWidth and PhoneHeight are a common phone's CSS viewport (390 × 844, e.g. an iPhone 12–15).
	PhoneWidth, PhoneHeight = 390, 844
	// DesktopWidth and DesktopHeight are a laptop's window.
	DesktopWidth, DesktopHeight = 1280, 800
)

// stepTimeout bounds one step (a navigation, a click and the page it loads): a hung browser fails the test
// with a message instead of hanging it. It is a safety net, not a timing assertion.
const stepTimeout = 60 * time.Second

// Options are how a Browser starts.
type Options struct {
	// Width and Height are the viewport in CSS pixels (zero: the phone's).
	Width, Height int64
	// Mobile emulates a phone (meta viewport honoured, touch); default true when Width is the phone's.
	Mobile bool
}

// Browser is one headless Chromium with one tab.
type Browser struct {
	t     testing.TB
	ctx   context.Context // the tab's context (chromedp)
	shots string          // where screenshots go
	mu    sync.Mutex
	n     int // screenshots taken, for their order
	last  *network.Response
}

// ExecPath returns the Chromium to run, or "" when there is none.
func ExecPath() string {
	if p := os.Getenv("SOCIALRX_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// New starts a Chromium for t and closes it when t ends. It skips t when there is no Chromium (fails under CI).
func New(t testing.TB, o Options) *Browser {
	t.Helper()
	path := ExecPath()
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("browser tests need Chromium (apt-get install -y chromium, or set SOCIALRX_CHROMIUM); CI is set, so this fails instead of skipping")
		}
		t.Skip("no Chromium found (apt-get install -y chromium, or set SOCIALRX_CHROMIUM): browser test skipped")
	}
	if o.Width == 0 {
		o.Width, o.Height, o.Mobile = PhoneWidth, PhoneHeight, true
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(int(o.Width), int(o.Height)),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &Browser{t: t, ctx: ctx, shots: shotDir(t)}
	view := []chromedp.EmulateViewportOption{chromedp.EmulatePortrait}
	if o.Mobile {
		view = append(view, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(2))
	}
	// The first run starts the browser, which lives as long as the context of that run: no timeout here.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(o.Width, o.Height, view...)); err != nil {
		t.Fatalf("browser: start Chromium (%s): %v", path, err)
	}
	return b
}

// shotDir is the folder screenshots of t go to.
func shotDir(t testing.TB) string {
	if d := os.Getenv("SCREENSHOT_DIR"); d != "" {
		dir := filepath.Join(d, regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("screenshots: %v", err)
		}
		return dir
	}
	return t.TempDir()
}

// do runs steps in the tab, failing the test on error.
func (b *Browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// run runs one action that returns a value in the tab, failing the test on error.
func run[T any](b *Browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// navigate runs steps that make the page navigate (open a URL, press a button), waits until the new page
// has loaded, and returns its HTTP status.
func (b *Browser) navigate(what string, steps ...chromedp.Action[chromedp.Void]) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
	b.last = resp
	return int(resp.Status)
}

// Open loads url as if typed into the address bar and returns the page's HTTP status.
func (b *Browser) Open(url string) int {
	b.t.Helper()
	return b.navigate("open "+url, chromedp.Navigate(url))
}

// Reload reloads the page (the browser sends what it holds, its cookies included) and returns the status.
func (b *Browser) Reload() int {
	b.t.Helper()
	return b.navigate("reload", chromedp.Reload())
}

// Type types text into the field that sel finds, as keystrokes, after clearing it.
func (b *Browser) Type(sel, text string) {
	b.t.Helper()
	clear := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = ""; return true })()`, sel))(ctx, t)
		return err
	})
	b.do("type into "+sel, clear, chromedp.SendKeys(chromedp.CSS(sel), text))
}

// Choose picks the option with value in the select that sel finds.
func (b *Browser) Choose(sel, value string) {
	b.t.Helper()
	b.do("choose "+value+" in "+sel, chromedp.SetValue(chromedp.CSS(sel), value))
}

// Press clicks what sel finds (a button or a link) and waits for the page it leads to; it returns that
// page's HTTP status.
func (b *Browser) Press(sel string) int {
	b.t.Helper()
	return b.navigate("press "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// Tick clicks what sel finds and stays on the page (a checkbox or a radio button, as a person ticks it).
func (b *Browser) Tick(sel string) {
	b.t.Helper()
	b.do("tick "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// PressButton clicks the (first) button whose text is label and waits for the page it leads to; it
// returns that page's HTTP status.
func (b *Browser) PressButton(label string) int {
	b.t.Helper()
	xp := fmt.Sprintf(`//button[normalize-space(.)=%s]`, xpathString(label))
	return b.navigate("press "+label, chromedp.Click(chromedp.Search(xp)))
}

// xpathString quotes s for XPath 1.0.
func xpathString(s string) string {
	if !strings.Contains(s, `"`) {
		return `"` + s + `"`
	}
	return `concat("` + strings.ReplaceAll(s, `"`, `", '"', "`) + `")`
}

// WaitFor waits until the JavaScript expression is true in the page (for what happens without a person's
// action, e.g. a page whose script submits a form). The browser re-checks it on every animation frame; the
// test waits for the answer, never for a fixed time.
//
// A page that navigates while the expression is polled (its script submitted a form) takes the poll's
// JavaScript context with it; WaitFor then polls again in the new page, until stepTimeout.
func (b *Browser) WaitFor(expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	for {
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr))
		if err == nil {
			return
		}
		if !navigatedAway(err) || ctx.Err() != nil {
			b.t.Fatalf("browser: wait for %s: %v", expr, err)
		}
	}
}

// navigatedAway reports whether err says the page's JavaScript context is gone because the page
// navigated (Chromium's -32000 "Cannot find context with specified id", "Execution context was destroyed").
func navigatedAway(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Cannot find context with specified id") ||
		strings.Contains(msg, "Execution context was destroyed")
}

// Text is the visible text of what sel finds.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	return run(b, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// Value is the current value of the form field that sel finds.
func (b *Browser) Value(sel string) string {
	b.t.Helper()
	return run(b, "value of "+sel, chromedp.Value(chromedp.CSS(sel)))
}

// Eval evaluates a JavaScript expression in the page and returns its value.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	return run(b, "evaluate "+expr, chromedp.Evaluate[T](expr))
}

// Count is how many elements sel matches on the page.
func (b *Browser) Count(sel string) int {
	b.t.Helper()
	return Eval[int](b, fmt.Sprintf("document.querySelectorAll(%q).length", sel))
}

// Body is the page's visible text.
func (b *Browser) Body() string {
	b.t.Helper()
	return Eval[string](b, "document.body.innerText")
}

// URL is the address of the page shown.
func (b *Browser) URL() string {
	b.t.Helper()
	return Eval[string](b, "location.href")
}

// Header is a header of the last page's HTTP response ("" when absent).
func (b *Browser) Header(name string) string {
	if b.last == nil {
		return ""
	}
	for k, v := range b.last.Headers {
		if strings.EqualFold(k, name) {
			return fmt.Sprint(v)
		}
	}
	return ""
}

// Overflow reports how far the page is wider than the viewport (0: no sideways scrolling), from
// document.documentElement's scrollWidth and clientWidth.
func (b *Browser) Overflow() int {
	b.t.Helper()
	return Eval[int](b, "document.documentElement.scrollWidth - document.documentElement.clientWidth")
}

// a11yCheck is the script behind Problems: WCAG 2.1 AA basics that a page can be checked for mechanically.
const a11yCheck = `(() => {
  const out = [];
  const lang = document.documentElement.getAttribute("lang") || "";
  if (!/^en(-|$)/.test(lang)) out.push("html lang is " + JSON.stringify(lang));
  if (!document.title.trim()) out.push("the page has no title");
  const h1 = document.querySelectorAll("h1").length;
  if (h1 !== 1) out.push(h1 + " h1 headings (want 1)");
  let level = 1;
  for (const h of document.querySelectorAll("main h1, main h2, main h3, main h4")) {
    const l = Number(h.tagName[1]);
    if (l > level + 1) out.push("heading " + h.tagName + " skips a level: " + h.textContent.trim());
    level = l;
  }
  for (const f of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    const named = (f.id && document.querySelector('label[for="' + f.id + '"]')) || f.getAttribute("aria-label") || f.closest("label");
    if (!named) out.push(f.tagName.toLowerCase() + " " + (f.name || f.id) + " has no label");
  }
  for (const el of document.querySelectorAll("[aria-describedby]")) {
    for (const id of el.getAttribute("aria-describedby").split(/\s+/)) {
      if (!document.getElementById(id)) out.push((el.id || el.name) + " is described by a missing #" + id);
    }
  }
  for (const el of document.querySelectorAll("button, input:not([type=hidden]), select, textarea, nav a")) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.height < 44 || r.width < 44)) out.push("target " + (el.textContent.trim() || el.name || el.id) + " is " + Math.round(r.width) + "×" + Math.round(r.height) + " px (want at least 44×44)");
  }
  for (const img of document.querySelectorAll("img:not([alt])")) out.push("an image without alt");
  // Text contrast (WCAG 1.4.3): 4.5:1, or 3:1 for large text (24px, or 18.66px bold), against the first
  // opaque background behind it.
  const rgb = c => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || c[3] === 1) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  for (const el of document.querySelectorAll("body *")) {
    if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const st = getComputedStyle(el);
    if (st.visibility === "hidden" || st.display === "none" || el.getBoundingClientRect().width === 0) continue;
    const fg = lum(rgb(st.color)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(st.fontSize), large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) out.push("contrast " + ratio.toFixed(2) + ":1 for " + JSON.stringify(el.textContent.trim().slice(0, 40)));
  }
  return out;
})()`

// Problems lists what the page breaks of the WCAG 2.1 AA basics that can be checked mechanically: the
// language, a title, one h1 and no skipped heading levels, a label for every form field, aria-describedby
// pointing at something, targets of at least 44 × 44 px (buttons, fields, navigation links), alt text, and
// text contrast against solid backgrounds (4.5:1; 3:1 for large text). Reading order, meaning and images
// behind text still need a person (or a fuller checker).
func (b *Browser) Problems() []string {
	b.t.Helper()
	return Eval[[]string](b, a11yCheck)
}

// FocusRing presses Tab (a keyboard user moving to the next control) and reports the focused element's
// outline and box shadow as the browser draws them ("none" for both: no visible focus).
func (b *Browser) FocusRing() (element, outline, shadow string) {
	b.t.Helper()
	b.do("press Tab", chromedp.KeyEvent(kb.Tab))
	v := Eval[[]string](b, `(() => { const e = document.activeElement, s = getComputedStyle(e);
		return [e.tagName.toLowerCase() + " " + (e.textContent.trim() || e.name || e.id), s.outlineStyle, s.boxShadow]; })()`)
	return v[0], v[1], v[2]
}

// Shot writes a full-page screenshot named name (a PNG, numbered in the order taken) and returns its path.
func (b *Browser) Shot(name string) string {
	b.t.Helper()
	png := run(b, "screenshot "+name, chromedp.FullScreenshot(100))
	b.mu.Lock()
	b.n++
	n := b.n
	b.mu.Unlock()
	path := filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", n, regexp.MustCompile(`[^A-Za-z0-9_-]+`).ReplaceAllString(name, "-")))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatalf("browser: screenshot %s: %v", name, err)
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

// Cookie is a cookie the browser holds for url.
type Cookie = network.Cookie

// Cookies are the cookies the browser holds for url (its own jar, as it would send them).
func (b *Browser) Cookies(url string) []*Cookie {
	b.t.Helper()
	res := run(b, "cookies", func(ctx context.Context, t *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	})
	return res.Cookies
}

// Restore puts cookies back into the browser's jar exactly as they were read by Cookies (for example a
// session cookie copied before signing out): the browser then sends them itself, by its own rules.
func (b *Browser) Restore(cookies []*Cookie) {
	b.t.Helper()
	params := network.SetCookiesParams{}
	for _, c := range cookies {
		params.Cookies = append(params.Cookies, &network.CookieParam{Name: c.Name, Value: c.Value, Domain: c.Domain,
			Path: c.Path, Secure: c.Secure, HTTPOnly: c.HTTPOnly, SameSite: c.SameSite, Expires: cdp.TimeSinceEpoch(c.Expires),
			SourceScheme: c.SourceScheme, SourcePort: c.SourcePort})
	}
	b.do("restore cookies", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.SetCookies, params)
		return err
	}))
}
