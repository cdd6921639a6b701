//! The outbox on PostgreSQL: notifications queued once per idempotency key,
//! and claimed for delivery by one collector at a time.
//!
//! A claim is `FOR UPDATE SKIP LOCKED` (collectors polling together take
//! disjoint rows without waiting on each other) plus a lease: the row stays
//! `pending` with `claimed_by`/`claimed_until_ms` set, so if the claimant dies
//! before recording the attempt, the row is due again for anyone once the
//! lease runs out. An attempt is recorded only by the claim's holder, so a
//! collector that stalled past its lease cannot overwrite the taker's result.
//! The remaining window (a collector that sent but died before recording)
//! is at-least-once, which receivers dedup by the idempotency key each
//! notification carries.

use tokio_postgres::Row;

use super::super::{DeliveryAttempt, JournalEntry, NewNotification};
use super::{PgError, PgStore, parse_column};
use crate::domain::IncidentEvent;

/// A notification this collector holds the lease on.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub id: i64,
    pub idempotency_key: String,
    pub incident_id: i64,
    pub event: IncidentEvent,
    pub channel: String,
    pub attempts: i32,
    pub claimed_until_ms: i64,
}

fn claim_from_row(row: &Row) -> Result<Claim, PgError> {
    let event: &str = row.get(3);
    Ok(Claim {
        id: row.get(0),
        idempotency_key: row.get(1),
        incident_id: row.get(2),
        event: parse_column("outbox.event", event, IncidentEvent::from_key)?,
        channel: row.get(4),
        attempts: row.get(5),
        claimed_until_ms: row.get(6),
    })
}

impl PgStore {
    /// Queues notifications, ignoring keys already queued (by any collector);
    /// returns how many were new.
    pub async fn enqueue_notifications(
        &self,
        notifications: &[NewNotification],
        now_ms: i64,
    ) -> Result<u64, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let queued = insert_notifications(&transaction, notifications, now_ms).await?;
        transaction.commit().await?;
        Ok(queued)
    }

    /// Claims up to `limit` unrouted journal entries, oldest first, for
    /// `lease_ms`; entries another collector is routing are skipped.
    pub async fn claim_journal(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<JournalEntry>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "UPDATE incident_events SET claimed_by = $1, claimed_until_ms = $2 + $3
                 WHERE id IN (
                     SELECT id FROM incident_events
                     WHERE routed_ms IS NULL
                       AND (claimed_until_ms IS NULL OR claimed_until_ms <= $2)
                     ORDER BY id
                     LIMIT $4
                     FOR UPDATE SKIP LOCKED)
                 RETURNING id, incident_id, kind, ts_ms",
                &[&self.collector, &now_ms, &lease_ms, &limit],
            )
            .await?;
        let mut entries = rows
            .iter()
            .map(|row| {
                let kind: &str = row.get(2);
                Ok(JournalEntry {
                    position: row.get(0),
                    incident_id: row.get(1),
                    event: parse_column("incident_events.kind", kind, IncidentEvent::from_key)?,
                    ts_ms: row.get(3),
                })
            })
            .collect::<Result<Vec<_>, PgError>>()?;
        entries.sort_by_key(|entry| entry.position);
        Ok(entries)
    }

    /// Queues the notifications routed from claimed journal `entries` and
    /// marks those entries routed, in one transaction. `false` (nothing
    /// written) when this collector no longer holds every entry's claim.
    pub async fn enqueue_routed(
        &self,
        entries: &[i64],
        notifications: &[NewNotification],
        now_ms: i64,
    ) -> Result<bool, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let marked = transaction
            .execute(
                "UPDATE incident_events SET routed_ms = $3, claimed_by = NULL, claimed_until_ms = NULL
                 WHERE id = ANY($1) AND claimed_by = $2 AND routed_ms IS NULL",
                &[&entries, &self.collector, &now_ms],
            )
            .await?;
        if marked != entries.len() as u64 {
            return Ok(false);
        }
        insert_notifications(&transaction, notifications, now_ms).await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Claims up to `limit` due notifications for `lease_ms`: pending, due by
    /// `now_ms`, and not under another live claim.
    pub async fn claim_due_notifications(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claim>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "UPDATE outbox SET claimed_by = $1, claimed_until_ms = $2 + $3
                 WHERE id IN (
                     SELECT id FROM outbox
                     WHERE state = 'pending' AND next_attempt_ms <= $2
                       AND (claimed_until_ms IS NULL OR claimed_until_ms <= $2)
                     ORDER BY next_attempt_ms, id
                     LIMIT $4
                     FOR UPDATE SKIP LOCKED)
                 RETURNING id, idempotency_key, incident_id, event, channel, attempts, claimed_until_ms",
                &[&self.collector, &now_ms, &lease_ms, &limit],
            )
            .await?;
        let mut claims = rows
            .iter()
            .map(claim_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        claims.sort_by_key(|claim| claim.id);
        Ok(claims)
    }

    /// Records a delivery attempt on a row this collector holds the claim of,
    /// and releases the claim; `false` (nothing written) when the claim was
    /// lost, e.g. it expired and another collector took the row over.
    pub async fn record_delivery(&self, attempt: &DeliveryAttempt) -> Result<bool, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let changed = transaction
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, state = $2, next_attempt_ms = $3, last_error = $4,
                     delivered_ms = CASE WHEN $2 = 'delivered' THEN $5 ELSE delivered_ms END,
                     claimed_by = NULL, claimed_until_ms = NULL
                 WHERE id = $1 AND claimed_by = $6 AND state = 'pending'",
                &[
                    &attempt.id,
                    &attempt.state,
                    &attempt.retry_at_ms,
                    &attempt.error,
                    &attempt.ts_ms,
                    &self.collector,
                ],
            )
            .await?;
        if changed == 0 {
            return Ok(false);
        }
        transaction
            .execute(
                "INSERT INTO outbox_attempts (outbox_id, ts_ms, status, error, collector) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &attempt.id,
                    &attempt.ts_ms,
                    &attempt.status.map(i32::from),
                    &attempt.error,
                    &self.collector,
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Notification rows per state (for tests and checks).
    pub async fn outbox_states(&self) -> Result<Vec<(String, i64)>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT state, count(*) FROM outbox GROUP BY state ORDER BY state",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }
}

/// Inserts notifications, ignoring keys already queued; returns how many were new.
async fn insert_notifications(
    transaction: &deadpool_postgres::Transaction<'_>,
    notifications: &[NewNotification],
    now_ms: i64,
) -> Result<u64, PgError> {
    let insert = transaction
            .prepare_cached(
                "INSERT INTO outbox (idempotency_key, incident_id, event, channel, state, next_attempt_ms, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .await?;
    let mut queued = 0;
    for notification in notifications {
        let state = if notification.held { "held" } else { "pending" };
        queued += transaction
            .execute(
                &insert,
                &[
                    &notification.idempotency_key,
                    &notification.incident_id,
                    &notification.event.key().as_ref(),
                    &notification.channel,
                    &state,
                    &notification.due_ms,
                    &now_ms,
                ],
            )
            .await?;
    }
    Ok(queued)
}
