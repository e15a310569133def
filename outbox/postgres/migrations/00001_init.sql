-- socialrx outbox schema (PostgreSQL). It mirrors outbox/sqlite's three migrations in one: the same tables,
-- columns and indexes. Times are BIGINT unix microseconds, UTC; 0 means "none". JSON documents and payloads
-- are BYTEA so that their bytes are kept exactly (jsonb would reorder keys).

-- +goose Up

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
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    fingerprint        TEXT    NOT NULL,
    identifiers        BYTEA   NOT NULL, -- JSON array of {system, value}, as submitted
    referral           BYTEA   NOT NULL, -- JSON mapping.Referral
    service_request    BYTEA   NOT NULL  -- the ServiceRequest as stored
);
CREATE INDEX referrals_updated ON referrals (updated_at, id);
CREATE INDEX referrals_practice_updated ON referrals (practice_ods, updated_at, id);
CREATE INDEX referrals_service_updated ON referrals (service_id, updated_at, id);
CREATE INDEX referrals_status_updated ON referrals (status, updated_at, id);
CREATE INDEX referrals_patient_ref ON referrals (patient_ref, updated_at, id);
CREATE INDEX referrals_patient_nhs ON referrals (patient_nhs_number, updated_at, id);
CREATE INDEX referrals_requester_ref ON referrals (requester_ref, updated_at, id);

-- ServiceRequest.identifier values: the idempotency keys. An empty system is stored as ''.
CREATE TABLE referral_identifiers (
    system      TEXT NOT NULL,
    value       TEXT NOT NULL,
    referral_id TEXT NOT NULL REFERENCES referrals (id),
    PRIMARY KEY (system, value)
);
CREATE INDEX referral_identifiers_value ON referral_identifiers (value);
CREATE INDEX referral_identifiers_referral ON referral_identifiers (referral_id);

-- The referral timeline: one row per version.
CREATE TABLE referral_events (
    referral_id     TEXT    NOT NULL REFERENCES referrals (id),
    version         INTEGER NOT NULL,
    at              BIGINT  NOT NULL,
    cause           TEXT    NOT NULL CHECK (cause IN ('create', 'update', 'attempt', 'replay')),
    status          TEXT    NOT NULL,
    business_status TEXT    NOT NULL,
    status_reason   TEXT    NOT NULL,
    PRIMARY KEY (referral_id, version)
);

-- Outbox messages. seq comes from an identity sequence: increasing in insertion order; messages of one
-- referral (its row is locked by every writer) and of one subscription (its row is locked by the fan-out)
-- are numbered in commit order.
CREATE TABLE outbox_messages (
    id                TEXT    PRIMARY KEY,
    seq               BIGINT  GENERATED ALWAYS AS IDENTITY UNIQUE,
    referral_id       TEXT    NOT NULL REFERENCES referrals (id),
    referral_version  INTEGER NOT NULL,
    destination_kind  TEXT    NOT NULL,
    destination_id    TEXT    NOT NULL,
    type              TEXT    NOT NULL,
    payload           BYTEA   NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('pending', 'inflight', 'delivered', 'dead', 'cancelled')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    created_at        BIGINT  NOT NULL,
    next_attempt_at   BIGINT  NOT NULL,
    lease_owner       TEXT    NOT NULL DEFAULT '',
    lease_until       BIGINT  NOT NULL DEFAULT 0,
    delivered_at      BIGINT  NOT NULL DEFAULT 0,
    last_error        TEXT    NOT NULL DEFAULT '',
    budget_from       BIGINT  NOT NULL,
    withdrawn_version INTEGER NOT NULL DEFAULT 0, -- cancelled: the referral version that withdrew it
    -- The (destination, referral) chain a message is ordered in, as one key (kind ':' length(id) ':' id ':'
    -- referral: unambiguous, as kinds hold no ':'). The head-of-line probe matches on it alone, so only
    -- outbox_unfinished_chain can serve it: with three equalities the planner, lacking statistics (a fresh
    -- or just-filled table), would pick a destination index and read the destination's whole history per
    -- candidate.
    chain_key         TEXT    GENERATED ALWAYS AS (destination_kind || ':' || length(destination_id)::text || ':'
                                  || destination_id || ':' || referral_id) STORED
);
-- ClaimMessages / NextDue: due pending messages in order, expired leases.
CREATE INDEX outbox_pending_due
    ON outbox_messages (next_attempt_at, seq, destination_kind, destination_id) WHERE state = 'pending';
-- ClaimMessagesFiltered: the destinations with pending messages (a skip scan), then each destination's due
-- pending messages in order, so a full destination's backlog is never read.
CREATE INDEX outbox_pending_destination
    ON outbox_messages (destination_kind, destination_id, next_attempt_at, seq) WHERE state = 'pending';
CREATE INDEX outbox_inflight_lease
    ON outbox_messages (lease_until, seq, destination_kind, destination_id) WHERE state = 'inflight';
-- Head-of-line checks: an earlier unfinished message of the same referral and destination, or (subscriptions)
-- of the same destination.
CREATE INDEX outbox_unfinished_chain
    ON outbox_messages (chain_key, seq)
    WHERE state IN ('pending', 'inflight', 'dead');
CREATE INDEX outbox_unfinished_destination
    ON outbox_messages (destination_kind, destination_id, seq)
    WHERE state IN ('pending', 'inflight', 'dead');
-- Admin listing and counting.
CREATE INDEX outbox_state_created ON outbox_messages (state, created_at);
CREATE INDEX outbox_state_seq ON outbox_messages (state, seq);
CREATE INDEX outbox_referral_seq ON outbox_messages (referral_id, seq);
CREATE INDEX outbox_destination_seq ON outbox_messages (destination_kind, destination_id, seq);

-- Every delivery attempt; n counts across replays.
CREATE TABLE outbox_attempts (
    message_id  TEXT    NOT NULL REFERENCES outbox_messages (id),
    n           INTEGER NOT NULL,
    started_at  BIGINT  NOT NULL,
    latency_us  BIGINT  NOT NULL,
    status_code INTEGER NOT NULL,
    error       TEXT    NOT NULL,
    PRIMARY KEY (message_id, n)
);

-- Every replay by an engineer.
CREATE TABLE outbox_replays (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT   NOT NULL REFERENCES outbox_messages (id),
    at         BIGINT NOT NULL,
    actor      TEXT   NOT NULL,
    reason     TEXT   NOT NULL,
    from_state TEXT   NOT NULL
);
CREATE INDEX outbox_replays_message ON outbox_replays (message_id, id);

-- FHIR Subscriptions. events_since_start is the number of the last notification written for it: the fan-out
-- in every referral-writing transaction increments it (UPDATE … RETURNING, holding the row lock until
-- commit), so numbers are gap-free and in commit order.
CREATE TABLE subscriptions (
    id                 TEXT    PRIMARY KEY,
    owner_client_id    TEXT    NOT NULL,
    practice_ods       TEXT    NOT NULL,
    criteria           TEXT    NOT NULL,
    endpoint           TEXT    NOT NULL,
    headers            BYTEA   NOT NULL, -- JSON array of channel.header strings ("Name: value")
    payload            TEXT    NOT NULL CHECK (payload IN ('id-only', 'full-resource')),
    status             TEXT    NOT NULL CHECK (status IN ('active', 'off')),
    events_since_start BIGINT  NOT NULL DEFAULT 0 CHECK (events_since_start >= 0),
    base_url           TEXT    NOT NULL,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    resource           BYTEA   NOT NULL  -- the Subscription JSON as accepted (without channel.header)
);
-- Fan-out: the active subscriptions of a practice (ODS codes match case-insensitively).
CREATE INDEX subscriptions_practice_status ON subscriptions (lower(practice_ods), status, id);
CREATE INDEX subscriptions_owner ON subscriptions (owner_client_id, created_at, id);

-- +goose Down
DROP TABLE subscriptions;
DROP TABLE outbox_replays;
DROP TABLE outbox_attempts;
DROP TABLE outbox_messages;
DROP TABLE referral_events;
DROP TABLE referral_identifiers;
DROP TABLE referrals;
