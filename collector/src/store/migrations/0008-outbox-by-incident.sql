-- The console and `GET /api/v1/notifications?incident=ID` list one
-- incident's notifications; without this index that is a scan of the outbox.
CREATE INDEX outbox_by_incident ON outbox (incident_id, id);
