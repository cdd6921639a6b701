//! Change records on PostgreSQL, as `store/changes.rs`: created with their
//! maintenance window in one transaction, linked to the incidents that open
//! on their assets during the change or soon after, and read for the change
//! failure rate. An update locks the change row (`FOR UPDATE`), so two
//! collectors recording an outcome at once apply one after the other.

use tokio_postgres::{GenericClient, Row, Transaction};

use super::super::ChangeUpdate;
use super::{PgError, PgStore, parse_column};
use crate::domain::{ChangeOutcome, ChangeRecord, ChangeRisk};

const COLUMNS: &str =
    "id, title, description, starts_ms, ends_ms, asset_ids, tags, risk, implementer,
    outcome, window_id, created_by, created_ms, updated_ms";

fn from_row(row: &Row) -> Result<ChangeRecord, PgError> {
    let list = |column: usize, name: &str| -> Result<Vec<String>, PgError> {
        parse_column(name, row.get(column), |text| {
            serde_json::from_str::<Vec<String>>(text)
        })
    };
    let risk: &str = row.get(7);
    let outcome: Option<&str> = row.get(9);
    Ok(ChangeRecord {
        id: row.get(0),
        title: row.get(1),
        description: row.get(2),
        starts_ms: row.get(3),
        ends_ms: row.get(4),
        asset_ids: list(5, "changes.asset_ids")?,
        tags: list(6, "changes.tags")?,
        risk: parse_column("changes.risk", risk, |text| {
            ChangeRisk::parse(text).ok_or_else(|| format!("unknown risk {text:?}"))
        })?,
        implementer: row.get(8),
        outcome: outcome
            .map(|text| {
                parse_column("changes.outcome", text, |text| {
                    ChangeOutcome::parse(text).ok_or_else(|| format!("unknown outcome {text:?}"))
                })
            })
            .transpose()?,
        window_id: row.get(10),
        created_by: row.get(11),
        created_ms: row.get(12),
        updated_ms: row.get(13),
    })
}

async fn get(
    client: &impl GenericClient,
    id: i64,
    lock: bool,
) -> Result<Option<ChangeRecord>, PgError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM changes WHERE id = $1{lock}"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

fn json_list(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

impl PgStore {
    /// Records a change and the maintenance window that silences its assets.
    pub async fn create_change(&self, change: ChangeRecord) -> Result<ChangeRecord, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let created = create_in(&transaction, &change).await?;
        transaction.commit().await?;
        Ok(created)
    }

    /// An operator's change to a change record; `None` if there is none.
    /// Recording an outcome closes the change: a window still open ends now.
    pub async fn update_change(
        &self,
        id: i64,
        update: ChangeUpdate,
    ) -> Result<Option<ChangeRecord>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let updated = update_in(&transaction, id, &update).await?;
        transaction.commit().await?;
        Ok(updated)
    }

    pub async fn change(&self, id: i64) -> Result<Option<ChangeRecord>, PgError> {
        let client = self.client().await?;
        get(&**client, id, false).await
    }

    /// Changes newest first with how many incidents each links (one query);
    /// `before_id` pages back.
    pub async fn changes(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(ChangeRecord, i64)>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS}, (SELECT count(*) FROM incidents WHERE change_id = changes.id)
                     FROM changes WHERE ($1::BIGINT IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
                ),
                &[&before_id, &i64::from(limit.max(1))],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((from_row(row)?, row.get(14))))
            .collect()
    }

    /// Changes that started between `since_ms` and `now_ms` (both included), oldest first.
    pub async fn changes_started_between(
        &self,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<ChangeRecord>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM changes WHERE starts_ms >= $1 AND starts_ms <= $2 ORDER BY id"
                ),
                &[&since_ms, &now_ms],
            )
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// (id, opened, resolved) of the incidents linked to a change, oldest first.
    pub async fn change_incidents(&self, id: i64) -> Result<Vec<(i64, i64, Option<i64>)>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, opened_at_ms, resolved_at_ms FROM incidents WHERE change_id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect())
    }
}

async fn create_in(
    transaction: &Transaction<'_>,
    change: &ChangeRecord,
) -> Result<ChangeRecord, PgError> {
    let (asset_ids, tags) = (json_list(&change.asset_ids), json_list(&change.tags));
    let id: i64 = transaction
        .query_one(
            "INSERT INTO changes (title, description, starts_ms, ends_ms, asset_ids, tags, risk,
                 implementer, created_by, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
            &[
                &change.title,
                &change.description,
                &change.starts_ms,
                &change.ends_ms,
                &asset_ids,
                &tags,
                &change.risk.as_str(),
                &change.implementer,
                &change.created_by,
                &change.created_ms,
            ],
        )
        .await?
        .get(0);
    // The window is the outbox's (SQLite: `outbox::create_window`); its row
    // is written here so the change and its window commit together.
    let window: i64 = transaction
        .query_one(
            "INSERT INTO maintenance_windows (asset_ids, tags, starts_ms, ends_ms, change_ref,
                 reason, created_by, created_ms, change_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            &[
                &asset_ids,
                &tags,
                &change.starts_ms,
                &change.ends_ms,
                &format!("C-{id}"),
                &change.title,
                &change.created_by,
                &change.created_ms,
                &id,
            ],
        )
        .await?
        .get(0);
    transaction
        .execute(
            "UPDATE changes SET window_id = $2 WHERE id = $1",
            &[&id, &window],
        )
        .await?;
    let row = transaction
        .query_one(
            &format!("SELECT {COLUMNS} FROM changes WHERE id = $1"),
            &[&id],
        )
        .await?;
    from_row(&row)
}

async fn update_in(
    transaction: &Transaction<'_>,
    id: i64,
    update: &ChangeUpdate,
) -> Result<Option<ChangeRecord>, PgError> {
    let Some(current) = get(transaction, id, true).await? else {
        return Ok(None);
    };
    let closes = update.outcome.is_some() && current.ends_ms > update.now_ms;
    let ends_ms = if closes {
        update.now_ms
    } else {
        current.ends_ms
    };
    let starts_ms = current.starts_ms.min(ends_ms);
    transaction
        .execute(
            "UPDATE changes SET title = $2, description = $3, implementer = $4, outcome = $5,
                 starts_ms = $6, ends_ms = $7, updated_ms = $8 WHERE id = $1",
            &[
                &id,
                update.title.as_ref().unwrap_or(&current.title),
                &update.description.clone().or(current.description),
                &update.implementer.clone().or(current.implementer),
                &update
                    .outcome
                    .or(current.outcome)
                    .map(ChangeOutcome::as_str),
                &starts_ms,
                &ends_ms,
                &update.now_ms,
            ],
        )
        .await?;
    if closes && let Some(window) = current.window_id {
        // SQLite: `outbox::end_window`.
        transaction
            .execute(
                "UPDATE maintenance_windows
                 SET ends_ms = least(ends_ms, $2), starts_ms = least(starts_ms, $2) WHERE id = $1",
                &[&window, &update.now_ms],
            )
            .await?;
    }
    get(transaction, id, false).await
}
