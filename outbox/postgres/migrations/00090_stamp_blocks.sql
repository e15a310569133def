-- socialrx migration 90 (issue 12): a transaction that stamps many referral changes (a batch of completions,
-- each a Task version) reserves their stamps in one call, not one call per change.
--
-- socialrx_reserve_stamps(now_us, writer, n) reserves n consecutive stamps from the first one it returns: one
-- row, whose stamp is the first (what bounds a poll, visibleStamps) and whose stamp_last is the last (what the
-- next reservation must come after). The stamps of a block are used in order during its transaction; those
-- left unused are gaps, never reused. socialrx_reserve_stamp keeps its signature (an instance of the former
-- version calls it during a rolling upgrade) and reserves a block of one, so both see every block's end.

-- +goose Up
ALTER TABLE stamp_reservations ADD COLUMN stamp_last BIGINT; -- NULL: the reservation is its stamp alone

-- +goose StatementBegin
CREATE FUNCTION socialrx_reserve_stamps(now_us BIGINT, writer xid8, n INTEGER) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    last  BIGINT;
    s     BIGINT;
    floor BIGINT;
BEGIN
    IF n IS NULL OR n < 1 THEN
        RAISE EXCEPTION 'socialrx_reserve_stamps: n must be at least 1, not %', n;
    END IF;
    -- Stamps are chosen one block at a time (the lock of migration 60, same key).
    PERFORM pg_advisory_xact_lock(hashtext(current_schema()), 1936292216);
    -- A rolled-back writer's block was never seen: it may be chosen again.
    DELETE FROM stamp_reservations r WHERE pg_xact_status(r.xid) = 'aborted';
    SELECT max(COALESCE(r.stamp_last, r.stamp)) INTO last FROM stamp_reservations r;
    IF last IS NULL THEN
        SELECT max(updated_at) INTO last FROM referrals;
    END IF;
    s := GREATEST(now_us, COALESCE(last, 0) + 1);
    SELECT COALESCE(max(m.seq), 0) INTO floor FROM outbox_messages m;
    INSERT INTO stamp_reservations (stamp, xid, seq_floor, stamp_last) VALUES (s, writer, floor, s + n - 1);
    -- Reservations of finished transactions are no longer needed (the newest one is kept: it holds "last").
    DELETE FROM stamp_reservations r WHERE r.stamp < s AND r.xid < pg_snapshot_xmin(pg_current_snapshot());
    RETURN s;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION socialrx_reserve_stamp(now_us BIGINT, writer xid8) RETURNS BIGINT LANGUAGE sql AS $$
    SELECT socialrx_reserve_stamps(now_us, writer, 1)
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION socialrx_reserve_stamp(now_us BIGINT, writer xid8) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    last  BIGINT;
    s     BIGINT;
    floor BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(current_schema()), 1936292216);
    DELETE FROM stamp_reservations r WHERE pg_xact_status(r.xid) = 'aborted';
    SELECT max(r.stamp) INTO last FROM stamp_reservations r;
    IF last IS NULL THEN
        SELECT max(updated_at) INTO last FROM referrals;
    END IF;
    s := GREATEST(now_us, COALESCE(last, 0) + 1);
    SELECT COALESCE(max(m.seq), 0) INTO floor FROM outbox_messages m;
    INSERT INTO stamp_reservations (stamp, xid, seq_floor) VALUES (s, writer, floor);
    DELETE FROM stamp_reservations r WHERE r.stamp < s AND r.xid < pg_snapshot_xmin(pg_current_snapshot());
    RETURN s;
END
$$;
-- +goose StatementEnd
DROP FUNCTION socialrx_reserve_stamps(BIGINT, xid8, INTEGER);
ALTER TABLE stamp_reservations DROP COLUMN stamp_last;
