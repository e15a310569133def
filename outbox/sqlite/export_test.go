package sqlite

import (
	"context"
	"fmt"
)

// Pragmas reads the write connection's settings (tests only).
func (s *Store) Pragmas(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	err := s.write(ctx, func(w *wtx) error {
		for _, p := range []string{"journal_mode", "synchronous", "foreign_keys", "busy_timeout"} {
			var v string
			if err := w.tx.QueryRowContext(w.ctx, "PRAGMA "+p).Scan(&v); err != nil {
				return fmt.Errorf("pragma %s: %w", p, err)
			}
			out[p] = v
		}
		return nil
	})
	return out, err
}
