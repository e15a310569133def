-- socialrx migration 55: the audit trail (issue 10).
--   * audit_records: one row per audited read or change of patient data (who, what, when, from where, the
--     server's request id and the client's beside it), appended to hash chains: one chain per writing process
--     (serve, a CLI run), numbered from 1 without gaps, each record carrying the previous record's hash and
--     its own (outbox.AuditHash).
--   * audit_chains: each chain's head (its last number and hash), moved in the same transaction as the
--     records, so that records deleted from a chain's end or added after it are found.
-- New tables only.

-- +goose Up
CREATE TABLE audit_chains (
    chain      TEXT    PRIMARY KEY,
    instance   TEXT    NOT NULL,
    started_at INTEGER NOT NULL,
    head_seq   INTEGER NOT NULL,
    head_hash  TEXT    NOT NULL
);
CREATE TABLE audit_records (
    seq               INTEGER PRIMARY KEY,
    chain             TEXT    NOT NULL,
    chain_seq         INTEGER NOT NULL,
    at                INTEGER NOT NULL,
    request_id        TEXT    NOT NULL,
    client_request_id TEXT    NOT NULL,
    actor_id          TEXT    NOT NULL,
    actor_role        TEXT    NOT NULL,
    via               TEXT    NOT NULL,
    action            TEXT    NOT NULL,
    resource_type     TEXT    NOT NULL,
    resource_id       TEXT    NOT NULL,
    referral_id       TEXT    NOT NULL,
    practice_ods      TEXT    NOT NULL,
    service_id        TEXT    NOT NULL,
    address           TEXT    NOT NULL,
    prev_hash         TEXT    NOT NULL,
    hash              TEXT    NOT NULL,
    UNIQUE (chain, chain_seq)
);
CREATE INDEX audit_records_referral ON audit_records (referral_id, seq);
CREATE INDEX audit_records_actor ON audit_records (actor_id, seq);
CREATE INDEX audit_records_practice ON audit_records (practice_ods, seq);
CREATE INDEX audit_records_at ON audit_records (at);

-- +goose Down
DROP TABLE audit_records;
DROP TABLE audit_chains;
