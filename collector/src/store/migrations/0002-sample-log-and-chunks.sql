-- Samples move out of one-row-per-sample storage: each committed batch is
-- one compact `sample_log` record (the durability log), and the points of
-- each series are kept in compressed chunks written when they close.
-- Rows of the old `samples` table stay readable (merged into queries) until
-- retention removes them; nothing writes to it any more.

-- One record per committed sample batch, written in the batch's transaction.
-- A record is deleted once every point in it is in a persisted chunk.
CREATE TABLE sample_log (
    id          INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    payload     BLOB NOT NULL
);

-- Closed chunks: `seq` counts a series' chunks from 0 in the order they
-- closed; `max_log_id` is the newest log record with a point in the chunk.
CREATE TABLE chunks (
    series_id  INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    start_ms   INTEGER NOT NULL,
    end_ms     INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    max_log_id INTEGER NOT NULL,
    data       BLOB NOT NULL
);
CREATE INDEX chunks_by_series_time ON chunks (series_id, start_ms);
CREATE INDEX chunks_by_end ON chunks (end_ms);

-- 5-minute min/max/sum/count buckets of one chunk, written with it.
CREATE TABLE rollups (
    series_id INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    start_ms  INTEGER NOT NULL,
    end_ms    INTEGER NOT NULL,
    data      BLOB NOT NULL
);
CREATE INDEX rollups_by_series_time ON rollups (series_id, start_ms);
CREATE INDEX rollups_by_end ON rollups (end_ms);

-- Per series: the seq of its next chunk, and the newest log record whose
-- points for it are all in persisted chunks (startup replays only later ones).
ALTER TABLE series ADD COLUMN next_chunk_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE series ADD COLUMN persisted_log_id INTEGER NOT NULL DEFAULT 0;
