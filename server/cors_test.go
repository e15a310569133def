package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/server"
)

// chromium finds the headless browser (SOCIALRX_CHROMIUM, else chromium on PATH). Without one the test is
// skipped, unless CI is set: CI must run it.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SOCIALRX_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on PATH (apt-get install chromium, or set SOCIALRX_CHROMIUM): CI runs the browser tests")
	}
	t.Skip("no chromium on PATH: the real-browser tests need Debian's chromium (or SOCIALRX_CHROMIUM)")
	return ""
}

// browserResult loads url in real headless Chromium (a fresh profile, no network beyond loopback) and returns
// the JSON the page writes between RESULT and END once every request it made has finished (Chromium's
// virtual time does not advance while fetches are pending).
func browserResult(t *testing.T, url string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium(t), "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=30000", "--dump-dom", url)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`RESULT(\{.*?\})END`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("the page wrote no result:\n%s", out)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(html.UnescapeString(string(m[1]))), &res); err != nil { // the DOM dump escapes &, <, >
		t.Fatalf("result %s: %v", m[1], err)
	}
	return res
}

// corsPage is a browser-based SMART app's page on an allowed origin: it calls socialrx cross-origin (a
// simple GET, a create with Authorization and a FHIR Content-Type, which need a preflight, a read), reads the
// headers socialrx exposes, tries to send credentials, calls a socialrx without CORS configured, and embeds a
// page of a second, unlisted origin that makes the same call.
var corsPage = template.Must(template.New("page").Parse(`<!doctype html><html><body><pre id="out">pending</pre>
<iframe src="{{.Frame}}"></iframe>
<script>
const base = {{.Base}}, off = {{.Off}}, body = {{.Body}};
const auth = {Authorization: 'Bearer demo-gp-token'};
async function attempt(f) { try { return await f(); } catch (e) { return {error: String(e)}; } }
const framed = new Promise(resolve => window.addEventListener('message', e => resolve(e.data)));
(async () => {
  const out = {};
  out.metadata = await attempt(async () => { const r = await fetch(base + '/metadata'); return {status: r.status, requestId: r.headers.get('X-Request-ID')}; });
  out.create = await attempt(async () => {
    const r = await fetch(base + '/ServiceRequest', {method: 'POST', headers: {...auth, 'Content-Type': 'application/fhir+json'}, body});
    return {status: r.status, location: r.headers.get('Location'), etag: r.headers.get('ETag'), lastModified: r.headers.get('Last-Modified')};
  });
  out.read = await attempt(async () => { const r = await fetch(out.create.location, {headers: auth}); const j = await r.json(); return {status: r.status, etag: r.headers.get('ETag'), type: j.resourceType}; });
  out.unauthorized = await attempt(async () => { const r = await fetch(base + '/Task'); return {status: r.status, challenge: r.headers.get('WWW-Authenticate')}; });
  out.credentials = await attempt(async () => { const r = await fetch(base + '/Task', {headers: auth, credentials: 'include'}); return {status: r.status}; });
  out.corsOff = await attempt(async () => { const r = await fetch(off + '/Task', {headers: auth}); return {status: r.status}; });
  out.otherOrigin = await framed;
  document.getElementById('out').textContent = 'RESULT' + JSON.stringify(out) + 'END';
})();
</script></body></html>`))

// corsFrame is a page of an origin socialrx does not list, calling it with a token.
var corsFrame = template.Must(template.New("frame").Parse(`<!doctype html><html><body><script>
(async () => {
  let res;
  try { const r = await fetch({{.Base}} + '/Task', {headers: {Authorization: 'Bearer demo-gp-token'}}); res = {status: r.status}; }
  catch (e) { res = {error: String(e)}; }
  parent.postMessage(res, '*');
})();
</script></body></html>`))

// TestCORSInRealBrowser: with SOCIALRX_CORS_ORIGINS naming an app's origin, real headless Chromium lets the
// app's page call the FHIR API (preflight included) and read Location, ETag, Last-Modified and X-Request-ID;
// credentials are not allowed; a page of another origin, and any page calling a socialrx without CORS
// configured (the default), are blocked by the browser. Nothing here sets an Origin header: Chromium does.
func TestCORSInRealBrowser(t *testing.T) {
	t.Parallel()
	chromium(t) // skip early without a browser
	app := httptest.NewUnstartedServer(nil)
	appOrigin := "http://" + app.Listener.Addr().String()
	other := httptest.NewUnstartedServer(nil)
	h := newHarnessOpts(t, nil, nil, func(o *server.Options) { o.CORSOrigins = []string{appOrigin} })
	off := newHarness(t, nil) // CORS off: the default
	body := string(readFile(t, referrals+"/walking-group-performer.json"))
	app.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := corsPage.Execute(w, map[string]string{"Base": h.url + "/fhir", "Off": off.url + "/fhir", "Body": body,
			"Frame": "http://" + other.Listener.Addr().String() + "/"}); err != nil {
			t.Error(err)
		}
	})
	other.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := corsFrame.Execute(w, map[string]string{"Base": h.url + "/fhir"}); err != nil {
			t.Error(err)
		}
	})
	app.Start()
	defer app.Close()
	other.Start()
	defer other.Close()

	got := browserResult(t, appOrigin+"/")
	field := func(path ...string) any {
		var v any = got
		for _, p := range path {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		}
		return v
	}
	for _, c := range []struct {
		path []string
		want string
	}{
		{[]string{"metadata", "status"}, "200"},
		{[]string{"create", "status"}, "201"},
		{[]string{"read", "status"}, "200"},
		{[]string{"read", "etag"}, `W/"1"`},
		{[]string{"read", "type"}, "ServiceRequest"},
		{[]string{"create", "etag"}, `W/"1"`},
		{[]string{"unauthorized", "status"}, "401"},
		{[]string{"unauthorized", "challenge"}, `Bearer realm="socialrx"`},
	} {
		if v := fmt.Sprint(field(c.path...)); v != c.want {
			t.Errorf("%s = %s, want %s (the whole result: %v)", strings.Join(c.path, "."), v, c.want, got)
		}
	}
	if loc, _ := field("create", "location").(string); !strings.HasPrefix(loc, h.url+"/fhir/ServiceRequest/") {
		t.Errorf("the page cannot read Location: %v", got["create"])
	}
	if id, _ := field("metadata", "requestId").(string); id == "" {
		t.Errorf("the page cannot read X-Request-ID: %v", got["metadata"])
	}
	if lm, _ := field("create", "lastModified").(string); lm == "" {
		t.Errorf("the page cannot read Last-Modified: %v", got["create"])
	}
	for _, blocked := range []string{"credentials", "corsOff", "otherOrigin"} {
		if e, _ := field(blocked, "error").(string); !strings.Contains(e, "Failed to fetch") {
			t.Errorf("%s: the browser must block it, got %v", blocked, got[blocked])
		}
	}
	if n := h.countReferrals(); n != 1 {
		t.Errorf("the allowed page created %d referrals, want 1", n)
	}
}
