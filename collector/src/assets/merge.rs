//! Operator-driven [`merge`] and [`split`] of asset records, for when
//! matching was ambiguous or wrong. Pure: they return the resulting records
//! and their history events; the caller stores them in one transaction.

use super::history::{self, AssetEvent, EventKind};
use super::lifecycle::{Actor, Lifecycle};
use super::model::Asset;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    #[error("cannot merge or split an asset with itself ({0})")]
    SameAsset(String),
    #[error("asset {0} is disposed; disposed records are not changed")]
    Disposed(String),
    #[error("agent {agent_id} is not attached to asset {asset_id}")]
    NotAttached { asset_id: String, agent_id: String },
    #[error("agent {agent_id} is the only agent of asset {asset_id}; there is nothing to split")]
    OnlyAgent { asset_id: String, agent_id: String },
}

/// The result of [`merge`].
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The kept record, with `keep`'s id.
    pub asset: Asset,
    /// The absorbed record's id; the caller deletes it (its history can be
    /// re-pointed at `asset.id`).
    pub removed_id: String,
    /// History of `asset`: a `merged` event, then one per changed field.
    pub events: Vec<AssetEvent>,
}

/// Merges `absorbed` into `keep`: one machine recorded twice.
///
/// - Agents: all of both, the more recently seen record's current agent first.
/// - Inventory fields: from the record seen more recently, falling back to
///   the other where it knows nothing.
/// - Operator fields: `keep`'s, falling back to `absorbed`'s; tags are united.
/// - Times: earliest first-seen, latest last-seen.
/// - Status: `keep`'s, except that when `absorbed` is `active` and `keep` is
///   `stale`, `missing` or `in_stock` the machine is evidently in service, so
///   the result is `active` (the usual case: an operator merges the old record
///   of a reinstalled machine into the one its new agent created).
pub fn merge(keep: &Asset, absorbed: &Asset, ts_ms: i64) -> Result<Merged, MergeError> {
    if keep.id == absorbed.id {
        return Err(MergeError::SameAsset(keep.id.clone()));
    }
    for asset in [keep, absorbed] {
        if asset.status == Lifecycle::Disposed {
            return Err(MergeError::Disposed(asset.id.clone()));
        }
    }
    let absorbed_is_newer = absorbed.last_seen_ms > keep.last_seen_ms;
    let mut merged = keep.clone();
    let (newer, older) = if absorbed_is_newer {
        (absorbed, keep)
    } else {
        (keep, absorbed)
    };
    merged.take_inventory_from(older);
    merged.take_inventory_from(newer);
    merged.agent_ids = Vec::new();
    for agent in newer.agent_ids.iter().chain(&older.agent_ids) {
        if !merged.agent_ids.contains(agent) {
            merged.agent_ids.push(agent.clone());
        }
    }
    merged.first_seen_ms = keep.first_seen_ms.min(absorbed.first_seen_ms);
    merged.last_seen_ms = keep.last_seen_ms.max(absorbed.last_seen_ms);
    if absorbed.status == Lifecycle::Active
        && matches!(
            keep.status,
            Lifecycle::Stale | Lifecycle::Missing | Lifecycle::InStock
        )
    {
        merged.status = Lifecycle::Active;
    }
    fn fill(mine: &mut Option<String>, theirs: &Option<String>) {
        if mine.is_none() {
            mine.clone_from(theirs);
        }
    }
    fill(&mut merged.owner, &absorbed.owner);
    fill(&mut merged.location, &absorbed.location);
    fill(&mut merged.role, &absorbed.role);
    fill(&mut merged.criticality, &absorbed.criticality);
    fill(&mut merged.purchase_date, &absorbed.purchase_date);
    fill(&mut merged.warranty_end, &absorbed.warranty_end);
    fill(&mut merged.notes, &absorbed.notes);
    merged.tags.extend(absorbed.tags.iter().cloned());

    let mut events = vec![AssetEvent {
        ts_ms,
        source: Actor::Operator,
        kind: EventKind::Merged,
        field: "id".into(),
        before: Some(absorbed.id.clone()),
        after: Some(keep.id.clone()),
    }];
    events.extend(history::diff_assets(keep, &merged, Actor::Operator, ts_ms));
    Ok(Merged {
        asset: merged,
        removed_id: absorbed.id.clone(),
        events,
    })
}

/// The result of [`split`].
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The original record without the agent.
    pub remaining: Asset,
    pub remaining_events: Vec<AssetEvent>,
    /// A fresh `active` record holding only the agent.
    pub split_off: Asset,
    pub split_off_events: Vec<AssetEvent>,
}

/// Moves `agent_id` out of `asset` into a new record `new_id`: two machines
/// were wrongly recorded as one.
///
/// The new record starts without facts, first and last seen at `ts_ms`; the
/// caller then applies the agent's latest stored inventory
/// (`Asset::apply_inventory`) and last-seen time (`Asset::mark_seen`). The
/// remaining record keeps its facts until its own agent next reports.
pub fn split(asset: &Asset, agent_id: &str, new_id: &str, ts_ms: i64) -> Result<Split, MergeError> {
    if asset.id == new_id {
        return Err(MergeError::SameAsset(asset.id.clone()));
    }
    if asset.status == Lifecycle::Disposed {
        return Err(MergeError::Disposed(asset.id.clone()));
    }
    if !asset.agent_ids.iter().any(|agent| agent == agent_id) {
        return Err(MergeError::NotAttached {
            asset_id: asset.id.clone(),
            agent_id: agent_id.into(),
        });
    }
    if asset.agent_ids.len() == 1 {
        return Err(MergeError::OnlyAgent {
            asset_id: asset.id.clone(),
            agent_id: agent_id.into(),
        });
    }
    let mut remaining = asset.clone();
    remaining.agent_ids.retain(|agent| agent != agent_id);
    let split_off = Asset::discovered(new_id, agent_id, ts_ms);

    let split_event = |field: &str, before: &str, after: &str| AssetEvent {
        ts_ms,
        source: Actor::Operator,
        kind: EventKind::Split,
        field: field.into(),
        before: Some(before.into()),
        after: Some(after.into()),
    };
    let mut remaining_events = vec![split_event("agent_ids", agent_id, new_id)];
    remaining_events.extend(history::diff_assets(
        asset,
        &remaining,
        Actor::Operator,
        ts_ms,
    ));
    let split_off_events = vec![
        history::created(&split_off, Actor::Operator, ts_ms),
        split_event("id", &asset.id, new_id),
    ];
    Ok(Split {
        remaining,
        remaining_events,
        split_off,
        split_off_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::model::tests::server;

    /// The old record of a reinstalled server (operator data, now stale)
    /// and the record its new agent created.
    fn reinstalled() -> (Asset, Asset) {
        let mut old = server("asset-old", "agent-old");
        old.owner = Some("team-web".into());
        old.tags.insert("pci".into());
        old.status = Lifecycle::Stale;
        old.first_seen_ms = 100;
        old.last_seen_ms = 1_000;
        let mut new = server("asset-new", "agent-new");
        new.kernel = Some("6.1.0-21-amd64".into());
        new.tags.insert("web".into());
        new.location = Some("dc1".into());
        new.first_seen_ms = 5_000;
        new.last_seen_ms = 9_000;
        (old, new)
    }

    #[test]
    fn merge_keeps_operator_data_and_takes_newer_facts() {
        let (old, new) = reinstalled();
        let merged = merge(&old, &new, 10_000).unwrap();
        let asset = &merged.asset;
        assert_eq!(asset.id, "asset-old");
        assert_eq!(merged.removed_id, "asset-new");
        assert_eq!(asset.agent_ids, ["agent-new", "agent-old"]);
        assert_eq!(asset.kernel.as_deref(), Some("6.1.0-21-amd64"));
        assert_eq!(asset.owner.as_deref(), Some("team-web"));
        assert_eq!(asset.location.as_deref(), Some("dc1"));
        assert_eq!(asset.tags.iter().collect::<Vec<_>>(), ["pci", "web"]);
        assert_eq!((asset.first_seen_ms, asset.last_seen_ms), (100, 9_000));
        assert_eq!(asset.status, Lifecycle::Active);

        let fields: Vec<_> = merged
            .events
            .iter()
            .map(|e| (e.kind, e.field.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                (EventKind::Merged, "id"),
                (EventKind::Identity, "agent_ids"),
                (EventKind::Software, "kernel"),
                (EventKind::Status, "status"),
                (EventKind::Edited, "location"),
                (EventKind::Edited, "tags"),
            ]
        );
        assert!(
            merged
                .events
                .iter()
                .all(|e| e.source == Actor::Operator && e.ts_ms == 10_000)
        );
    }

    #[test]
    fn merge_refuses_itself_and_disposed_records() {
        let (old, mut new) = reinstalled();
        assert_eq!(
            merge(&old, &old, 0),
            Err(MergeError::SameAsset("asset-old".into()))
        );
        new.status = Lifecycle::Disposed;
        assert_eq!(
            merge(&old, &new, 0),
            Err(MergeError::Disposed("asset-new".into()))
        );
    }

    #[test]
    fn split_moves_one_agent_to_a_new_record() {
        let (old, new) = reinstalled();
        let merged = merge(&old, &new, 10_000).unwrap().asset;
        let split = split(&merged, "agent-new", "asset-2", 20_000).unwrap();
        assert_eq!(split.remaining.agent_ids, ["agent-old"]);
        assert_eq!(split.split_off.agent_ids, ["agent-new"]);
        assert_eq!(split.split_off.status, Lifecycle::Active);
        assert_eq!(split.remaining_events[0].kind, EventKind::Split);
        assert_eq!(split.remaining_events[1].field, "agent_ids");
        assert_eq!(split.split_off_events[0].kind, EventKind::Created);
        assert_eq!(
            split.split_off_events[1].before.as_deref(),
            Some("asset-old")
        );
    }

    #[test]
    fn split_refuses_what_it_cannot_do() {
        let (old, _) = reinstalled();
        assert!(matches!(
            split(&old, "agent-x", "asset-2", 0),
            Err(MergeError::NotAttached { .. })
        ));
        assert!(matches!(
            split(&old, "agent-old", "asset-2", 0),
            Err(MergeError::OnlyAgent { .. })
        ));
        assert!(matches!(
            split(&old, "agent-old", "asset-old", 0),
            Err(MergeError::SameAsset(_))
        ));
    }
}
