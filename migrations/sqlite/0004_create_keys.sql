-- Signing keys shared by every instance, and named server secrets (e.g. the refresh-token
-- derivation key).
CREATE TABLE signing_keys (
    kid         TEXT    NOT NULL PRIMARY KEY,
    alg         TEXT    NOT NULL CHECK (alg IN ('EdDSA', 'RS256', 'HS256')),
    -- PKCS#8 DER.
    private_key BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    -- Set when a newer key took over signing; the key still verifies its tokens.
    retired_at  INTEGER
);

-- At most one active (signing) key per algorithm: `insert_if_no_active` relies on it.
CREATE UNIQUE INDEX signing_keys_one_active_per_alg ON signing_keys (alg) WHERE retired_at IS NULL;

CREATE TABLE server_secrets (
    name  TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
);
