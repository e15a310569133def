package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/pressly/goose/v3"
)

// Migrate applies the backend's goose migrations (the directory migrations of files) to db in the goose
// dialect dialect, with the backend's extra provider options, logging each one applied. The migrations
// themselves, and how they are locked, are the backend's.
func (d Dialect) Migrate(ctx context.Context, db *sql.DB, files fs.FS, dialect goose.Dialect, log *slog.Logger, opts ...goose.ProviderOption) error {
	fsys, err := fs.Sub(files, "migrations")
	if err != nil {
		return fmt.Errorf("%s: migrations: %w", d.Name, err)
	}
	p, err := goose.NewProvider(dialect, db, fsys,
		append([]goose.ProviderOption{goose.WithDisableGlobalRegistry(true), goose.WithSlog(log)}, opts...)...)
	if err != nil {
		return fmt.Errorf("%s: migrations: %w", d.Name, err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("%s: migrate: %w", d.Name, err)
	}
	for _, r := range res {
		log.InfoContext(ctx, d.Name+": migration applied", "version", r.Source.Version, "duration", r.Duration)
	}
	return nil
}
