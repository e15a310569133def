package postgres

import (
	"context"
	"database/sql"
)

// RecordAttemptsStatement is the statement that records a batch of attempts, for tests of its plan.
var RecordAttemptsStatement = recordAttemptsStatement

// FindIdentifiersStatement is intake's lookup of a create's identifiers, for tests of its plan.
const FindIdentifiersStatement = findIdentifiersStatement

// SelectDueClosed is retention's scan of the closed referrals, as this backend spells it, for tests of its
// plan.
var SelectDueClosed = dialect().SelectDueClosed()

// QueuePool is the store's queue pool (claims and NextDue), for tests of what its sessions prepared.
func QueuePool(s *Store) *sql.DB { return s.qdb }

// Announced is how many announcements s has sent, or failed to send, so far.
func Announced(s *Store) int64 { return s.announced.Load() }

// AnnouncerConn takes the announcer's one connection: s announces nothing until it is closed.
func AnnouncerConn(ctx context.Context, s *Store) (*sql.Conn, error) { return s.ndb.Conn(ctx) }

// Channel is s's LISTEN/NOTIFY channel.
func Channel(s *Store) string { return s.channel }

// WriterPool is the store's writers' pool, for tests of its sessions.
func WriterPool(s *Store) *sql.DB { return s.db }

// StampPool is the store's stamp pool, for tests of its sessions.
func StampPool(s *Store) *sql.DB { return s.sdb }
