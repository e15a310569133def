-- socialrx migration 40: the engineers' operations (issue 11), mirroring outbox/sqlite's migration 40.
--   * the outbox message state "discarded" (an engineer decided a message must never be sent; terminal) and
--     the timeline cause "discard". The widened CHECK constraints are added NOT VALID and then validated, so
--     that the check of existing rows does not block writes.
--   * outbox_discards: who discarded each discarded message, when and why.
--   * outbox_pauses: paused destinations (resumed_at 0 while the pause holds; ended pauses are kept).
--   * outbox_attempts.response: the start of the receiver's answer (at most 1 KB, as text).

-- +goose Up
ALTER TABLE outbox_messages DROP CONSTRAINT outbox_messages_state_check;
ALTER TABLE outbox_messages ADD CONSTRAINT outbox_messages_state_check
    CHECK (state IN ('pending', 'inflight', 'delivered', 'dead', 'cancelled', 'discarded')) NOT VALID;
ALTER TABLE outbox_messages VALIDATE CONSTRAINT outbox_messages_state_check;
ALTER TABLE referral_events DROP CONSTRAINT referral_events_cause_check;
ALTER TABLE referral_events ADD CONSTRAINT referral_events_cause_check
    CHECK (cause IN ('create', 'update', 'attempt', 'replay', 'discard')) NOT VALID;
ALTER TABLE referral_events VALIDATE CONSTRAINT referral_events_cause_check;

-- The overview's messages by destination and state: a count from this index alone.
CREATE INDEX outbox_destination_state ON outbox_messages (destination_kind, destination_id, state);

CREATE TABLE outbox_discards (
    message_id TEXT   PRIMARY KEY REFERENCES outbox_messages (id),
    at         BIGINT NOT NULL,
    actor      TEXT   NOT NULL,
    reason     TEXT   NOT NULL,
    from_state TEXT   NOT NULL
);

CREATE TABLE outbox_pauses (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination_kind TEXT   NOT NULL,
    destination_id   TEXT   NOT NULL,
    paused_at        BIGINT NOT NULL,
    paused_by        TEXT   NOT NULL,
    reason           TEXT   NOT NULL,
    resumed_at       BIGINT NOT NULL DEFAULT 0,
    resumed_by       TEXT   NOT NULL DEFAULT ''
);
-- At most one pause in force per destination.
CREATE UNIQUE INDEX outbox_pauses_active ON outbox_pauses (destination_kind, destination_id) WHERE resumed_at = 0;

ALTER TABLE outbox_attempts ADD COLUMN response TEXT NOT NULL DEFAULT '';
-- Deliveries per minute (the console's overview): attempts by start time.
CREATE INDEX outbox_attempts_started ON outbox_attempts (started_at);

-- +goose Down
DROP INDEX outbox_destination_state;
DROP INDEX outbox_attempts_started;
ALTER TABLE outbox_attempts DROP COLUMN response;
DROP TABLE outbox_pauses;
DROP TABLE outbox_discards;
UPDATE referral_events SET cause = 'update' WHERE cause = 'discard';
ALTER TABLE referral_events DROP CONSTRAINT referral_events_cause_check;
ALTER TABLE referral_events ADD CONSTRAINT referral_events_cause_check
    CHECK (cause IN ('create', 'update', 'attempt', 'replay'));
UPDATE outbox_messages SET state = 'dead' WHERE state = 'discarded';
ALTER TABLE outbox_messages DROP CONSTRAINT outbox_messages_state_check;
ALTER TABLE outbox_messages ADD CONSTRAINT outbox_messages_state_check
    CHECK (state IN ('pending', 'inflight', 'delivered', 'dead', 'cancelled'));
