-- Revoked access tokens (RFC 7009), by `jti`, until they would have expired anyway.
CREATE TABLE access_token_denylist (
    jti        TEXT    NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX access_token_denylist_expires_at ON access_token_denylist (expires_at);
