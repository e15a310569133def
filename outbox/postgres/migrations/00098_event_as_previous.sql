-- socialrx migration 98 (issue 12): a timeline entry need not copy a referral that only its status changed.
--
-- Every version's timeline entry (referral_events) held the whole referral as that version wrote it (about 2 KB;
-- migration 20), for vread and _history. A delivery's version changes the referral's business status alone,
-- and the entry already keeps status, business_status and status_reason in columns of its own. Such an entry
-- now holds no copy (referral '') and says so (as_previous): its version is read back as the latest full copy
-- before it with the entry's own status, business status and status reason. Entries written before this
-- migration keep their copies; an empty referral without as_previous still means "not kept" (before
-- migration 20). Adding a column with a constant default rewrites no row.
--
-- Down writes the copies back (the latest full copy before each such entry, with its three columns) and drops
-- the column.

-- +goose Up
ALTER TABLE referral_events ADD COLUMN as_previous boolean NOT NULL DEFAULT false;

-- +goose Down
UPDATE referral_events e SET referral = COALESCE((
    SELECT convert_to(jsonb_set(jsonb_set(jsonb_set(convert_from(b.referral, 'UTF8')::jsonb,
            '{BusinessStatus}', to_jsonb(e.business_status)), '{Record,status}', to_jsonb(e.status)),
            '{Record,status_reason}', to_jsonb(e.status_reason))::text, 'UTF8')
    FROM referral_events b
    WHERE b.referral_id = e.referral_id AND b.version < e.version AND length(b.referral) > 0 AND NOT b.as_previous
    ORDER BY b.version DESC LIMIT 1), ''::bytea)
WHERE e.as_previous;
ALTER TABLE referral_events DROP COLUMN as_previous;
