-- Login-throttling counters (SPEC §2 abuse limits), shared by every instance on this
-- database so that they all enforce one limit. One row per key: a username (consecutive
-- failures and backoff) or a client address (attempts in the current one-minute window).
CREATE TABLE login_throttle (
    kind          text        NOT NULL CHECK (kind IN ('username', 'address')),
    -- The normalised username, or the address in Rust's canonical text form.
    subject       text        NOT NULL,
    attempts      bigint      NOT NULL CHECK (attempts >= 0),
    window_start  timestamptz NOT NULL,
    blocked_until timestamptz,
    -- When an attempt or a success last changed the row; rows idle for a day and no longer
    -- blocked are purged.
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (kind, subject)
);

CREATE INDEX login_throttle_updated_at ON login_throttle (updated_at);
