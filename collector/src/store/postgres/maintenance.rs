//! Maintenance windows on PostgreSQL: while a window covers an asset, its
//! incidents are recorded but their notifications are held (see `notify`).

use tokio_postgres::Row;

use super::super::MaintenanceWindow;
use super::{PgError, PgStore, parse_column};

impl PgStore {
    pub async fn create_maintenance(&self, window: MaintenanceWindow) -> Result<i64, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let id = insert_window(&transaction, &window).await?;
        transaction.commit().await?;
        Ok(id)
    }

    /// Ends a window now (if it ends later); false if there is no such window.
    pub async fn end_maintenance(&self, id: i64, now_ms: i64) -> Result<bool, PgError> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE maintenance_windows
                 SET ends_ms = least(ends_ms, $2), starts_ms = least(starts_ms, $2)
                 WHERE id = $1",
                &[&id, &now_ms],
            )
            .await?;
        Ok(changed == 1)
    }

    /// Windows that end after `ending_after_ms` (current and future ones).
    pub async fn maintenance_windows(
        &self,
        ending_after_ms: i64,
    ) -> Result<Vec<MaintenanceWindow>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, asset_ids, tags, starts_ms, ends_ms, change_ref, reason, created_by, created_ms, change_id
                 FROM maintenance_windows WHERE ends_ms > $1 ORDER BY starts_ms, id",
                &[&ending_after_ms],
            )
            .await?;
        rows.iter().map(window_from_row).collect()
    }
}

/// Inserts a window in `transaction` and returns its id; a change record
/// (`create_change`) writes its window through this too.
pub(super) async fn insert_window(
    transaction: &deadpool_postgres::Transaction<'_>,
    window: &MaintenanceWindow,
) -> Result<i64, PgError> {
    let row = transaction
        .query_one(
            "INSERT INTO maintenance_windows
                 (asset_ids, tags, starts_ms, ends_ms, change_ref, reason, created_by, created_ms, change_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             RETURNING id",
            &[
                &json_list(&window.asset_ids),
                &json_list(&window.tags),
                &window.starts_ms,
                &window.ends_ms,
                &window.change_ref,
                &window.reason,
                &window.created_by,
                &window.created_ms,
                &window.change_id,
            ],
        )
        .await?;
    Ok(row.get(0))
}

fn json_list(items: &[String]) -> String {
    serde_json::Value::from(items).to_string()
}

fn window_from_row(row: &Row) -> Result<MaintenanceWindow, PgError> {
    let list = |column: &str, index: usize| -> Result<Vec<String>, PgError> {
        let text: &str = row.get(index);
        parse_column(column, text, |text| {
            serde_json::from_str::<Vec<String>>(text)
        })
    };
    Ok(MaintenanceWindow {
        id: row.get(0),
        asset_ids: list("maintenance_windows.asset_ids", 1)?,
        tags: list("maintenance_windows.tags", 2)?,
        starts_ms: row.get(3),
        ends_ms: row.get(4),
        change_ref: row.get(5),
        reason: row.get(6),
        created_by: row.get(7),
        created_ms: row.get(8),
        change_id: row.get(9),
    })
}
