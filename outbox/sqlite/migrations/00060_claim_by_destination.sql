-- socialrx migration 60 (issue 12): the claim reads each destination's due pending messages from its own index
-- range, as PostgreSQL's does (outbox_pending_destination there), so that a destination without room costs
-- nothing: scanning outbox_pending_due with a full destination excluded read that destination's whole backlog
-- on every claim (the claim's cost grew with the backlog). Also referrals_status_created: the overdue sweep
-- reads only the requested referrals created before its deadline, not every open one.

-- +goose Up
CREATE INDEX outbox_pending_destination
    ON outbox_messages (destination_kind, destination_id, next_attempt_at, seq) WHERE state = 'pending';
CREATE INDEX referrals_status_created ON referrals (status, created_at);

-- +goose Down
DROP INDEX referrals_status_created;
DROP INDEX outbox_pending_destination;
