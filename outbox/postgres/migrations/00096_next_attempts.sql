-- socialrx migration 96 (issue 12): a batch of attempts is numbered by one call, not one call per attempt.
--
-- Recording a batch of attempts (the dispatcher's completions, one statement per batch) numbered each attempt
-- with socialrx_next_attempt (migration 93), a SQL function with its own enable_seqscan setting, called once
-- per attempt. A function with a setting is never inlined: each call saved and restored the settings and ran
-- its query's executor afresh. A CPU profile of PostgreSQL during a 20,000-message drain put 5 % of the
-- server's time under those calls (perf, fmgr_security_definer).
--
-- socialrx_next_attempts numbers every message of a batch in one call, with the same setting and the same
-- number as before (one more than the message's highest attempt, read from the primary key (message_id, n)).
-- It is PL/pgSQL, so each connection keeps its query's plan from call to call instead of planning it for each
-- recording statement; whichever plan it makes, it makes with sequential scans off (the reason migration 93
-- exists). socialrx_next_attempt stays for the one-attempt statement.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION socialrx_next_attempts(messages TEXT[]) RETURNS TABLE (message TEXT, next INTEGER)
    LANGUAGE plpgsql STABLE ROWS 10 SET enable_seqscan = off AS $$
BEGIN
    RETURN QUERY SELECT x.id, COALESCE((SELECT max(a.n) FROM outbox_attempts a WHERE a.message_id = x.id), 0) + 1
        FROM unnest(messages) AS x (id);
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION socialrx_next_attempts(TEXT[]);
