package sqlite

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/outbox"
)

// TestOpenExistingCreatesNothing: in Existing mode (the CLI's) a missing file is outbox.ErrNoDatabase and
// no file appears; an empty file is ErrNoDatabase and stays empty; a database short of a migration is
// ErrSchemaBehind naming it, and is not migrated; a current database opens.
func TestOpenExistingCreatesNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	quiet := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	path := filepath.Join(dir, "socialrx.db")
	if _, err := Open(ctx, path, Options{Existing: true, Logger: quiet}); !errors.Is(err, outbox.ErrNoDatabase) {
		t.Errorf("missing file: %v, want ErrNoDatabase", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("opening a missing database created %v", entries)
	}

	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, path, Options{Existing: true, Logger: quiet}); !errors.Is(err, outbox.ErrNoDatabase) {
		t.Errorf("empty file: %v, want ErrNoDatabase", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("the empty file changed: %v, %v", fi, err)
	}

	behind := filepath.Join(dir, "behind.db")
	_, p := gooseAt(t, behind)
	if _, err := p.UpTo(ctx, 4); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, behind, Options{Existing: true, Logger: quiet})
	if !errors.Is(err, outbox.ErrSchemaBehind) || !strings.Contains(err.Error(), "40") {
		t.Errorf("schema at version 4: %v, want ErrSchemaBehind naming 40", err)
	}
	if v, err := p.GetDBVersion(ctx); err != nil || v != 4 {
		t.Errorf("after the check the schema is at %d (%v), want 4: it must not be migrated", v, err)
	}

	if err := Migrate(ctx, behind); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, behind, Options{Existing: true, Logger: quiet})
	if err != nil {
		t.Fatalf("current schema: %v", err)
	}
	defer s.Close()
	if _, err := s.ListPauses(ctx); err != nil {
		t.Errorf("store opened in Existing mode: %v", err)
	}
}
