-- Login-throttling counters (SPEC §2 abuse limits), one row per username or client address.
--
-- Unused on SQLite: one instance per database file is the supported SQLite deployment, and
-- it keeps these counters in process memory. The table exists so that both dialects have
-- the same schema and migration 0005 means the same thing in both.
CREATE TABLE login_throttle (
    kind          TEXT    NOT NULL CHECK (kind IN ('username', 'address')),
    subject       TEXT    NOT NULL,
    attempts      INTEGER NOT NULL CHECK (attempts >= 0),
    window_start  INTEGER NOT NULL,
    blocked_until INTEGER,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (kind, subject)
) WITHOUT ROWID;

CREATE INDEX login_throttle_updated_at ON login_throttle (updated_at);
