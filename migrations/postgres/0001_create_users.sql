-- Users.
CREATE TABLE users (
    -- The `sub` claim.
    id            uuid        NOT NULL PRIMARY KEY,
    -- Normalised by `Username::parse` before it gets here; the CHECK keeps it that way.
    -- COLLATE "C" orders by bytes, as SQLite and Rust do, so keyset pagination (`username > $1
    -- ORDER BY username`) pages identically on every backend and every server locale.
    username      text        COLLATE "C" NOT NULL UNIQUE CHECK (username = lower(username)),
    -- Argon2id PHC string.
    password_hash text        NOT NULL,
    email         text,
    full_name     text,
    disabled      boolean     NOT NULL DEFAULT false,
    -- Catalogue names (RFC 6749 §3.3).
    scopes        text[]      NOT NULL
        CHECK (scopes <@ ARRAY['profile:read', 'profile:write', 'users:read', 'users:write', 'tokens:introspect']),
    created_at    timestamptz NOT NULL,
    -- Bumped on every password change; a u32 that wraps like `SessionEpoch::next`.
    session_epoch bigint      NOT NULL DEFAULT 0 CHECK (session_epoch BETWEEN 0 AND 4294967295)
);
