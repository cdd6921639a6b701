//! The asset task: the one place that runs the pure asset logic against the
//! store. Inventory commits and operator edits arrive over a channel; a sweep
//! moves silent assets to `stale`/`missing`, keeps patch state current, and
//! feeds compliance figures to the rules engine as `asset.*` samples.
//!
//! Everything else in `assets` is pure; this file is where it meets I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use steward_core::Clock;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::history::{self, AssetEvent};
use super::identity::{Identifiers, KnownAsset, Match, Observed, match_asset};
use super::lifecycle::{Actor, Lifecycle, LifecycleError, automatic_status, change_status};
use super::{
    Asset, AssetEdit, AssetPolicy, Disposal, EditError, apply_edit, compliance_samples, diff_assets,
};
use crate::incidents::{COLLECTOR_DEAD_AFTER, IncidentHandle, RulesInput, Suppression};
use crate::store::{AssetEventRow, AssetLink, AssetRow, AssetWrite, Labels, Store, StoreError};

/// Which agents must not page, from the asset records: agents of retired or
/// disposed assets, and of assets tagged `expected_offline`.
pub fn suppression_of<'a>(assets: impl Iterator<Item = &'a Asset>) -> Suppression {
    let mut suppression = Suppression::default();
    for asset in assets {
        if !asset.tags.is_empty() {
            for agent_id in &asset.agent_ids {
                suppression
                    .tags
                    .insert(agent_id.clone(), asset.tags.clone());
            }
        }
        if matches!(asset.status, Lifecycle::Retired | Lifecycle::Disposed) {
            suppression.retired.extend(asset.agent_ids.iter().cloned());
        }
        if asset.expected_offline() {
            suppression
                .expected_offline
                .extend(asset.agent_ids.iter().cloned());
        }
    }
    suppression
}

/// Reads the suppression from stored assets; done before the incidents task
/// starts, so its first evaluation already honours it.
pub async fn load_suppression(store: &Store) -> Result<Suppression, StoreError> {
    let assets: Vec<Asset> = store
        .assets()
        .await?
        .into_iter()
        .filter_map(|row| serde_json::from_str(&row.record).ok())
        .collect();
    Ok(suppression_of(assets.iter()))
}

/// An operator's change to one asset.
#[derive(Debug)]
pub struct OperatorChange {
    pub edit: AssetEdit,
    pub status: Option<Lifecycle>,
    pub disposal: Option<Disposal>,
    pub by: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssetChangeError {
    #[error("no such asset")]
    NotFound,
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Merge(#[from] super::MergeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the asset service is not running")]
    Stopped,
}

/// An explicit merge or split, decided by an operator.
#[derive(Debug)]
pub enum Regroup {
    /// Fold asset `from` into the asset named in the request (one machine recorded twice).
    Merge { from: String },
    /// Move `agent_id` out of the asset into a new one (two machines recorded as one).
    Split { agent_id: String },
}

enum AssetInput {
    /// An agent's identity changed (enrolled with tags, revoked).
    Identity {
        change: IdentityChange,
        reply: oneshot::Sender<bool>,
    },
    Inventory {
        agent_id: String,
        now_ms: i64,
    },
    Patch {
        agent_id: String,
        samples: Vec<(String, f64)>,
        now_ms: i64,
    },
    Change {
        id: String,
        change: Box<OperatorChange>,
        reply: oneshot::Sender<Result<Asset, AssetChangeError>>,
    },
    Regroup {
        id: String,
        regroup: Regroup,
        by: String,
        reply: oneshot::Sender<Result<Vec<Asset>, AssetChangeError>>,
    },
}

/// An enrollment or revocation to record on the agent's asset.
#[derive(Debug, Clone)]
pub struct IdentityChange {
    pub agent_id: String,
    pub ts_ms: i64,
    /// Tags to add (`key:value`, from the enrollment token).
    pub tags: Vec<String>,
    /// History text, e.g. "certificate revoked by alice at ...".
    pub detail: String,
}

/// Cloneable access for ingest and the API.
#[derive(Clone)]
pub struct AssetHandle {
    inputs: mpsc::Sender<AssetInput>,
}

impl std::fmt::Debug for AssetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AssetHandle { .. }")
    }
}

impl AssetHandle {
    /// Records `change` on the agent's asset. False when the agent has no
    /// asset yet (it appears with the first inventory): try again later.
    pub async fn identity_changed(&self, change: IdentityChange) -> bool {
        let (reply, response) = oneshot::channel();
        if self
            .inputs
            .send(AssetInput::Identity { change, reply })
            .await
            .is_err()
        {
            return false;
        }
        response.await.unwrap_or(false)
    }

    /// An inventory update for `agent_id` has committed.
    pub async fn inventory_committed(&self, agent_id: String, now_ms: i64) {
        let _ = self
            .inputs
            .send(AssetInput::Inventory { agent_id, now_ms })
            .await;
    }

    /// `patch.*` samples of a committed batch.
    pub async fn patch_committed(
        &self,
        agent_id: String,
        samples: Vec<(String, f64)>,
        now_ms: i64,
    ) {
        let _ = self
            .inputs
            .send(AssetInput::Patch {
                agent_id,
                samples,
                now_ms,
            })
            .await;
    }

    pub async fn change(
        &self,
        id: String,
        change: OperatorChange,
    ) -> Result<Asset, AssetChangeError> {
        let (reply, response) = oneshot::channel();
        self.inputs
            .send(AssetInput::Change {
                id,
                change: Box::new(change),
                reply,
            })
            .await
            .map_err(|_| AssetChangeError::Stopped)?;
        response.await.map_err(|_| AssetChangeError::Stopped)?
    }
}

impl AssetHandle {
    /// Merges or splits; returns the resulting assets (kept one first).
    pub async fn regroup(
        &self,
        id: String,
        regroup: Regroup,
        by: String,
    ) -> Result<Vec<Asset>, AssetChangeError> {
        let (reply, response) = oneshot::channel();
        self.inputs
            .send(AssetInput::Regroup {
                id,
                regroup,
                by,
                reply,
            })
            .await
            .map_err(|_| AssetChangeError::Stopped)?;
        response.await.map_err(|_| AssetChangeError::Stopped)?
    }
}

fn text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn event_row(event: &AssetEvent) -> AssetEventRow {
    AssetEventRow {
        ts_ms: event.ts_ms,
        source: event.source.as_str().to_string(),
        kind: text(&event.kind),
        field: Some(event.field.clone()),
        before: event.before.clone(),
        after: event.after.clone(),
    }
}

fn asset_row(asset: &Asset, now_ms: i64) -> AssetRow {
    AssetRow {
        id: asset.id.clone(),
        record: serde_json::to_string(asset).unwrap_or_else(|_| "{}".into()),
        status: asset.status.as_str().to_string(),
        hostname: asset.hostname.clone().unwrap_or_default(),
        updated_ms: now_ms,
    }
}

/// With several collectors on one database, how old this collector's copy
/// of the asset records may get before it reads them again (another
/// collector writes the assets of the agents streaming to it).
const CLUSTER_RELOAD_EVERY: Duration = Duration::from_secs(30);

/// Every asset record, and which asset each agent belongs to.
async fn load_assets(
    store: &Store,
) -> Result<(BTreeMap<String, Asset>, HashMap<String, String>), StoreError> {
    let mut assets = BTreeMap::new();
    for row in store.assets().await? {
        match serde_json::from_str::<Asset>(&row.record) {
            Ok(asset) => {
                assets.insert(asset.id.clone(), asset);
            }
            Err(error) => {
                tracing::error!(message = "Unreadable asset record; skipping it.", id = %row.id, %error)
            }
        }
    }
    let by_agent = store
        .asset_links()
        .await?
        .into_iter()
        .map(|link| (link.agent_id, link.asset_id))
        .collect();
    Ok((assets, by_agent))
}

/// Starts the asset task; loads every asset into memory first.
pub async fn start(
    store: Arc<Store>,
    policy: AssetPolicy,
    sweep_every: Duration,
    incidents: IncidentHandle,
    suppression: Suppression,
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<(AssetHandle, tokio::task::JoinHandle<()>), StoreError> {
    let (assets, by_agent) = load_assets(&store).await?;
    let (inputs, receiver) = mpsc::channel(256);
    let handle = AssetHandle { inputs };
    let cluster = store.cluster_instance().map(|instance| ClusterAssets {
        instance: instance.to_string(),
        loaded_ms: clock.now_ms(),
    });
    let mut service = AssetService {
        cluster,
        store,
        policy,
        assets,
        by_agent,
        incidents,
        suppression,
        clock,
    };
    service.refresh_suppression().await;
    tracing::info!(message = "Assets loaded.", assets = service.assets.len());
    let task = tokio::spawn(service.run(receiver, sweep_every, shutdown));
    Ok((handle, task))
}

struct AssetService {
    store: Arc<Store>,
    policy: AssetPolicy,
    assets: BTreeMap<String, Asset>,
    /// agent id → asset id.
    by_agent: HashMap<String, String>,
    incidents: IncidentHandle,
    /// What the incidents task was last told.
    suppression: Suppression,
    clock: Clock,
    /// `Some` when collectors share a PostgreSQL database.
    cluster: Option<ClusterAssets>,
}

/// This collector among several: its name, and when it last read the assets.
struct ClusterAssets {
    instance: String,
    loaded_ms: i64,
}

impl AssetService {
    /// Several collectors: reads the asset records again when the copy is
    /// older than [`CLUSTER_RELOAD_EVERY`], or at once (`force`).
    async fn reload_shared(&mut self, force: bool) {
        let now_ms = self.clock.now_ms();
        let Some(cluster) = &self.cluster else {
            return;
        };
        if !force && now_ms - cluster.loaded_ms < CLUSTER_RELOAD_EVERY.as_millis() as i64 {
            return;
        }
        match load_assets(&self.store).await {
            Ok((assets, by_agent)) => {
                self.assets = assets;
                self.by_agent = by_agent;
                if let Some(cluster) = &mut self.cluster {
                    cluster.loaded_ms = now_ms;
                }
                self.refresh_suppression().await;
            }
            Err(error) => tracing::warn!(message = "Cannot re-read the asset records.", %error),
        }
    }

    /// Several collectors: the assets this collector sweeps. An asset
    /// belongs to the collector its first agent streams to; assets whose
    /// agent's collector is gone, and assets without agents, to the live
    /// collector first by name. `None`: every asset (one collector).
    async fn swept_here(&self) -> Option<std::collections::HashSet<String>> {
        let cluster = self.cluster.as_ref()?;
        let (owners, live) = match tokio::try_join!(
            self.store.agent_owners(COLLECTOR_DEAD_AFTER),
            self.store.live_collectors(COLLECTOR_DEAD_AFTER)
        ) {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(message = "Cannot read which collector sweeps which asset.", %error);
                return Some(Default::default());
            }
        };
        let leader = live.first().is_some_and(|name| *name == cluster.instance);
        let owner_of: HashMap<&str, Option<&str>> = owners
            .iter()
            .map(|owner| {
                let alive = owner.collector.as_deref().filter(|_| owner.collector_alive);
                (owner.agent_id.as_str(), alive)
            })
            .collect();
        Some(
            self.assets
                .values()
                .filter(|asset| {
                    match asset
                        .agent_ids
                        .first()
                        .and_then(|agent| owner_of.get(agent.as_str()).copied().flatten())
                    {
                        Some(owner) => owner == cluster.instance,
                        None => leader,
                    }
                })
                .map(|asset| asset.id.clone())
                .collect(),
        )
    }

    async fn run(
        mut self,
        mut inputs: mpsc::Receiver<AssetInput>,
        sweep_every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(sweep_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.handle(input).await,
                    None => return,
                },
                _ = ticker.tick() => self.sweep(self.clock.now_ms()).await,
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn handle(&mut self, input: AssetInput) {
        // An agent this copy does not know may have an asset another
        // collector wrote (it streamed there before): read them first.
        let unknown_agent = match &input {
            AssetInput::Inventory { agent_id, .. } | AssetInput::Patch { agent_id, .. } => {
                !self.by_agent.contains_key(agent_id)
            }
            _ => false,
        };
        self.reload_shared(unknown_agent).await;
        let result = match input {
            AssetInput::Identity { change, reply } => {
                let outcome = self.on_identity(change).await;
                let recorded = matches!(outcome, Ok(true));
                let _ = reply.send(recorded);
                outcome.map(|_| ())
            }
            AssetInput::Inventory { agent_id, now_ms } => {
                self.on_inventory(&agent_id, now_ms).await
            }
            AssetInput::Patch {
                agent_id,
                samples,
                now_ms,
            } => self.on_patch(&agent_id, &samples, now_ms).await,
            AssetInput::Change { id, change, reply } => {
                let _ = reply.send(self.on_change(&id, change).await);
                Ok(())
            }
            AssetInput::Regroup {
                id,
                regroup,
                by,
                reply,
            } => {
                let _ = reply.send(self.on_regroup(&id, regroup, &by).await);
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::error!(message = "Cannot update an asset record.", %error);
        }
    }

    /// Saves `after` with the history of how it differs from `before`.
    async fn save(
        &mut self,
        before: Option<&Asset>,
        after: Asset,
        source: Actor,
        mut extra: Vec<AssetEventRow>,
        links: Vec<AssetLink>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut events: Vec<AssetEventRow> = match before {
            Some(before) => diff_assets(before, &after, source, now_ms)
                .iter()
                .map(event_row)
                .collect(),
            None => vec![event_row(&history::created(&after, source, now_ms))],
        };
        events.append(&mut extra);
        self.store
            .write_assets(vec![AssetWrite {
                row: asset_row(&after, now_ms),
                events,
                links,
                removed: Vec::new(),
            }])
            .await?;
        self.assets.insert(after.id.clone(), after);
        // Tags, agents and status all decide who may page; recompute every time.
        self.refresh_suppression().await;
        Ok(())
    }

    async fn on_inventory(&mut self, agent_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let Some(inventory) = self.store.inventory(agent_id).await? else {
            return Ok(());
        };
        let known_asset = self
            .by_agent
            .get(agent_id)
            .and_then(|id| self.assets.get(id))
            .cloned();
        if let Some(before) = known_asset {
            let mut after = before.clone();
            after.mark_seen(agent_id, now_ms);
            after.apply_inventory(&inventory.facts, &inventory.disks, &inventory.interfaces);
            self.apply_automatic_status(&mut after, now_ms);
            if after != before {
                return self
                    .save(
                        Some(&before),
                        after,
                        Actor::Agent,
                        Vec::new(),
                        Vec::new(),
                        now_ms,
                    )
                    .await;
            }
            return Ok(());
        }

        let observed = Observed {
            agent_id: agent_id.to_string(),
            ids: Identifiers::from_inventory(&inventory.facts, &inventory.interfaces),
        };
        let known: Vec<KnownAsset> = self.assets.values().map(KnownAsset::of).collect();
        let decision = match_asset(&observed, &known);
        let reasons = serde_json::to_string(&decision).unwrap_or_default();
        // Identifiers (DMI UUID, MACs) can be copied; a certificate cannot.
        let claims_enrolled = match &decision {
            Match::Existing { asset_id, .. } => match self.assets.get(asset_id) {
                Some(existing) => self.claims_enrolled_asset(agent_id, existing).await?,
                None => false,
            },
            _ => false,
        };
        let (before, mut after, confidence) = match &decision {
            Match::Existing { asset_id, .. } if claims_enrolled => {
                tracing::warn!(
                    message = "An agent without a certificate resembles an enrolled host's asset; created a separate asset for review.",
                    %agent_id,
                    resembles = %asset_id,
                );
                (
                    None,
                    Asset::discovered(steward_core::ids::new_uuid_v4(), agent_id, now_ms),
                    0.0,
                )
            }
            Match::Existing {
                asset_id,
                confidence,
                ..
            } => match self.assets.get(asset_id) {
                Some(existing) => (Some(existing.clone()), existing.clone(), *confidence),
                None => (
                    None,
                    Asset::discovered(steward_core::ids::new_uuid_v4(), agent_id, now_ms),
                    0.0,
                ),
            },
            // A new record is certainly this agent's own (confidence 1); an
            // ambiguous one keeps 0 so it stands out for review.
            Match::New { .. } => (
                None,
                Asset::discovered(steward_core::ids::new_uuid_v4(), agent_id, now_ms),
                1.0,
            ),
            Match::Ambiguous { .. } => (
                None,
                Asset::discovered(steward_core::ids::new_uuid_v4(), agent_id, now_ms),
                0.0,
            ),
        };
        after.mark_seen(agent_id, now_ms);
        after.apply_inventory(&inventory.facts, &inventory.disks, &inventory.interfaces);
        // A re-linked or doubtful match is worth a line in the history; a plain new asset is not.
        let mut extra = Vec::new();
        if before.is_some() || claims_enrolled || matches!(decision, Match::Ambiguous { .. }) {
            extra.push(AssetEventRow {
                ts_ms: now_ms,
                source: "system".into(),
                kind: "identity".into(),
                field: Some("agent_match".into()),
                before: None,
                after: Some(reasons.clone()),
            });
        }
        if let Match::Ambiguous { .. } = decision {
            tracing::warn!(
                message = "New agent resembles existing assets; created a separate asset for review.",
                %agent_id,
                asset = %after.id,
            );
        }
        let link = AssetLink {
            agent_id: agent_id.to_string(),
            asset_id: after.id.clone(),
            confidence,
            reasons,
            matched_ms: now_ms,
        };
        self.by_agent.insert(agent_id.to_string(), after.id.clone());
        tracing::info!(message = "Agent linked to asset.", %agent_id, asset = %after.id, confidence);
        self.save(
            before.as_ref(),
            after,
            Actor::Agent,
            extra,
            vec![link],
            now_ms,
        )
        .await
    }

    /// Whether `agent_id` would join an asset that has another agent with a
    /// live certificate: neither a shared-token holder nor a freshly
    /// enrolled agent copying an enrolled host's DMI UUID and MACs may attach
    /// itself to that host's record. (A host enrolled again under a new id
    /// after its old one was revoked still joins; any other case gets its own
    /// asset, which an operator can merge.)
    async fn claims_enrolled_asset(
        &self,
        agent_id: &str,
        asset: &Asset,
    ) -> Result<bool, StoreError> {
        for other in asset.agent_ids.iter().filter(|other| *other != agent_id) {
            if self
                .store
                .identity_binding(other)
                .await?
                .is_some_and(|binding| !binding.revoked)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Moves `asset` to the status silence (or a return) calls for, if any;
    /// returns the new status.
    fn apply_automatic_status(&self, asset: &mut Asset, now_ms: i64) -> Option<Lifecycle> {
        let status = automatic_status(
            asset.status,
            asset.last_seen_ms,
            now_ms,
            &self.policy,
            asset.expected_offline(),
        )?;
        *asset = change_status(asset, status, Actor::System, None).ok()?;
        Some(status)
    }

    async fn on_identity(&mut self, change: IdentityChange) -> Result<bool, StoreError> {
        let Some(before) = self
            .by_agent
            .get(&change.agent_id)
            .and_then(|id| self.assets.get(id))
            .cloned()
        else {
            return Ok(false);
        };
        let mut after = before.clone();
        after.tags.extend(change.tags.iter().cloned());
        let event = AssetEventRow {
            ts_ms: change.ts_ms,
            source: Actor::Operator.as_str().to_string(),
            kind: "identity".to_string(),
            field: Some(format!("agent {}", change.agent_id)),
            before: None,
            after: Some(change.detail.clone()),
        };
        tracing::info!(message = "Agent identity recorded on its asset.", agent_id = %change.agent_id, asset = %after.id, detail = %change.detail);
        self.save(
            Some(&before),
            after,
            Actor::Operator,
            vec![event],
            Vec::new(),
            change.ts_ms,
        )
        .await?;
        Ok(true)
    }

    async fn on_patch(
        &mut self,
        agent_id: &str,
        samples: &[(String, f64)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let Some(before) = self
            .by_agent
            .get(agent_id)
            .and_then(|id| self.assets.get(id))
            .cloned()
        else {
            return Ok(());
        };
        let mut after = before.clone();
        for (metric, value) in samples {
            after.apply_patch_metric(metric, *value, now_ms);
        }
        if after != before {
            self.save(
                Some(&before),
                after,
                Actor::Agent,
                Vec::new(),
                Vec::new(),
                now_ms,
            )
            .await?;
        }
        Ok(())
    }

    async fn on_change(
        &mut self,
        id: &str,
        change: Box<OperatorChange>,
    ) -> Result<Asset, AssetChangeError> {
        let before = self
            .assets
            .get(id)
            .cloned()
            .ok_or(AssetChangeError::NotFound)?;
        let mut after = apply_edit(&before, &change.edit)?;
        if let Some(status) = change.status
            && status != after.status
        {
            after = change_status(&after, status, Actor::Operator, change.disposal)?;
        }
        let now = self.clock.now_ms();
        tracing::info!(message = "Asset changed by operator.", id, by = %change.by);
        self.save(
            Some(&before),
            after.clone(),
            Actor::Operator,
            Vec::new(),
            Vec::new(),
            now,
        )
        .await?;
        Ok(after)
    }

    async fn on_regroup(
        &mut self,
        id: &str,
        regroup: Regroup,
        by: &str,
    ) -> Result<Vec<Asset>, AssetChangeError> {
        let now = self.clock.now_ms();
        let asset = self
            .assets
            .get(id)
            .cloned()
            .ok_or(AssetChangeError::NotFound)?;
        let link = |agent_id: &str, asset_id: &str, reason: &str| AssetLink {
            agent_id: agent_id.to_string(),
            asset_id: asset_id.to_string(),
            confidence: 1.0,
            reasons: format!("{reason} by {by}"),
            matched_ms: now,
        };
        let (writes, results, removed) = match regroup {
            Regroup::Merge { from } => {
                let absorbed = self
                    .assets
                    .get(&from)
                    .cloned()
                    .ok_or(AssetChangeError::NotFound)?;
                let merged = super::merge(&asset, &absorbed, now)?;
                let links = merged
                    .asset
                    .agent_ids
                    .iter()
                    .map(|agent| link(agent, id, "merged"))
                    .collect();
                let write = AssetWrite {
                    row: asset_row(&merged.asset, now),
                    events: merged.events.iter().map(event_row).collect(),
                    links,
                    removed: vec![merged.removed_id.clone()],
                };
                (vec![write], vec![merged.asset], Some(merged.removed_id))
            }
            Regroup::Split { agent_id } => {
                let new_id = steward_core::ids::new_uuid_v4();
                let split = super::split(&asset, &agent_id, &new_id, now)?;
                let writes = vec![
                    AssetWrite {
                        row: asset_row(&split.remaining, now),
                        events: split.remaining_events.iter().map(event_row).collect(),
                        links: Vec::new(),
                        removed: Vec::new(),
                    },
                    AssetWrite {
                        row: asset_row(&split.split_off, now),
                        events: split.split_off_events.iter().map(event_row).collect(),
                        links: vec![link(&agent_id, &new_id, "split")],
                        removed: Vec::new(),
                    },
                ];
                (writes, vec![split.remaining, split.split_off], None)
            }
        };
        self.store.write_assets(writes).await?;
        if let Some(removed) = removed {
            self.assets.remove(&removed);
        }
        for asset in &results {
            for agent in &asset.agent_ids {
                self.by_agent.insert(agent.clone(), asset.id.clone());
            }
            self.assets.insert(asset.id.clone(), asset.clone());
        }
        self.refresh_suppression().await;
        tracing::info!(
            message = "Assets regrouped by operator.",
            id,
            by,
            results = results.len()
        );
        Ok(results)
    }

    /// Moves silent assets along the lifecycle, and publishes compliance
    /// figures for the rules engine.
    async fn sweep(&mut self, now_ms: i64) {
        self.reload_shared(true).await;
        let swept_here = self.swept_here().await;
        let last_seen: HashMap<String, i64> = match self.store.agents().await {
            Ok(agents) => agents
                .into_iter()
                .map(|agent| (agent.id, agent.last_seen_ms))
                .collect(),
            Err(error) => {
                tracing::warn!(message = "Cannot read agents for the asset sweep.", %error);
                return;
            }
        };
        let ids: Vec<String> = self
            .assets
            .keys()
            .filter(|id| swept_here.as_ref().is_none_or(|here| here.contains(*id)))
            .cloned()
            .collect();
        for id in ids {
            let Some(before) = self.assets.get(&id).cloned() else {
                continue;
            };
            let mut after = before.clone();
            for agent_id in &before.agent_ids {
                if let Some(seen) = last_seen.get(agent_id) {
                    after.last_seen_ms = after.last_seen_ms.max(*seen);
                }
            }
            if let Some(status) = self.apply_automatic_status(&mut after, now_ms) {
                tracing::info!(message = "Asset status changed.", id = %after.id, from = before.status.as_str(), to = status.as_str());
            }
            if after.status != before.status {
                if let Err(error) = self
                    .save(
                        Some(&before),
                        after.clone(),
                        Actor::System,
                        Vec::new(),
                        Vec::new(),
                        now_ms,
                    )
                    .await
                {
                    tracing::error!(message = "Cannot save an asset status change.", %error);
                }
            } else if after != before {
                // last_seen only: keep it in memory, persisted with the next real change.
                self.assets.insert(id.clone(), after.clone());
            }
            if let Some(agent_id) = after.agent_ids.first() {
                let labels = Labels::from([("asset".to_string(), after.id.clone())]);
                let samples = compliance_samples(&after, now_ms, &self.policy)
                    .into_iter()
                    .map(|(metric, value)| (metric.to_string(), labels.clone(), value))
                    .collect();
                self.incidents
                    .send(RulesInput::Committed {
                        agent_id: agent_id.clone(),
                        samples,
                        now_ms,
                        synthetic: true,
                    })
                    .await;
            }
        }
    }

    /// Recomputes who must not page and tells the incidents task when it
    /// changed (it resolves the incidents of newly retired agents).
    async fn refresh_suppression(&mut self) {
        let suppression = suppression_of(self.assets.values());
        if suppression != self.suppression {
            self.suppression = suppression.clone();
            self.incidents.send(RulesInput::Suppress(suppression)).await;
        }
    }
}
