-- socialrx migration 85 (issue 13): link-worker onward referral. A forwarded referral (mapping.Forward) keeps
-- the Task id of the link worker's referral it came from (its Task.partOf), so that the GP's search
-- Task?part-of=Task/{id} finds the children from an index. '' for every other referral.

-- +goose Up
ALTER TABLE referrals ADD COLUMN parent_task_id TEXT NOT NULL DEFAULT '';
CREATE INDEX referrals_parent ON referrals (parent_task_id, updated_at, id);

-- +goose Down
DROP INDEX referrals_parent;
ALTER TABLE referrals DROP COLUMN parent_task_id;
