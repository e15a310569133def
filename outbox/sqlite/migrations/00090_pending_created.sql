-- socialrx migration 90 (issue 12): the oldest pending message's age from an index of the pending messages
-- alone, so that a delivery's claim and completion no longer move an entry of outbox_state_created.
--
-- outbox_state_created (state, created_at) had one reader: the oldest pending message's creation time
-- (sqlstore's OldestPending, read by CountMessages on every metrics scrape). Every change of a message's state
-- moved its entry: a claim (pending → inflight) and a completion (→ delivered) each deleted one entry and
-- inserted another. outbox_pending_created holds the pending messages only: a claim deletes its entry, a
-- completion writes none. Counting messages by state reads outbox_state_seq instead. (PostgreSQL's
-- migration 97 does the same, and also folds outbox_destination_state into outbox_destination_seq, which
-- SQLite cannot: it has no INCLUDE, and the operations overview's count would then read the whole table.)

-- +goose Up
CREATE INDEX outbox_pending_created ON outbox_messages (created_at) WHERE state = 'pending';
DROP INDEX outbox_state_created;

-- +goose Down
CREATE INDEX outbox_state_created ON outbox_messages (state, created_at);
DROP INDEX outbox_pending_created;
