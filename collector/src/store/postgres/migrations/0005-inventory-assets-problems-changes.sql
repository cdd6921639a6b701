-- PostgreSQL migration 5: agent inventory, assets (CMDB), problem and change
-- records. Column meanings follow the SQLite schema (store/migrations/0001,
-- 0005); what differs is what several collectors writing at once need.

-- Latest inventory per agent. disks/interfaces are JSON arrays, facts a JSON
-- object. An update's idempotency key is a row of `batches` (inventory
-- updates and sample batches share the agent's sequence space, as in SQLite).
CREATE TABLE inventory (
    agent_id             TEXT PRIMARY KEY,
    facts                TEXT NOT NULL DEFAULT '{}',
    disks                TEXT NOT NULL DEFAULT '[]',
    interfaces           TEXT NOT NULL DEFAULT '[]',
    -- steward_core::inventory::packages_fingerprint, its u64 bits as BIGINT.
    packages_fingerprint BIGINT NOT NULL DEFAULT 0,
    updated_ms           BIGINT NOT NULL
);

CREATE TABLE packages (
    agent_id TEXT NOT NULL,
    name     TEXT NOT NULL,
    version  TEXT NOT NULL,
    PRIMARY KEY (agent_id, name)
);

-- kind: fact | disks | interfaces | package_installed | package_removed | package_upgraded
CREATE TABLE inventory_events (
    id       BIGSERIAL PRIMARY KEY,
    agent_id TEXT NOT NULL,
    ts_ms    BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    subject  TEXT NOT NULL,
    before   TEXT,
    after    TEXT
);
-- Lists page newest first by id per agent; retention deletes by time.
CREATE INDEX inventory_events_by_agent ON inventory_events (agent_id, id);
CREATE INDEX inventory_events_by_time ON inventory_events (ts_ms);

-- Asset records. `record` is the JSON of assets::Asset; the other columns
-- duplicate what queries filter on.
CREATE TABLE assets (
    id         TEXT PRIMARY KEY,
    record     TEXT NOT NULL,
    status     TEXT NOT NULL,
    hostname   TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- One asset per agent: the primary key. A write moves an agent's link to
-- another asset only when it also writes (or removes) the asset the agent
-- leaves, so two collectors that each create an asset for one new agent
-- cannot both succeed (see postgres/assets.rs).
CREATE TABLE asset_agents (
    agent_id   TEXT PRIMARY KEY,
    asset_id   TEXT NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    reasons    TEXT NOT NULL,
    matched_ms BIGINT NOT NULL
);

CREATE TABLE asset_events (
    id       BIGSERIAL PRIMARY KEY,
    asset_id TEXT NOT NULL,
    ts_ms    BIGINT NOT NULL,
    source   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    field    TEXT,
    before   TEXT,
    after    TEXT
);
CREATE INDEX asset_events_by_asset ON asset_events (asset_id, id);
CREATE INDEX asset_events_by_time ON asset_events (ts_ms);

-- Problem records: recurring incidents of one rule (on one agent, or across
-- agents when `agent_id` is NULL). `state`: open, known_error or resolved.
CREATE TABLE problems (
    id          BIGSERIAL PRIMARY KEY,
    rule        TEXT NOT NULL,
    agent_id    TEXT,
    host        TEXT,
    title       TEXT NOT NULL,
    state       TEXT NOT NULL,
    root_cause  TEXT,
    workaround  TEXT,
    change_id   BIGINT,
    opened_ms   BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    updated_by  TEXT,
    resolved_ms BIGINT
);
-- At most one unresolved problem per (rule, agent), whichever collector
-- opens it.
CREATE UNIQUE INDEX problems_one_unresolved_per_scope
    ON problems (rule, coalesce(agent_id, '')) WHERE state <> 'resolved';

-- Change records: planned work with a window over assets (ids or tags, JSON
-- arrays). `outcome`: NULL while planned or in progress, then successful,
-- failed or rolled_back. `window_id` is the maintenance window it created.
CREATE TABLE changes (
    id          BIGSERIAL PRIMARY KEY,
    title       TEXT NOT NULL,
    description TEXT,
    starts_ms   BIGINT NOT NULL,
    ends_ms     BIGINT NOT NULL,
    asset_ids   TEXT NOT NULL,
    tags        TEXT NOT NULL,
    risk        TEXT NOT NULL,
    implementer TEXT,
    outcome     TEXT,
    window_id   BIGINT,
    created_by  TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
CREATE INDEX changes_by_start ON changes (starts_ms);
CREATE INDEX changes_by_end ON changes (ends_ms);

-- A change creates its maintenance window (table maintenance_windows,
-- migration 4, change_id included) in the same transaction.

-- Links from incidents (columns of 0001): counted per problem and change,
-- and recurrence counting per rule (and agent).
CREATE INDEX IF NOT EXISTS incidents_by_problem ON incidents (problem_id) WHERE problem_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS incidents_by_change ON incidents (change_id) WHERE change_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS incidents_by_rule_agent ON incidents (rule, agent_id, opened_at_ms);
CREATE INDEX IF NOT EXISTS incidents_by_rule ON incidents (rule, opened_at_ms);
