-- socialrx migration 89 (issue 12): a chain's earlier and later unfinished messages (the claim's head-only
-- probe, a delivery's successor probe) are read from the referral's messages (outbox_referral_seq, which
-- the probes name), so the index of the unfinished messages by referral and destination goes.
--   * Its WHERE (state <> 'delivered') made every claim rewrite the message's entry (SQLite updates an
--     index whenever a column of its WHERE is assigned) and every delivery delete it; the referrals of one
--     batch share no page of it, so each message cost about two pages of WAL there (measured from the WAL of
--     a real database file: TestClaimsAndDeliveriesWriteNoChainIndex).
--   * A referral has a few messages (one per destination per change), so that reading them all, delivered
--     or not, costs a probe a few rows.

-- +goose Up
DROP INDEX outbox_undelivered_chain;

-- +goose Down
CREATE INDEX outbox_undelivered_chain
    ON outbox_messages (referral_id, destination_kind, destination_id, seq) WHERE state <> 'delivered';
