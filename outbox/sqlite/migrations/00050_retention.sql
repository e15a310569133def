-- socialrx migration 50 (issue 10): retention. Columns are added, never a table rebuilt.
--   * outbox_messages.payload_sha256: the SHA-256 (hex) of a payload scrubbed by retention (its metadata,
--     this hash and its attempt history stay); scrubbed_at: when (0: never).
--   * referrals.scrubbed_at: when retention erased a closed referral's personal fields (0: never).

-- +goose Up
ALTER TABLE outbox_messages ADD COLUMN payload_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox_messages ADD COLUMN scrubbed_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE referrals ADD COLUMN scrubbed_at INTEGER NOT NULL DEFAULT 0;
-- Retention's scans: delivered messages not yet scrubbed, by delivery time; closed referrals not yet scrubbed.
CREATE INDEX outbox_delivered_unscrubbed ON outbox_messages (delivered_at, seq) WHERE state = 'delivered' AND scrubbed_at = 0;
CREATE INDEX referrals_unscrubbed ON referrals (updated_at, id) WHERE scrubbed_at = 0;

-- +goose Down
DROP INDEX referrals_unscrubbed;
DROP INDEX outbox_delivered_unscrubbed;
ALTER TABLE referrals DROP COLUMN scrubbed_at;
ALTER TABLE outbox_messages DROP COLUMN scrubbed_at;
ALTER TABLE outbox_messages DROP COLUMN payload_sha256;
