-- socialrx migration 20 (issue 8, FHIR REST as real clients speak it):
--   * referral_events.referral: every version's referral as it was (the JSON of mapping.Referral), so that
--     vread and _history serve old versions exactly; the current version of each existing referral is copied
--     in (older versions written before this migration have none: vread says so);
--   * referrals.service_request_status: the ServiceRequest's status as a column, so that a ServiceRequest
--     status search filters before paging (filled from the stored referral);
--   * referrals.practice_ods in upper case: ODS codes compare case-insensitively (mapping.NormalODS);
--   * subscriptions: status error (a notification went dead), the error text, the topic canonical of a
--     topic-based subscription and the heartbeat period (seconds; 0: none); SQLite cannot alter a CHECK
--     constraint, so the table is rebuilt (the 12-step table change of migration 3);
--   * outbox_messages.referral_id may be NULL: a Subscription's handshake and heartbeats belong to no
--     referral (rebuilt likewise).
-- +goose NO TRANSACTION

-- +goose Up
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

ALTER TABLE referral_events ADD COLUMN referral TEXT NOT NULL DEFAULT '';
UPDATE referral_events SET referral = (SELECT r.referral FROM referrals r
    WHERE r.id = referral_events.referral_id AND r.version = referral_events.version)
    WHERE EXISTS (SELECT 1 FROM referrals r WHERE r.id = referral_events.referral_id AND r.version = referral_events.version);

ALTER TABLE referrals ADD COLUMN service_request_status TEXT NOT NULL DEFAULT 'active';
UPDATE referrals SET service_request_status = COALESCE(NULLIF(json_extract(referral, '$.ServiceRequestStatus'), ''), 'active');
CREATE INDEX referrals_sr_status_updated ON referrals (service_request_status, updated_at, id);
UPDATE referrals SET practice_ods = upper(practice_ods) WHERE practice_ods <> upper(practice_ods);

CREATE TABLE subscriptions_new (
    id                 TEXT    PRIMARY KEY,
    owner_client_id    TEXT    NOT NULL,
    practice_ods       TEXT    NOT NULL,
    criteria           TEXT    NOT NULL,
    endpoint           TEXT    NOT NULL,
    headers            TEXT    NOT NULL,
    payload            TEXT    NOT NULL CHECK (payload IN ('id-only', 'full-resource')),
    status             TEXT    NOT NULL CHECK (status IN ('active', 'error', 'off')),
    events_since_start INTEGER NOT NULL DEFAULT 0 CHECK (events_since_start >= 0),
    base_url           TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    resource           TEXT    NOT NULL,
    error              TEXT    NOT NULL DEFAULT '', -- status error: why (the dead notification's last error)
    topic              TEXT    NOT NULL DEFAULT '', -- a topic-based subscription's SubscriptionTopic canonical
    heartbeat_period   INTEGER NOT NULL DEFAULT 0 CHECK (heartbeat_period >= 0) -- seconds; 0: no heartbeats
);
INSERT INTO subscriptions_new (id, owner_client_id, practice_ods, criteria, endpoint, headers, payload, status,
    events_since_start, base_url, created_at, updated_at, resource)
    SELECT id, owner_client_id, practice_ods, criteria, endpoint, headers, payload, status, events_since_start,
    base_url, created_at, updated_at, resource FROM subscriptions;
DROP TABLE subscriptions;
ALTER TABLE subscriptions_new RENAME TO subscriptions;
CREATE INDEX subscriptions_practice_status ON subscriptions (practice_ods, status, id);
CREATE INDEX subscriptions_owner ON subscriptions (owner_client_id, created_at, id);

CREATE TABLE outbox_messages_new (
    id                TEXT    PRIMARY KEY,
    seq               INTEGER NOT NULL UNIQUE,
    referral_id       TEXT    REFERENCES referrals (id), -- NULL: a Subscription's handshake or heartbeat
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
INSERT INTO outbox_messages_new SELECT id, seq, referral_id, referral_version, destination_kind, destination_id,
    type, payload, state, attempts, created_at, next_attempt_at, lease_owner, lease_until, delivered_at,
    last_error, budget_from, withdrawn_version FROM outbox_messages;
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
-- Handshakes and heartbeats (no referral) are dropped with their attempts and replays; subscriptions in error
-- go back to active (their dead notification stays dead); the new columns go.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
DELETE FROM outbox_attempts WHERE message_id IN (SELECT id FROM outbox_messages WHERE referral_id IS NULL);
DELETE FROM outbox_replays WHERE message_id IN (SELECT id FROM outbox_messages WHERE referral_id IS NULL);
DELETE FROM outbox_messages WHERE referral_id IS NULL;
CREATE TABLE outbox_messages_old (
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
    withdrawn_version INTEGER NOT NULL DEFAULT 0
);
INSERT INTO outbox_messages_old SELECT * FROM outbox_messages;
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

CREATE TABLE subscriptions_old (
    id                 TEXT    PRIMARY KEY,
    owner_client_id    TEXT    NOT NULL,
    practice_ods       TEXT    NOT NULL,
    criteria           TEXT    NOT NULL,
    endpoint           TEXT    NOT NULL,
    headers            TEXT    NOT NULL,
    payload            TEXT    NOT NULL CHECK (payload IN ('id-only', 'full-resource')),
    status             TEXT    NOT NULL CHECK (status IN ('active', 'off')),
    events_since_start INTEGER NOT NULL DEFAULT 0 CHECK (events_since_start >= 0),
    base_url           TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    resource           TEXT    NOT NULL
);
INSERT INTO subscriptions_old SELECT id, owner_client_id, practice_ods, criteria, endpoint, headers, payload,
    CASE status WHEN 'error' THEN 'active' ELSE status END, events_since_start, base_url, created_at, updated_at,
    resource FROM subscriptions;
DROP TABLE subscriptions;
ALTER TABLE subscriptions_old RENAME TO subscriptions;
CREATE INDEX subscriptions_practice_status ON subscriptions (practice_ods, status, id);
CREATE INDEX subscriptions_owner ON subscriptions (owner_client_id, created_at, id);

DROP INDEX referrals_sr_status_updated;
ALTER TABLE referrals DROP COLUMN service_request_status;
ALTER TABLE referral_events DROP COLUMN referral;
COMMIT;
PRAGMA foreign_keys = ON;
