-- socialrx migration 99 (issue 12): looking up a create's identifiers reads those identifiers only, whatever
-- the planner's statistics say.
--
-- Intake looks a create's identifiers up under its practice (findIdentifiers): practice_ods = $1 AND
-- (system, value) IN (the create's pairs). Each connection runs that statement on a cached generic plan. A
-- plan made while referral_identifiers looked empty (a new deployment, or any schema before autovacuum's
-- first ANALYZE of it) joins the pairs against every identifier of the practice, a sequential scan or the
-- primary key's practice range, and keeps doing so as the table grows: in an 8-client intake benchmark on a
-- fresh schema, each lookup read about 1,500 identifiers after 3,000 referrals (pg_stat_user_indexes), and
-- its mean time rose with the table.
--
-- socialrx_identified probes each pair by the primary key (practice_ods, system, value): a lateral subquery
-- with LIMIT 1 is planned per pair, never flattened into a join over the practice, and sequential scans are
-- off for it (as in migrations 93 and 96). It is PL/pgSQL, so each connection keeps its plan. It answers the
-- same: the lowest and highest referral holding any of the pairs (NULL, NULL when none does).

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION socialrx_identified(practice TEXT, systems TEXT[], vals TEXT[], OUT first TEXT, OUT last TEXT)
    LANGUAGE plpgsql STABLE SET enable_seqscan = off AS $$
BEGIN
    SELECT min(i.referral_id), max(i.referral_id) INTO first, last
        FROM unnest(systems, vals) AS x (system, value)
        CROSS JOIN LATERAL (SELECT r.referral_id FROM referral_identifiers r
            WHERE r.practice_ods = practice AND r.system = x.system AND r.value = x.value LIMIT 1) i;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION socialrx_identified(TEXT, TEXT[], TEXT[]);
