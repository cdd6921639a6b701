//! Retention of records on PostgreSQL (see `store/retention.rs`): resolved
//! incidents with their timelines, journal and notifications, and finished
//! notifications. Each step is its own short transaction of at most a chunk
//! per table; rows are taken `FOR UPDATE SKIP LOCKED`, so collectors pruning
//! together split the work instead of waiting on each other.
//!
//! An incident goes only once every journal entry of it is routed (the
//! cluster has no cursor to compare with) and no notification of it is
//! still to be sent. Assets are never pruned.
//!
//! Not yet pruned here: inventory events, asset events and silent agents
//! (with their inventory and packages), whose tables belong to the
//! inventory/assets schema.

use std::time::Duration;

use super::super::{PruneReport, RetentionPolicy};
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
        transaction.commit().await?;
        Ok(PruneReport {
            incidents,
            notifications,
            ..PruneReport::default()
        })
    }
}

/// Resolved incidents older than `before_ms`, with everything hanging off them.
async fn prune_incidents(
    transaction: &deadpool_postgres::Transaction<'_>,
    before_ms: i64,
) -> Result<usize, PgError> {
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
    transaction: &deadpool_postgres::Transaction<'_>,
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
