-- socialrx migration 92 (issue 12): one index fewer for every intake to write.
--
-- referrals_status_created (status, created_at) had one reader: the overdue sweep's search for requested
-- referrals created before its deadline. The sweep now searches each deadline rung apart (status, one
-- deadline_step, created before), which referrals_deadline (status, deadline_step, created_at) serves as one
-- index range each, as it already served the deadline ladder's climb. Every create wrote an entry of the
-- dropped index, and so did every version that changed a referral's status.

-- +goose Up
DROP INDEX referrals_status_created;

-- +goose Down
CREATE INDEX referrals_status_created ON referrals (status, created_at);
