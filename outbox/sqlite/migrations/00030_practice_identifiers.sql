-- socialrx migration 30 (issue 9): ServiceRequest.identifier values are idempotency keys of ONE practice, so
-- that practice B posting practice A's identifier neither blocks A's real referral nor learns that it exists:
-- referral_identifiers gains practice_ods (the referring practice's ODS code, upper case) and its key becomes
-- (practice_ods, system, value). Rows are copied with their referral's practice. Also health_probes: the row
-- each instance's readiness probe writes (a real write through the normal write path, cheap).
-- SQLite cannot change a primary key, so the table is rebuilt (nothing references it).

-- +goose Up
CREATE TABLE referral_identifiers_new (
    practice_ods TEXT NOT NULL,
    system       TEXT NOT NULL,
    value        TEXT NOT NULL,
    referral_id  TEXT NOT NULL REFERENCES referrals (id),
    PRIMARY KEY (practice_ods, system, value)
);
INSERT INTO referral_identifiers_new (practice_ods, system, value, referral_id)
    SELECT upper(r.practice_ods), i.system, i.value, i.referral_id
    FROM referral_identifiers i JOIN referrals r ON r.id = i.referral_id;
DROP TABLE referral_identifiers;
ALTER TABLE referral_identifiers_new RENAME TO referral_identifiers;
CREATE INDEX referral_identifiers_value ON referral_identifiers (value);
CREATE INDEX referral_identifiers_system_value ON referral_identifiers (system, value);
CREATE INDEX referral_identifiers_referral ON referral_identifiers (referral_id);

CREATE TABLE health_probes (
    instance TEXT    PRIMARY KEY,
    at       INTEGER NOT NULL
);

-- +goose Down
DROP TABLE health_probes;
CREATE TABLE referral_identifiers_old (
    system      TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    referral_id TEXT    NOT NULL REFERENCES referrals (id),
    PRIMARY KEY (system, value)
);
INSERT OR IGNORE INTO referral_identifiers_old (system, value, referral_id)
    SELECT system, value, referral_id FROM referral_identifiers ORDER BY rowid;
DROP TABLE referral_identifiers;
ALTER TABLE referral_identifiers_old RENAME TO referral_identifiers;
CREATE INDEX referral_identifiers_value ON referral_identifiers (value);
CREATE INDEX referral_identifiers_referral ON referral_identifiers (referral_id);
