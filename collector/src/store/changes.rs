//! Change records: created with their maintenance window in one
//! transaction, linked to the incidents that open on their assets during the
//! change or soon after, and read for the change failure rate.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::outbox::{self, MaintenanceWindow};
use super::timeline::add_timeline;
use crate::domain::{ChangeOutcome, ChangeRecord, ChangeRisk, IncidentRecord};

const COLUMNS: &str =
    "id, title, description, starts_ms, ends_ms, asset_ids, tags, risk, implementer,
    outcome, window_id, created_by, created_ms, updated_ms";

fn unknown(column: usize, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("unknown value {text:?}").into(),
    )
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChangeRecord> {
    let list = |column: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = row.get(column)?;
        serde_json::from_str(&text).map_err(|_| unknown(column, &text))
    };
    let risk: String = row.get(7)?;
    let outcome: Option<String> = row.get(9)?;
    Ok(ChangeRecord {
        id: row.get(0)?,
        title: row.get(1)?,
        description: row.get(2)?,
        starts_ms: row.get(3)?,
        ends_ms: row.get(4)?,
        asset_ids: list(5)?,
        tags: list(6)?,
        risk: ChangeRisk::parse(&risk).ok_or_else(|| unknown(7, &risk))?,
        implementer: row.get(8)?,
        outcome: match outcome {
            None => None,
            Some(text) => Some(ChangeOutcome::parse(&text).ok_or_else(|| unknown(9, &text))?),
        },
        window_id: row.get(10)?,
        created_by: row.get(11)?,
        created_ms: row.get(12)?,
        updated_ms: row.get(13)?,
    })
}

pub(super) fn get(connection: &Connection, id: i64) -> rusqlite::Result<Option<ChangeRecord>> {
    connection
        .query_row(
            &format!("SELECT {COLUMNS} FROM changes WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()
}

fn json_list(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

/// Records a change and the maintenance window that silences its assets.
pub(super) fn create(
    transaction: &Transaction<'_>,
    change: &ChangeRecord,
) -> rusqlite::Result<ChangeRecord> {
    transaction.execute(
        "INSERT INTO changes (title, description, starts_ms, ends_ms, asset_ids, tags, risk, implementer,
             created_by, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        params![
            change.title,
            change.description,
            change.starts_ms,
            change.ends_ms,
            json_list(&change.asset_ids),
            json_list(&change.tags),
            change.risk.as_str(),
            change.implementer,
            change.created_by,
            change.created_ms
        ],
    )?;
    let id = transaction.last_insert_rowid();
    let window = outbox::create_window(
        transaction,
        &MaintenanceWindow {
            id: 0,
            asset_ids: change.asset_ids.clone(),
            tags: change.tags.clone(),
            starts_ms: change.starts_ms,
            ends_ms: change.ends_ms,
            change_ref: Some(format!("C-{id}")),
            change_id: Some(id),
            reason: Some(change.title.clone()),
            created_by: change.created_by.clone(),
            created_ms: change.created_ms,
        },
    )?;
    transaction.execute(
        "UPDATE changes SET window_id = ?2 WHERE id = ?1",
        params![id, window],
    )?;
    get(transaction, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// An operator's change to a change record; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ChangeUpdate {
    pub title: Option<String>,
    pub description: Option<String>,
    pub implementer: Option<String>,
    /// Recording an outcome closes the change: a window still open ends now.
    pub outcome: Option<ChangeOutcome>,
    pub now_ms: i64,
}

pub(super) fn update(
    transaction: &Transaction<'_>,
    id: i64,
    update: &ChangeUpdate,
) -> rusqlite::Result<Option<ChangeRecord>> {
    let Some(current) = get(transaction, id)? else {
        return Ok(None);
    };
    let closes = update.outcome.is_some() && current.ends_ms > update.now_ms;
    let ends_ms = if closes {
        update.now_ms
    } else {
        current.ends_ms
    };
    let starts_ms = current.starts_ms.min(ends_ms);
    transaction.execute(
        "UPDATE changes SET title = ?2, description = ?3, implementer = ?4, outcome = ?5,
             starts_ms = ?6, ends_ms = ?7, updated_ms = ?8 WHERE id = ?1",
        params![
            id,
            update.title.as_ref().unwrap_or(&current.title),
            update.description.clone().or(current.description),
            update.implementer.clone().or(current.implementer),
            update
                .outcome
                .or(current.outcome)
                .map(ChangeOutcome::as_str),
            starts_ms,
            ends_ms,
            update.now_ms
        ],
    )?;
    if closes && let Some(window) = current.window_id {
        outbox::end_window(transaction, window, update.now_ms)?;
    }
    get(transaction, id)
}

/// Changes newest first with how many incidents each links, in one query;
/// `before_id` pages back.
pub(super) fn list(
    connection: &Connection,
    before_id: Option<i64>,
    limit: u32,
) -> rusqlite::Result<Vec<(ChangeRecord, i64)>> {
    connection
        .prepare(&format!(
            "SELECT {COLUMNS}, (SELECT count(*) FROM incidents WHERE change_id = changes.id)
             FROM changes WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2"
        ))?
        .query_map(params![before_id, limit.max(1)], |row| {
            Ok((from_row(row)?, row.get(14)?))
        })?
        .collect()
}

/// Changes that started between `since_ms` and `now_ms`, oldest first.
pub(super) fn started_between(
    connection: &Connection,
    since_ms: i64,
    now_ms: i64,
) -> rusqlite::Result<Vec<ChangeRecord>> {
    connection
        .prepare(&format!(
            "SELECT {COLUMNS} FROM changes WHERE starts_ms >= ?1 AND starts_ms <= ?2 ORDER BY id"
        ))?
        .query_map(params![since_ms, now_ms], from_row)?
        .collect()
}

/// (id, opened, resolved) of the incidents linked to a change, oldest first.
pub(super) fn incidents_of(
    connection: &Connection,
    change: i64,
) -> rusqlite::Result<Vec<(i64, i64, Option<i64>)>> {
    connection
        .prepare_cached(
            "SELECT id, opened_at_ms, resolved_at_ms FROM incidents WHERE change_id = ?1 ORDER BY id",
        )?
        .query_map([change], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect()
}

/// Links a just-opened incident to the change whose assets include its
/// agent's asset, if it opened during the change or up to `link_after_ms`
/// after it ended (the most recent such change).
pub(super) fn on_open(
    transaction: &Transaction<'_>,
    incident: &IncidentRecord,
    link_after_ms: i64,
) -> rusqlite::Result<()> {
    let opened = incident.opened_at_ms;
    let candidates: Vec<ChangeRecord> = transaction
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM changes WHERE starts_ms <= ?1 AND ends_ms + ?2 >= ?1
             ORDER BY starts_ms DESC, id DESC"
        ))?
        .query_map(params![opened, link_after_ms], from_row)?
        .collect::<rusqlite::Result<_>>()?;
    if candidates.is_empty() {
        return Ok(());
    }
    let Some(asset_id): Option<String> = transaction
        .query_row(
            "SELECT asset_id FROM asset_agents WHERE agent_id = ?1",
            [&incident.agent_id],
            |row| row.get(0),
        )
        .optional()?
    else {
        return Ok(());
    };
    let record: Option<String> = transaction
        .query_row(
            "SELECT record FROM assets WHERE id = ?1",
            [&asset_id],
            |row| row.get(0),
        )
        .optional()?;
    // The asset record is the asset task's JSON; only its tags matter here.
    let tags: Vec<String> = record
        .and_then(|record| serde_json::from_str::<serde_json::Value>(&record).ok())
        .and_then(|record| serde_json::from_value(record["tags"].clone()).ok())
        .unwrap_or_default();
    let Some(change) = candidates
        .iter()
        .find(|change| change.affects(&asset_id, &tags))
    else {
        return Ok(());
    };
    transaction.execute(
        "UPDATE incidents SET change_id = ?2 WHERE id = ?1",
        params![incident.id, change.id],
    )?;
    let detail = if opened < change.ends_ms {
        format!(
            "Opened during change {}: {}.",
            change.reference(),
            change.title
        )
    } else {
        format!(
            "Opened {}s after change {} ended: {}.",
            (opened - change.ends_ms) / 1000,
            change.reference(),
            change.title
        )
    };
    add_timeline(
        transaction,
        incident.id,
        opened,
        "change",
        "changes",
        &detail,
    )
}
