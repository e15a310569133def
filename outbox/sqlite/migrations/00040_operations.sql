-- socialrx migration 40: the engineers' operations (issue 11).
--   * the outbox message state "discarded" (an engineer decided a message must never be sent; terminal) and
--     the timeline cause "discard" (the referral version such a decision wrote): SQLite cannot alter a CHECK
--     constraint, so outbox_messages and referral_events are rebuilt with the same columns and indexes as
--     migrations 20 and 30 left them (SQLite's documented 12-step table change, as in migration 3). No row
--     changes.
--   * outbox_discards: who discarded each discarded message, when and why.
--   * outbox_pauses: paused destinations (resumed_at 0 while the pause holds; ended pauses are kept).
--   * outbox_attempts.response: the start of the receiver's answer (at most 1 KB, as text).
-- +goose NO TRANSACTION

-- +goose Up
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE outbox_messages_new (
    id                TEXT    PRIMARY KEY,
    seq               INTEGER NOT NULL UNIQUE,
    referral_id       TEXT    REFERENCES referrals (id), -- NULL: a Subscription's handshake or heartbeat (migration 20)
    referral_version  INTEGER NOT NULL,
    destination_kind  TEXT    NOT NULL,
    destination_id    TEXT    NOT NULL,
    type              TEXT    NOT NULL,
    payload           BLOB    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('pending', 'inflight', 'delivered', 'dead', 'cancelled', 'discarded')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    next_attempt_at   INTEGER NOT NULL,
    lease_owner       TEXT    NOT NULL DEFAULT '',
    lease_until       INTEGER NOT NULL DEFAULT 0,
    delivered_at      INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT    NOT NULL DEFAULT '',
    budget_from       INTEGER NOT NULL,
    withdrawn_version INTEGER NOT NULL DEFAULT 0
);
INSERT INTO outbox_messages_new (id, seq, referral_id, referral_version, destination_kind, destination_id, type,
    payload, state, attempts, created_at, next_attempt_at, lease_owner, lease_until, delivered_at, last_error,
    budget_from, withdrawn_version)
    SELECT id, seq, referral_id, referral_version, destination_kind, destination_id, type, payload, state,
    attempts, created_at, next_attempt_at, lease_owner, lease_until, delivered_at, last_error, budget_from,
    withdrawn_version
    FROM outbox_messages;
DROP TABLE outbox_messages;
ALTER TABLE outbox_messages_new RENAME TO outbox_messages;
CREATE INDEX outbox_pending_due
    ON outbox_messages (next_attempt_at, seq, destination_kind, destination_id) WHERE state = 'pending';
CREATE INDEX outbox_inflight_lease
    ON outbox_messages (lease_until, seq, destination_kind, destination_id) WHERE state = 'inflight';
CREATE INDEX outbox_undelivered_chain
    ON outbox_messages (referral_id, destination_kind, destination_id, seq) WHERE state <> 'delivered';
CREATE INDEX outbox_state_created ON outbox_messages (state, created_at);
CREATE INDEX outbox_state_seq ON outbox_messages (state, seq);
CREATE INDEX outbox_referral_seq ON outbox_messages (referral_id, seq);
CREATE INDEX outbox_destination_seq ON outbox_messages (destination_kind, destination_id, seq);
CREATE INDEX outbox_undelivered_destination
    ON outbox_messages (destination_kind, destination_id, seq) WHERE state <> 'delivered';
-- The overview's messages by destination and state: a count from this index alone.
CREATE INDEX outbox_destination_state ON outbox_messages (destination_kind, destination_id, state);

CREATE TABLE referral_events_new (
    referral_id     TEXT    NOT NULL REFERENCES referrals (id),
    version         INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    cause           TEXT    NOT NULL CHECK (cause IN ('create', 'update', 'attempt', 'replay', 'discard')),
    status          TEXT    NOT NULL,
    business_status TEXT    NOT NULL,
    status_reason   TEXT    NOT NULL,
    referral        TEXT    NOT NULL DEFAULT '', -- the version as it was (migration 20)
    PRIMARY KEY (referral_id, version)
);
INSERT INTO referral_events_new (referral_id, version, at, cause, status, business_status, status_reason, referral)
    SELECT referral_id, version, at, cause, status, business_status, status_reason, referral FROM referral_events;
DROP TABLE referral_events;
ALTER TABLE referral_events_new RENAME TO referral_events;

CREATE TABLE outbox_discards (
    message_id TEXT    PRIMARY KEY REFERENCES outbox_messages (id),
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    from_state TEXT    NOT NULL
);

CREATE TABLE outbox_pauses (
    id               INTEGER PRIMARY KEY,
    destination_kind TEXT    NOT NULL,
    destination_id   TEXT    NOT NULL,
    paused_at        INTEGER NOT NULL,
    paused_by        TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    resumed_at       INTEGER NOT NULL DEFAULT 0,
    resumed_by       TEXT    NOT NULL DEFAULT ''
);
-- At most one pause in force per destination.
CREATE UNIQUE INDEX outbox_pauses_active ON outbox_pauses (destination_kind, destination_id) WHERE resumed_at = 0;

ALTER TABLE outbox_attempts ADD COLUMN response TEXT NOT NULL DEFAULT '';
-- Deliveries per minute (the console's overview): attempts by start time.
CREATE INDEX outbox_attempts_started ON outbox_attempts (started_at);
COMMIT;
PRAGMA foreign_keys = ON;

-- +goose Down
-- Discarded messages go back to dead (never delivered, not retried), discard versions to update.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
DROP INDEX outbox_destination_state;
DROP INDEX outbox_attempts_started;
ALTER TABLE outbox_attempts DROP COLUMN response;
DROP TABLE outbox_pauses;
DROP TABLE outbox_discards;
CREATE TABLE referral_events_old (
    referral_id     TEXT    NOT NULL REFERENCES referrals (id),
    version         INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    cause           TEXT    NOT NULL CHECK (cause IN ('create', 'update', 'attempt', 'replay')),
    status          TEXT    NOT NULL,
    business_status TEXT    NOT NULL,
    status_reason   TEXT    NOT NULL,
    referral        TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (referral_id, version)
);
INSERT INTO referral_events_old (referral_id, version, at, cause, status, business_status, status_reason, referral)
    SELECT referral_id, version, at, CASE cause WHEN 'discard' THEN 'update' ELSE cause END, status,
    business_status, status_reason, referral FROM referral_events;
DROP TABLE referral_events;
ALTER TABLE referral_events_old RENAME TO referral_events;
CREATE TABLE outbox_messages_old (
    id                TEXT    PRIMARY KEY,
    seq               INTEGER NOT NULL UNIQUE,
    referral_id       TEXT    REFERENCES referrals (id), -- NULL: a Subscription's handshake or heartbeat (migration 20)
    referral_version  INTEGER NOT NULL,
    destination_kind  TEXT    NOT NULL,
    destination_id    TEXT    NOT NULL,
    type              TEXT    NOT NULL,
    payload           BLOB    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('pending', 'inflight', 'delivered', 'dead', 'cancelled')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    next_attempt_at   INTEGER NOT NULL,
    lease_owner       TEXT    NOT NULL DEFAULT '',
    lease_until       INTEGER NOT NULL DEFAULT 0,
    delivered_at      INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT    NOT NULL DEFAULT '',
    budget_from       INTEGER NOT NULL,
    withdrawn_version INTEGER NOT NULL DEFAULT 0
);
INSERT INTO outbox_messages_old (id, seq, referral_id, referral_version, destination_kind, destination_id, type,
    payload, state, attempts, created_at, next_attempt_at, lease_owner, lease_until, delivered_at, last_error,
    budget_from, withdrawn_version)
    SELECT id, seq, referral_id, referral_version, destination_kind, destination_id, type, payload,
    CASE state WHEN 'discarded' THEN 'dead' ELSE state END, attempts, created_at, next_attempt_at, lease_owner,
    lease_until, delivered_at, last_error, budget_from, withdrawn_version
    FROM outbox_messages;
DROP TABLE outbox_messages;
ALTER TABLE outbox_messages_old RENAME TO outbox_messages;
CREATE INDEX outbox_pending_due
    ON outbox_messages (next_attempt_at, seq, destination_kind, destination_id) WHERE state = 'pending';
CREATE INDEX outbox_inflight_lease
    ON outbox_messages (lease_until, seq, destination_kind, destination_id) WHERE state = 'inflight';
CREATE INDEX outbox_undelivered_chain
    ON outbox_messages (referral_id, destination_kind, destination_id, seq) WHERE state <> 'delivered';
CREATE INDEX outbox_state_created ON outbox_messages (state, created_at);
CREATE INDEX outbox_state_seq ON outbox_messages (state, seq);
CREATE INDEX outbox_referral_seq ON outbox_messages (referral_id, seq);
CREATE INDEX outbox_destination_seq ON outbox_messages (destination_kind, destination_id, seq);
CREATE INDEX outbox_undelivered_destination
    ON outbox_messages (destination_kind, destination_id, seq) WHERE state <> 'delivered';
COMMIT;
PRAGMA foreign_keys = ON;
