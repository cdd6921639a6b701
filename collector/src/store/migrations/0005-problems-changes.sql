-- Service management on top of incidents: dependencies (a child incident
-- suppressed while its parent's is open), problem records and change records.

-- `suppressed`: opened while a parent check's incident was open; it pages no
-- one until released (its parent resolved while it still breached). A
-- resolved incident that is still `suppressed` was never paged.
-- `caused_by`: the parent incident. `problem_id`, `change_id`: links.
ALTER TABLE incidents ADD COLUMN suppressed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN caused_by INTEGER;
ALTER TABLE incidents ADD COLUMN problem_id INTEGER;
ALTER TABLE incidents ADD COLUMN change_id INTEGER;
CREATE INDEX incidents_by_cause ON incidents (caused_by) WHERE caused_by IS NOT NULL;
-- Recurrence counting: per agent, and across agents.
CREATE INDEX incidents_by_rule_agent ON incidents (rule, agent_id, opened_at_ms);
CREATE INDEX incidents_by_rule ON incidents (rule, opened_at_ms);
CREATE INDEX incidents_by_problem ON incidents (problem_id) WHERE problem_id IS NOT NULL;
CREATE INDEX incidents_by_change ON incidents (change_id) WHERE change_id IS NOT NULL;

-- Problem records: recurring incidents of one rule (on one agent, or across
-- agents when `agent_id` is NULL). `state`: open, known_error or resolved;
-- at most one unresolved problem per (rule, agent).
CREATE TABLE problems (
    id          INTEGER PRIMARY KEY,
    rule        TEXT NOT NULL,
    agent_id    TEXT,
    host        TEXT,
    title       TEXT NOT NULL,
    state       TEXT NOT NULL,
    root_cause  TEXT,
    workaround  TEXT,
    change_id   INTEGER,
    opened_ms   INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    updated_by  TEXT,
    resolved_ms INTEGER
);
CREATE UNIQUE INDEX problems_one_unresolved_per_scope
    ON problems (rule, coalesce(agent_id, '')) WHERE state != 'resolved';

-- Change records: planned work with a window over assets (ids or tags).
-- `outcome`: NULL while planned or in progress, then successful, failed or
-- rolled_back. `window_id` is the maintenance window it created.
CREATE TABLE changes (
    id          INTEGER PRIMARY KEY,
    title       TEXT NOT NULL,
    description TEXT,
    starts_ms   INTEGER NOT NULL,
    ends_ms     INTEGER NOT NULL,
    asset_ids   TEXT NOT NULL,
    tags        TEXT NOT NULL,
    risk        TEXT NOT NULL,
    implementer TEXT,
    outcome     TEXT,
    window_id   INTEGER,
    created_by  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX changes_by_end ON changes (ends_ms);

-- A window created by a change record links to it.
ALTER TABLE maintenance_windows ADD COLUMN change_id INTEGER;

-- Grouping and storm control. A `grouped` row is an incident's notification
-- kept for its group's next message (`group_key`); once that message is
-- queued it becomes `grouped_sent` with `digest_id` naming it. A message
-- for a group (`digest_kind`: storm, digest, group or resolved) is an
-- ordinary row whose members are the rows pointing at it; `group_detail`
-- is JSON the payload shows (e.g. how many opened in the storm window).
ALTER TABLE outbox ADD COLUMN group_key TEXT;
ALTER TABLE outbox ADD COLUMN digest_id INTEGER;
ALTER TABLE outbox ADD COLUMN digest_kind TEXT;
ALTER TABLE outbox ADD COLUMN group_detail TEXT;
CREATE INDEX outbox_grouped ON outbox (group_key, channel) WHERE state = 'grouped';
CREATE INDEX outbox_by_digest ON outbox (digest_id) WHERE digest_id IS NOT NULL;
