-- socialrx migration 91 (issue 12): reserving a stamp no longer reads the whole reservations table.
--
-- Each call of socialrx_reserve_stamps (migration 90) ran, under the per-schema stamp lock, three statements
-- over every row of stamp_reservations: a delete of rolled-back writers' blocks, max() for the last stamp, and
-- a delete of finished writers' reservations. Every reservation is one row in and, later, one row out, so the
-- table holds thousands of dead row versions between vacuums, and each call read them all. Under paced intake
-- at 1,000 referrals/s with delivery running, a call took 0.38 ms on average (pg_stat_statements), all of it
-- inside the lock: reservations queued behind each other and deliveries fell seconds behind.
--
-- Now the last stamp is read from the newest block alone (the primary key, backwards: blocks are reserved in
-- stamp order, so the newest block ends last), and a rolled-back writer's block is given back only when it is
-- the newest (one lower down never decides the next stamp). Finished writers' reservations are deleted on one
-- call in 64 (socialrx_stamp_calls), not on every call: until then they are a few dozen rows that polls pass
-- over, since a poll ignores the reservations of finished transactions (visibleStamps, visibleSeqs). The
-- stamps chosen are the same as before, and so is what a poll sees.

-- +goose Up
CREATE SEQUENCE socialrx_stamp_calls;

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

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION socialrx_reserve_stamps(now_us BIGINT, writer xid8, n INTEGER) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    last  BIGINT;
    s     BIGINT;
    floor BIGINT;
BEGIN
    IF n IS NULL OR n < 1 THEN
        RAISE EXCEPTION 'socialrx_reserve_stamps: n must be at least 1, not %', n;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext(current_schema()), 1936292216);
    DELETE FROM stamp_reservations r WHERE pg_xact_status(r.xid) = 'aborted';
    SELECT max(COALESCE(r.stamp_last, r.stamp)) INTO last FROM stamp_reservations r;
    IF last IS NULL THEN
        SELECT max(updated_at) INTO last FROM referrals;
    END IF;
    s := GREATEST(now_us, COALESCE(last, 0) + 1);
    SELECT COALESCE(max(m.seq), 0) INTO floor FROM outbox_messages m;
    INSERT INTO stamp_reservations (stamp, xid, seq_floor, stamp_last) VALUES (s, writer, floor, s + n - 1);
    DELETE FROM stamp_reservations r WHERE r.stamp < s AND r.xid < pg_snapshot_xmin(pg_current_snapshot());
    RETURN s;
END
$$;
-- +goose StatementEnd
DROP SEQUENCE socialrx_stamp_calls;
