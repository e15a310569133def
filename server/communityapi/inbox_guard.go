package communityapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/socialrx/socialrx/server/internal/web"
)

// Cross-site protection of the inbox's forms (docs/design.md#community-inbox-page), in three layers, each
// based on what browsers really send:
//
//  1. Sec-Fetch-Site (crossSiteRefusal). Browsers set it on every request (Chromium 76+, Firefox 90+,
//     Safari 16.4+) and no page script can set or change it (a forbidden header name). "same-origin" (a
//     form of our own pages) and "none" (the person's own action: typed, bookmarked, reloaded) are accepted;
//     "same-site" (a sibling subdomain, which may be someone else's) and "cross-site" are refused before
//     anything is read or changed. Origin is not consulted when Sec-Fetch-Site is there: our pages are sent
//     with Referrer-Policy no-referrer, under which Chromium and Firefox send "Origin: null" with our own
//     forms, so Origin cannot tell our forms from a sandboxed attacker's (which also say null).
//  2. Without Sec-Fetch-Site (an older browser, or a program that is not a browser), an Origin that names
//     another host is refused; "null" or no Origin decides nothing, and the next layer does.
//  3. The session cookie is SameSite=Strict, so a browser never attaches it to a request another site
//     starts: a cross-site form arrives signed out and changes nothing. Every form that changes something
//     also carries a CSRF token derived from the secret session id (inboxCSRF), which a page of another site
//     cannot read (the cookie is HttpOnly, our pages cannot be framed, CORS gives no other origin our pages).
//
// Sign-in has no session yet: layers 1 and 2 protect it (a cross-site sign-in would at worst sign a browser
// in as the attacker's own group, and only in browsers older than those above).

// crossSiteRefusal says why a form posted with these request headers must be refused ("" when it may be
// read): secFetchSite and origin as the browser sent them, own reports whether a host is this service. The
// rule (layers 1 and 2 above) is the one every page of socialrx applies, web.CrossSiteRefusal.
func crossSiteRefusal(secFetchSite, origin string, own func(host string) bool) string {
	return web.CrossSiteRefusal(secFetchSite, origin, own)
}

// inboxCSRF is the form token of a session: an HMAC of a fixed label keyed by the secret session id, so
// only a page rendered for that session can know it, and it changes with every sign-in.
func inboxCSRF(sessionID string) string {
	m := hmac.New(sha256.New, []byte(sessionID))
	m.Write([]byte("socialrx inbox form"))
	return hex.EncodeToString(m.Sum(nil))
}

// csrfOK reports whether the posted form carries the session's CSRF token (compared in constant time).
func csrfOK(r *http.Request, sessionID string) bool {
	got := r.PostForm.Get("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(inboxCSRF(sessionID))) == 1
}

// parseInboxForm refuses a form another site sent (crossSiteRefusal) and reads the posted form
// (web.ReadForm). crossSite is true when the refusal is about where the form came from.
func (a *API) parseInboxForm(w http.ResponseWriter, r *http.Request) (msg string, crossSite bool) {
	if why := crossSiteRefusal(r.Header.Get("Sec-Fetch-Site"), r.Header.Get("Origin"), func(h string) bool { return a.ownHost(r, h) }); why != "" {
		return why, true
	}
	if err := web.ReadForm(w, r, inboxFormMax); err != nil {
		return err.Error(), false
	}
	return "", false
}

// ownHost reports whether host (from a browser's Origin) is this service as the browser reached it.
func (a *API) ownHost(r *http.Request, host string) bool { return web.OwnHost(r, a.o.BaseURL, host) }

// setSessionCookie gives the browser its session id: HttpOnly (no script reads it), SameSite=Strict (no
// other site's request carries it), scoped to /inbox/, Secure behind TLS, and dropped by the browser at the
// session's absolute end (the idle end is the server's). maxAge <= 0 deletes the cookie.
func setSessionCookie(w http.ResponseWriter, r *http.Request, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: inboxCookie, Value: value, Path: inboxPath, HttpOnly: true, Secure: web.SecureRequest(r),
		SameSite: http.SameSiteStrictMode, MaxAge: int(maxAge / time.Second)}
	if maxAge <= 0 {
		c.Value, c.MaxAge = "", -1
	}
	http.SetCookie(w, c)
}
