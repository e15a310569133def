-- socialrx migration 2 (additive): FHIR Subscriptions (R4, rest-hook) and per-destination ordering of their
-- notifications. Times are integer unix microseconds, UTC.

-- +goose Up

-- One row per Subscription. events_since_start is the number of the last notification written for it: the
-- fan-out in every referral-writing transaction increments it, so numbers are gap-free and in commit order.
CREATE TABLE subscriptions (
    id                 TEXT    PRIMARY KEY,
    owner_client_id    TEXT    NOT NULL,
    practice_ods       TEXT    NOT NULL,
    criteria           TEXT    NOT NULL,
    endpoint           TEXT    NOT NULL,
    headers            TEXT    NOT NULL, -- JSON array of channel.header strings ("Name: value")
    payload            TEXT    NOT NULL CHECK (payload IN ('id-only', 'full-resource')),
    status             TEXT    NOT NULL CHECK (status IN ('active', 'off')),
    events_since_start INTEGER NOT NULL DEFAULT 0 CHECK (events_since_start >= 0),
    base_url           TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    resource           TEXT    NOT NULL  -- the Subscription JSON as accepted (without channel.header)
);
-- Fan-out: the active subscriptions of a practice.
CREATE INDEX subscriptions_practice_status ON subscriptions (practice_ods, status, id);
CREATE INDEX subscriptions_owner ON subscriptions (owner_client_id, created_at, id);

-- Head-of-line check per destination (subscriptions are ordered across referrals): is there an earlier
-- undelivered message for the same destination?
CREATE INDEX outbox_undelivered_destination
    ON outbox_messages (destination_kind, destination_id, seq) WHERE state <> 'delivered';

-- +goose Down
DROP INDEX outbox_undelivered_destination;
DROP TABLE subscriptions;
