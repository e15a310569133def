package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/socialrx/socialrx/outbox/outboxtest"
	"github.com/socialrx/socialrx/outbox/sqlite"
)

// TestErasure runs the consent-withdrawal conformance tests on a real SQLite file, scanning it directly.
func TestErasure(t *testing.T) {
	t.Parallel()
	outboxtest.RunErasure(t, func(t *testing.T) outboxtest.Raw {
		path := filepath.Join(t.TempDir(), "socialrx.db")
		s := openStore(t, path, sqlite.Options{})
		return outboxtest.Raw{Store: s, DB: rawDB(t, path)}
	})
}

// TestTimelineCopies runs the timeline-copy conformance tests on a real SQLite file, reading its timeline
// entries directly and writing one as an old version of socialrx did (outboxtest.RunTimelineCopies).
func TestTimelineCopies(t *testing.T) {
	t.Parallel()
	outboxtest.RunTimelineCopies(t, openWritableRaw)
}
