-- socialrx migration 3: the outbox message state "cancelled" (a referral.created withdrawn before delivery
-- because the GP cancelled the referral) and withdrawn_version, the referral version that withdrew it (the
-- referral timeline shows it). SQLite cannot alter a CHECK constraint, so outbox_messages is rebuilt with the
-- same columns, the new one and the same indexes (SQLite's documented 12-step table change: foreign keys
-- off, copy, drop, rename, recreate the indexes, check the foreign keys). No row changes state.
-- +goose NO TRANSACTION

-- +goose Up
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE outbox_messages_new (
    id                TEXT    PRIMARY KEY,
    seq               INTEGER NOT NULL UNIQUE,
    referral_id       TEXT    NOT NULL REFERENCES referrals (id),
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
    withdrawn_version INTEGER NOT NULL DEFAULT 0 -- cancelled: the referral version that withdrew it
);
INSERT INTO outbox_messages_new (id, seq, referral_id, referral_version, destination_kind, destination_id, type,
    payload, state, attempts, created_at, next_attempt_at, lease_owner, lease_until, delivered_at, last_error,
    budget_from)
    SELECT id, seq, referral_id, referral_version, destination_kind, destination_id, type, payload, state,
    attempts, created_at, next_attempt_at, lease_owner, lease_until, delivered_at, last_error, budget_from
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
COMMIT;
PRAGMA foreign_keys = ON;

-- +goose Down
-- Withdrawn messages go back to dead (the closest older state: never delivered, not retried).
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE outbox_messages_old (
    id               TEXT    PRIMARY KEY,
    seq              INTEGER NOT NULL UNIQUE,
    referral_id      TEXT    NOT NULL REFERENCES referrals (id),
    referral_version INTEGER NOT NULL,
    destination_kind TEXT    NOT NULL,
    destination_id   TEXT    NOT NULL,
    type             TEXT    NOT NULL,
    payload          BLOB    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'inflight', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT    NOT NULL DEFAULT '',
    lease_until      INTEGER NOT NULL DEFAULT 0,
    delivered_at     INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT    NOT NULL DEFAULT '',
    budget_from      INTEGER NOT NULL
);
INSERT INTO outbox_messages_old (id, seq, referral_id, referral_version, destination_kind, destination_id, type,
    payload, state, attempts, created_at, next_attempt_at, lease_owner, lease_until, delivered_at, last_error,
    budget_from)
    SELECT id, seq, referral_id, referral_version, destination_kind, destination_id, type, payload,
    CASE state WHEN 'cancelled' THEN 'dead' ELSE state END, attempts, created_at, next_attempt_at, lease_owner,
    lease_until, delivered_at, last_error, budget_from
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
