-- PostgreSQL migration 3: incidents, dependencies (parent holds) and SLA clocks.
-- Column meanings follow the SQLite schema (store/migrations/0005, 0006).

-- Dependency holds: the parent checks (JSON list) a held incident waits for;
-- `held_until_ms` (0001) is when it stops waiting and pages.
ALTER TABLE incidents ADD COLUMN held_for TEXT;
CREATE INDEX incidents_held ON incidents (held_until_ms) WHERE held_until_ms IS NOT NULL;

-- Releasing the children of a parent that resolves.
CREATE INDEX incidents_by_cause ON incidents (caused_by) WHERE caused_by IS NOT NULL;
-- Finding an open parent by its rule; recurrence counting per rule (and agent).
CREATE INDEX incidents_by_rule_agent ON incidents (rule, agent_id, opened_at_ms);
CREATE INDEX incidents_by_rule ON incidents (rule, opened_at_ms);
CREATE INDEX incidents_by_problem ON incidents (problem_id) WHERE problem_id IS NOT NULL;
CREATE INDEX incidents_by_change ON incidents (change_id) WHERE change_id IS NOT NULL;
-- Listing by agent, newest first.
CREATE INDEX incidents_by_agent ON incidents (agent_id, id);
-- SLA clocks: only unresolved incidents with an unmet target are looked at.
CREATE INDEX incidents_ack_due ON incidents (ack_due_at_ms)
    WHERE state = 'open' AND NOT ack_breached AND ack_due_at_ms IS NOT NULL;
CREATE INDEX incidents_resolve_due ON incidents (resolve_due_at_ms)
    WHERE state <> 'resolved' AND NOT resolve_breached AND resolve_due_at_ms IS NOT NULL;
-- MTTA/MTTR and SLA reports read incidents opened since a time.
CREATE INDEX incidents_by_opened ON incidents (opened_at_ms);
