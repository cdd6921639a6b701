-- Dependencies: a child incident whose parent check has no open incident yet
-- waits `hold` for it before paging. While it waits it is `suppressed` with
-- `held_until_ms` set and `held_for` the JSON list of parent checks it waits
-- for; the parent opening in time sets `caused_by` (it never pages), the hold
-- running out releases it (it pages). Both columns are cleared either way.
ALTER TABLE incidents ADD COLUMN held_until_ms INTEGER;
ALTER TABLE incidents ADD COLUMN held_for TEXT;
CREATE INDEX incidents_held ON incidents (held_until_ms) WHERE held_until_ms IS NOT NULL;
