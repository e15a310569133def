-- socialrx migration 60 (issue 12): referral changes commit in parallel, and polling stays exact.
--
-- Until now every referral change held one advisory lock per schema from choosing its lastUpdated stamp until
-- commit (fsync included), so that stamps followed commit order: one writer at a time. Now a writer reserves
-- its stamp (socialrx_reserve_stamp, a short autocommit call on a connection of its own: the per-schema lock
-- is held only while the stamp is chosen, never over the writer's commit) and records its transaction id with
-- it; a poll (a referral search, a message listing) shows only what no unfinished writer could still precede:
-- stamps below the smallest stamp reserved by a transaction that is still running in the poll's snapshot,
-- message seqs up to the smallest seq floor of those. stamp_reservations is UNLOGGED (no WAL, nothing to
-- fsync): after a crash it is empty, which is right, since no transaction survives one, and the next stamp
-- starts after the newest updated_at.
--
-- Also referrals_status_created: the overdue sweep reads only the requested referrals created before its
-- deadline (an index range), not every open referral every minute.

-- +goose Up
CREATE INDEX referrals_status_created ON referrals (status, created_at);

CREATE UNLOGGED TABLE stamp_reservations (
    stamp     BIGINT PRIMARY KEY, -- the reserved updated_at (unix microseconds)
    xid       xid8   NOT NULL,    -- the writer's transaction
    seq_floor BIGINT NOT NULL     -- every message the writer inserts gets a larger seq
);

-- +goose StatementBegin
CREATE FUNCTION socialrx_reserve_stamp(now_us BIGINT, writer xid8) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    last  BIGINT;
    s     BIGINT;
    floor BIGINT;
BEGIN
    -- The lock of the former stamp design (same key): stamps are chosen one at a time, and an instance still
    -- running that design (a rolling upgrade) keeps its lock until commit, so stamps stay ordered meanwhile.
    PERFORM pg_advisory_xact_lock(hashtext(current_schema()), 1936292216);
    -- A rolled-back writer's stamp was never seen: it may be chosen again (a retried create keeps its time).
    DELETE FROM stamp_reservations r WHERE pg_xact_status(r.xid) = 'aborted';
    SELECT max(r.stamp) INTO last FROM stamp_reservations r;
    IF last IS NULL THEN
        SELECT max(updated_at) INTO last FROM referrals;
    END IF;
    s := GREATEST(now_us, COALESCE(last, 0) + 1);
    SELECT COALESCE(max(m.seq), 0) INTO floor FROM outbox_messages m;
    INSERT INTO stamp_reservations (stamp, xid, seq_floor) VALUES (s, writer, floor);
    -- Reservations of finished transactions are no longer needed (the newest one is kept: it holds "last").
    DELETE FROM stamp_reservations r WHERE r.stamp < s AND r.xid < pg_snapshot_xmin(pg_current_snapshot());
    RETURN s;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION socialrx_reserve_stamp(BIGINT, xid8);
DROP TABLE stamp_reservations;
DROP INDEX referrals_status_created;
