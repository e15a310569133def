-- socialrx migration 91 (issue 12): a timeline entry need not copy a referral that only its status changed.
--
-- Every version's timeline entry (referral_events) held the whole referral as that version wrote it (about 2 KB;
-- migration 20), for vread and _history. A delivery's version changes the referral's business status alone,
-- and the entry already keeps status, business_status and status_reason in columns of its own. Such an entry
-- now holds no copy (referral '') and says so (as_previous = 1): its version is read back as the latest full
-- copy before it with the entry's own status, business status and status reason. Entries written before this
-- migration keep their copies; an empty referral with as_previous 0 still means "not kept" (before migration 20).
--
-- Down writes the copies back (the latest full copy before each such entry, with its three columns) and drops
-- the column.

-- +goose Up
ALTER TABLE referral_events ADD COLUMN as_previous INTEGER NOT NULL DEFAULT 0;

-- +goose Down
UPDATE referral_events SET referral = COALESCE((
    SELECT json_set(CAST(b.referral AS TEXT), '$.BusinessStatus', referral_events.business_status,
        '$.Record.status', referral_events.status, '$.Record.status_reason', referral_events.status_reason)
    FROM referral_events b
    WHERE b.referral_id = referral_events.referral_id AND b.version < referral_events.version
        AND length(b.referral) > 0 AND b.as_previous = 0
    ORDER BY b.version DESC LIMIT 1), '')
WHERE as_previous <> 0;
ALTER TABLE referral_events DROP COLUMN as_previous;
