-- PostgreSQL migration 1: the state several collectors share. Never edit it:
-- add a migration instead. Column meanings follow the SQLite schema
-- (collector/src/store/migrations/); the additions are what a cluster needs.

CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    hostname      TEXT NOT NULL,
    version       TEXT NOT NULL,
    facts         TEXT NOT NULL DEFAULT '{}',
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL,
    -- The collector the agent last said hello to.
    collector     TEXT
);

-- Idempotency of ingest across collectors: a batch resent to another
-- collector after a failover hits this key and is a duplicate.
CREATE TABLE batches (
    agent_id     TEXT NOT NULL,
    epoch        BIGINT NOT NULL,
    seq          BIGINT NOT NULL,
    received_ms  BIGINT NOT NULL,
    sample_count INTEGER NOT NULL,
    collector    TEXT NOT NULL,
    PRIMARY KEY (agent_id, epoch, seq)
);
CREATE INDEX batches_by_time ON batches (received_ms);

CREATE TABLE series (
    id         BIGSERIAL PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    metric     TEXT NOT NULL,
    labels     TEXT NOT NULL,
    last_value DOUBLE PRECISION NOT NULL,
    last_ts_ms BIGINT NOT NULL,
    UNIQUE (agent_id, metric, labels)
);

-- One record per committed batch, in the shared log format (store/chunk.rs);
-- any collector can read an agent's recent raw points from here.
CREATE TABLE sample_log (
    id          BIGSERIAL PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    payload     BYTEA NOT NULL
);
CREATE INDEX sample_log_by_agent ON sample_log (agent_id, id);

CREATE TABLE incidents (
    id                 BIGSERIAL PRIMARY KEY,
    dedup_key          TEXT NOT NULL,
    rule               TEXT NOT NULL,
    metric             TEXT NOT NULL,
    agent_id           TEXT NOT NULL,
    host               TEXT NOT NULL,
    labels             TEXT NOT NULL,
    severity           TEXT NOT NULL,
    state              TEXT NOT NULL,
    flapping           BOOLEAN NOT NULL DEFAULT false,
    summary            TEXT NOT NULL,
    runbook            TEXT,
    value              DOUBLE PRECISION,
    last_value         DOUBLE PRECISION,
    since_ms           BIGINT NOT NULL,
    opened_at_ms       BIGINT NOT NULL,
    acknowledged_at_ms BIGINT,
    acknowledged_by    TEXT,
    resolved_at_ms     BIGINT,
    resolved_by        TEXT,
    resolve_reason     TEXT,
    ack_due_at_ms      BIGINT,
    resolve_due_at_ms  BIGINT,
    ack_breached       BOOLEAN NOT NULL DEFAULT false,
    resolve_breached   BOOLEAN NOT NULL DEFAULT false,
    previous_id        BIGINT,
    suppressed         BOOLEAN NOT NULL DEFAULT false,
    caused_by          BIGINT,
    problem_id         BIGINT,
    change_id          BIGINT,
    held_until_ms      BIGINT
);
-- The cluster's guarantee of at most one unresolved incident per dedup key,
-- whichever collector evaluates the rule.
CREATE UNIQUE INDEX incidents_one_unresolved_per_key
    ON incidents (dedup_key) WHERE state <> 'resolved';
CREATE INDEX incidents_by_state ON incidents (state, opened_at_ms);
CREATE INDEX incidents_by_key ON incidents (dedup_key, id);

CREATE TABLE incident_timeline (
    id          BIGSERIAL PRIMARY KEY,
    incident_id BIGINT NOT NULL,
    ts_ms       BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX incident_timeline_by_incident ON incident_timeline (incident_id, id);

-- The journal of incident changes. Not read through a cursor: ids from a
-- sequence commit out of order when several collectors write, so a cursor
-- could pass an id that commits later. Each entry is marked routed instead,
-- and claimed for routing with a lease like outbox rows.
CREATE TABLE incident_events (
    id               BIGSERIAL PRIMARY KEY,
    incident_id      BIGINT NOT NULL,
    kind             TEXT NOT NULL,
    ts_ms            BIGINT NOT NULL,
    routed_ms        BIGINT,
    claimed_by       TEXT,
    claimed_until_ms BIGINT
);
CREATE INDEX incident_events_unrouted ON incident_events (id) WHERE routed_ms IS NULL;

-- Durable outbox; a row is claimed by one collector at a time for a lease.
CREATE TABLE outbox (
    id               BIGSERIAL PRIMARY KEY,
    idempotency_key  TEXT NOT NULL UNIQUE,
    incident_id      BIGINT NOT NULL,
    event            TEXT NOT NULL,
    channel          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT NOT NULL,
    last_error       TEXT,
    created_ms       BIGINT NOT NULL,
    delivered_ms     BIGINT,
    claimed_by       TEXT,
    claimed_until_ms BIGINT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_ms);

CREATE TABLE outbox_attempts (
    id        BIGSERIAL PRIMARY KEY,
    outbox_id BIGINT NOT NULL,
    ts_ms     BIGINT NOT NULL,
    status    INTEGER,
    error     TEXT,
    collector TEXT NOT NULL
);
CREATE INDEX outbox_attempts_by_outbox ON outbox_attempts (outbox_id);
