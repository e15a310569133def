-- socialrx migration 80 (issue 13): the rung of the response-deadline ladder each referral reached
-- (mapping.DeadlineStep: '' none, reminded, escalated, declined), written with every version from the
-- referral's JSON, so that the deadline sweep reads only the requested referrals standing on the rung it
-- climbs from and created before that rung's deadline (referrals_deadline), not every waiting one.

-- +goose Up
ALTER TABLE referrals ADD COLUMN deadline_step TEXT NOT NULL DEFAULT '';
CREATE INDEX referrals_deadline ON referrals (status, deadline_step, created_at);

-- +goose Down
DROP INDEX referrals_deadline;
ALTER TABLE referrals DROP COLUMN deadline_step;
