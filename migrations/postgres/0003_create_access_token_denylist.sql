-- Revoked access tokens (RFC 7009), by `jti`, until they would have expired anyway.
CREATE TABLE access_token_denylist (
    jti        text        NOT NULL PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE INDEX access_token_denylist_expires_at ON access_token_denylist (expires_at);
