package web

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/socialrx/socialrx/fault"
)

// Body rules and their codes (fault.Issue.Code), shared by every API's body reader.
const (
	CodeUnsupportedMedia fault.Code = "unsupported_media_type"
	CodeTooLarge         fault.Code = "too_large"
	CodeUnreadable       fault.Code = "invalid_body"
)

// MediaType parses r's Content-Type: the media type in lower case, its parameters, and ok false when it is
// absent or malformed.
func MediaType(r *http.Request) (string, map[string]string, bool) {
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	return mt, params, ct != "" && err == nil
}

// UTF8Charset reports whether a media type's parameters allow the body as UTF-8 (no charset, or utf-8).
func UTF8Charset(params map[string]string) bool {
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// ReadAll reads r's body up to limit bytes: fault.TooLarge beyond it, fault.Invalid when the body cannot be
// read (the connection broke).
func ReadAll(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fault.New(fault.TooLarge, CodeTooLarge, "", fmt.Sprintf("request body is larger than the limit of %d bytes", limit))
		}
		return nil, fault.New(fault.Invalid, CodeUnreadable, "", "could not read the request body")
	}
	return body, nil
}
