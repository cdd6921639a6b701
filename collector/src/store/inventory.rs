//! Agent inventory in the store: the latest snapshot per agent, its package
//! list, and an event per change (the raw material of asset history).
//!
//! Updates arrive as full snapshots or diffs; both are applied inside the
//! writer's transaction, deduplicated by `(agent_id, epoch, seq)` like sample
//! batches. Package lists are stored once and changed by diffs, never copied.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskRecord {
    pub device: String,
    pub model: Option<String>,
    pub size_bytes: u64,
    pub filesystem: String,
    pub mount: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceRecord {
    pub name: String,
    pub mac: String,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
}

/// One inventory update as received; `(agent_id, epoch, seq)` is its idempotency key.
#[derive(Debug, Clone, Default)]
pub struct InventoryUpdate {
    pub agent_id: String,
    pub epoch: u64,
    pub seq: u64,
    pub received_ms: i64,
    /// Replace the stored snapshot (facts, disks, interfaces) instead of patching it.
    pub full: bool,
    pub facts_changed: BTreeMap<String, String>,
    pub facts_removed: Vec<String>,
    pub disks: Option<Vec<DiskRecord>>,
    pub interfaces: Option<Vec<InterfaceRecord>>,
    /// `packages_upserted` is the complete list.
    pub packages_replaced: bool,
    pub packages_upserted: BTreeMap<String, String>,
    pub packages_removed: Vec<String>,
    /// The agent's fingerprint of its package list after this update.
    pub packages_fingerprint: u64,
}

/// The stored inventory of one agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InventorySnapshot {
    pub facts: BTreeMap<String, String>,
    pub disks: Vec<DiskRecord>,
    pub interfaces: Vec<InterfaceRecord>,
    pub package_count: u64,
    pub packages_fingerprint: u64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InventoryEvent {
    /// Row id: newest-first lists page by "id below the last one shown".
    pub id: i64,
    pub ts_ms: i64,
    pub kind: String,
    pub subject: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Result of applying an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventoryApplied {
    /// False when the stored package list does not match the agent's
    /// fingerprint (a diff was lost); the agent resends a full list on its
    /// next session because the welcome carries the stored fingerprint.
    pub packages_in_sync: bool,
    pub events: usize,
}

pub(super) fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// Stored facts, disks JSON and interfaces JSON of one agent.
pub(super) type StoredInventory = (BTreeMap<String, String>, String, String);

fn stored(
    transaction: &Transaction<'_>,
    agent_id: &str,
) -> rusqlite::Result<Option<StoredInventory>> {
    transaction
        .query_row(
            "SELECT facts, disks, interfaces FROM inventory WHERE agent_id = ?1",
            [agent_id],
            |row| {
                let facts: String = row.get(0)?;
                Ok((
                    serde_json::from_str(&facts).unwrap_or_default(),
                    row.get(1)?,
                    row.get(2)?,
                ))
            },
        )
        .optional()
}

fn stored_packages(
    transaction: &Transaction<'_>,
    agent_id: &str,
) -> rusqlite::Result<BTreeMap<String, String>> {
    let mut statement =
        transaction.prepare_cached("SELECT name, version FROM packages WHERE agent_id = ?1")?;
    let rows = statement.query_map([agent_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

/// An inventory event before it is stored: kind, subject, before, after.
pub(super) type NewEvent = (&'static str, String, Option<String>, Option<String>);

/// What an update makes of the stored inventory: computed here for both
/// backends, which only read the stored state and write this back.
pub(super) struct InventoryDiff {
    pub(super) facts: BTreeMap<String, String>,
    pub(super) disks: String,
    pub(super) interfaces: String,
    /// Package names to delete, and (name, version) to write.
    pub(super) removals: Vec<String>,
    pub(super) upserts: Vec<(String, String)>,
    /// The package list once written, for its fingerprint.
    pub(super) packages: BTreeMap<String, String>,
    /// One per change, none for an agent's first inventory (its baseline).
    pub(super) events: Vec<NewEvent>,
}

/// Applies `update` to the stored facts/disks/interfaces (`None`: the
/// agent's first inventory) and package list.
pub(super) fn diff(
    update: &InventoryUpdate,
    previous: Option<StoredInventory>,
    old_packages: &BTreeMap<String, String>,
) -> InventoryDiff {
    // The first inventory of an agent is its baseline, not a list of changes.
    let record_events = previous.is_some();
    let (old_facts, old_disks, old_interfaces) =
        previous.unwrap_or_else(|| (BTreeMap::new(), "[]".into(), "[]".into()));
    let mut facts = if update.full {
        BTreeMap::new()
    } else {
        old_facts.clone()
    };
    for key in &update.facts_removed {
        facts.remove(key);
    }
    facts.extend(update.facts_changed.clone());
    let disks = update.disks.as_ref().map_or(old_disks.clone(), to_json);
    let interfaces = update
        .interfaces
        .as_ref()
        .map_or(old_interfaces.clone(), to_json);

    let removals: Vec<String> = if update.packages_replaced {
        old_packages
            .keys()
            .filter(|name| !update.packages_upserted.contains_key(*name))
            .cloned()
            .collect()
    } else {
        update
            .packages_removed
            .iter()
            .filter(|name| old_packages.contains_key(*name))
            .cloned()
            .collect()
    };
    let upserts: Vec<(String, String)> = update
        .packages_upserted
        .iter()
        .filter(|(name, version)| old_packages.get(*name) != Some(version))
        .map(|(name, version)| (name.clone(), version.clone()))
        .collect();
    let mut packages = old_packages.clone();
    for name in &removals {
        packages.remove(name);
    }
    for (name, version) in &upserts {
        packages.insert(name.clone(), version.clone());
    }

    let mut events: Vec<NewEvent> = Vec::new();
    if record_events {
        let keys: std::collections::BTreeSet<&String> =
            old_facts.keys().chain(facts.keys()).collect();
        for key in keys {
            let (before, after) = (old_facts.get(key), facts.get(key));
            // Counters that change every time are not news.
            if before != after && key != "boot_time" && key != "package_count" {
                events.push(("fact", key.clone(), before.cloned(), after.cloned()));
            }
        }
        if disks != old_disks {
            events.push((
                "disks",
                "disks".into(),
                Some(old_disks),
                Some(disks.clone()),
            ));
        }
        if interfaces != old_interfaces {
            events.push((
                "interfaces",
                "interfaces".into(),
                Some(old_interfaces),
                Some(interfaces.clone()),
            ));
        }
        for name in &removals {
            events.push((
                "package_removed",
                name.clone(),
                old_packages.get(name).cloned(),
                None,
            ));
        }
        for (name, version) in &upserts {
            let before = old_packages.get(name).cloned();
            let kind = if before.is_some() {
                "package_upgraded"
            } else {
                "package_installed"
            };
            events.push((kind, name.clone(), before, Some(version.clone())));
        }
    }
    InventoryDiff {
        facts,
        disks,
        interfaces,
        removals,
        upserts,
        packages,
        events,
    }
}

/// Applies `update` inside the writer's transaction (the caller already
/// checked it is not a duplicate) and records one event per change.
pub(super) fn apply(
    transaction: &Transaction<'_>,
    update: &InventoryUpdate,
) -> rusqlite::Result<InventoryApplied> {
    let now = update.received_ms;
    let previous = stored(transaction, &update.agent_id)?;
    let old_packages = stored_packages(transaction, &update.agent_id)?;
    let diff = diff(update, previous, &old_packages);
    {
        let mut delete =
            transaction.prepare_cached("DELETE FROM packages WHERE agent_id = ?1 AND name = ?2")?;
        for name in &diff.removals {
            delete.execute(params![update.agent_id, name])?;
        }
        let mut upsert = transaction.prepare_cached(
            "INSERT INTO packages (agent_id, name, version) VALUES (?1, ?2, ?3)
             ON CONFLICT (agent_id, name) DO UPDATE SET version = excluded.version",
        )?;
        for (name, version) in &diff.upserts {
            upsert.execute(params![update.agent_id, name, version])?;
        }
    }
    let fingerprint = steward_core::inventory::packages_fingerprint(&diff.packages);

    transaction.execute(
        "INSERT INTO inventory (agent_id, facts, disks, interfaces, packages_fingerprint, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (agent_id) DO UPDATE SET facts = ?2, disks = ?3, interfaces = ?4,
             packages_fingerprint = ?5, updated_ms = ?6",
        params![
            update.agent_id,
            to_json(&diff.facts),
            diff.disks,
            diff.interfaces,
            fingerprint as i64,
            now
        ],
    )?;
    let mut insert_event = transaction.prepare_cached(
        "INSERT INTO inventory_events (agent_id, ts_ms, kind, subject, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (kind, subject, before, after) in &diff.events {
        insert_event.execute(params![update.agent_id, now, kind, subject, before, after])?;
    }
    Ok(InventoryApplied {
        packages_in_sync: fingerprint == update.packages_fingerprint,
        events: diff.events.len(),
    })
}

pub(super) fn snapshot(
    connection: &rusqlite::Connection,
    agent_id: &str,
) -> rusqlite::Result<Option<InventorySnapshot>> {
    let row = connection
        .query_row(
            "SELECT facts, disks, interfaces, packages_fingerprint, updated_ms,
                    (SELECT count(*) FROM packages p WHERE p.agent_id = i.agent_id)
             FROM inventory i WHERE agent_id = ?1",
            [agent_id],
            |row| {
                let facts: String = row.get(0)?;
                let disks: String = row.get(1)?;
                let interfaces: String = row.get(2)?;
                Ok(InventorySnapshot {
                    facts: serde_json::from_str(&facts).unwrap_or_default(),
                    disks: serde_json::from_str(&disks).unwrap_or_default(),
                    interfaces: serde_json::from_str(&interfaces).unwrap_or_default(),
                    packages_fingerprint: row.get::<_, i64>(3)? as u64,
                    updated_ms: row.get(4)?,
                    package_count: row.get::<_, i64>(5)? as u64,
                })
            },
        )
        .optional()?;
    Ok(row)
}

pub(super) fn packages(
    connection: &rusqlite::Connection,
    agent_id: &str,
) -> rusqlite::Result<BTreeMap<String, String>> {
    let mut statement = connection
        .prepare("SELECT name, version FROM packages WHERE agent_id = ?1 ORDER BY name")?;
    let rows = statement.query_map([agent_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

/// Inventory events of `agent_ids`, newest first, below `before_id` when
/// given; `packages_only` keeps the `package_*` kinds.
pub(super) fn events(
    connection: &rusqlite::Connection,
    agent_ids: &[String],
    packages_only: bool,
    before_id: Option<i64>,
    limit: u32,
) -> rusqlite::Result<Vec<InventoryEvent>> {
    if agent_ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = vec!["?"; agent_ids.len()].join(", ");
    let mut statement = connection.prepare(&format!(
        "SELECT id, ts_ms, kind, subject, before, after FROM inventory_events
         WHERE agent_id IN ({placeholders})
           AND (? = 0 OR kind LIKE 'package\\_%' ESCAPE '\\')
           AND (? IS NULL OR id < ?)
         ORDER BY id DESC LIMIT ?"
    ))?;
    let mut values: Vec<rusqlite::types::Value> = agent_ids
        .iter()
        .map(|id| rusqlite::types::Value::Text(id.clone()))
        .collect();
    let before = before_id.map_or(
        rusqlite::types::Value::Null,
        rusqlite::types::Value::Integer,
    );
    values.push(rusqlite::types::Value::Integer(i64::from(packages_only)));
    values.push(before.clone());
    values.push(before);
    values.push(rusqlite::types::Value::Integer(i64::from(limit)));
    let rows = statement.query_map(rusqlite::params_from_iter(values), |row| {
        Ok(InventoryEvent {
            id: row.get(0)?,
            ts_ms: row.get(1)?,
            kind: row.get(2)?,
            subject: row.get(3)?,
            before: row.get(4)?,
            after: row.get(5)?,
        })
    })?;
    rows.collect()
}

pub(super) fn fingerprint(
    connection: &rusqlite::Connection,
    agent_id: &str,
) -> rusqlite::Result<u64> {
    Ok(connection
        .query_row(
            "SELECT packages_fingerprint FROM inventory WHERE agent_id = ?1",
            [agent_id],
            |row| row.get::<_, i64>(0),
        )
        .optional()?
        .map_or(0, |value| value as u64))
}
