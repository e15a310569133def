-- socialrx migration 97 (issue 12): a delivery's two updates of its message write two index entries fewer each.
--
-- A claim (pending → inflight) and a completion (→ delivered) are not HOT updates (state is indexed), so each
-- writes an entry in every index whose predicate holds for the new row: 10 for a claim, 8 for a completion.
-- Two of those indexes had one reader each, which another index can serve:
--   * outbox_state_created (state, created_at) served only the oldest pending message's age
--     (sqlstore's oldestPending, read by CountMessages on every metrics scrape). outbox_pending_created holds
--     the pending messages only, which a claim and a completion never write: the same answer from one descent.
--     Counting messages by state reads outbox_state_seq instead.
--   * outbox_destination_state (destination_kind, destination_id, state) served the operations overview's
--     count by destination and state from the index alone. outbox_destination_seq now carries the state
--     (INCLUDE), so that count still reads one index only, and listing a destination's messages in seq order
--     is served as before. A destination's dead messages are found through outbox_unfinished_destination.
-- A claim now writes 8 entries, a completion 6.

-- +goose Up
CREATE INDEX outbox_pending_created ON outbox_messages (created_at) WHERE state = 'pending';
DROP INDEX outbox_state_created;
CREATE INDEX outbox_destination_seq_state ON outbox_messages (destination_kind, destination_id, seq) INCLUDE (state);
DROP INDEX outbox_destination_seq;
ALTER INDEX outbox_destination_seq_state RENAME TO outbox_destination_seq;
DROP INDEX outbox_destination_state;

-- +goose Down
CREATE INDEX outbox_destination_state ON outbox_messages (destination_kind, destination_id, state);
CREATE INDEX outbox_destination_seq_plain ON outbox_messages (destination_kind, destination_id, seq);
DROP INDEX outbox_destination_seq;
ALTER INDEX outbox_destination_seq_plain RENAME TO outbox_destination_seq;
CREATE INDEX outbox_state_created ON outbox_messages (state, created_at);
DROP INDEX outbox_pending_created;
