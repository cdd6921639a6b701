-- PostgreSQL migration 4: the notification outbox's groups and maintenance
-- windows (SQLite 0001 and 0005). Column meanings follow the SQLite schema.

-- Grouping and storm control: a `grouped` row is kept for its group's next
-- message (`group_key`); once that message is queued the row is
-- `grouped_sent` and `digest_id` names the message, whose `digest_kind` and
-- `group_detail` say what it carries.
ALTER TABLE outbox ADD COLUMN group_key TEXT;
ALTER TABLE outbox ADD COLUMN digest_id BIGINT;
ALTER TABLE outbox ADD COLUMN digest_kind TEXT;
ALTER TABLE outbox ADD COLUMN group_detail TEXT;
CREATE INDEX outbox_grouped ON outbox (group_key, channel) WHERE state = 'grouped';
CREATE INDEX outbox_by_digest ON outbox (digest_id) WHERE digest_id IS NOT NULL;
CREATE INDEX outbox_by_incident ON outbox (incident_id);
CREATE INDEX outbox_by_created ON outbox (created_ms);

-- Retention looks up an incident's journal entries.
CREATE INDEX incident_events_by_incident ON incident_events (incident_id);

-- Maintenance windows (change management): incidents on these assets are
-- recorded but do not page while the window is open. `asset_ids` and `tags`
-- are JSON lists of strings, as in SQLite.
CREATE TABLE maintenance_windows (
    id         BIGSERIAL PRIMARY KEY,
    asset_ids  TEXT NOT NULL,
    tags       TEXT NOT NULL,
    starts_ms  BIGINT NOT NULL,
    ends_ms    BIGINT NOT NULL,
    change_ref TEXT,
    reason     TEXT,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    change_id  BIGINT
);
CREATE INDEX maintenance_windows_by_end ON maintenance_windows (ends_ms);
