-- Users. Timestamps are whole seconds since the Unix epoch (the domain's `Timestamp`).
CREATE TABLE users (
    -- Hyphenated lower-case UUID, the `sub` claim.
    id            TEXT    NOT NULL PRIMARY KEY,
    -- Normalised by `Username::parse` before it gets here; the CHECK keeps it that way.
    username      TEXT    NOT NULL UNIQUE CHECK (username = lower(username)),
    -- Argon2id PHC string.
    password_hash TEXT    NOT NULL,
    email         TEXT,
    full_name     TEXT,
    disabled      BOOLEAN NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    -- Space-delimited catalogue names (RFC 6749 §3.3), e.g. 'profile:read users:write'.
    scopes        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    -- Bumped on every password change; a u32 that wraps like `SessionEpoch::next`.
    session_epoch INTEGER NOT NULL DEFAULT 0 CHECK (session_epoch BETWEEN 0 AND 4294967295)
);
