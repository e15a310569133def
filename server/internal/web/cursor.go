package web

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/outbox"
)

// EncodeCursor renders a position in the (UpdatedAt, ID) order as an opaque URL-safe cursor.
func EncodeCursor(c outbox.Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.UpdatedAt.UnixMicro(), 10) + "." + c.ID))
}

// DecodeCursor reads a cursor EncodeCursor made.
func DecodeCursor(v string) (outbox.Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return outbox.Cursor{}, err
	}
	ts, id, ok := strings.Cut(string(b), ".")
	us, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || id == "" {
		return outbox.Cursor{}, errors.New("bad cursor")
	}
	return outbox.Cursor{UpdatedAt: time.UnixMicro(us).UTC(), ID: id}, nil
}
