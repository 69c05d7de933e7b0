-- Refresh-token families (one per password grant) and their tokens (RFC 9700 §4.14).
CREATE TABLE refresh_token_families (
    id             TEXT    NOT NULL PRIMARY KEY,
    user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Space-delimited scope granted at login.
    scope          TEXT    NOT NULL,
    client_id      TEXT    NOT NULL,
    session_epoch  INTEGER NOT NULL,
    issued_at      INTEGER NOT NULL,
    -- Absolute end of the family; refreshing never extends it.
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_reason TEXT,
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);

CREATE INDEX refresh_token_families_user_id ON refresh_token_families (user_id);
CREATE INDEX refresh_token_families_expires_at ON refresh_token_families (expires_at);

-- Every token ever issued in a family, current or rotated out, kept so that presenting a
-- rotated token is recognised as reuse. Only the SHA-256 of a token is stored.
CREATE TABLE refresh_tokens (
    hash           BLOB    NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    family_id      TEXT    NOT NULL REFERENCES refresh_token_families (id) ON DELETE CASCADE,
    -- The token this one replaced; NULL for the first token of a family.
    parent_hash    BLOB,
    issued_at      INTEGER NOT NULL,
    -- Set, together with successor_hash, when the token is rotated out.
    rotated_at     INTEGER,
    successor_hash BLOB,
    CHECK ((rotated_at IS NULL) = (successor_hash IS NULL))
) WITHOUT ROWID;

CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
