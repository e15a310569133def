-- socialrx migration 100 (issue 12): one index fewer for every referral write.
--
-- referrals_status_created (status, created_at) had one reader: the overdue sweep's search for requested
-- referrals created before its deadline. The sweep now searches each deadline rung apart (status, one
-- deadline_step, created before), which referrals_deadline (status, deadline_step, created_at) serves as one
-- index range each, as it already served the deadline ladder's climb. A version of a referral is not a HOT
-- update (its updated_at is in most of the table's indexes), so every create and every version, a delivery's
-- included, wrote an entry of the dropped index: 13 entries a version before, 12 now.

-- +goose Up
DROP INDEX referrals_status_created;

-- +goose Down
CREATE INDEX referrals_status_created ON referrals (status, created_at);
