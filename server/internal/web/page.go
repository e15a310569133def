package web

import (
	"bytes"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// The server-rendered pages (the community inbox, the operations console) share how a page is sent and
// how a form from another site is told apart.

// WritePage renders template "page" of t with data and sends it with the headers every page carries: never
// cached (patient details, operations), a Content-Security-Policy that allows no script, no framing and
// forms to this site only, no referrer, no MIME sniffing. A template error is logged and answered 500.
func WritePage(w http.ResponseWriter, r *http.Request, log *slog.Logger, t *template.Template, status int, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "page", data); err != nil {
		log.Error("render page", "request_id", RequestID(r.Context()), "path", r.URL.Path, "err", err)
		http.Error(w, "the page could not be shown", http.StatusInternalServerError)
		return
	}
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = b.WriteTo(w)
}

// SeeOther answers a form post with 303 See Other to path (post/redirect/get), never cached.
func SeeOther(w http.ResponseWriter, path string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", path)
	w.WriteHeader(http.StatusSeeOther)
}

// CrossSiteRefusal says why a form posted with these request headers must be refused because another site
// sent it ("" when it may be read): secFetchSite and origin as the browser sent them, own reports whether a
// host is this service. Sec-Fetch-Site decides when present (same-origin: a page of ours; none: the person's
// own action); without it, an Origin naming another host is refused. See server/communityapi/inbox_guard.go
// for why Origin alone cannot decide ("null" under Referrer-Policy no-referrer).
func CrossSiteRefusal(secFetchSite, origin string, own func(host string) bool) string {
	switch strings.ToLower(strings.TrimSpace(secFetchSite)) {
	case "same-origin", "none":
		return ""
	case "":
		if origin == "" || origin == "null" {
			return ""
		}
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" || !own(u.Host) {
			return "the form was sent from another web site"
		}
		return ""
	default: // "same-site", "cross-site" or anything a browser does not send
		return "the form was sent from another web site"
	}
}

// OwnHost reports whether host (from a browser's Origin) is this service as the browser reached it: the
// request's Host, a proxy's X-Forwarded-Host or the configured base URL's host.
func OwnHost(r *http.Request, baseURL, host string) bool {
	hosts := []string{r.Host, r.Header.Get("X-Forwarded-Host")}
	if b, err := url.Parse(baseURL); err == nil && baseURL != "" {
		hosts = append(hosts, b.Host)
	}
	return host != "" && slices.ContainsFunc(hosts, func(h string) bool { return h != "" && strings.EqualFold(h, host) })
}
