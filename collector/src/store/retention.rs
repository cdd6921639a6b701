//! Retention for everything that is not a sample: resolved incidents with
//! their timelines, journal and notifications; finished notifications;
//! inventory and asset history; agents not heard from for a long time.
//!
//! Each call deletes at most a small chunk per table inside one writer
//! transaction, so pruning a large backlog never holds up ingest: the caller
//! repeats until nothing is left. Asset records are never deleted here
//! (disposal is an operator's decision); a forgotten agent's asset keeps its
//! record, its links and its history.

use std::time::Duration;

use rusqlite::{Transaction, params};
use serde::Deserialize;

/// How long each kind of record is kept. Durations count from the record's
/// own time: an incident from its resolution, a notification from its
/// creation, an event from when it happened, an agent from its last contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub resolved_incidents: Duration,
    pub notifications: Duration,
    pub inventory_events: Duration,
    pub asset_events: Duration,
    pub silent_agents: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            resolved_incidents: Duration::from_secs(400 * DAY),
            notifications: Duration::from_secs(90 * DAY),
            inventory_events: Duration::from_secs(400 * DAY),
            asset_events: Duration::from_secs(3 * 365 * DAY),
            silent_agents: Duration::from_secs(90 * DAY),
        }
    }
}

/// What one pruning step removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PruneReport {
    pub incidents: usize,
    pub notifications: usize,
    pub inventory_events: usize,
    pub asset_events: usize,
    /// Agents forgotten in this step, so in-memory state can forget them too.
    pub agents: Vec<String>,
}

impl PruneReport {
    pub fn is_empty(&self) -> bool {
        self.incidents == 0
            && self.notifications == 0
            && self.inventory_events == 0
            && self.asset_events == 0
            && self.agents.is_empty()
    }

    pub fn add(&mut self, step: PruneReport) {
        self.incidents += step.incidents;
        self.notifications += step.notifications;
        self.inventory_events += step.inventory_events;
        self.asset_events += step.asset_events;
        self.agents.extend(step.agents);
    }
}

fn cutoff(now_ms: i64, keep: Duration) -> i64 {
    now_ms.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
}

/// One bounded step: at most `chunk` rows of each kind.
pub(super) fn prune_step(
    transaction: &Transaction<'_>,
    policy: &RetentionPolicy,
    now_ms: i64,
    chunk: usize,
) -> rusqlite::Result<PruneReport> {
    let chunk = chunk as i64;
    let mut report = PruneReport::default();

    // Resolved incidents and everything hanging off them. The journal row
    // goes only once notify has passed it (its cursor), so no page is lost.
    let incident_ids: Vec<i64> = transaction
        .prepare_cached(
            "SELECT id FROM incidents WHERE state = 'resolved' AND resolved_at_ms < ?1
             AND id NOT IN (SELECT incident_id FROM incident_events
                            WHERE id > (SELECT coalesce(max(position), 0) FROM notify_cursor))
             AND id NOT IN (SELECT incident_id FROM outbox WHERE state IN ('pending', 'held', 'grouped'))
             ORDER BY id LIMIT ?2",
        )?
        .query_map(
            params![cutoff(now_ms, policy.resolved_incidents), chunk],
            |row| row.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    for id in &incident_ids {
        transaction.execute(
            "DELETE FROM outbox_attempts WHERE outbox_id IN (SELECT id FROM outbox WHERE incident_id = ?1)",
            [id],
        )?;
        transaction.execute("DELETE FROM outbox WHERE incident_id = ?1", [id])?;
        transaction.execute("DELETE FROM incident_events WHERE incident_id = ?1", [id])?;
        transaction.execute("DELETE FROM incident_timeline WHERE incident_id = ?1", [id])?;
        transaction.execute("DELETE FROM incidents WHERE id = ?1", [id])?;
    }
    report.incidents = incident_ids.len();

    // Finished notifications of incidents that are still kept.
    let outbox_ids: Vec<i64> = transaction
        .prepare_cached(
            "SELECT id FROM outbox WHERE state NOT IN ('pending', 'held', 'grouped') AND created_ms < ?1
             ORDER BY id LIMIT ?2",
        )?
        .query_map(
            params![cutoff(now_ms, policy.notifications), chunk],
            |row| row.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    for id in &outbox_ids {
        transaction.execute("DELETE FROM outbox_attempts WHERE outbox_id = ?1", [id])?;
        transaction.execute("DELETE FROM outbox WHERE id = ?1", [id])?;
    }
    report.notifications = outbox_ids.len();

    report.inventory_events = transaction.execute(
        "DELETE FROM inventory_events WHERE id IN
           (SELECT id FROM inventory_events WHERE ts_ms < ?1 ORDER BY id LIMIT ?2)",
        params![cutoff(now_ms, policy.inventory_events), chunk],
    )?;
    report.asset_events = transaction.execute(
        "DELETE FROM asset_events WHERE id IN
           (SELECT id FROM asset_events WHERE ts_ms < ?1 ORDER BY id LIMIT ?2)",
        params![cutoff(now_ms, policy.asset_events), chunk],
    )?;

    // Agents silent for the whole period: their rows go (an agent that comes
    // back is registered again); series and samples follow by their own
    // retention. Links to assets stay, so the asset keeps its history.
    let agents: Vec<String> = transaction
        .prepare_cached("SELECT id FROM agents WHERE last_seen_ms < ?1 ORDER BY id LIMIT ?2")?
        .query_map(
            params![cutoff(now_ms, policy.silent_agents), chunk],
            |row| row.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    for agent_id in &agents {
        transaction.execute("DELETE FROM inventory WHERE agent_id = ?1", [agent_id])?;
        transaction.execute("DELETE FROM packages WHERE agent_id = ?1", [agent_id])?;
        transaction.execute("DELETE FROM agents WHERE id = ?1", [agent_id])?;
    }
    report.agents = agents;
    Ok(report)
}
