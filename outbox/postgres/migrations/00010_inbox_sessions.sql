-- socialrx migration 10: the community inbox page's sessions and failed sign-ins, shared by every instance
-- (times in unix microseconds). A session row holds the SHA-256 of the browser's random session id (never the
-- id itself, never a token), the client that signed in and the SHA-256 of the token it signed in with (a
-- rotated token voids the session). idle_until is never after expires_at, so it alone says when a session
-- has ended. A failed sign-in is one row per key (hashed client address, service) and time; rows older than
-- the throttling window are removed as new ones come.

-- +goose Up
CREATE TABLE inbox_sessions (
    id_hash      TEXT    PRIMARY KEY,
    client_id    TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    idle_until   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX inbox_sessions_idle_until ON inbox_sessions (idle_until);
CREATE TABLE sign_in_failures (
    key TEXT    NOT NULL,
    at  BIGINT NOT NULL
);
CREATE INDEX sign_in_failures_key_at ON sign_in_failures (key, at);
CREATE INDEX sign_in_failures_at ON sign_in_failures (at);

-- +goose Down
DROP TABLE sign_in_failures;
DROP TABLE inbox_sessions;
