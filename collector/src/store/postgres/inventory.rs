//! Agent inventory on PostgreSQL: the latest snapshot per agent, its package
//! list, and an event per change (as `store/inventory.rs`, whose meaning
//! this follows).
//!
//! An update's key `(agent, epoch, seq)` is a row of `batches`, inserted
//! first with `ON CONFLICT DO NOTHING`: a resend, to this collector or to
//! another after a failover, finds the row and is a duplicate; two
//! collectors committing the same update at once queue on that key and the
//! second sees the first's row. Updates of one agent with different keys
//! (a failover while one is in flight) take a per-agent transaction lock
//! before reading the stored state, so each diff patches the list the
//! previous one left, never a stale copy of it.

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use super::super::inventory::{NewEvent, StoredInventory, diff, to_json};
use super::super::{
    InventoryApplied, InventoryEvent, InventoryOutcome, InventorySnapshot, InventoryUpdate,
};
use super::{PgError, PgStore, parse_column};

/// First key of the per-agent inventory lock (`pg_advisory_xact_lock(int, int)`,
/// a key space apart from the migration lock's single bigint).
pub(super) const INVENTORY_LOCK: i32 = 0x5354_0005;

fn parse_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, PgError> {
    parse_column(column, text, |text| serde_json::from_str::<T>(text))
}

impl PgStore {
    /// Applies an inventory update once cluster-wide; a resend is a duplicate.
    pub async fn commit_inventory(
        &self,
        update: InventoryUpdate,
    ) -> Result<InventoryOutcome, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let claimed = transaction
            .execute(
                "INSERT INTO batches (agent_id, epoch, seq, received_ms, sample_count, collector)
                 VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT DO NOTHING",
                &[
                    &update.agent_id,
                    &(update.epoch as i64),
                    &(update.seq as i64),
                    &update.received_ms,
                    &self.collector,
                ],
            )
            .await?;
        if claimed == 0 {
            return Ok(InventoryOutcome::Duplicate);
        }
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&INVENTORY_LOCK, &update.agent_id],
            )
            .await?;
        let applied = apply(&*transaction, &update).await?;
        transaction.commit().await?;
        Ok(InventoryOutcome::Stored(applied))
    }

    pub async fn inventory(&self, agent_id: &str) -> Result<Option<InventorySnapshot>, PgError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT facts, disks, interfaces, packages_fingerprint, updated_ms,
                        (SELECT count(*) FROM packages p WHERE p.agent_id = i.agent_id)
                 FROM inventory i WHERE agent_id = $1",
                &[&agent_id],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let fingerprint: i64 = row.get(3);
        let package_count: i64 = row.get(5);
        Ok(Some(InventorySnapshot {
            facts: parse_json("inventory.facts", row.get(0))?,
            disks: parse_json("inventory.disks", row.get(1))?,
            interfaces: parse_json("inventory.interfaces", row.get(2))?,
            package_count: package_count as u64,
            packages_fingerprint: fingerprint as u64,
            updated_ms: row.get(4),
        }))
    }

    /// The stored package list, by name.
    pub async fn packages(&self, agent_id: &str) -> Result<BTreeMap<String, String>, PgError> {
        let client = self.client().await?;
        stored_packages(&**client, agent_id).await
    }

    /// Inventory events of `agent_ids`, newest first, below `before_id` when
    /// given; `packages_only` keeps the `package_*` kinds.
    pub async fn inventory_events(
        &self,
        agent_ids: Vec<String>,
        packages_only: bool,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<InventoryEvent>, PgError> {
        if agent_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, ts_ms, kind, subject, before, after FROM inventory_events
                 WHERE agent_id = ANY($1)
                   AND (NOT $2 OR starts_with(kind, 'package_'))
                   AND ($3::BIGINT IS NULL OR id < $3)
                 ORDER BY id DESC LIMIT $4",
                &[&agent_ids, &packages_only, &before_id, &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| InventoryEvent {
                id: row.get(0),
                ts_ms: row.get(1),
                kind: row.get(2),
                subject: row.get(3),
                before: row.get(4),
                after: row.get(5),
            })
            .collect())
    }

    /// Fingerprint of the stored package list (0: none), sent in the welcome.
    pub async fn packages_fingerprint(&self, agent_id: &str) -> Result<u64, PgError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT packages_fingerprint FROM inventory WHERE agent_id = $1",
                &[&agent_id],
            )
            .await?;
        Ok(row.map_or(0, |row| row.get::<_, i64>(0) as u64))
    }
}

async fn stored(
    client: &impl GenericClient,
    agent_id: &str,
) -> Result<Option<StoredInventory>, PgError> {
    let row = client
        .query_opt(
            "SELECT facts, disks, interfaces FROM inventory WHERE agent_id = $1",
            &[&agent_id],
        )
        .await?;
    row.map(|row| {
        Ok((
            parse_json("inventory.facts", row.get(0))?,
            row.get(1),
            row.get(2),
        ))
    })
    .transpose()
}

async fn stored_packages(
    client: &impl GenericClient,
    agent_id: &str,
) -> Result<BTreeMap<String, String>, PgError> {
    let rows = client
        .query(
            "SELECT name, version FROM packages WHERE agent_id = $1",
            &[&agent_id],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Applies `update` (the caller claimed its key and holds the agent's lock)
/// and records one event per change, as SQLite's `inventory::apply` (the
/// same `inventory::diff` decides both).
async fn apply(
    transaction: &impl GenericClient,
    update: &InventoryUpdate,
) -> Result<InventoryApplied, PgError> {
    let previous = stored(transaction, &update.agent_id).await?;
    let old_packages = stored_packages(transaction, &update.agent_id).await?;
    let diff = diff(update, previous, &old_packages);
    write_packages(transaction, &update.agent_id, &diff.removals, &diff.upserts).await?;
    let fingerprint = steward_core::inventory::packages_fingerprint(&diff.packages);

    transaction
        .execute(
            "INSERT INTO inventory (agent_id, facts, disks, interfaces, packages_fingerprint, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (agent_id) DO UPDATE SET facts = excluded.facts, disks = excluded.disks,
                 interfaces = excluded.interfaces,
                 packages_fingerprint = excluded.packages_fingerprint,
                 updated_ms = excluded.updated_ms",
            &[
                &update.agent_id,
                &to_json(&diff.facts),
                &diff.disks,
                &diff.interfaces,
                &(fingerprint as i64),
                &update.received_ms,
            ],
        )
        .await?;
    insert_events(
        transaction,
        &update.agent_id,
        update.received_ms,
        &diff.events,
    )
    .await?;
    Ok(InventoryApplied {
        packages_in_sync: fingerprint == update.packages_fingerprint,
        events: diff.events.len(),
    })
}

/// One statement each for removals and upserts: a full list can hold
/// thousands of packages.
async fn write_packages(
    transaction: &impl GenericClient,
    agent_id: &str,
    removals: &[String],
    upserts: &[(String, String)],
) -> Result<(), PgError> {
    if !removals.is_empty() {
        transaction
            .execute(
                "DELETE FROM packages WHERE agent_id = $1 AND name = ANY($2)",
                &[&agent_id, &removals],
            )
            .await?;
    }
    if !upserts.is_empty() {
        let (names, versions): (Vec<&str>, Vec<&str>) = upserts
            .iter()
            .map(|(name, version)| (name.as_str(), version.as_str()))
            .unzip();
        transaction
            .execute(
                "INSERT INTO packages (agent_id, name, version)
                 SELECT $1, name, version FROM unnest($2::TEXT[], $3::TEXT[]) AS u (name, version)
                 ON CONFLICT (agent_id, name) DO UPDATE SET version = excluded.version",
                &[&agent_id, &names, &versions],
            )
            .await?;
    }
    Ok(())
}

/// Inserts `events` in order (ids ascend as SQLite's rowids would).
async fn insert_events(
    transaction: &impl GenericClient,
    agent_id: &str,
    ts_ms: i64,
    events: &[NewEvent],
) -> Result<(), PgError> {
    if events.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = events.iter().map(|event| event.0).collect();
    let subjects: Vec<&str> = events.iter().map(|event| event.1.as_str()).collect();
    let befores: Vec<Option<&str>> = events.iter().map(|event| event.2.as_deref()).collect();
    let afters: Vec<Option<&str>> = events.iter().map(|event| event.3.as_deref()).collect();
    transaction
        .execute(
            "INSERT INTO inventory_events (agent_id, ts_ms, kind, subject, before, after)
             SELECT $1, $2, kind, subject, before, after
             FROM unnest($3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])
                  WITH ORDINALITY AS e (kind, subject, before, after, position)
             ORDER BY position",
            &[&agent_id, &ts_ms, &kinds, &subjects, &befores, &afters],
        )
        .await?;
    Ok(())
}
