-- PostgreSQL migration 7: the collectors of a cluster. Each writes a
-- heartbeat every few seconds; an agent whose collector has gone silent is
-- watched (absence rules) by every live collector until it says hello to one.
-- `session` is random per process start: a second process with the same
-- name cannot take over a name whose heartbeat is fresh.
CREATE TABLE collectors (
    name         TEXT PRIMARY KEY,
    session      TEXT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    started_ms   BIGINT NOT NULL
);
