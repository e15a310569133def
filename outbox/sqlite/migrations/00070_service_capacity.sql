-- socialrx migration 70: community services' capacity (issue 13). One row per service that said how full it
-- is (the community API, the inbox page, or the directory's initial setting): status open | waitlist | full |
-- paused, the expected wait in days (waitlist), the first day it takes referrals again (paused; unix
-- microseconds of that UTC midnight, 0: not said), the maximum of open referrals (0: none), and who set it
-- when. The open count is never stored: it is counted from referrals (service_id, status), under this row's
-- lock, whenever an accept must be checked against max_open (the index referrals_service_updated finds them).

-- +goose Up
CREATE TABLE service_capacity (
    service_id         TEXT    PRIMARY KEY,
    status             TEXT    NOT NULL CHECK (status IN ('open', 'waitlist', 'full', 'paused')),
    expected_wait_days INTEGER NOT NULL DEFAULT 0,
    until_at           INTEGER NOT NULL DEFAULT 0,
    max_open           INTEGER NOT NULL DEFAULT 0,
    updated_at         INTEGER NOT NULL,
    updated_by         TEXT    NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE service_capacity;
