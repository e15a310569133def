-- socialrx migration 95 (issue 12): two indexes of referrals hold only the rows their one reader looks for,
-- so that the versions a delivery writes (a requested referral's new businessStatus and lastUpdated) no
-- longer write them.
--   * referrals_unscrubbed: retention's scan of the closed referrals not yet scrubbed (sqlstore's dueClosed,
--     whose status list this predicate spells the same way, so that the scan keeps using it). It held every
--     referral, and every version of an open one moved its entry.
--   * referrals_parent: the GP's Task?part-of= search, which now also says parent_task_id <> '' (a search
--     for '' is never made). It held every referral under '', and every version moved that entry.
-- Measured on SQLite (the WAL pages one delivery's transaction writes, attributed to each b-tree): each of
-- these indexes cost two pages of every version of an open referral, one of every intake.

-- +goose Up
DROP INDEX referrals_unscrubbed;
CREATE INDEX referrals_unscrubbed ON referrals (updated_at, id)
    WHERE scrubbed_at = 0 AND status IN ('rejected', 'completed', 'failed', 'cancelled', 'entered-in-error');
DROP INDEX referrals_parent;
CREATE INDEX referrals_parent ON referrals (parent_task_id, updated_at, id) WHERE parent_task_id <> '';

-- +goose Down
DROP INDEX referrals_parent;
CREATE INDEX referrals_parent ON referrals (parent_task_id, updated_at, id);
DROP INDEX referrals_unscrubbed;
CREATE INDEX referrals_unscrubbed ON referrals (updated_at, id) WHERE scrubbed_at = 0;
