-- PostgreSQL migration 2: samples as history reads and retention need them.
-- Never edit it: add a migration instead. (The PG schema was unreleased when
-- this was written, so sample_log is recreated rather than altered.)

-- Each record carries the time span and number of its samples: a history
-- read fetches only the records overlapping its range, retention deletes
-- whole records that end before the cutoff, and counts need no decoding.
-- Empty batches write no record.
DROP TABLE sample_log;
CREATE TABLE sample_log (
    id           BIGSERIAL PRIMARY KEY,
    agent_id     TEXT NOT NULL,
    received_ms  BIGINT NOT NULL,
    start_ms     BIGINT NOT NULL,
    end_ms       BIGINT NOT NULL,
    sample_count INTEGER NOT NULL,
    payload      BYTEA NOT NULL
);
-- History: an agent's records ending after the range's start.
CREATE INDEX sample_log_by_agent_end ON sample_log (agent_id, end_ms);
-- Retention of series: whether any record of the agent may still hold a
-- point of a silent series.
CREATE INDEX sample_log_by_agent_start ON sample_log (agent_id, start_ms);
-- Retention of records.
CREATE INDEX sample_log_by_end ON sample_log (end_ms);

-- 5-minute aggregates per series, upserted in the transaction that stores
-- the batch (so every collector's points are in them at once, and long
-- ranges never decode raw records). end_ms is the newest point folded in;
-- it is deliberately not indexed, so the per-batch update can be HOT.
CREATE TABLE rollups (
    series_id BIGINT NOT NULL,
    start_ms  BIGINT NOT NULL,
    end_ms    BIGINT NOT NULL,
    min       DOUBLE PRECISION NOT NULL,
    max       DOUBLE PRECISION NOT NULL,
    sum       DOUBLE PRECISION NOT NULL,
    count     BIGINT NOT NULL,
    PRIMARY KEY (series_id, start_ms)
) WITH (fillfactor = 80);
-- Retention: end_ms >= start_ms, so rollups ending before a cutoff start before it.
CREATE INDEX rollups_by_start ON rollups (start_ms);
