//! Asset persistence. Records are stored as JSON written by the `assets`
//! module; this file only reads and writes rows and history.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

/// One stored asset: its id, JSON record and the columns queries use.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetRow {
    pub id: String,
    pub record: String,
    pub status: String,
    pub hostname: String,
    pub updated_ms: i64,
}

/// One history entry of an asset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssetEventRow {
    pub ts_ms: i64,
    pub source: String,
    pub kind: String,
    pub field: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The link between an agent and its asset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssetLink {
    pub agent_id: String,
    pub asset_id: String,
    pub confidence: f64,
    pub reasons: String,
    pub matched_ms: i64,
}

/// Everything one change to an asset writes, in one transaction.
#[derive(Debug, Clone)]
pub struct AssetWrite {
    pub row: AssetRow,
    pub events: Vec<AssetEventRow>,
    /// Agents to (re)link to this asset.
    pub links: Vec<AssetLink>,
    /// Assets merged into this one and removed.
    pub removed: Vec<String>,
}

fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AssetRow> {
    Ok(AssetRow {
        id: row.get(0)?,
        record: row.get(1)?,
        status: row.get(2)?,
        hostname: row.get(3)?,
        updated_ms: row.get(4)?,
    })
}

pub(super) fn write(transaction: &Transaction<'_>, writes: &[AssetWrite]) -> rusqlite::Result<()> {
    for write in writes {
        for removed in &write.removed {
            transaction.execute("DELETE FROM assets WHERE id = ?1", [removed])?;
            transaction.execute(
                "UPDATE asset_events SET asset_id = ?2 WHERE asset_id = ?1",
                params![removed, write.row.id],
            )?;
        }
        transaction.execute(
            "INSERT INTO assets (id, record, status, hostname, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET record = ?2, status = ?3, hostname = ?4, updated_ms = ?5",
            params![write.row.id, write.row.record, write.row.status, write.row.hostname, write.row.updated_ms],
        )?;
        for link in &write.links {
            transaction.execute(
                "INSERT INTO asset_agents (agent_id, asset_id, confidence, reasons, matched_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (agent_id) DO UPDATE SET asset_id = ?2, confidence = ?3, reasons = ?4, matched_ms = ?5",
                params![link.agent_id, link.asset_id, link.confidence, link.reasons, link.matched_ms],
            )?;
        }
        let mut insert = transaction.prepare_cached(
            "INSERT INTO asset_events (asset_id, ts_ms, source, kind, field, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for event in &write.events {
            insert.execute(params![
                write.row.id,
                event.ts_ms,
                event.source,
                event.kind,
                event.field,
                event.before,
                event.after
            ])?;
        }
    }
    Ok(())
}

pub(super) fn all(connection: &Connection) -> rusqlite::Result<Vec<AssetRow>> {
    let mut statement = connection.prepare(
        "SELECT id, record, status, hostname, updated_ms FROM assets ORDER BY hostname, id",
    )?;
    let rows = statement.query_map([], row)?;
    rows.collect()
}

pub(super) fn get(connection: &Connection, id: &str) -> rusqlite::Result<Option<AssetRow>> {
    connection
        .query_row(
            "SELECT id, record, status, hostname, updated_ms FROM assets WHERE id = ?1",
            [id],
            row,
        )
        .optional()
}

pub(super) fn links(connection: &Connection) -> rusqlite::Result<Vec<AssetLink>> {
    let mut statement = connection
        .prepare("SELECT agent_id, asset_id, confidence, reasons, matched_ms FROM asset_agents")?;
    let rows = statement.query_map([], |row| {
        Ok(AssetLink {
            agent_id: row.get(0)?,
            asset_id: row.get(1)?,
            confidence: row.get(2)?,
            reasons: row.get(3)?,
            matched_ms: row.get(4)?,
        })
    })?;
    rows.collect()
}

pub(super) fn link(connection: &Connection, agent_id: &str) -> rusqlite::Result<Option<AssetLink>> {
    connection
        .query_row(
            "SELECT agent_id, asset_id, confidence, reasons, matched_ms FROM asset_agents WHERE agent_id = ?1",
            [agent_id],
            |row| {
                Ok(AssetLink {
                    agent_id: row.get(0)?,
                    asset_id: row.get(1)?,
                    confidence: row.get(2)?,
                    reasons: row.get(3)?,
                    matched_ms: row.get(4)?,
                })
            },
        )
        .optional()
}

pub(super) fn events(
    connection: &Connection,
    id: &str,
    before_id: Option<i64>,
    limit: u32,
) -> rusqlite::Result<Vec<(i64, AssetEventRow)>> {
    let mut statement = connection.prepare(
        "SELECT id, ts_ms, source, kind, field, before, after FROM asset_events
         WHERE asset_id = ?1 AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![id, limit, before_id], |row| {
        Ok((
            row.get(0)?,
            AssetEventRow {
                ts_ms: row.get(1)?,
                source: row.get(2)?,
                kind: row.get(3)?,
                field: row.get(4)?,
                before: row.get(5)?,
                after: row.get(6)?,
            },
        ))
    })?;
    rows.collect()
}
