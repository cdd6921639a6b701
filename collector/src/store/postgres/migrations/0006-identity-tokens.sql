-- PostgreSQL migration 6: agent identity (enrollment tokens, certificate
-- bindings, identity events) and API tokens. Columns follow the SQLite
-- schema (migrations 0003, 0004, 0007); tags are TEXT[] instead of JSON text.

-- Only the SHA-256 of a token's secret is stored; the secret is shown once.
-- Redeeming is `UPDATE ... SET uses_left = uses_left - 1 WHERE uses_left > 0
-- ... RETURNING`, so collectors redeeming the last use together: one wins.
CREATE TABLE enrollment_tokens (
    id              TEXT PRIMARY KEY,
    secret_sha256   TEXT NOT NULL UNIQUE,
    created_ms      BIGINT NOT NULL,
    expires_ms      BIGINT NOT NULL,
    uses_left       INTEGER NOT NULL CHECK (uses_left >= 0),
    tags            TEXT[] NOT NULL,
    revoked_ms      BIGINT,
    -- May claim an agent id that streamed with the shared token (SQLite 0007).
    adopts_existing BOOLEAN NOT NULL DEFAULT false
);

-- One row per agent id bound to certificates; revoked or not, a row means
-- no shared-token hello may claim this id.
CREATE TABLE agent_identities (
    agent_id    TEXT PRIMARY KEY,
    enrolled_ms BIGINT NOT NULL,
    token_id    TEXT,
    tags        TEXT[] NOT NULL,
    revoked_ms  BIGINT,
    revoked_by  TEXT
);

CREATE TABLE agent_certificates (
    sha256       TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL,
    serial       TEXT NOT NULL,
    issued_ms    BIGINT NOT NULL,
    not_after_ms BIGINT NOT NULL
);
CREATE INDEX agent_certificates_by_agent ON agent_certificates (agent_id);

-- Every collector reads this through a cursor (`id > last seen`) to end
-- revoked streams. Writers take an advisory lock before inserting and hold
-- it to commit, so ids become visible in order and no cursor passes an id
-- that commits later.
--
-- `applied_ms`: recorded on the agent's asset, once for the cluster (the
-- asset rows are shared; recording per collector would repeat the history
-- entry). A collector claims unapplied events with a lease (`claimed_by`,
-- `claimed_until_ms`) so two do not record the same one together; when the
-- lease lapses the others get the first chance to take it (see
-- `postgres/identity.rs`).
CREATE TABLE agent_identity_events (
    id               BIGSERIAL PRIMARY KEY,
    agent_id         TEXT NOT NULL,
    ts_ms            BIGINT NOT NULL,
    kind             TEXT NOT NULL,
    detail           TEXT NOT NULL,
    tags             TEXT[] NOT NULL,
    applied_ms       BIGINT,
    claimed_by       TEXT,
    claimed_until_ms BIGINT
);
CREATE INDEX agent_identity_events_unapplied
    ON agent_identity_events (id) WHERE applied_ms IS NULL;

-- API tokens, stored only as the SHA-256 of the token. A revoked row is
-- kept; its name may be given to a new token, so names are unique among
-- unrevoked rows only (the index refuses a duplicate from any collector).
CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL,
    token_sha256 BYTEA NOT NULL,
    created_ms   BIGINT NOT NULL,
    last_used_ms BIGINT,
    revoked_ms   BIGINT
);
CREATE UNIQUE INDEX api_tokens_by_hash ON api_tokens (token_sha256);
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_ms IS NULL;
