//! The incident journal and the notification outbox. Delivery logic lives in
//! `notify`; this file only reads and writes rows.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::conditions::Conditions;
use crate::domain::IncidentEvent;

/// One journal entry: something happened to an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    pub position: i64,
    pub incident_id: i64,
    pub event: IncidentEvent,
    pub ts_ms: i64,
}

/// A notification to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub idempotency_key: String,
    pub incident_id: i64,
    pub event: IncidentEvent,
    pub channel: String,
    pub due_ms: i64,
    /// Queued as `held` (maintenance) instead of `pending`.
    pub held: bool,
    /// Kept (state `grouped`) for this group's next message instead of
    /// sent on its own; ignored when `held`.
    pub group_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub id: i64,
    pub idempotency_key: String,
    pub incident_id: i64,
    pub event: IncidentEvent,
    pub channel: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
    /// The group of a grouped row or a group's message.
    pub group_key: Option<String>,
    /// Set on a group's message: `storm`, `digest`, `group` or `resolved`.
    pub digest_kind: Option<String>,
    /// JSON detail of a group's message.
    pub group_detail: Option<String>,
    /// On a grouped row: the message it went out in.
    pub digest_id: Option<i64>,
}

/// What one delivery attempt did.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    pub id: i64,
    pub ts_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// `delivered`, `failed`, or `pending` with the next try at `retry_at_ms`.
    pub state: &'static str,
    pub retry_at_ms: i64,
}

pub(super) fn journal(
    transaction: &Transaction<'_>,
    incident_id: i64,
    event: IncidentEvent,
    ts_ms: i64,
) -> rusqlite::Result<()> {
    transaction
        .prepare_cached(
            "INSERT INTO incident_events (incident_id, kind, ts_ms) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![incident_id, event, ts_ms])?;
    Ok(())
}

pub(super) fn cursor(connection: &Connection) -> rusqlite::Result<i64> {
    Ok(connection
        .query_row(
            "SELECT position FROM notify_cursor WHERE id = 1",
            [],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

pub(super) fn journal_after(
    connection: &Connection,
    position: i64,
    limit: u32,
) -> rusqlite::Result<Vec<JournalEntry>> {
    let mut statement = connection.prepare(
        "SELECT id, incident_id, kind, ts_ms FROM incident_events WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = statement.query_map(params![position, limit], |row| {
        Ok(JournalEntry {
            position: row.get(0)?,
            incident_id: row.get(1)?,
            event: row.get(2)?,
            ts_ms: row.get(3)?,
        })
    })?;
    rows.collect()
}

/// Queues notifications (ignoring ones already queued) and moves the cursor, atomically.
pub(super) fn enqueue(
    transaction: &Transaction<'_>,
    notifications: &[NewNotification],
    position: i64,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    let mut queued = 0;
    let mut insert = transaction.prepare_cached(
        "INSERT OR IGNORE INTO outbox (idempotency_key, incident_id, event, channel, state, next_attempt_ms, created_ms, group_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for notification in notifications {
        let state = match (notification.held, &notification.group_key) {
            (true, _) => "held",
            (false, Some(_)) => "grouped",
            (false, None) => "pending",
        };
        queued += insert.execute(params![
            notification.idempotency_key,
            notification.incident_id,
            notification.event,
            notification.channel,
            state,
            notification.due_ms,
            now_ms,
            notification
                .group_key
                .as_ref()
                .filter(|_| !notification.held),
        ])?;
    }
    transaction.execute(
        "INSERT INTO notify_cursor (id, position) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET position = max(position, ?1)",
        [position],
    )?;
    Ok(queued)
}

const COLUMNS: &str = "id, idempotency_key, incident_id, event, channel, state, attempts, next_attempt_ms, last_error, created_ms, delivered_ms,
    group_key, digest_kind, group_detail, digest_id";

fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Notification> {
    Ok(Notification {
        id: row.get(0)?,
        idempotency_key: row.get(1)?,
        incident_id: row.get(2)?,
        event: row.get(3)?,
        channel: row.get(4)?,
        state: row.get(5)?,
        attempts: row.get(6)?,
        next_attempt_ms: row.get(7)?,
        last_error: row.get(8)?,
        created_ms: row.get(9)?,
        delivered_ms: row.get(10)?,
        group_key: row.get(11)?,
        digest_kind: row.get(12)?,
        group_detail: row.get(13)?,
        digest_id: row.get(14)?,
    })
}

/// A group's message to queue from the rows kept for it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupFlush {
    pub group_key: String,
    pub channel: String,
    /// `storm`, `digest`, `group` or `resolved`.
    pub kind: String,
    pub event: IncidentEvent,
    pub detail: String,
    /// Timeline line written on every member incident.
    pub timeline: String,
    pub now_ms: i64,
}

/// Queues one message for every row kept for the group and marks them
/// sent in it; returns the message's id and its member count (`None` when
/// nothing was kept).
pub(super) fn flush_group(
    transaction: &Transaction<'_>,
    flush: &GroupFlush,
) -> rusqlite::Result<Option<(i64, usize)>> {
    let members: Vec<(i64, i64)> = transaction
        .prepare_cached(
            "SELECT id, incident_id FROM outbox
             WHERE state = 'grouped' AND group_key = ?1 AND channel = ?2 AND digest_id IS NULL ORDER BY id",
        )?
        .query_map(params![flush.group_key, flush.channel], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let Some((first_row, first_incident)) = members.first().copied() else {
        return Ok(None);
    };
    transaction.execute(
        "INSERT INTO outbox (idempotency_key, incident_id, event, channel, state, next_attempt_ms, created_ms,
             group_key, digest_kind, group_detail)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?6, ?7, ?8)",
        params![
            format!("group:{first_row}:{}:{}", flush.kind, flush.channel),
            first_incident,
            flush.event,
            flush.channel,
            flush.now_ms,
            flush.group_key,
            flush.kind,
            flush.detail
        ],
    )?;
    let message = transaction.last_insert_rowid();
    for (row, incident) in &members {
        transaction.execute(
            "UPDATE outbox SET state = 'grouped_sent', digest_id = ?2 WHERE id = ?1",
            params![row, message],
        )?;
        super::timeline::add_timeline(
            transaction,
            *incident,
            flush.now_ms,
            "grouped",
            "notify",
            &flush.timeline,
        )?;
    }
    Ok(Some((message, members.len())))
}

/// One escalation step of a group's incidents sent only grouped and still
/// unacknowledged: one group message (`digest_kind` `escalation`) whose
/// members are listed in `detail` (`incidents`).
#[derive(Debug, Clone)]
pub struct GroupEscalationMessage {
    pub idempotency_key: String,
    pub group_key: String,
    pub event: crate::domain::IncidentEvent,
    pub channel: String,
    pub due_ms: i64,
    /// JSON: `level`, `round`, `incidents`.
    pub detail: String,
    pub members: Vec<i64>,
    /// Timeline line written on every member when the message is queued.
    pub timeline: String,
}

/// Queues group escalation messages; ones already queued (same idempotency
/// key, e.g. replayed after a restart) are skipped. Returns how many were new.
pub(super) fn enqueue_group_escalations(
    transaction: &Transaction<'_>,
    messages: &[GroupEscalationMessage],
    now_ms: i64,
) -> rusqlite::Result<usize> {
    let mut queued = 0;
    for message in messages {
        let Some(first) = message.members.first() else {
            continue;
        };
        let inserted = transaction.execute(
            "INSERT OR IGNORE INTO outbox (idempotency_key, incident_id, event, channel, state, next_attempt_ms,
                 created_ms, group_key, digest_kind, group_detail)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, 'escalation', ?8)",
            params![
                message.idempotency_key,
                first,
                message.event,
                message.channel,
                message.due_ms,
                now_ms,
                message.group_key,
                message.detail
            ],
        )?;
        if inserted == 0 {
            continue;
        }
        queued += 1;
        for incident in &message.members {
            super::timeline::add_timeline(
                transaction,
                *incident,
                now_ms,
                "escalated",
                "notify",
                &message.timeline,
            )?;
        }
    }
    Ok(queued)
}

/// Incidents with a row kept for, or sent in, a message of `group_key`
/// (their openings: grouped resolutions use their own key).
pub(super) fn grouped_incidents(
    connection: &Connection,
    group_key: &str,
) -> rusqlite::Result<Vec<i64>> {
    connection
        .prepare_cached(
            "SELECT DISTINCT incident_id FROM outbox
             WHERE group_key = ?1 AND state IN ('grouped', 'grouped_sent') ORDER BY incident_id",
        )?
        .query_map([group_key], |row| row.get(0))?
        .collect()
}

/// The incidents a group's message carries, in the order they were kept.
pub(super) fn group_members(connection: &Connection, message: i64) -> rusqlite::Result<Vec<i64>> {
    connection
        .prepare_cached("SELECT incident_id FROM outbox WHERE digest_id = ?1 ORDER BY id")?
        .query_map([message], |row| row.get(0))?
        .collect()
}

/// (group key, channel) of every row still kept for a group message.
pub(super) fn kept_groups(connection: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    connection
        .prepare(
            "SELECT DISTINCT group_key, channel FROM outbox WHERE state = 'grouped' AND group_key IS NOT NULL",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect()
}

/// The state and group of the row with this idempotency key, if any.
pub(super) fn row_state(
    connection: &Connection,
    idempotency_key: &str,
) -> rusqlite::Result<Option<(String, Option<String>)>> {
    connection
        .query_row(
            "SELECT state, group_key FROM outbox WHERE idempotency_key = ?1",
            [idempotency_key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
}

pub(super) fn due(
    connection: &Connection,
    now_ms: i64,
    limit: u32,
) -> rusqlite::Result<Vec<Notification>> {
    let mut statement = connection.prepare(&format!(
        "SELECT {COLUMNS} FROM outbox WHERE state = 'pending' AND next_attempt_ms <= ?1 ORDER BY next_attempt_ms, id LIMIT ?2"
    ))?;
    let rows = statement.query_map(params![now_ms, limit], row)?;
    rows.collect()
}

/// The earliest pending delivery time, if any.
pub(super) fn next_due(connection: &Connection) -> rusqlite::Result<Option<i64>> {
    connection.query_row(
        "SELECT min(next_attempt_ms) FROM outbox WHERE state = 'pending'",
        [],
        |row| row.get(0),
    )
}

pub(super) fn record_attempt(
    transaction: &Transaction<'_>,
    attempt: &DeliveryAttempt,
) -> rusqlite::Result<()> {
    transaction.execute(
        "INSERT INTO outbox_attempts (outbox_id, ts_ms, status, error) VALUES (?1, ?2, ?3, ?4)",
        params![attempt.id, attempt.ts_ms, attempt.status, attempt.error],
    )?;
    transaction.execute(
        "UPDATE outbox SET attempts = attempts + 1, state = ?2, next_attempt_ms = ?3, last_error = ?4,
             delivered_ms = CASE WHEN ?2 = 'delivered' THEN ?5 ELSE delivered_ms END
         WHERE id = ?1",
        params![attempt.id, attempt.state, attempt.retry_at_ms, attempt.error, attempt.ts_ms],
    )?;
    Ok(())
}

/// Which outbox rows to list, newest first; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct NotificationFilter {
    /// `pending`, `held`, `delivered`, `failed`, `grouped`, …
    pub state: Option<String>,
    /// Rows of this incident (a grouped message's members included).
    pub incident_id: Option<i64>,
    /// Paging: only rows with a smaller id.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Notifications newest first; `before_id` pages back from a previous page.
pub(super) fn list(
    connection: &Connection,
    filter: &NotificationFilter,
) -> rusqlite::Result<Vec<Notification>> {
    // With an incident, its rows come from `outbox_by_incident`.
    let mut conditions = Conditions::default();
    if let Some(incident_id) = filter.incident_id {
        conditions.bind("incident_id = ?", incident_id);
    }
    if let Some(state) = &filter.state {
        conditions.bind("state = ?", state.clone());
    }
    if let Some(before_id) = filter.before_id {
        conditions.bind("id < ?", before_id);
    }
    // Not cached: the text varies with the filters given and the limit.
    let mut statement = connection.prepare(&format!(
        "SELECT {COLUMNS} FROM outbox {} ORDER BY id DESC LIMIT {}",
        conditions.where_clause(),
        filter.limit
    ))?;
    let rows = statement.query_map(conditions.params(), row)?;
    rows.collect()
}

/// A maintenance window as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaintenanceWindow {
    pub id: i64,
    pub asset_ids: Vec<String>,
    pub tags: Vec<String>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub change_ref: Option<String>,
    /// The change record that created the window, or that it names.
    pub change_id: Option<i64>,
    pub reason: Option<String>,
    pub created_by: String,
    pub created_ms: i64,
}

impl MaintenanceWindow {
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.starts_ms <= now_ms && now_ms < self.ends_ms
    }
}

pub(super) fn create_window(
    transaction: &Transaction<'_>,
    window: &MaintenanceWindow,
) -> rusqlite::Result<i64> {
    transaction.execute(
        "INSERT INTO maintenance_windows (asset_ids, tags, starts_ms, ends_ms, change_ref, reason, created_by, created_ms, change_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            serde_json::to_string(&window.asset_ids).unwrap_or_else(|_| "[]".into()),
            serde_json::to_string(&window.tags).unwrap_or_else(|_| "[]".into()),
            window.starts_ms,
            window.ends_ms,
            window.change_ref,
            window.reason,
            window.created_by,
            window.created_ms,
            window.change_id
        ],
    )?;
    Ok(transaction.last_insert_rowid())
}

/// Ends a window now (if it ends later); false if there is no such window.
pub(super) fn end_window(
    transaction: &Transaction<'_>,
    id: i64,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let changed = transaction.execute(
        "UPDATE maintenance_windows SET ends_ms = min(ends_ms, ?2), starts_ms = min(starts_ms, ?2) WHERE id = ?1",
        params![id, now_ms],
    )?;
    Ok(changed == 1)
}

pub(super) fn windows(
    connection: &Connection,
    ending_after_ms: i64,
) -> rusqlite::Result<Vec<MaintenanceWindow>> {
    let mut statement = connection.prepare(
        "SELECT id, asset_ids, tags, starts_ms, ends_ms, change_ref, reason, created_by, created_ms, change_id
         FROM maintenance_windows WHERE ends_ms > ?1 ORDER BY starts_ms, id",
    )?;
    let rows = statement.query_map([ending_after_ms], |row| {
        let assets: String = row.get(1)?;
        let tags: String = row.get(2)?;
        Ok(MaintenanceWindow {
            id: row.get(0)?,
            asset_ids: serde_json::from_str(&assets).unwrap_or_default(),
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            starts_ms: row.get(3)?,
            ends_ms: row.get(4)?,
            change_ref: row.get(5)?,
            reason: row.get(6)?,
            created_by: row.get(7)?,
            created_ms: row.get(8)?,
            change_id: row.get(9)?,
        })
    })?;
    rows.collect()
}

/// Notifications held by maintenance.
pub(super) fn held(connection: &Connection) -> rusqlite::Result<Vec<Notification>> {
    let mut statement = connection.prepare(&format!(
        "SELECT {COLUMNS} FROM outbox WHERE state = 'held' ORDER BY id"
    ))?;
    let rows = statement.query_map([], row)?;
    rows.collect()
}

/// Moves a held notification to `pending` (due now) or `suppressed`.
pub(super) fn release(
    transaction: &Transaction<'_>,
    id: i64,
    state: &str,
    now_ms: i64,
) -> rusqlite::Result<()> {
    transaction.execute(
        "UPDATE outbox SET state = ?2, next_attempt_ms = ?3 WHERE id = ?1 AND state = 'held'",
        params![id, state, now_ms],
    )?;
    Ok(())
}
