package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// signedIn is a request of a signed-in engineer.
type signedIn struct {
	sess  referral.ConsoleSession
	name  string
	actor string // "console:<client>/<name>", recorded with every change
	page  page   // what every page of this engineer starts from
}

// signedIn reads the session cookie: the live session and the engineer's name, or ok false (the caller shows
// the sign-in page). It notes the client for the request's log line.
func (c *Console) signedIn(r *http.Request, title string) (signedIn, bool) {
	ck, err := r.Cookie(cookieName)
	if err != nil || ck.Value == "" {
		return signedIn{}, false
	}
	sess, err := c.signIn.Session(r.Context(), ck.Value)
	if err != nil {
		if !errors.Is(err, referral.ErrNoSession) {
			c.log.Error("console session", "request_id", web.RequestID(r.Context()), "err", err)
		}
		return signedIn{}, false
	}
	web.NoteClient(r.Context(), sess.Client.ID)
	name := "unnamed"
	if nc, err := r.Cookie(nameCookie); err == nil {
		if n, err := url.QueryUnescape(nc.Value); err == nil && validName(n) {
			name = n
		}
	}
	s := signedIn{sess: sess, name: name, actor: "console:" + sess.Client.ID + "/" + name}
	referral.SetActor(r.Context(), s.actor, string(sess.Client.Role)) // the audit trail's actor
	s.page = page{Title: title, Who: name + " (" + sess.Client.ID + ")", CSRF: csrfToken(sess.ID), Flash: flashText(r)}
	return s, true
}

// get is signedIn for a page: signed out, it shows the sign-in form (401) saying what needs it, and ok is
// false.
func (c *Console) get(w http.ResponseWriter, r *http.Request, title, what string) (signedIn, bool) {
	s, ok := c.signedIn(r, title)
	if !ok {
		c.signInPage(w, r, http.StatusUnauthorized, "Sign in to "+what+".", "")
	}
	return s, ok
}

// post is signedIn for a form that changes something: sent from another site (403, checked first: such a
// request arrives without the session cookie), signed out (the sign-in form, 401) or refused (form) it has
// answered, nothing changed, and ok is false.
func (c *Console) post(w http.ResponseWriter, r *http.Request, title string) (signedIn, bool) {
	if why := c.crossSite(r); why != "" {
		c.log.Info("console form refused", "request_id", web.RequestID(r.Context()), "reason", why)
		c.render(w, r, http.StatusForbidden, page{Title: "Refused", View: "none", Error: why + "; nothing was changed."})
		return signedIn{}, false
	}
	s, ok := c.signedIn(r, title)
	if !ok {
		c.signInPage(w, r, http.StatusUnauthorized, "You are signed out (or your session ended). Sign in again; nothing was changed.", "")
		return s, false
	}
	return s, c.form(w, r, s)
}

// validName reports whether n can be an engineer's name in the audit: 1 to 60 printable characters, no '/'.
func validName(n string) bool {
	if n == "" || utf8.RuneCountInString(n) > 60 || strings.ContainsAny(n, "/\\") {
		return false
	}
	for _, r := range n {
		if r < ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// signInPage is the sign-in form, with an error when one is given.
func (c *Console) signInPage(w http.ResponseWriter, r *http.Request, status int, msg, field string) {
	c.render(w, r, status, page{Title: "Sign in", Login: true, View: "login", Error: msg, Field: field})
}

// csrfToken is the form token of a session: an HMAC of a fixed label keyed by the secret session id.
func csrfToken(sessionID string) string {
	m := hmac.New(sha256.New, []byte(sessionID))
	m.Write([]byte("socialrx console form"))
	return hex.EncodeToString(m.Sum(nil))
}

// crossSite says why a form must be refused because another site sent it ("" when it may be read): the
// rule every page of socialrx applies (web.CrossSiteRefusal).
func (c *Console) crossSite(r *http.Request) string {
	return web.CrossSiteRefusal(r.Header.Get("Sec-Fetch-Site"), r.Header.Get("Origin"),
		func(host string) bool { return web.OwnHost(r, c.o.BaseURL, host) })
}

// form checks and reads a posted form of a signed-in engineer: not from another site, within the size
// limit, with the session's CSRF token. On a refusal it has answered (and returns false).
func (c *Console) form(w http.ResponseWriter, r *http.Request, s signedIn) bool {
	if why := c.crossSite(r); why != "" {
		c.log.Info("console form refused", "request_id", web.RequestID(r.Context()), "reason", why)
		p := s.page
		p.Error, p.View = why+"; nothing was changed.", "none"
		c.render(w, r, http.StatusForbidden, p)
		return false
	}
	if err := web.ReadForm(w, r, formMax); err != nil {
		p := s.page
		p.Error, p.View = err.Error(), "none"
		c.render(w, r, http.StatusBadRequest, p)
		return false
	}
	if got := r.PostForm.Get("csrf"); got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.page.CSRF)) != 1 {
		c.log.Warn("console form refused: bad CSRF token", "request_id", web.RequestID(r.Context()), "client", s.sess.Client.ID)
		p := s.page
		p.Error, p.View = "This form did not come from your console page (or it is out of date). Open the page again; nothing was changed.", "none"
		c.render(w, r, http.StatusForbidden, p)
		return false
	}
	return true
}

// setCookie gives the browser a console cookie: HttpOnly, SameSite=Strict, scoped to /admin/, Secure behind
// TLS, until the session's end; maxAge <= 0 deletes it.
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	ck := &http.Cookie{Name: name, Value: value, Path: Path, HttpOnly: true, Secure: web.SecureRequest(r),
		SameSite: http.SameSiteStrictMode, MaxAge: int(maxAge / time.Second)}
	if maxAge <= 0 {
		ck.Value, ck.MaxAge = "", -1
	}
	http.SetCookie(w, ck)
}

// login is POST /admin/login: an admin token and the engineer's name.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if why := c.crossSite(r); why != "" {
		c.signInPage(w, r, http.StatusForbidden, why+".", "")
		return
	}
	if err := web.ReadForm(w, r, formMax); err != nil {
		c.signInPage(w, r, http.StatusBadRequest, err.Error(), "")
		return
	}
	token, name := strings.TrimSpace(r.PostForm.Get("token")), strings.TrimSpace(r.PostForm.Get("name"))
	switch {
	case !validName(name):
		c.signInPage(w, r, http.StatusBadRequest, "Type your name (up to 60 characters, no slash): it is recorded with everything you change.", "name")
		return
	case token == "":
		c.signInPage(w, r, http.StatusBadRequest, "Paste an admin token to sign in.", "token")
		return
	}
	sess, err := c.signIn.SignIn(r.Context(), token, r.RemoteAddr)
	var th *referral.ThrottledError
	switch {
	case errors.As(err, &th):
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(th.RetryAfter.Seconds()))))
		c.log.Info("console sign-in throttled", "request_id", web.RequestID(r.Context()))
		c.signInPage(w, r, http.StatusTooManyRequests, "Too many wrong sign-ins from here: try again in "+th.RetryAfter.Round(time.Second).String()+".", "token")
		return
	case errors.Is(err, referral.ErrSignInRefused):
		c.log.Info("console sign-in refused", "request_id", web.RequestID(r.Context()))
		c.signInPage(w, r, http.StatusUnauthorized, "That is not an admin token. Nothing was signed in.", "token")
		return
	case err != nil:
		c.log.Error("console sign-in", "request_id", web.RequestID(r.Context()), "err", err)
		w.Header().Set("Retry-After", "5")
		c.signInPage(w, r, http.StatusServiceUnavailable, "socialrx could not sign you in just now. Try again in a minute.", "")
		return
	}
	web.NoteClient(r.Context(), sess.Client.ID)
	ttl := max(sess.Session.ExpiresAt.Sub(sess.Session.CreatedAt), time.Minute)
	setCookie(w, r, cookieName, sess.ID, ttl)
	setCookie(w, r, nameCookie, url.QueryEscape(name), ttl)
	c.log.Info("console sign-in", "request_id", web.RequestID(r.Context()), "client", sess.Client.ID, "name", name)
	redirect(w, Path)
}

// logout is POST /admin/logout.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(r, "Sign out")
	if !ok {
		redirect(w, Path)
		return
	}
	if !c.form(w, r, s) {
		return
	}
	if err := c.signIn.SignOut(r.Context(), s.sess.ID); err != nil {
		c.failure(w, r, s.page, err)
		return
	}
	setCookie(w, r, cookieName, "", 0)
	setCookie(w, r, nameCookie, "", 0)
	redirect(w, Path)
}
