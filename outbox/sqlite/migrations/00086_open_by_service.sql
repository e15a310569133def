-- socialrx migration 86 (issue 12): a service's open referrals are counted from an index of open referrals
-- alone. Routing reads the open count of every service with a maximum before each intake, and an accept
-- counts its service's under the capacity lock; both read every open referral before (referrals_status_updated
-- holds them all, of every service), so intake slowed down as open referrals piled up. A referral is in this
-- index only while it is open (accepted, in-progress, on-hold: mapping.OpenStatus, spelled as the counts
-- spell it so that they use it): intake and delivery, which write requested referrals, never touch it.

-- +goose Up
CREATE INDEX referrals_open_service ON referrals (service_id) WHERE status IN ('accepted', 'in-progress', 'on-hold');

-- +goose Down
DROP INDEX referrals_open_service;
