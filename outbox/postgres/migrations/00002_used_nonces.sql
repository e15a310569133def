-- socialrx migration 2: single-use values shared by every instance (the jti of SMART Backend Services client
-- assertions), each kept until it expires (unix microseconds).

-- +goose Up
CREATE TABLE used_nonces (
    nonce      TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_nonces_expires ON used_nonces (expires_at);

-- +goose Down
DROP TABLE used_nonces;
