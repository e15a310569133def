package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/pressly/goose/v3"

	"github.com/socialrx/socialrx/outbox"
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

// CheckSchema checks, without changing anything, that db holds a socialrx schema with every migration of
// files (the directory migrations, files named <version>_<name>.sql) applied: outbox.ErrNoDatabase when
// goose's version table is missing (hasTable is the backend's query counting a table of that name in the
// current schema, one ? placeholder), outbox.ErrSchemaBehind naming the missing versions otherwise. A
// database that is ahead (migrated by a newer socialrx) passes: migrations only add.
func (d Dialect) CheckSchema(ctx context.Context, db *sql.DB, files fs.FS, hasTable string) error {
	var n int
	if err := db.QueryRowContext(ctx, d.rebind(hasTable), "goose_db_version").Scan(&n); err != nil {
		return d.DriverErr("check schema", err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w (no migrations recorded)", d.Name, outbox.ErrNoDatabase)
	}
	rows, err := db.QueryContext(ctx, `SELECT version_id, is_applied FROM goose_db_version ORDER BY id`)
	if err != nil {
		return d.DriverErr("check schema", err)
	}
	defer rows.Close()
	applied := map[int64]bool{}
	for rows.Next() {
		var v int64
		var ok bool
		if err := rows.Scan(&v, &ok); err != nil {
			return d.DriverErr("check schema", err)
		}
		applied[v] = ok // the last row of a version says whether it is applied now
	}
	if err := rows.Err(); err != nil {
		return d.DriverErr("check schema", err)
	}
	want, err := MigrationVersions(files)
	if err != nil {
		return fmt.Errorf("%s: %w", d.Name, err)
	}
	var missing []string
	for _, v := range want {
		if !applied[v] {
			missing = append(missing, strconv.FormatInt(v, 10))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: %w (migrations %s not applied)", d.Name, outbox.ErrSchemaBehind, strings.Join(missing, ", "))
	}
	return nil
}

// MigrationVersions lists the versions of the goose migrations in files (directory migrations), ascending.
func MigrationVersions(files fs.FS) ([]int64, error) {
	names, err := fs.Glob(files, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var out []int64
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("migrations: %s is not named <version>_<name>.sql", base)
		}
		out = append(out, v)
	}
	slices.Sort(out)
	return out, nil
}
