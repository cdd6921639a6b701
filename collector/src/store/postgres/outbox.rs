//! The journal and the outbox on PostgreSQL: notifications queued once per
//! idempotency key, and claimed for routing and delivery by one collector at
//! a time.
//!
//! The journal is not read through a cursor (ids from a sequence commit out
//! of order when several collectors write): [`PgStore::unnotified_journal`]
//! claims unrouted entries for this collector under a lease, and
//! [`PgStore::enqueue_notifications`] marks them routed in the transaction
//! that queues their notifications. The lease runs on the database's clock,
//! so collectors with skewed clocks agree on when it ends.
//!
//! A delivery claim is `FOR UPDATE SKIP LOCKED` (collectors polling together
//! take disjoint rows without waiting on each other) plus a lease: the row
//! stays `pending` with `claimed_by`/`claimed_until_ms` set, so if the
//! claimant dies before recording the attempt, the row is due again for
//! anyone once the lease runs out. An attempt is recorded only by the claim's
//! holder, so a collector that stalled past its lease cannot overwrite the
//! taker's result. The remaining window (a collector that sent but died
//! before recording) is at-least-once, which receivers dedup by the
//! idempotency key each notification carries.
//!
//! Group messages are queued under row locks on the rows they carry, so a
//! group is flushed once cluster-wide, whichever collector's timer fires.

use tokio_postgres::Row;

use super::super::{
    DeliveryAttempt, GroupEscalationMessage, GroupFlush, JournalEntry, NewNotification,
    Notification, NotificationFilter,
};
use super::{PgError, PgStore, parse_column};
use crate::domain::IncidentEvent;

/// How long a routing claim on journal entries lasts: routing a batch is
/// quick, so a dead collector's entries wait at most this long.
const JOURNAL_LEASE_MS: i64 = 60_000;

/// How long a delivery claim lasts: longer than delivering one poll's rows
/// ([`due_notifications`](PgStore::due_notifications) takes at most 50, sent
/// 8 at a time, each bounded by its channel's timeout).
pub(super) const DELIVERY_LEASE_MS: i64 = 300_000;

const COLUMNS: &str =
    "id, idempotency_key, incident_id, event, channel, state, attempts, next_attempt_ms,
    last_error, created_ms, delivered_ms, group_key, digest_kind, group_detail, digest_id";

fn notification_from_row(row: &Row) -> Result<Notification, PgError> {
    let event: &str = row.get(3);
    let attempts: i32 = row.get(6);
    Ok(Notification {
        id: row.get(0),
        idempotency_key: row.get(1),
        incident_id: row.get(2),
        event: parse_column("outbox.event", event, IncidentEvent::from_key)?,
        channel: row.get(4),
        state: row.get(5),
        attempts: i64::from(attempts),
        next_attempt_ms: row.get(7),
        last_error: row.get(8),
        created_ms: row.get(9),
        delivered_ms: row.get(10),
        group_key: row.get(11),
        digest_kind: row.get(12),
        group_detail: row.get(13),
        digest_id: row.get(14),
    })
}

fn notifications_from_rows(rows: &[Row]) -> Result<Vec<Notification>, PgError> {
    rows.iter().map(notification_from_row).collect()
}

fn journal_entry_from_row(row: &Row) -> Result<JournalEntry, PgError> {
    let kind: &str = row.get(2);
    Ok(JournalEntry {
        position: row.get(0),
        incident_id: row.get(1),
        event: parse_column("incident_events.kind", kind, IncidentEvent::from_key)?,
        ts_ms: row.get(3),
    })
}

impl PgStore {
    /// Claims up to `limit` unrouted journal entries for this collector and
    /// returns them oldest first. Entries another collector is routing are
    /// skipped until its lease ends; this collector's own unfinished claims
    /// come back (as SQLite returns the same entries until the cursor moves).
    pub async fn unnotified_journal(&self, limit: u32) -> Result<Vec<JournalEntry>, PgError> {
        self.claim_journal(None, JOURNAL_LEASE_MS, i64::from(limit))
            .await
    }

    /// [`Self::unnotified_journal`] at `now_ms` (`None`: the database's clock).
    pub(super) async fn claim_journal(
        &self,
        now_ms: Option<i64>,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<JournalEntry>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "WITH clock AS (
                     SELECT coalesce($2::BIGINT, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT) AS ms)
                 UPDATE incident_events SET claimed_by = $1, claimed_until_ms = (SELECT ms FROM clock) + $3
                 WHERE id IN (
                     SELECT id FROM incident_events, clock
                     WHERE routed_ms IS NULL
                       AND (claimed_by = $1 OR claimed_until_ms IS NULL OR claimed_until_ms <= clock.ms)
                     ORDER BY id
                     LIMIT $4
                     FOR UPDATE OF incident_events SKIP LOCKED)
                 RETURNING id, incident_id, kind, ts_ms",
                &[&self.collector, &now_ms, &lease_ms, &limit],
            )
            .await?;
        let mut entries = rows
            .iter()
            .map(journal_entry_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|entry| entry.position);
        Ok(entries)
    }

    /// Queues notifications (ignoring keys already queued by any collector)
    /// and marks this collector's claimed journal entries up to `position`
    /// routed, in one transaction; returns how many notifications were new.
    /// Position 0 marks nothing (escalations, which have no journal entry).
    /// Entries whose claim another collector took over stay with it: it
    /// routes them to the same idempotency keys, so nothing is queued twice.
    pub async fn enqueue_notifications(
        &self,
        notifications: Vec<NewNotification>,
        position: i64,
        now_ms: i64,
    ) -> Result<usize, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let queued = insert_notifications(&transaction, notifications, now_ms).await?;
        if position > 0 {
            transaction
                .execute(
                    "UPDATE incident_events SET routed_ms = $3, claimed_by = NULL, claimed_until_ms = NULL
                     WHERE id <= $2 AND claimed_by = $1 AND routed_ms IS NULL",
                    &[&self.collector, &position, &now_ms],
                )
                .await?;
        }
        transaction.commit().await?;
        Ok(queued)
    }

    /// Claims up to `limit` notifications due by `now_ms` for this collector
    /// (a lease of [`DELIVERY_LEASE_MS`] on the caller's clock), soonest
    /// first; rows under another live claim are not due.
    pub async fn due_notifications(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Notification>, PgError> {
        self.claim_due(now_ms, DELIVERY_LEASE_MS, i64::from(limit))
            .await
    }

    pub(super) async fn claim_due(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Notification>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "UPDATE outbox SET claimed_by = $1, claimed_until_ms = $2 + $3
                     WHERE id IN (
                         SELECT id FROM outbox
                         WHERE state = 'pending' AND next_attempt_ms <= $2
                           AND (claimed_until_ms IS NULL OR claimed_until_ms <= $2)
                         ORDER BY next_attempt_ms, id
                         LIMIT $4
                         FOR UPDATE SKIP LOCKED)
                     RETURNING {COLUMNS}"
                ),
                &[&self.collector, &now_ms, &lease_ms, &limit],
            )
            .await?;
        let mut due = notifications_from_rows(&rows)?;
        due.sort_by_key(|notification| (notification.next_attempt_ms, notification.id));
        Ok(due)
    }

    /// The earliest time a pending row may be claimed: its next attempt, or
    /// the end of another collector's claim on it (so the loop does not spin
    /// on a row someone else is delivering).
    pub async fn next_notification_due(&self) -> Result<Option<i64>, PgError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT min(greatest(next_attempt_ms, coalesce(claimed_until_ms, next_attempt_ms)))
                 FROM outbox WHERE state = 'pending'",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Records a delivery attempt on a row this collector holds the claim of,
    /// and releases the claim. `false` (nothing written) when the claim was
    /// lost, e.g. it expired and another collector took the row over: that
    /// collector's result stands.
    pub async fn record_delivery(&self, attempt: DeliveryAttempt) -> Result<bool, PgError> {
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

    /// Queues one message for every row kept for the group and marks them
    /// sent in it; returns the message's id and its member count (`None`
    /// when nothing was kept). The kept rows are locked first, so when two
    /// collectors flush one group, the second finds them sent and does nothing.
    pub async fn flush_group(&self, flush: GroupFlush) -> Result<Option<(i64, usize)>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let members: Vec<(i64, i64)> = transaction
            .query(
                "SELECT id, incident_id FROM outbox
                 WHERE state = 'grouped' AND group_key = $1 AND channel = $2 AND digest_id IS NULL
                 ORDER BY id FOR UPDATE",
                &[&flush.group_key, &flush.channel],
            )
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let Some((first_row, first_incident)) = members.first().copied() else {
            return Ok(None);
        };
        let message: i64 = transaction
            .query_one(
                "INSERT INTO outbox (idempotency_key, incident_id, event, channel, state, next_attempt_ms, created_ms,
                     group_key, digest_kind, group_detail)
                 VALUES ($1, $2, $3, $4, 'pending', $5, $5, $6, $7, $8)
                 RETURNING id",
                &[
                    &format!("group:{first_row}:{}:{}", flush.kind, flush.channel),
                    &first_incident,
                    &flush.event.key().as_ref(),
                    &flush.channel,
                    &flush.now_ms,
                    &flush.group_key,
                    &flush.kind,
                    &flush.detail,
                ],
            )
            .await?
            .get(0);
        let (rows, incidents): (Vec<i64>, Vec<i64>) = members.iter().copied().unzip();
        transaction
            .execute(
                "UPDATE outbox SET state = 'grouped_sent', digest_id = $2 WHERE id = ANY($1)",
                &[&rows, &message],
            )
            .await?;
        add_timelines(
            &transaction,
            &incidents,
            flush.now_ms,
            "grouped",
            &flush.timeline,
        )
        .await?;
        transaction.commit().await?;
        Ok(Some((message, members.len())))
    }

    /// The incidents a group's message carries, in the order they were kept.
    pub async fn group_members(&self, message: i64) -> Result<Vec<i64>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT incident_id FROM outbox WHERE digest_id = $1 ORDER BY id",
                &[&message],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Queues group escalation messages; ones already queued (same
    /// idempotency key, by this or another collector) are skipped, and only
    /// a new message writes its members' timelines. Returns how many were new.
    pub async fn enqueue_group_escalations(
        &self,
        messages: Vec<GroupEscalationMessage>,
        now_ms: i64,
    ) -> Result<usize, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let mut queued = 0;
        for message in &messages {
            let Some(first) = message.members.first() else {
                continue;
            };
            let inserted = transaction
                .execute(
                    "INSERT INTO outbox (idempotency_key, incident_id, event, channel, state, next_attempt_ms,
                         created_ms, group_key, digest_kind, group_detail)
                     VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, 'escalation', $8)
                     ON CONFLICT (idempotency_key) DO NOTHING",
                    &[
                        &message.idempotency_key,
                        first,
                        &message.event.key().as_ref(),
                        &message.channel,
                        &message.due_ms,
                        &now_ms,
                        &message.group_key,
                        &message.detail,
                    ],
                )
                .await?;
            if inserted == 0 {
                continue;
            }
            queued += 1;
            add_timelines(
                &transaction,
                &message.members,
                now_ms,
                "escalated",
                &message.timeline,
            )
            .await?;
        }
        transaction.commit().await?;
        Ok(queued)
    }

    /// Incidents with a row kept for, or sent in, a message of `group_key`.
    pub async fn grouped_incidents(&self, group_key: String) -> Result<Vec<i64>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT DISTINCT incident_id FROM outbox
                 WHERE group_key = $1 AND state IN ('grouped', 'grouped_sent') ORDER BY incident_id",
                &[&group_key],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// (group key, channel) of every row still kept for a group message.
    pub async fn kept_groups(&self) -> Result<Vec<(String, String)>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT DISTINCT group_key, channel FROM outbox
                 WHERE state = 'grouped' AND group_key IS NOT NULL ORDER BY group_key, channel",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    /// The state and group of the row with this idempotency key, if any.
    pub async fn notification_state(
        &self,
        idempotency_key: String,
    ) -> Result<Option<(String, Option<String>)>, PgError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT state, group_key FROM outbox WHERE idempotency_key = $1",
                &[&idempotency_key],
            )
            .await?;
        Ok(row.map(|row| (row.get(0), row.get(1))))
    }

    /// Notifications held by maintenance, oldest first.
    pub async fn held_notifications(&self) -> Result<Vec<Notification>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM outbox WHERE state = 'held' ORDER BY id"),
                &[],
            )
            .await?;
        notifications_from_rows(&rows)
    }

    /// Moves a held notification to `pending` (due now) or `suppressed`;
    /// only a row still held moves, so collectors releasing together move it once.
    pub async fn release_notification(
        &self,
        id: i64,
        state: &'static str,
        now_ms: i64,
    ) -> Result<(), PgError> {
        self.client()
            .await?
            .execute(
                "UPDATE outbox SET state = $2, next_attempt_ms = $3 WHERE id = $1 AND state = 'held'",
                &[&id, &state, &now_ms],
            )
            .await?;
        Ok(())
    }

    /// Notifications newest first, optionally in one state; `before_id`
    /// pages back from a previous page.
    pub async fn notifications(
        &self,
        filter: NotificationFilter,
    ) -> Result<Vec<Notification>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM outbox
                     WHERE ($1::TEXT IS NULL OR state = $1) AND ($2::BIGINT IS NULL OR id < $2)
                       AND ($4::BIGINT IS NULL OR incident_id = $4)
                     ORDER BY id DESC LIMIT $3"
                ),
                &[
                    &filter.state,
                    &filter.before_id,
                    &i64::from(filter.limit),
                    &filter.incident_id,
                ],
            )
            .await?;
        notifications_from_rows(&rows)
    }
}

/// Inserts notifications, ignoring keys already queued; returns how many were new.
async fn insert_notifications(
    transaction: &deadpool_postgres::Transaction<'_>,
    notifications: Vec<NewNotification>,
    now_ms: i64,
) -> Result<usize, PgError> {
    // Inserted in the caller's order, as on SQLite: ids order a group's
    // members. Collectors routing the same entries build the same keys in
    // the same order, so their inserts queue behind each other; a deadlock
    // would abort one transaction, and its loop retries.
    let insert = transaction
        .prepare_cached(
            "INSERT INTO outbox (idempotency_key, incident_id, event, channel, state, next_attempt_ms, created_ms, group_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .await?;
    let mut queued = 0;
    for notification in &notifications {
        let state = match (notification.held, &notification.group_key) {
            (true, _) => "held",
            (false, Some(_)) => "grouped",
            (false, None) => "pending",
        };
        // A held row is paged on its own when released, never grouped.
        let group_key = notification
            .group_key
            .as_ref()
            .filter(|_| !notification.held);
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
                    &group_key,
                ],
            )
            .await?;
    }
    Ok(usize::try_from(queued).unwrap_or(usize::MAX))
}

/// The same timeline line on each incident, written by `notify`.
async fn add_timelines(
    transaction: &deadpool_postgres::Transaction<'_>,
    incidents: &[i64],
    ts_ms: i64,
    kind: &str,
    detail: &str,
) -> Result<(), PgError> {
    transaction
        .execute(
            "INSERT INTO incident_timeline (incident_id, ts_ms, kind, actor, detail)
             SELECT incident, $2, $3, 'notify', $4 FROM unnest($1::BIGINT[]) WITH ORDINALITY AS t(incident, n)
             ORDER BY n",
            &[&incidents, &ts_ms, &kind, &detail],
        )
        .await?;
    Ok(())
}
