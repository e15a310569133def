-- socialrx outbox schema (SQLite). Times are integer unix microseconds, UTC; 0 means "none".
-- The PostgreSQL backend mirrors these tables and indexes (BIGINT times, identity columns for INTEGER PRIMARY KEY).

-- +goose Up

-- One row per referral: index columns for every ReferralQuery filter, plus the referral and its
-- ServiceRequest as JSON. version and updated_at are authoritative (they override the JSON).
CREATE TABLE referrals (
    id                 TEXT    PRIMARY KEY,
    task_id            TEXT    NOT NULL UNIQUE,
    service_request_id TEXT    NOT NULL UNIQUE,
    practice_ods       TEXT    NOT NULL,
    service_id         TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    business_status    TEXT    NOT NULL,
    patient_ref        TEXT    NOT NULL,
    patient_nhs_number TEXT    NOT NULL,
    requester_ref      TEXT    NOT NULL,
    version            INTEGER NOT NULL CHECK (version > 0),
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    fingerprint        TEXT    NOT NULL,
    identifiers        TEXT    NOT NULL, -- JSON array of {system, value}, as submitted
    referral           TEXT    NOT NULL, -- JSON mapping.Referral
    service_request    TEXT    NOT NULL  -- the ServiceRequest as stored
);
-- Keyset order (updated_at, id), alone and under each scope.
CREATE INDEX referrals_updated ON referrals (updated_at, id);
CREATE INDEX referrals_practice_updated ON referrals (practice_ods, updated_at, id);
CREATE INDEX referrals_service_updated ON referrals (service_id, updated_at, id);
CREATE INDEX referrals_status_updated ON referrals (status, updated_at, id);
CREATE INDEX referrals_patient_ref ON referrals (patient_ref, updated_at, id);
CREATE INDEX referrals_patient_nhs ON referrals (patient_nhs_number, updated_at, id);
CREATE INDEX referrals_requester_ref ON referrals (requester_ref, updated_at, id);

-- ServiceRequest.identifier values: the idempotency keys. An empty system is stored as ''.
CREATE TABLE referral_identifiers (
    system      TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    referral_id TEXT    NOT NULL REFERENCES referrals (id),
    PRIMARY KEY (system, value)
);
CREATE INDEX referral_identifiers_value ON referral_identifiers (value);
CREATE INDEX referral_identifiers_referral ON referral_identifiers (referral_id);

-- The referral timeline: one row per version.
CREATE TABLE referral_events (
    referral_id     TEXT    NOT NULL REFERENCES referrals (id),
    version         INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    cause           TEXT    NOT NULL CHECK (cause IN ('create', 'update', 'attempt', 'replay')),
    status          TEXT    NOT NULL,
    business_status TEXT    NOT NULL,
    status_reason   TEXT    NOT NULL,
    PRIMARY KEY (referral_id, version)
);

-- Outbox messages. seq is the commit order (the single writer assigns max+1); id is the UUIDv7 webhook-id.
CREATE TABLE outbox_messages (
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
-- ClaimMessages / NextDue: due pending messages in order, expired leases. The destination columns let a
-- claim skip destinations that have no room without reading rows.
CREATE INDEX outbox_pending_due
    ON outbox_messages (next_attempt_at, seq, destination_kind, destination_id) WHERE state = 'pending';
CREATE INDEX outbox_inflight_lease
    ON outbox_messages (lease_until, seq, destination_kind, destination_id) WHERE state = 'inflight';
-- Head-of-line check: is there an earlier undelivered message for the same referral and destination?
CREATE INDEX outbox_undelivered_chain
    ON outbox_messages (referral_id, destination_kind, destination_id, seq) WHERE state <> 'delivered';
-- Admin listing and counting.
CREATE INDEX outbox_state_created ON outbox_messages (state, created_at);
CREATE INDEX outbox_state_seq ON outbox_messages (state, seq);
CREATE INDEX outbox_referral_seq ON outbox_messages (referral_id, seq);
CREATE INDEX outbox_destination_seq ON outbox_messages (destination_kind, destination_id, seq);

-- Every delivery attempt; n counts across replays.
CREATE TABLE outbox_attempts (
    message_id  TEXT    NOT NULL REFERENCES outbox_messages (id),
    n           INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    latency_us  INTEGER NOT NULL,
    status_code INTEGER NOT NULL,
    error       TEXT    NOT NULL,
    PRIMARY KEY (message_id, n)
);

-- Every replay by an engineer.
CREATE TABLE outbox_replays (
    id         INTEGER PRIMARY KEY,
    message_id TEXT    NOT NULL REFERENCES outbox_messages (id),
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    from_state TEXT    NOT NULL
);
CREATE INDEX outbox_replays_message ON outbox_replays (message_id, id);

-- +goose Down
DROP TABLE outbox_replays;
DROP TABLE outbox_attempts;
DROP TABLE outbox_messages;
DROP TABLE referral_events;
DROP TABLE referral_identifiers;
DROP TABLE referrals;
