-- Steward collector schema (SQLite). Applied idempotently at start-up.
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
