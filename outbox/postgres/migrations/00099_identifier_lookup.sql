-- socialrx migration 99 (issue 12): looking up a create's identifiers reads those identifiers' keys only,
-- whatever the planner's statistics say.
--
-- Intake looks a create's identifiers up under its practice (findIdentifiers): practice_ods = $1 AND
-- (system, value) IN (the create's pairs). Each connection runs that statement on a cached generic plan. A
-- plan made while referral_identifiers looked empty (a new deployment, or any schema before autovacuum's
-- first ANALYZE of it) joins the pairs against every identifier of the practice, a sequential scan or the
-- primary key's practice range, and keeps doing so as the table grows: in an 8-client intake benchmark on a
-- fresh schema, each lookup read about 1,500 identifiers after 3,000 referrals (pg_stat_user_indexes), and
-- its mean time rose with the table.
--
-- socialrx_identified seeks each pair in the primary key (practice_ods, system, value): the first key at or
-- after the pair, a lateral subquery planned per pair, which is the pair's row when the practice holds it.
-- Equality on the three columns would let the planner probe referral_identifiers_value instead, which holds
-- the value under every practice and system (another practice may reuse it); a row comparison ordered as the
-- key is served by the key alone, and with sequential scans, sorts and bitmap scans off for the function no
-- other plan is left. It is PL/pgSQL, so each connection keeps its plan. It answers as the statement did:
-- the lowest and highest referral holding any of the pairs (NULL, NULL when none does).

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION socialrx_identified(practice TEXT, systems TEXT[], vals TEXT[], OUT first TEXT, OUT last TEXT)
    LANGUAGE plpgsql STABLE SET enable_seqscan = off SET enable_sort = off SET enable_bitmapscan = off AS $$
BEGIN
    SELECT min(i.referral_id), max(i.referral_id) INTO first, last
        FROM unnest(systems, vals) AS x (system, value)
        CROSS JOIN LATERAL (SELECT r.practice_ods, r.system, r.value, r.referral_id FROM referral_identifiers r
            WHERE (r.practice_ods, r.system, r.value) >= (practice, x.system, x.value)
            ORDER BY r.practice_ods, r.system, r.value LIMIT 1) i
        WHERE i.practice_ods = practice AND i.system = x.system AND i.value = x.value;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION socialrx_identified(TEXT, TEXT[], TEXT[]);
