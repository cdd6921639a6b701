-- Agent identity: enrollment tokens, the certificates they bought, and the
-- identity events (enrolled, revoked) the running collector applies.

-- Only the SHA-256 of a token's secret is stored; the secret is shown once.
CREATE TABLE enrollment_tokens (
    id            TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    uses_left     INTEGER NOT NULL,
    -- JSON array of asset tags ("env:prod") given to every agent it enrolls.
    tags          TEXT NOT NULL,
    revoked_ms    INTEGER
);

-- One row per agent id bound to certificates. A row, revoked or not, means
-- no shared-token hello may claim this id.
CREATE TABLE agent_identities (
    agent_id    TEXT PRIMARY KEY,
    enrolled_ms INTEGER NOT NULL,
    -- NULL when `init` signed the certificate itself.
    token_id    TEXT,
    tags        TEXT NOT NULL,
    revoked_ms  INTEGER,
    revoked_by  TEXT
);

-- Certificates of the current enrollment of each agent id (renewals add
-- rows; a new enrollment after a revocation replaces them).
CREATE TABLE agent_certificates (
    sha256       TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL,
    serial       TEXT NOT NULL,
    issued_ms    INTEGER NOT NULL,
    not_after_ms INTEGER NOT NULL
);
CREATE INDEX agent_certificates_by_agent ON agent_certificates (agent_id);

-- Written by the collector and by `steward-collector agent revoke` (another
-- process); the collector polls it to end revoked streams and to record the
-- change in the asset's history (`applied` once recorded).
CREATE TABLE agent_identity_events (
    id       INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL,
    ts_ms    INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL,
    tags     TEXT NOT NULL,
    applied  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX agent_identity_events_unapplied ON agent_identity_events (applied, id);
