-- socialrx migration 94 (issue 12): a long transaction elsewhere no longer keeps finished stamp reservations.
--
-- socialrx_reserve_stamps (migration 91) deleted, one call in 64, the reservations whose writer's transaction
-- id was below the oldest transaction still running anywhere in the cluster (pg_snapshot_xmin). Transaction
-- ids are shared by every database and schema of the server, so one long transaction anywhere (a pg_dump, a
-- report, another application's batch, another socialrx schema's test) stopped the cleanup for as long as it
-- ran: the reservations of every delivery and intake after it stayed, and every referral search and poll
-- reads them all (visibleStamps, visibleSeqs). CI saw 160 rows kept where at most 65 may be.
--
-- Now a reservation goes when its own writer has finished, as the deleting statement's snapshot sees it
-- (pg_visible_in_snapshot: committed or rolled back before that snapshot). That is the rule the polls use for
-- the same rows (a poll counts only the reservations of writers its snapshot does not see finished), so a
-- poll whose snapshot sees the delete sees the writer finished too; an older poll still sees the row.

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION socialrx_reserve_stamps(now_us BIGINT, writer xid8, n INTEGER) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    top_stamp BIGINT;
    top_last  BIGINT;
    top_xid   xid8;
    last      BIGINT;
    s         BIGINT;
    floor     BIGINT;
BEGIN
    IF n IS NULL OR n < 1 THEN
        RAISE EXCEPTION 'socialrx_reserve_stamps: n must be at least 1, not %', n;
    END IF;
    -- Stamps are chosen one block at a time (the lock of migration 60, same key).
    PERFORM pg_advisory_xact_lock(hashtext(current_schema()), 1936292216);
    -- The newest block ends last. If its writer rolled back, the block was never seen: it may be chosen
    -- again, and the block under it decides.
    LOOP
        SELECT r.stamp, COALESCE(r.stamp_last, r.stamp), r.xid INTO top_stamp, top_last, top_xid
            FROM stamp_reservations r ORDER BY r.stamp DESC LIMIT 1;
        EXIT WHEN NOT FOUND;
        IF pg_xact_status(top_xid) IS DISTINCT FROM 'aborted' THEN
            last := top_last;
            EXIT;
        END IF;
        DELETE FROM stamp_reservations r WHERE r.stamp = top_stamp;
    END LOOP;
    IF last IS NULL THEN
        SELECT max(updated_at) INTO last FROM referrals;
    END IF;
    s := GREATEST(now_us, COALESCE(last, 0) + 1);
    SELECT COALESCE(max(m.seq), 0) INTO floor FROM outbox_messages m;
    INSERT INTO stamp_reservations (stamp, xid, seq_floor, stamp_last) VALUES (s, writer, floor, s + n - 1);
    -- Reservations of writers this statement sees finished are no longer needed (the newest one is kept: it
    -- holds "last"). Any transaction of the cluster still running does not hold them back.
    IF nextval('socialrx_stamp_calls') % 64 = 0 THEN
        DELETE FROM stamp_reservations r
            WHERE r.stamp < s AND pg_visible_in_snapshot(r.xid, pg_current_snapshot());
    END IF;
    RETURN s;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION socialrx_reserve_stamps(now_us BIGINT, writer xid8, n INTEGER) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    top_stamp BIGINT;
    top_last  BIGINT;
    top_xid   xid8;
    last      BIGINT;
    s         BIGINT;
    floor     BIGINT;
BEGIN
    IF n IS NULL OR n < 1 THEN
        RAISE EXCEPTION 'socialrx_reserve_stamps: n must be at least 1, not %', n;
    END IF;
    -- Stamps are chosen one block at a time (the lock of migration 60, same key).
    PERFORM pg_advisory_xact_lock(hashtext(current_schema()), 1936292216);
    -- The newest block ends last. If its writer rolled back, the block was never seen: it may be chosen
    -- again, and the block under it decides.
    LOOP
        SELECT r.stamp, COALESCE(r.stamp_last, r.stamp), r.xid INTO top_stamp, top_last, top_xid
            FROM stamp_reservations r ORDER BY r.stamp DESC LIMIT 1;
        EXIT WHEN NOT FOUND;
        IF pg_xact_status(top_xid) IS DISTINCT FROM 'aborted' THEN
            last := top_last;
            EXIT;
        END IF;
        DELETE FROM stamp_reservations r WHERE r.stamp = top_stamp;
    END LOOP;
    IF last IS NULL THEN
        SELECT max(updated_at) INTO last FROM referrals;
    END IF;
    s := GREATEST(now_us, COALESCE(last, 0) + 1);
    SELECT COALESCE(max(m.seq), 0) INTO floor FROM outbox_messages m;
    INSERT INTO stamp_reservations (stamp, xid, seq_floor, stamp_last) VALUES (s, writer, floor, s + n - 1);
    -- Reservations of finished transactions are no longer needed (the newest one is kept: it holds "last").
    IF nextval('socialrx_stamp_calls') % 64 = 0 THEN
        DELETE FROM stamp_reservations r WHERE r.stamp < s AND r.xid < pg_snapshot_xmin(pg_current_snapshot());
    END IF;
    RETURN s;
END
$$;
-- +goose StatementEnd
