-- socialrx migration 93 (issue 12): an attempt's number is read from the attempts' primary key, whatever the
-- planner's statistics say.
--
-- Recording an attempt numbers it after every earlier attempt of its message: max(n) + 1 over outbox_attempts.
-- That subquery sat inside the recording statement, which each connection prepares once and then runs on a
-- cached generic plan. A plan made while outbox_attempts was nearly empty (a new deployment, or a backlog
-- starting to drain before statistics catch up) reads the whole table for every attempt, and keeps doing so as
-- the table grows: during a 20,000-message drain, auto_explain showed recordings of ten attempts taking 99 ms
-- to 2.9 s, each of its attempts a sequential scan past ~5,000 rows, on some connections and not others.
--
-- socialrx_next_attempt reads the number from the primary key (message_id, n) alone: a SQL function with its
-- own enable_seqscan setting is planned when it runs, never with the caller's cached plan, and never chooses to
-- read the table for a lookup the index answers. The number is the same as before.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION socialrx_next_attempt(message TEXT) RETURNS INTEGER LANGUAGE sql STABLE
    SET enable_seqscan = off AS $$
    SELECT COALESCE(max(n), 0) + 1 FROM outbox_attempts WHERE message_id = message
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION socialrx_next_attempt(TEXT);
