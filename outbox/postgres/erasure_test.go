package postgres_test

import (
	"database/sql"
	"testing"

	"github.com/socialrx/socialrx/outbox/outboxtest"
	"github.com/socialrx/socialrx/outbox/postgres"
)

// TestErasure runs the consent-withdrawal conformance tests on real PostgreSQL (a fresh schema), scanning
// every table of the schema directly.
func TestErasure(t *testing.T) {
	t.Parallel()
	outboxtest.RunErasure(t, openRaw)
}

// TestTimelineCopies runs the timeline-copy conformance tests on real PostgreSQL (a fresh schema), reading
// its timeline entries directly (outboxtest.RunTimelineCopies).
func TestTimelineCopies(t *testing.T) {
	t.Parallel()
	outboxtest.RunTimelineCopies(t, openRaw)
}

// openRaw opens a store on a fresh schema and a direct connection to it.
func openRaw(t *testing.T) outboxtest.Raw {
	dsn := freshSchema(t)
	s := openStore(t, dsn, postgres.Options{})
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return outboxtest.Raw{Store: s, DB: db}
}
