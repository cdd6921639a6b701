-- API tokens, stored only as the SHA-256 of the token (see `access`).
-- A revoked row is kept (who had access, and until when); its name may be
-- used again by a new token, so names are unique among unrevoked rows only.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL,
    token_sha256 BLOB NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_used_ms INTEGER,
    revoked_ms   INTEGER
);
CREATE UNIQUE INDEX api_tokens_by_hash ON api_tokens (token_sha256);
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_ms IS NULL;
