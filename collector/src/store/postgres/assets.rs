//! Asset records (CMDB) on PostgreSQL: rows, agent links and history, as
//! `store/assets.rs`.
//!
//! A call's writes commit together or not at all. Two collectors writing one
//! asset each add their history lines (inserts never collide); the record is
//! the last writer's, as on SQLite. An agent has one asset (`asset_agents`'
//! primary key), and a link moves an agent away from the asset it is on only
//! if the same call writes or removes that asset, as a merge or a split
//! does. A collector that did not know the agent was linked (another one
//! created its asset a moment earlier) is refused: its call rolls back with
//! [`PgError::Conflict`] rather than leave two assets claiming the agent.

use tokio_postgres::GenericClient;

use super::super::{AssetEventRow, AssetLink, AssetRow, AssetWrite};
use super::retry::retrying_conflicts;
use super::{PgError, PgStore};

const ASSET_COLUMNS: &str = "id, record, status, hostname, updated_ms";
const LINK_COLUMNS: &str = "agent_id, asset_id, confidence, reasons, matched_ms";

fn asset_from_row(row: &tokio_postgres::Row) -> AssetRow {
    AssetRow {
        id: row.get(0),
        record: row.get(1),
        status: row.get(2),
        hostname: row.get(3),
        updated_ms: row.get(4),
    }
}

fn link_from_row(row: &tokio_postgres::Row) -> AssetLink {
    AssetLink {
        agent_id: row.get(0),
        asset_id: row.get(1),
        confidence: row.get(2),
        reasons: row.get(3),
        matched_ms: row.get(4),
    }
}

impl PgStore {
    /// Writes asset records, links and history in one transaction; retried
    /// when it deadlocks with another collector writing the same assets in
    /// another order.
    pub async fn write_assets(&self, writes: Vec<AssetWrite>) -> Result<(), PgError> {
        retrying_conflicts(|| self.try_write_assets(&writes)).await
    }

    async fn try_write_assets(&self, writes: &[AssetWrite]) -> Result<(), PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Assets this call knows about: links may leave these.
        let known: Vec<&str> = writes
            .iter()
            .flat_map(|write| {
                std::iter::once(write.row.id.as_str())
                    .chain(write.removed.iter().map(String::as_str))
            })
            .collect();
        for write in writes {
            write_one(&*transaction, write, &known).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Every asset, by hostname then id (byte order, as SQLite sorts).
    pub async fn assets(&self) -> Result<Vec<AssetRow>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {ASSET_COLUMNS} FROM assets ORDER BY hostname COLLATE \"C\", id COLLATE \"C\""
                ),
                &[],
            )
            .await?;
        Ok(rows.iter().map(asset_from_row).collect())
    }

    pub async fn asset(&self, id: &str) -> Result<Option<AssetRow>, PgError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {ASSET_COLUMNS} FROM assets WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(asset_from_row))
    }

    /// The asset an agent belongs to, if any.
    pub async fn asset_link(&self, agent_id: &str) -> Result<Option<AssetLink>, PgError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {LINK_COLUMNS} FROM asset_agents WHERE agent_id = $1"),
                &[&agent_id],
            )
            .await?;
        Ok(row.as_ref().map(link_from_row))
    }

    pub async fn asset_links(&self) -> Result<Vec<AssetLink>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {LINK_COLUMNS} FROM asset_agents ORDER BY agent_id COLLATE \"C\""),
                &[],
            )
            .await?;
        Ok(rows.iter().map(link_from_row).collect())
    }

    /// An asset's history with row ids, newest first, below `before_id` when given.
    pub async fn asset_events(
        &self,
        id: &str,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, AssetEventRow)>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, ts_ms, source, kind, field, before, after FROM asset_events
                 WHERE asset_id = $1 AND ($2::BIGINT IS NULL OR id < $2)
                 ORDER BY id DESC LIMIT $3",
                &[&id, &before_id, &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    AssetEventRow {
                        ts_ms: row.get(1),
                        source: row.get(2),
                        kind: row.get(3),
                        field: row.get(4),
                        before: row.get(5),
                        after: row.get(6),
                    },
                )
            })
            .collect())
    }
}

async fn write_one(
    transaction: &impl GenericClient,
    write: &AssetWrite,
    known: &[&str],
) -> Result<(), PgError> {
    for removed in &write.removed {
        transaction
            .execute("DELETE FROM assets WHERE id = $1", &[removed])
            .await?;
        transaction
            .execute(
                "UPDATE asset_events SET asset_id = $2 WHERE asset_id = $1",
                &[removed, &write.row.id],
            )
            .await?;
    }
    let row = &write.row;
    transaction
        .execute(
            "INSERT INTO assets (id, record, status, hostname, updated_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET record = excluded.record, status = excluded.status,
                 hostname = excluded.hostname, updated_ms = excluded.updated_ms",
            &[&row.id, &row.record, &row.status, &row.hostname, &row.updated_ms],
        )
        .await?;
    for link in &write.links {
        write_link(transaction, link, known).await?;
    }
    insert_events(transaction, &row.id, &write.events).await
}

/// Links an agent, or refuses to take it from an asset this call does not write.
async fn write_link(
    transaction: &impl GenericClient,
    link: &AssetLink,
    known: &[&str],
) -> Result<(), PgError> {
    // On a conflict the WHERE sees the committed link, even one a
    // concurrent transaction committed after this statement's snapshot; any
    // other table it read would be seen as of that snapshot (an asset that
    // transaction created would look absent), so it reads only the link.
    let written = transaction
        .execute(
            "INSERT INTO asset_agents AS a (agent_id, asset_id, confidence, reasons, matched_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (agent_id) DO UPDATE SET asset_id = excluded.asset_id,
                 confidence = excluded.confidence, reasons = excluded.reasons,
                 matched_ms = excluded.matched_ms
             WHERE a.asset_id = excluded.asset_id OR a.asset_id = ANY($6)",
            &[
                &link.agent_id,
                &link.asset_id,
                &link.confidence,
                &link.reasons,
                &link.matched_ms,
                &known,
            ],
        )
        .await?;
    if written == 0 {
        return Err(PgError::Conflict(format!(
            "agent {} is already linked to another asset; asset {} not written",
            link.agent_id, link.asset_id
        )));
    }
    Ok(())
}

async fn insert_events(
    transaction: &impl GenericClient,
    asset_id: &str,
    events: &[AssetEventRow],
) -> Result<(), PgError> {
    if events.is_empty() {
        return Ok(());
    }
    let times: Vec<i64> = events.iter().map(|event| event.ts_ms).collect();
    let sources: Vec<&str> = events.iter().map(|event| event.source.as_str()).collect();
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
    let fields: Vec<Option<&str>> = events.iter().map(|event| event.field.as_deref()).collect();
    let befores: Vec<Option<&str>> = events.iter().map(|event| event.before.as_deref()).collect();
    let afters: Vec<Option<&str>> = events.iter().map(|event| event.after.as_deref()).collect();
    transaction
        .execute(
            "INSERT INTO asset_events (asset_id, ts_ms, source, kind, field, before, after)
             SELECT $1, ts_ms, source, kind, field, before, after
             FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[])
                  WITH ORDINALITY AS e (ts_ms, source, kind, field, before, after, position)
             ORDER BY position",
            &[
                &asset_id, &times, &sources, &kinds, &fields, &befores, &afters,
            ],
        )
        .await?;
    Ok(())
}
