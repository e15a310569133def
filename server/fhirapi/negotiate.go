package fhirapi

import (
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
)

// Content negotiation (R4 http.html#mime-type): socialrx speaks FHIR JSON only. _format (which overrides
// Accept) and Accept choose between application/fhir+json (the default) and application/json (answered with
// that Content-Type, for clients that ask for it); a request that accepts neither — XML, Turtle or anything
// else — gets 406 and an OperationOutcome (in JSON: the only format socialrx has), never JSON presented as
// the format asked for.

// Media types.
const (
	mediaFHIRJSON = "application/fhir+json"
	mediaJSON     = "application/json"
)

// formatMedia maps a _format value to the JSON media type it asks for; ok is false for any other format.
func formatMedia(v string) (string, bool) {
	mt, _, err := mime.ParseMediaType(strings.TrimSpace(v))
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(v))
	}
	switch mt {
	case "json", mediaFHIRJSON, "application/json+fhir":
		return mediaFHIRJSON, true
	case mediaJSON:
		return mediaJSON, true
	}
	return "", false
}

// acceptMedia chooses the answer's media type from an Accept header ("" accepts anything): the acceptable JSON
// type with the highest quality; at equal quality a type named outright beats a wildcard, and
// application/fhir+json beats application/json. ok is false when nothing socialrx writes is acceptable.
func acceptMedia(header string) (string, bool) {
	if strings.TrimSpace(header) == "" {
		return mediaFHIRJSON, true
	}
	type choice struct {
		q        float64
		explicit bool
		media    string
	}
	better := func(a, b choice) bool { // a better than b
		if a.q != b.q {
			return a.q > b.q
		}
		if a.explicit != b.explicit {
			return a.explicit
		}
		return a.media == mediaFHIRJSON && b.media != mediaFHIRJSON
	}
	var best choice
	for _, part := range strings.Split(header, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		c := choice{q: 1}
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				c.q = f
			}
		}
		switch mt {
		case mediaFHIRJSON, "application/json+fhir":
			c.media, c.explicit = mediaFHIRJSON, true
		case mediaJSON:
			c.media, c.explicit = mediaJSON, true
		case "*/*", "application/*":
			c.media = mediaFHIRJSON
		default:
			continue
		}
		if c.q > 0 && better(c, best) {
			best = c
		}
	}
	return best.media, best.q > 0
}

// negotiate returns the media type of the answer to r, or a fault.NotAcceptable error.
func negotiate(r *http.Request) (string, error) {
	if vals := r.URL.Query()["_format"]; len(vals) > 0 {
		mt, ok := formatMedia(vals[0])
		if !ok || len(vals) > 1 {
			return "", fhir.NewError(fault.NotAcceptable, fhir.CodeNotSupported,
				"_format "+strconv.Quote(vals[0])+" is not supported: socialrx speaks FHIR JSON only (_format=json, application/fhir+json or application/json)", "_format")
		}
		return mt, nil
	}
	mt, ok := acceptMedia(r.Header.Get("Accept"))
	if !ok {
		return "", fhir.NewError(fault.NotAcceptable, fhir.CodeNotSupported,
			"Accept "+strconv.Quote(r.Header.Get("Accept"))+" names no format socialrx writes: it speaks FHIR JSON only (application/fhir+json or application/json)")
	}
	return mt, nil
}

// Negotiate wraps the FHIR API's handler: a request whose _format or Accept excludes JSON is answered 406
// with an OperationOutcome (except a Binary read asking for application/pdf: pdfWanted); one that prefers application/json gets every FHIR body with Content-Type
// application/json.
func Negotiate(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && isBinaryRead(r.URL.Path) && pdfWanted(r) {
			next.ServeHTTP(w, r) // the GP letter's PDF as it is (documentreference.go)
			return
		}
		mt, err := negotiate(r)
		if err != nil {
			WriteError(w, r, log, err)
			return
		}
		if mt == mediaJSON {
			w = &jsonWriter{ResponseWriter: w}
		}
		next.ServeHTTP(w, r)
	})
}

// jsonWriter answers with Content-Type application/json where the FHIR API wrote application/fhir+json.
type jsonWriter struct {
	http.ResponseWriter
	wrote bool
}

// WriteHeader sends the status with the Content-Type rewritten once.
func (j *jsonWriter) WriteHeader(code int) {
	if !j.wrote {
		j.wrote = true
		h := j.Header()
		if ct := h.Get("Content-Type"); strings.HasPrefix(ct, mediaFHIRJSON) {
			h.Set("Content-Type", mediaJSON+strings.TrimPrefix(ct, mediaFHIRJSON))
		}
	}
	j.ResponseWriter.WriteHeader(code)
}

// Write writes the body (the header first, as http.ResponseWriter does).
func (j *jsonWriter) Write(b []byte) (int, error) {
	if !j.wrote {
		j.WriteHeader(http.StatusOK)
	}
	return j.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (j *jsonWriter) Unwrap() http.ResponseWriter { return j.ResponseWriter }
