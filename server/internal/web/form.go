package web

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// ReadForm reads a posted application/x-www-form-urlencoded body of at most limit bytes into r.PostForm; the
// error says, in words for the sender, why it could not (a field holding a NUL byte or invalid UTF-8 is
// named).
func ReadForm(w http.ResponseWriter, r *http.Request, limit int64) error {
	if ct := strings.ToLower(r.Header.Get("Content-Type")); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return errors.New("the form was not sent as a web form (application/x-www-form-urlencoded)")
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if err := r.ParseForm(); err != nil {
		return errors.New("the form could not be read (too large or damaged)")
	}
	for k, vs := range r.PostForm {
		if p := TextProblem(k); p != "" {
			return errors.New("a form field name " + p)
		}
		for _, v := range vs {
			if p := TextProblem(v); p != "" {
				return errors.New("the form field " + k + " " + p)
			}
		}
	}
	return nil
}

// RepeatedField returns the first of keys that the form carries more than once ("" when none is).
func RepeatedField(form url.Values, keys ...string) string {
	for _, k := range keys {
		if len(form[k]) > 1 {
			return k
		}
	}
	return ""
}

// SecureRequest reports whether the client reached socialrx over HTTPS (directly or through a proxy that says so).
func SecureRequest(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
