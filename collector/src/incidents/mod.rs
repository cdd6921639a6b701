//! Incidents: the only module that changes incident state.
//!
//! A single task owns the rule engine. It receives committed samples from
//! `ingest` over a bounded channel, asks `rules` what changed, and carries
//! the transitions out in the store (open with SLA due times, resolve,
//! flapping). A one-second tick advances `for`, `keep_firing_for`, absence
//! and SLA breaches. Operators acknowledge, resolve and annotate through
//! [`IncidentHandle`]. Every change is announced on a broadcast channel for
//! notification delivery.
//!
//! Each opening carries the [`ServicePolicy`]: the parent checks its host
//! depends on ([`dependency`]), when recurrences become a problem
//! ([`recurrence`]) and how long after a change incidents are linked to it;
//! the store applies them in the opening's own transaction.

mod cluster;
pub mod dependency;
pub mod recurrence;
pub mod sla;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

pub use cluster::DEAD_AFTER as COLLECTOR_DEAD_AFTER;
pub use dependency::{Dependency, RawDependency, validate_dependencies};
pub use recurrence::RawProblemPolicy;
pub use sla::{SlaPolicy, SlaTarget};

use steward_core::Clock;

use crate::domain::{IncidentEvent, IncidentRecord, Recurrence};
use crate::rules::{RestoredIncident, Rule, RuleEngine, Transition};
use crate::store::{ChangeRefused, IncidentChange, Labels, NewIncident, Store, StoreError};

/// Input for the incidents task.
#[derive(Debug)]
pub enum RulesInput {
    /// Samples of one batch, after it committed.
    Committed {
        agent_id: String,
        samples: Vec<(String, Labels, f64)>,
        now_ms: i64,
        /// Computed by the collector (asset compliance), not sent by the
        /// agent: does not count as the agent being up.
        synthetic: bool,
    },
    /// An agent said hello (its host name is used in summaries).
    Hello { agent_id: String, hostname: String },
    /// Which agents must not page, as the asset task sees it now.
    Suppress(Suppression),
    /// Agents removed by retention (silent for the whole period): their open
    /// incidents resolve and their series are forgotten.
    Forget { agent_ids: Vec<String> },
    /// A new rule set (SIGHUP), with the targets and policies that go with it.
    ReplaceRules {
        rules: Vec<Rule>,
        sla: SlaPolicy,
        service: ServicePolicy,
    },
}

/// What the incidents task applies besides rules and SLAs: dependencies
/// between checks, and when recurring incidents become a problem.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServicePolicy {
    pub dependencies: Vec<Dependency>,
    /// `None`: recurring incidents open no problem.
    pub recurrence: Option<Recurrence>,
    /// `[changes] link_after`: an incident on a change's assets opening
    /// this long after the change ended is still linked to it.
    pub change_link_after: Duration,
}

/// Agents whose alerts must not page. Computed by the asset task from asset
/// records and sent whole whenever it changes; the incidents task keeps its
/// own copy, so rule evaluation never waits on a lock another task holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Suppression {
    /// Agents of retired or disposed assets: their breaches open no incident.
    pub retired: HashSet<String>,
    /// Agents of assets tagged `expected_offline`: silence is not an incident.
    pub expected_offline: HashSet<String>,
    /// Each agent's asset tags, for dependencies chosen by tag.
    pub tags: HashMap<String, BTreeSet<String>>,
}

/// What happened to an incident, for notification and observers.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentUpdate {
    pub event: IncidentEvent,
    pub incident: IncidentRecord,
}

/// How often time alone is allowed to change incidents.
const TICK: Duration = Duration::from_secs(1);

/// The synthetic metric every committed batch sets to 1 for its agent, so a
/// built-in `absent` rule can notice a silent host.
pub const AGENT_UP_METRIC: &str = "agent.up";

fn metrics_of(rules: &[Rule]) -> HashSet<String> {
    rules.iter().map(|rule| rule.metric.clone()).collect()
}

/// The rules in force and the metrics ingest must send for them, changed
/// together under one lock.
struct RulesInForce {
    rules: Vec<Rule>,
    /// The metrics some rule reads: ingest sends only their samples, so the
    /// labels of every other sample are not cloned for this task (a tenth
    /// of the collector's CPU at 10 × 1,000 samples per batch). During a
    /// replacement, of the old and the new rules.
    metrics: Arc<HashSet<String>>,
    /// Replacements sent and not yet applied: `metrics` narrows only when none is.
    pending_reloads: usize,
}

/// Cheap, cloneable access for the API and ingest.
#[derive(Clone)]
pub struct IncidentHandle {
    store: Arc<Store>,
    inputs: mpsc::Sender<RulesInput>,
    events: broadcast::Sender<IncidentUpdate>,
    in_force: Arc<std::sync::RwLock<RulesInForce>>,
    clock: Clock,
}

impl std::fmt::Debug for IncidentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IncidentHandle { .. }")
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IncidentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("incident not found")]
    NotFound,
    #[error("incident is already resolved")]
    AlreadyResolved,
    #[error("incident is already acknowledged")]
    AlreadyAcknowledged,
}

impl From<ChangeRefused> for IncidentError {
    fn from(refused: ChangeRefused) -> Self {
        match refused {
            ChangeRefused::NotFound => Self::NotFound,
            ChangeRefused::AlreadyResolved => Self::AlreadyResolved,
            ChangeRefused::AlreadyAcknowledged => Self::AlreadyAcknowledged,
        }
    }
}

impl IncidentHandle {
    /// Queues an input (committed samples, a hello, a retired agent) for the
    /// incidents task; waits if the queue is full.
    pub async fn send(&self, input: RulesInput) {
        let _ = self.inputs.send(input).await;
    }

    pub fn subscribe(&self) -> broadcast::Receiver<IncidentUpdate> {
        self.events.subscribe()
    }

    /// The metrics of the rules in force (during a replacement: of the old
    /// and the new ones). Samples of any other metric need not be sent.
    pub fn rule_metrics(&self) -> Arc<HashSet<String>> {
        Arc::clone(&self.read_in_force().metrics)
    }

    pub fn rules(&self) -> Vec<Rule> {
        self.read_in_force().rules.clone()
    }

    fn read_in_force(&self) -> std::sync::RwLockReadGuard<'_, RulesInForce> {
        self.in_force
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_in_force(&self) -> std::sync::RwLockWriteGuard<'_, RulesInForce> {
        self.in_force
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A replacement is on its way: its metrics pass from now on, and keep
    /// passing until it is applied, even if an earlier one is applied first.
    fn widen_rule_metrics(&self, rules: &[Rule]) {
        let mut in_force = self.write_in_force();
        in_force.pending_reloads += 1;
        let mut metrics = (*in_force.metrics).clone();
        metrics.extend(metrics_of(rules));
        in_force.metrics = Arc::new(metrics);
    }

    /// The task applied `rules`: they are in force, and only their metrics
    /// pass unless another replacement is still queued.
    fn applied_rules(&self, rules: &[Rule]) {
        let mut in_force = self.write_in_force();
        in_force.rules = rules.to_vec();
        in_force.pending_reloads = in_force.pending_reloads.saturating_sub(1);
        if in_force.pending_reloads == 0 {
            in_force.metrics = Arc::new(metrics_of(rules));
        }
    }

    pub async fn replace_rules(&self, rules: Vec<Rule>, sla: SlaPolicy, service: ServicePolicy) {
        // Until the task has swapped the rules, samples queued before and
        // after the swap must reach whichever rules are in force then.
        self.widen_rule_metrics(&rules);
        let _ = self
            .inputs
            .send(RulesInput::ReplaceRules {
                rules,
                sla,
                service,
            })
            .await;
    }

    fn announce(&self, event: IncidentEvent, incident: IncidentRecord) {
        // No receiver is fine: notification delivery may not be configured.
        let _ = self.events.send(IncidentUpdate { event, incident });
    }

    pub async fn acknowledge(
        &self,
        id: i64,
        by: String,
        note: Option<String>,
    ) -> Result<IncidentRecord, IncidentError> {
        let record = self
            .store
            .acknowledge_incident(id, by, note, self.clock.now_ms())
            .await??;
        tracing::info!(message = "Incident acknowledged.", id, by = ?record.acknowledged_by);
        self.announce(IncidentEvent::Acknowledged, record.clone());
        Ok(record)
    }

    /// Acknowledges every unresolved, unacknowledged incident sent (or kept
    /// to be sent) in the messages of one group, as acknowledging a storm
    /// summary in PagerDuty acknowledges the alert that stands for them all.
    /// Each stops escalating. `NotFound` if the group carried no incident.
    pub async fn acknowledge_group(
        &self,
        group_key: &str,
        by: String,
        note: Option<String>,
    ) -> Result<Vec<IncidentRecord>, IncidentError> {
        let members = self.store.grouped_incidents(group_key.to_string()).await?;
        if members.is_empty() {
            return Err(IncidentError::NotFound);
        }
        let note = note.unwrap_or_else(|| format!("with its group {group_key}"));
        let mut acknowledged = Vec::new();
        for id in members {
            match self.acknowledge(id, by.clone(), Some(note.clone())).await {
                Ok(record) => acknowledged.push(record),
                Err(IncidentError::AlreadyAcknowledged | IncidentError::AlreadyResolved) => {}
                Err(error) => return Err(error),
            }
        }
        tracing::info!(
            message = "Group acknowledged.",
            group = group_key,
            incidents = acknowledged.len()
        );
        Ok(acknowledged)
    }

    /// Resolves by hand. If the condition persists, the rule opens a new
    /// incident only after it has cleared and breached again.
    pub async fn resolve(&self, id: i64, by: String) -> Result<IncidentRecord, IncidentError> {
        let record = self
            .store
            .resolve_incident(
                id,
                by,
                "resolved by operator".into(),
                None,
                self.clock.now_ms(),
            )
            .await??;
        tracing::info!(message = "Incident resolved by operator.", id);
        self.announce(IncidentEvent::Resolved, record.clone());
        Ok(record)
    }

    pub async fn add_note(
        &self,
        id: i64,
        by: String,
        text: String,
    ) -> Result<IncidentRecord, IncidentError> {
        Ok(self
            .store
            .add_incident_note(id, by, text, self.clock.now_ms())
            .await??)
    }
}

/// Starts the incidents task: restores open incidents into the engine, then
/// serves inputs and ticks until `shutdown`.
pub async fn start(
    store: Arc<Store>,
    rules: Vec<Rule>,
    sla: SlaPolicy,
    service: ServicePolicy,
    suppression: Suppression,
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<(IncidentHandle, tokio::task::JoinHandle<()>), StoreError> {
    let (inputs, receiver) = mpsc::channel(1024);
    let (events, _) = broadcast::channel(1024);
    let handle = IncidentHandle {
        store: Arc::clone(&store),
        inputs,
        events,
        in_force: Arc::new(std::sync::RwLock::new(RulesInForce {
            metrics: Arc::new(metrics_of(&rules)),
            rules: rules.clone(),
            pending_reloads: 0,
        })),
        clock,
    };
    let mut engine = RuleEngine::new(rules);
    // Laptops tagged `expected_offline` may go quiet without paging anyone.
    engine.set_expected_offline(suppression.expected_offline.iter().cloned());
    let mut hosts = HashMap::new();
    let mut cluster = store
        .cluster_instance()
        .map(|instance| cluster::ClusterView {
            instance: instance.to_string(),
            ..Default::default()
        });
    for agent in store.agents().await? {
        if let Some(cluster) = &mut cluster {
            // Until the first sync says which of these are at other collectors.
            cluster.watched.insert(agent.id.clone());
        }
        engine.set_host_name(&agent.id, &agent.hostname);
        hosts.insert(agent.id.clone(), agent.hostname.clone());
        // `agent.up` is synthetic and never stored: its last sighting is the
        // agent's last contact, so hosts that stayed down through a collector
        // restart are still noticed by absence rules.
        engine.seed_last_seen(
            &agent.id,
            AGENT_UP_METRIC,
            &Labels::new(),
            agent.last_seen_ms,
        );
    }
    for (key, latest) in store.latest(None) {
        engine.seed_last_seen(&key.agent_id, &key.metric, &key.labels, latest.timestamp_ms);
    }
    let open = store.unresolved_incidents().await?;
    let restored = engine.restore(open.iter().map(|incident| RestoredIncident {
        dedup_key: incident.dedup_key.clone(),
        opened_ms: incident.opened_at_ms,
        flapping: incident.flapping,
    }));
    let mut worker = Worker {
        handle: handle.clone(),
        engine,
        sla,
        service,
        // Known before any agent says hello again, for incidents opened meanwhile.
        hosts,
        suppression,
        unapplied: Vec::new(),
        clock,
        cluster,
    };
    worker.apply(restored, clock.now_ms()).await;
    // Before the first tick can evaluate absence for agents at other collectors.
    worker.sync_cluster(clock.now_ms()).await;
    tracing::info!(message = "Incidents restored.", unresolved = open.len());
    let task = tokio::spawn(worker.run(receiver, shutdown));
    Ok((handle, task))
}

struct Worker {
    handle: IncidentHandle,
    engine: RuleEngine,
    sla: SlaPolicy,
    service: ServicePolicy,
    hosts: HashMap<String, String>,
    suppression: Suppression,
    /// Changes the store refused (e.g. disk full), retried on every tick.
    unapplied: Vec<IncidentChange>,
    clock: Clock,
    /// `Some` when collectors share a PostgreSQL database: which agents this
    /// one evaluates (see [`cluster`]).
    cluster: Option<cluster::ClusterView>,
}

/// Bound on retained unrecorded changes while the store is failing.
const MAX_UNAPPLIED: usize = 100_000;

impl Worker {
    async fn run(mut self, mut inputs: mpsc::Receiver<RulesInput>, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.handle_input(input).await,
                    None => return,
                },
                _ = ticker.tick() => self.tick(self.clock.now_ms()).await,
                _ = shutdown.cancelled() => {
                    // Evaluate what was already committed before stopping.
                    while let Ok(input) = inputs.try_recv() {
                        self.handle_input(input).await;
                    }
                    return;
                }
            }
        }
    }

    async fn handle_input(&mut self, input: RulesInput) {
        match input {
            RulesInput::Committed {
                agent_id,
                samples,
                now_ms,
                synthetic,
            } => {
                if self
                    .cluster
                    .as_ref()
                    .is_some_and(|cluster| !cluster.watched.contains(&agent_id))
                {
                    if synthetic {
                        // Compliance figures of an agent another collector
                        // evaluates (its sweep sends them there too).
                        return;
                    }
                    // Its samples come here, so it is ours whatever the last sync read.
                    self.adopt(&agent_id, now_ms).await;
                }
                let mut transitions = Vec::new();
                for (metric, labels, value) in &samples {
                    transitions.extend(
                        self.engine
                            .observe(&agent_id, metric, labels, *value, now_ms),
                    );
                }
                if !synthetic {
                    transitions.extend(self.engine.observe(
                        &agent_id,
                        AGENT_UP_METRIC,
                        &Labels::new(),
                        1.0,
                        now_ms,
                    ));
                }
                self.apply(transitions, now_ms).await;
            }
            RulesInput::Suppress(suppression) => self.suppress(suppression).await,
            RulesInput::Forget { agent_ids } => {
                let mut transitions = Vec::new();
                for agent_id in &agent_ids {
                    transitions.extend(self.engine.forget_agent(agent_id));
                    self.hosts.remove(agent_id);
                }
                tracing::info!(
                    message = "Forgot agents removed by retention.",
                    agents = agent_ids.len(),
                    resolved = transitions.len()
                );
                self.apply(transitions, self.clock.now_ms()).await;
            }
            RulesInput::Hello { agent_id, hostname } => {
                self.engine.set_host_name(&agent_id, &hostname);
                let now_ms = self.clock.now_ms();
                self.adopt(&agent_id, now_ms).await;
                self.hosts.insert(agent_id, hostname);
            }
            RulesInput::ReplaceRules {
                rules,
                sla,
                service,
            } => {
                let count = rules.len();
                self.handle.applied_rules(&rules);
                let transitions = self.engine.replace_rules(rules);
                self.sla = sla;
                self.service = service;
                tracing::info!(
                    message = "Rules reloaded.",
                    rules = count,
                    resolved = transitions.len()
                );
                self.apply(transitions, self.clock.now_ms()).await;
            }
        }
    }

    async fn tick(&mut self, now_ms: i64) {
        self.sync_cluster(now_ms).await;
        let mut transitions = self.engine.tick(now_ms);
        transitions.extend(self.engine.evaluate_absence(now_ms));
        self.apply(transitions, now_ms).await;
        match self.handle.store.expire_parent_holds(now_ms).await {
            Ok(released) => {
                for incident in released {
                    tracing::warn!(message = "Parent did not open in time; paging.", id = incident.id, rule = %incident.rule, host = %incident.host);
                    self.handle.announce(IncidentEvent::Released, incident);
                }
            }
            Err(error) => tracing::warn!(message = "Cannot end dependency holds.", %error),
        }
        match self.handle.store.mark_sla_breaches(now_ms).await {
            Ok(breaches) => {
                for (incident, kind) in breaches {
                    tracing::warn!(message = "SLA target missed.", id = incident.id, target = kind, rule = %incident.rule);
                    self.handle.announce(IncidentEvent::SlaBreached, incident);
                }
            }
            Err(error) => tracing::warn!(message = "Cannot check SLA due times.", %error),
        }
    }

    /// Takes a new suppression. Agents entering the retired set are forgotten
    /// (their open incidents resolve and they stop paging); agents leaving it
    /// start afresh, so a series that kept breaching while retired opens again.
    async fn suppress(&mut self, suppression: Suppression) {
        let changed: Vec<String> = suppression
            .retired
            .symmetric_difference(&self.suppression.retired)
            .cloned()
            .collect();
        self.engine
            .set_expected_offline(suppression.expected_offline.iter().cloned());
        self.suppression = suppression;
        let mut transitions = Vec::new();
        for agent_id in changed {
            let resolved = self.engine.forget_agent(&agent_id);
            tracing::info!(message = "Forgot an agent's series: retired or back in service.", %agent_id, resolved = resolved.len());
            transitions.extend(resolved);
        }
        self.apply(transitions, self.clock.now_ms()).await;
    }

    fn host(&self, agent_id: &str) -> String {
        self.hosts
            .get(agent_id)
            .cloned()
            .unwrap_or_else(|| agent_id.to_string())
    }

    /// Carries out transitions in order, in one transaction. If the write
    /// fails it is logged; the unique index keeps a later retry from ever
    /// duplicating an incident.
    async fn apply(&mut self, transitions: Vec<Transition>, now_ms: i64) {
        if transitions.is_empty() && self.unapplied.is_empty() {
            return;
        }
        let fresh: Vec<IncidentChange> = transitions
            .into_iter()
            // Retired assets do not page: their breaches open no incident.
            .filter(|transition| match transition {
                Transition::Open { agent_id, .. } => !self.suppression.retired.contains(agent_id),
                _ => true,
            })
            .map(|transition| self.change_for(transition, now_ms))
            .collect();
        // Changes a failed write left behind go first, in their order.
        let mut changes = std::mem::take(&mut self.unapplied);
        changes.extend(fresh);
        if changes.is_empty() {
            return;
        }
        match self
            .handle
            .store
            .apply_incident_changes(changes.clone())
            .await
        {
            Ok(applied) => {
                for (event, incident) in applied.into_iter().flatten() {
                    match event {
                        IncidentEvent::Opened => tracing::warn!(
                            message = "Incident opened.",
                            id = incident.id,
                            rule = %incident.rule,
                            host = %incident.host,
                            severity = %incident.severity,
                            summary = %incident.summary,
                        ),
                        _ => tracing::info!(
                            message = "Incident changed.",
                            id = incident.id,
                            change = event.name()
                        ),
                    }
                    self.handle.announce(event, incident);
                }
            }
            Err(error) => {
                // The engine has already moved on, so keep the changes and
                // retry them on the next tick; replaying is safe (an open of
                // an open key and a resolve of a resolved key change nothing).
                tracing::error!(message = "Cannot record incident changes; will retry.", %error, pending = changes.len());
                self.unapplied = changes;
                if self.unapplied.len() > MAX_UNAPPLIED {
                    let dropped = self.unapplied.len() - MAX_UNAPPLIED;
                    self.unapplied.drain(..dropped);
                    tracing::error!(
                        message = "Dropped the oldest unrecorded incident changes.",
                        dropped
                    );
                }
            }
        }
    }

    fn change_for(&self, transition: Transition, now_ms: i64) -> IncidentChange {
        match transition {
            Transition::Open {
                dedup_key,
                rule,
                metric,
                agent_id,
                labels,
                value,
                severity,
                summary,
                runbook,
                since_ms,
            } => {
                let (ack_due_at_ms, resolve_due_at_ms) = self.sla.due(severity, now_ms);
                let host = self.host(&agent_id);
                let no_tags = BTreeSet::new();
                let tags = self.suppression.tags.get(&agent_id).unwrap_or(&no_tags);
                let (parents, parent_hold) = dependency::parents_with_hold(
                    &self.service.dependencies,
                    &agent_id,
                    &host,
                    tags,
                );
                IncidentChange::Open(Box::new(NewIncident {
                    dedup_key,
                    rule,
                    metric,
                    host,
                    agent_id,
                    labels,
                    severity,
                    summary,
                    runbook,
                    value,
                    since_ms,
                    opened_at_ms: now_ms,
                    ack_due_at_ms,
                    resolve_due_at_ms,
                    parents,
                    parent_hold_ms: parent_hold.as_millis() as i64,
                    recurrence: self.service.recurrence,
                    change_link_after_ms: Some(self.service.change_link_after.as_millis() as i64),
                }))
            }
            Transition::Resolve {
                dedup_key,
                value,
                reason,
            } => IncidentChange::Resolve {
                dedup_key,
                reason: reason.to_string(),
                value,
                now_ms,
            },
            Transition::FlappingStarted { dedup_key, percent } => IncidentChange::Flapping {
                dedup_key,
                flapping: true,
                detail: format!("Flapping: {percent:.0}% state changes; notifications held."),
                now_ms,
            },
            Transition::FlappingStopped { dedup_key, percent } => IncidentChange::Flapping {
                dedup_key,
                flapping: false,
                detail: format!("Stopped flapping ({percent:.0}% state changes)."),
                now_ms,
            },
        }
    }
}

/// Rules as the API showed them before its typed view (`api::incidents`),
/// kept as the reference its test compares the view with.
#[cfg(test)]
pub fn describe_rule(rule: &Rule) -> serde_json::Value {
    let mut value = serde_json::json!({
        "name": rule.name,
        "metric": rule.metric,
        "match": rule.matchers,
        "severity": rule.severity.as_str(),
        "summary": rule.summary,
        "runbook": rule.runbook,
    });
    match &rule.kind {
        crate::rules::RuleKind::Threshold(threshold) => {
            value["kind"] = "threshold".into();
            value["op"] = threshold.op.as_str().into();
            value["threshold"] = threshold.threshold.into();
            value["clear"] = threshold.clear.into();
            value["for_seconds"] = threshold.for_duration.as_secs_f64().into();
            value["keep_firing_for_seconds"] = threshold.keep_firing_for.as_secs_f64().into();
        }
        crate::rules::RuleKind::Absent(_) => {
            value["kind"] = "absent".into();
        }
    }
    value
}
