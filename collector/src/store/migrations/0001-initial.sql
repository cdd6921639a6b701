-- Migration 1: the collector schema as released before versions were
-- recorded (commit 03dc34a). Never edit it: add a migration instead.
-- Every statement says IF NOT EXISTS on purpose: a database written by that
-- release has user_version 0 but all of these tables, and applying this step
-- to it must change nothing, so it is adopted as version 1 with its rows.
CREATE TABLE IF NOT EXISTS agents (
    id            TEXT PRIMARY KEY,
    hostname      TEXT NOT NULL,
    version       TEXT NOT NULL,
    facts         TEXT NOT NULL DEFAULT '{}',
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
);

-- One row per (agent, metric, label set); last_* mirror the newest sample.
CREATE TABLE IF NOT EXISTS series (
    id         INTEGER PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    metric     TEXT NOT NULL,
    labels     TEXT NOT NULL,
    last_value REAL NOT NULL,
    last_ts_ms INTEGER NOT NULL,
    UNIQUE (agent_id, metric, labels)
);

CREATE TABLE IF NOT EXISTS samples (
    series_id INTEGER NOT NULL,
    ts_ms     INTEGER NOT NULL,
    value     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_by_series_time ON samples (series_id, ts_ms);
CREATE INDEX IF NOT EXISTS samples_by_time ON samples (ts_ms);

-- Idempotency of ingest: a batch is stored at most once per (agent, epoch, seq).
CREATE TABLE IF NOT EXISTS batches (
    agent_id     TEXT NOT NULL,
    epoch        INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    received_ms  INTEGER NOT NULL,
    sample_count INTEGER NOT NULL,
    PRIMARY KEY (agent_id, epoch, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batches_by_time ON batches (received_ms);

-- Latest inventory per agent. disks/interfaces are JSON arrays.
CREATE TABLE IF NOT EXISTS inventory (
    agent_id             TEXT PRIMARY KEY,
    facts                TEXT NOT NULL DEFAULT '{}',
    disks                TEXT NOT NULL DEFAULT '[]',
    interfaces           TEXT NOT NULL DEFAULT '[]',
    packages_fingerprint INTEGER NOT NULL DEFAULT 0,
    updated_ms           INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS packages (
    agent_id TEXT NOT NULL,
    name     TEXT NOT NULL,
    version  TEXT NOT NULL,
    PRIMARY KEY (agent_id, name)
) WITHOUT ROWID;

-- What changed in an agent's inventory, and when: the raw material of asset history.
-- kind: fact | disks | interfaces | package_installed | package_removed | package_upgraded
CREATE TABLE IF NOT EXISTS inventory_events (
    id       INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL,
    ts_ms    INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    subject  TEXT NOT NULL,
    before   TEXT,
    after    TEXT
);
CREATE INDEX IF NOT EXISTS inventory_events_by_agent ON inventory_events (agent_id, ts_ms);

-- Incidents. The partial unique index is the store's guarantee of at most
-- one unresolved incident per dedup key, whatever the caller does.
CREATE TABLE IF NOT EXISTS incidents (
    id                 INTEGER PRIMARY KEY,
    dedup_key          TEXT NOT NULL,
    rule               TEXT NOT NULL,
    metric             TEXT NOT NULL,
    agent_id           TEXT NOT NULL,
    host               TEXT NOT NULL,
    labels             TEXT NOT NULL,
    severity           TEXT NOT NULL,
    state              TEXT NOT NULL,
    flapping           INTEGER NOT NULL DEFAULT 0,
    summary            TEXT NOT NULL,
    runbook            TEXT,
    value              REAL,
    last_value         REAL,
    since_ms           INTEGER NOT NULL,
    opened_at_ms       INTEGER NOT NULL,
    acknowledged_at_ms INTEGER,
    acknowledged_by    TEXT,
    resolved_at_ms     INTEGER,
    resolved_by        TEXT,
    resolve_reason     TEXT,
    ack_due_at_ms      INTEGER,
    resolve_due_at_ms  INTEGER,
    ack_breached       INTEGER NOT NULL DEFAULT 0,
    resolve_breached   INTEGER NOT NULL DEFAULT 0,
    previous_id        INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_unresolved_per_key
    ON incidents (dedup_key) WHERE state != 'resolved';
CREATE INDEX IF NOT EXISTS incidents_by_state ON incidents (state, opened_at_ms);
CREATE INDEX IF NOT EXISTS incidents_by_agent ON incidents (agent_id, opened_at_ms);
-- Finding the previous incident of a key (recurrence link) must not scan the table.
CREATE INDEX IF NOT EXISTS incidents_by_key ON incidents (dedup_key, id);

CREATE TABLE IF NOT EXISTS incident_timeline (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    ts_ms       INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incident_timeline_by_incident ON incident_timeline (incident_id, id);

-- Asset records (CMDB). `record` is the JSON of assets::Asset; the other
-- columns duplicate what queries filter on.
CREATE TABLE IF NOT EXISTS assets (
    id         TEXT PRIMARY KEY,
    record     TEXT NOT NULL,
    status     TEXT NOT NULL,
    hostname   TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);

-- Which agent belongs to which asset, and how sure the match was.
CREATE TABLE IF NOT EXISTS asset_agents (
    agent_id   TEXT PRIMARY KEY,
    asset_id   TEXT NOT NULL,
    confidence REAL NOT NULL,
    reasons    TEXT NOT NULL,
    matched_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS asset_events (
    id       INTEGER PRIMARY KEY,
    asset_id TEXT NOT NULL,
    ts_ms    INTEGER NOT NULL,
    source   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    field    TEXT,
    before   TEXT,
    after    TEXT
);
CREATE INDEX IF NOT EXISTS asset_events_by_asset ON asset_events (asset_id, id);

-- Journal of incident changes, written in the same transaction as the
-- change itself; notification delivery reads it from a durable cursor, so a
-- crash between the change and its notification loses nothing.
CREATE TABLE IF NOT EXISTS incident_events (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    ts_ms       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_cursor (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL
);

-- Durable outbox: one row per (incident, event, recipient), never two.
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    incident_id     INTEGER NOT NULL,
    event           TEXT NOT NULL,
    channel         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,
    created_ms      INTEGER NOT NULL,
    delivered_ms    INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_ms);
CREATE TABLE IF NOT EXISTS outbox_attempts (
    id        INTEGER PRIMARY KEY,
    outbox_id INTEGER NOT NULL,
    ts_ms     INTEGER NOT NULL,
    status    INTEGER,
    error     TEXT
);
CREATE INDEX IF NOT EXISTS outbox_attempts_by_outbox ON outbox_attempts (outbox_id);

-- Maintenance windows (change management): incidents on these assets are
-- recorded but do not page while the window is open.
CREATE TABLE IF NOT EXISTS maintenance_windows (
    id         INTEGER PRIMARY KEY,
    asset_ids  TEXT NOT NULL,
    tags       TEXT NOT NULL,
    starts_ms  INTEGER NOT NULL,
    ends_ms    INTEGER NOT NULL,
    change_ref TEXT,
    reason     TEXT,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
