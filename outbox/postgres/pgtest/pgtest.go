// Package pgtest gives tests a real PostgreSQL to work on: an empty schema of their own on the test server
// (SOCIALRX_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test), dropped when the test ends.
// Without a reachable server the test is skipped with a message, or fails when CI is set, so that a
// developer's `make test` needs no server and CI never silently skips the PostgreSQL half.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// DefaultURL is the test server used when SOCIALRX_TEST_POSTGRES_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// ServerURL is the test server's URL: SOCIALRX_TEST_POSTGRES_URL or DefaultURL.
func ServerURL() string {
	if u := os.Getenv("SOCIALRX_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// FreshSchema creates an empty schema for t on the test server, dropped when t ends, and returns a URL whose
// search_path selects it.
func FreshSchema(t testing.TB) string {
	t.Helper()
	base := ServerURL()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open %s: %v", Redact(base), err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		msg := fmt.Sprintf("PostgreSQL not reachable at %s (%v); set SOCIALRX_TEST_POSTGRES_URL", Redact(base), err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "socialrx_test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Redact is a database URL without its password.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
