//! Retention of records on PostgreSQL (see `store/retention.rs`, whose
//! rules these are): resolved incidents with their timelines, journal and
//! notifications; finished notifications; inventory and asset events; agents
//! not heard from for the whole period, with their inventory and packages.
//! Each step is its own short transaction of at most a chunk per table; rows
//! are taken `FOR UPDATE SKIP LOCKED`, so collectors pruning together split
//! the work instead of waiting on each other.
//!
//! An incident goes only once every journal entry of it is routed (the
//! cluster has no cursor to compare with) and no notification of it is
//! still to be sent. Assets, their links to agents and their history within
//! the period are never pruned here.
//!
//! Lock order, so two collectors pruning at once cannot deadlock: a row taken
//! with SKIP LOCKED never waits; the only waits are an incident's
//! notifications (outbox rows before their attempts, as the notification
//! phase takes them) and a forgotten agent's inventory lock (held by an
//! inventory commit, which waits on no pruner).

use std::time::Duration;

use deadpool_postgres::Transaction;

use super::super::{PruneReport, RetentionPolicy};
use super::inventory::INVENTORY_LOCK;
use super::{PgError, PgStore};

/// Rows per table per step: small enough that a step is short.
const STEP: i64 = 500;

fn cutoff(now_ms: i64, keep: Duration) -> i64 {
    now_ms.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
}

impl PgStore {
    /// Applies `policy` in steps until nothing is left to remove; returns what went.
    pub async fn prune_records(
        &self,
        policy: RetentionPolicy,
        now_ms: i64,
    ) -> Result<PruneReport, PgError> {
        let mut total = PruneReport::default();
        loop {
            let step = self.prune_records_step(&policy, now_ms).await?;
            if step.is_empty() {
                return Ok(total);
            }
            total.add(step);
        }
    }

    async fn prune_records_step(
        &self,
        policy: &RetentionPolicy,
        now_ms: i64,
    ) -> Result<PruneReport, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let incidents =
            prune_incidents(&transaction, cutoff(now_ms, policy.resolved_incidents)).await?;
        let notifications =
            prune_notifications(&transaction, cutoff(now_ms, policy.notifications)).await?;
        let inventory_events = prune_events(
            &transaction,
            INVENTORY_EVENTS,
            cutoff(now_ms, policy.inventory_events),
        )
        .await?;
        let asset_events = prune_events(
            &transaction,
            ASSET_EVENTS,
            cutoff(now_ms, policy.asset_events),
        )
        .await?;
        let agents = prune_agents(&transaction, cutoff(now_ms, policy.silent_agents)).await?;
        transaction.commit().await?;
        Ok(PruneReport {
            incidents,
            notifications,
            inventory_events,
            asset_events,
            agents,
        })
    }
}

/// Resolved incidents older than `before_ms`, with everything hanging off them.
async fn prune_incidents(transaction: &Transaction<'_>, before_ms: i64) -> Result<usize, PgError> {
    let ids: Vec<i64> = transaction
        .query(
            "SELECT id FROM incidents i
             WHERE state = 'resolved' AND resolved_at_ms < $1
               AND NOT EXISTS (SELECT 1 FROM incident_events e
                               WHERE e.incident_id = i.id AND e.routed_ms IS NULL)
               AND NOT EXISTS (SELECT 1 FROM outbox o
                               WHERE o.incident_id = i.id AND o.state IN ('pending', 'held', 'grouped'))
             ORDER BY id LIMIT $2
             FOR UPDATE SKIP LOCKED",
            &[&before_ms, &STEP],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    // Their notifications are finished, but another collector's notification
    // phase may hold some: wait for those rows before touching any attempt,
    // in the order that phase takes them (outbox, then attempts).
    transaction
        .execute(
            "SELECT id FROM outbox WHERE incident_id = ANY($1) ORDER BY id FOR UPDATE",
            &[&ids],
        )
        .await?;
    for statement in [
        "DELETE FROM outbox_attempts WHERE outbox_id IN (SELECT id FROM outbox WHERE incident_id = ANY($1))",
        "DELETE FROM outbox WHERE incident_id = ANY($1)",
        "DELETE FROM incident_events WHERE incident_id = ANY($1)",
        "DELETE FROM incident_timeline WHERE incident_id = ANY($1)",
        "DELETE FROM incidents WHERE id = ANY($1)",
    ] {
        transaction.execute(statement, &[&ids]).await?;
    }
    Ok(ids.len())
}

/// Finished notifications created before `before_ms`, of incidents still kept.
async fn prune_notifications(
    transaction: &Transaction<'_>,
    before_ms: i64,
) -> Result<usize, PgError> {
    let ids: Vec<i64> = transaction
        .query(
            "SELECT id FROM outbox
             WHERE state NOT IN ('pending', 'held', 'grouped') AND created_ms < $1
             ORDER BY id LIMIT $2
             FOR UPDATE SKIP LOCKED",
            &[&before_ms, &STEP],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    transaction
        .execute(
            "DELETE FROM outbox_attempts WHERE outbox_id = ANY($1)",
            &[&ids],
        )
        .await?;
    transaction
        .execute("DELETE FROM outbox WHERE id = ANY($1)", &[&ids])
        .await?;
    Ok(ids.len())
}

/// Removes at most a step of events older than `before_ms`. Events are only
/// ever appended, so a row locked here is another pruner's and is skipped.
const INVENTORY_EVENTS: &str = "DELETE FROM inventory_events WHERE id IN
       (SELECT id FROM inventory_events WHERE ts_ms < $1
        ORDER BY ts_ms LIMIT $2 FOR UPDATE SKIP LOCKED)";
const ASSET_EVENTS: &str = "DELETE FROM asset_events WHERE id IN
       (SELECT id FROM asset_events WHERE ts_ms < $1
        ORDER BY ts_ms LIMIT $2 FOR UPDATE SKIP LOCKED)";

async fn prune_events(
    transaction: &Transaction<'_>,
    statement: &str,
    before_ms: i64,
) -> Result<usize, PgError> {
    let deleted = transaction.execute(statement, &[&before_ms, &STEP]).await?;
    Ok(deleted as usize)
}

/// Agents last seen before `before_ms`, with their inventory and packages;
/// returns their ids. Series and samples follow by their own retention, and
/// links to assets stay so an asset keeps its history, as on SQLite.
///
/// The row lock re-checks `last_seen_ms` against its newest version, so an
/// agent that just came back is not forgotten; an agent being touched by
/// ingest is locked, hence alive, and skipped.
async fn prune_agents(
    transaction: &Transaction<'_>,
    before_ms: i64,
) -> Result<Vec<String>, PgError> {
    let agents: Vec<String> = transaction
        .query(
            "SELECT id FROM agents WHERE last_seen_ms < $1
             ORDER BY id LIMIT $2
             FOR UPDATE SKIP LOCKED",
            &[&before_ms, &STEP],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if agents.is_empty() {
        return Ok(agents);
    }
    // An inventory commit in flight for one of them patches its package list
    // under this lock: let it finish, then remove what it left, never half.
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(id))
             FROM unnest($2::TEXT[]) AS u(id) ORDER BY id",
            &[&INVENTORY_LOCK, &agents],
        )
        .await?;
    for statement in [
        "DELETE FROM inventory WHERE agent_id = ANY($1)",
        "DELETE FROM packages WHERE agent_id = ANY($1)",
        "DELETE FROM agents WHERE id = ANY($1)",
    ] {
        transaction.execute(statement, &[&agents]).await?;
    }
    Ok(agents)
}
