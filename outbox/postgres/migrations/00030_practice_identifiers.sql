-- socialrx migration 30 (issue 9): ServiceRequest.identifier values are idempotency keys of ONE practice, so
-- that practice B posting practice A's identifier neither blocks A's real referral nor learns that it exists:
-- referral_identifiers gains practice_ods (the referring practice's ODS code, upper case) and its key becomes
-- (practice_ods, system, value). Rows are filled in from their referral's practice. Also health_probes: the
-- row each instance's readiness probe writes (a real write through the normal write path, cheap).

-- +goose Up
ALTER TABLE referral_identifiers ADD COLUMN practice_ods TEXT;
UPDATE referral_identifiers i SET practice_ods = upper(r.practice_ods) FROM referrals r WHERE r.id = i.referral_id;
ALTER TABLE referral_identifiers ALTER COLUMN practice_ods SET NOT NULL;
ALTER TABLE referral_identifiers DROP CONSTRAINT referral_identifiers_pkey;
ALTER TABLE referral_identifiers ADD PRIMARY KEY (practice_ods, system, value);
CREATE INDEX referral_identifiers_system_value ON referral_identifiers (system, value);

CREATE TABLE health_probes (
    instance TEXT   PRIMARY KEY,
    at       BIGINT NOT NULL
);

-- +goose Down
DROP TABLE health_probes;
DROP INDEX referral_identifiers_system_value;
ALTER TABLE referral_identifiers DROP CONSTRAINT referral_identifiers_pkey;
DELETE FROM referral_identifiers a USING referral_identifiers b
    WHERE a.system = b.system AND a.value = b.value AND a.ctid > b.ctid;
ALTER TABLE referral_identifiers ADD PRIMARY KEY (system, value);
ALTER TABLE referral_identifiers DROP COLUMN practice_ods;
