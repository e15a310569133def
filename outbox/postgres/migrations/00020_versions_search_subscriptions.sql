-- socialrx migration 20 (issue 8, FHIR REST as real clients speak it), as outbox/sqlite's 00020:
--   * referral_events.referral: every version's referral as it was (vread, _history); the current version of
--     each existing referral is copied in;
--   * referrals.service_request_status: the ServiceRequest's status as a column (filled from the referral);
--   * referrals.practice_ods in upper case (ODS codes compare case-insensitively);
--   * subscriptions: status error, the error text, the topic canonical and the heartbeat period (seconds);
--   * outbox_messages.referral_id may be NULL (a Subscription's handshake and heartbeats).

-- +goose Up
ALTER TABLE referral_events ADD COLUMN referral BYTEA NOT NULL DEFAULT ''::bytea;
UPDATE referral_events e SET referral = r.referral FROM referrals r WHERE r.id = e.referral_id AND r.version = e.version;

ALTER TABLE referrals ADD COLUMN service_request_status TEXT NOT NULL DEFAULT 'active';
UPDATE referrals SET service_request_status = COALESCE(NULLIF(convert_from(referral, 'UTF8')::jsonb ->> 'ServiceRequestStatus', ''), 'active');
CREATE INDEX referrals_sr_status_updated ON referrals (service_request_status, updated_at, id);
UPDATE referrals SET practice_ods = upper(practice_ods) WHERE practice_ods <> upper(practice_ods);

ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_status_check;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_status_check CHECK (status IN ('active', 'error', 'off'));
ALTER TABLE subscriptions ADD COLUMN error TEXT NOT NULL DEFAULT '';
ALTER TABLE subscriptions ADD COLUMN topic TEXT NOT NULL DEFAULT '';
ALTER TABLE subscriptions ADD COLUMN heartbeat_period INTEGER NOT NULL DEFAULT 0 CHECK (heartbeat_period >= 0);

ALTER TABLE outbox_messages ALTER COLUMN referral_id DROP NOT NULL;

-- +goose Down
DELETE FROM outbox_attempts WHERE message_id IN (SELECT id FROM outbox_messages WHERE referral_id IS NULL);
DELETE FROM outbox_replays WHERE message_id IN (SELECT id FROM outbox_messages WHERE referral_id IS NULL);
DELETE FROM outbox_messages WHERE referral_id IS NULL;
ALTER TABLE outbox_messages ALTER COLUMN referral_id SET NOT NULL;
UPDATE subscriptions SET status = 'active' WHERE status = 'error';
ALTER TABLE subscriptions DROP COLUMN heartbeat_period;
ALTER TABLE subscriptions DROP COLUMN topic;
ALTER TABLE subscriptions DROP COLUMN error;
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_status_check;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_status_check CHECK (status IN ('active', 'off'));
DROP INDEX referrals_sr_status_updated;
ALTER TABLE referrals DROP COLUMN service_request_status;
ALTER TABLE referral_events DROP COLUMN referral;
