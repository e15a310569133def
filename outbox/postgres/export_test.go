package postgres

import "database/sql"

// RecordAttemptsStatement is the statement that records a batch of attempts, for tests of its plan.
var RecordAttemptsStatement = recordAttemptsStatement

// SelectDueClosed is retention's scan of the closed referrals, as this backend spells it, for tests of its
// plan.
var SelectDueClosed = dialect().SelectDueClosed()

// QueuePool is the store's queue pool (claims and NextDue), for tests of what its sessions prepared.
func QueuePool(s *Store) *sql.DB { return s.qdb }
