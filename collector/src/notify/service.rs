//! The delivery task: turns journaled incident changes into outbox rows
//! (routing, escalation, maintenance holds), then delivers due rows with retries.
//!
//! Durability: an incident change and its journal entry commit together;
//! outbox rows are written together with the journal cursor; each outbox row
//! has a unique idempotency key `(incident, event, recipient)`. So a crash
//! anywhere loses no notification and queues none twice. A delivery cut off
//! by a crash mid-request is retried with the same `Idempotency-Key` header.
//! Escalation state lives in memory and is rebuilt at start-up from open
//! incidents; replayed steps are dropped by their idempotency keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use steward_core::Clock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::{Channel, ChannelKind, EmailChannel, NotifyConfig};
use super::group_escalation::GroupEscalations;
use super::grouped::{self, GroupContext};
use super::grouping::{Admission, GroupTracker, GroupedKind, Grouping, RESOLVED_SUFFIX, route_of};
use super::payload::{self, MessageContext};
use super::routing::{RouteDecision, RouteInput};
use super::{EscalationState, NotificationEvent, email, http, idempotency_key};
use crate::domain::{IncidentRecord, IncidentState, IncidentView};
use crate::incidents::IncidentHandle;
use crate::store::{
    DeliveryAttempt, GroupEscalationMessage, GroupFlush, JournalEntry, NewNotification,
    Notification, Store, StoreError,
};
use crate::telemetry::Telemetry;

/// Attempts before a delivery is given up as failed.
const MAX_ATTEMPTS: i64 = 12;
/// With several collectors on one database (PostgreSQL), how often each
/// re-reads which incidents escalate: another collector routed their
/// openings, and may be gone.
const CLUSTER_ESCALATION_SYNC: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries in flight at once, so one slow receiver does not hold up the rest.
const PARALLEL_DELIVERIES: usize = 8;
/// Incidents listed in full in one group message; the count covers all.
const MAX_LISTED: usize = 200;
/// How often the task looks for work when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_millis(500);

pub struct NotifyService {
    pub store: Arc<Store>,
    pub config: Arc<NotifyConfig>,
    /// Public URL of the HTTP API, for links in messages.
    pub base_url: String,
    pub telemetry: Arc<Telemetry>,
    /// Time for escalations, backoff and maintenance windows.
    pub clock: Clock,
}

/// Where an incident's agent sits among assets: its asset id and tags.
#[derive(Debug, Default)]
struct AssetContext {
    asset_id: Option<String>,
    tags: Vec<String>,
}

/// Where one event goes on a grouping route's channel.
enum Grouped {
    Alone,
    Into(String),
    NotSent,
}

/// Exponential backoff with jitter: about 1 s, 2 s, 4 s … up to 5 minutes.
fn backoff(attempts: i64) -> Duration {
    let base = Duration::from_secs(1u64 << attempts.clamp(0, 9) as u32).min(MAX_BACKOFF);
    base.mul_f64(0.75 + rand::random::<f64>() * 0.5)
}

impl NotifyService {
    /// Runs routing (journal, escalation, maintenance) and delivery as two
    /// loops, so a slow receiver never delays queueing the next page.
    pub async fn run(self, incidents: IncidentHandle, shutdown: CancellationToken) {
        let (routing, delivery) = self.into_loops(incidents, shutdown);
        let delivery = tokio::spawn(delivery);
        routing.await;
        let _ = delivery.await;
    }

    /// The routing and delivery loops, for the caller to spawn as two tasks
    /// (the collector supervises each by name). Both stop on `shutdown`.
    pub fn into_loops(
        self,
        incidents: IncidentHandle,
        shutdown: CancellationToken,
    ) -> (
        impl Future<Output = ()> + Send + 'static,
        impl Future<Output = ()> + Send + 'static,
    ) {
        let this = Arc::new(self);
        let queued = Arc::new(Notify::new());
        let delivery = Arc::clone(&this).delivery_loop(Arc::clone(&queued), shutdown.clone());
        let routing = async move { this.routing_loop(incidents, queued, shutdown).await };
        (routing, delivery)
    }

    async fn routing_loop(
        &self,
        incidents: IncidentHandle,
        queued: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        let mut wake = incidents.subscribe();
        let (mut escalations, mut group_escalations) = match self.rebuild_escalations().await {
            Ok(escalations) => escalations,
            Err(error) => {
                tracing::error!(message = "Cannot restore escalations.", %error);
                (HashMap::new(), GroupEscalations::default())
            }
        };
        let mut groups = GroupTracker::default();
        if let Err(error) = self.restore_storms(&mut groups).await {
            tracing::error!(message = "Cannot restore storm counting.", %error);
        }
        match self.store.kept_groups().await {
            Ok(kept) => {
                let now = self.clock.now_ms();
                for (key, channel) in kept {
                    groups.restore(&key, &channel, now);
                }
            }
            Err(error) => {
                tracing::error!(message = "Cannot restore grouped notifications.", %error)
            }
        }
        let mut escalations_synced_ms = self.clock.now_ms();
        loop {
            if self.store.cluster_instance().is_some()
                && self.clock.now_ms() - escalations_synced_ms
                    >= CLUSTER_ESCALATION_SYNC.as_millis() as i64
            {
                escalations_synced_ms = self.clock.now_ms();
                if let Err(error) = self
                    .sync_escalations(&mut escalations, &mut group_escalations)
                    .await
                {
                    tracing::error!(message = "Cannot re-read escalations.", %error);
                }
            }
            if let Err(error) = self
                .route_journal(&mut escalations, &mut group_escalations, &mut groups)
                .await
            {
                tracing::error!(message = "Cannot queue notifications.", %error);
            }
            if let Err(error) = self.flush_groups(&mut groups).await {
                tracing::error!(message = "Cannot queue grouped notifications.", %error);
            }
            if let Err(error) = self.escalate(&mut escalations).await {
                tracing::error!(message = "Cannot escalate.", %error);
            }
            if let Err(error) = self.escalate_groups(&mut group_escalations).await {
                tracing::error!(message = "Cannot escalate grouped incidents.", %error);
            }
            if let Err(error) = self.release_held().await {
                tracing::error!(message = "Cannot release held notifications.", %error);
            }
            queued.notify_one();
            let next_due = escalations
                .values()
                .filter_map(EscalationState::due)
                .chain(groups.next_due())
                .chain(group_escalations.next_due())
                .min();
            let until_next = match next_due {
                Some(due) => {
                    Duration::from_millis((due - self.clock.now_ms()).clamp(0, 500) as u64)
                }
                None => IDLE_POLL,
            };
            tokio::select! {
                // Any incident event may have journaled something to send.
                _ = wake.recv() => {}
                _ = tokio::time::sleep(until_next) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn delivery_loop(self: Arc<Self>, queued: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            if let Err(error) = Arc::clone(&self).deliver_due().await {
                tracing::error!(message = "Cannot deliver due notifications.", %error);
            }
            let until_next = match self.store.next_notification_due().await.ok().flatten() {
                Some(due) => {
                    Duration::from_millis((due - self.clock.now_ms()).clamp(0, 500) as u64)
                }
                None => IDLE_POLL,
            };
            tokio::select! {
                _ = queued.notified() => {}
                _ = tokio::time::sleep(until_next) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Routes every journal entry past the cursor into outbox rows.
    async fn route_journal(
        &self,
        escalations: &mut HashMap<i64, EscalationState>,
        group_escalations: &mut GroupEscalations,
        groups: &mut GroupTracker,
    ) -> Result<(), StoreError> {
        loop {
            let entries = self.store.unnotified_journal(200).await?;
            let Some(last) = entries.last().map(|entry| entry.position) else {
                return Ok(());
            };
            let mut queued = Vec::new();
            for entry in &entries {
                queued.extend(
                    self.notifications_for(entry, escalations, group_escalations, groups)
                        .await?,
                );
            }
            let count = self
                .store
                .enqueue_notifications(queued, last, self.clock.now_ms())
                .await?;
            tracing::debug!(message = "Queued notifications.", count, position = last);
        }
    }

    async fn notifications_for(
        &self,
        entry: &JournalEntry,
        escalations: &mut HashMap<i64, EscalationState>,
        group_escalations: &mut GroupEscalations,
        groups: &mut GroupTracker,
    ) -> Result<Vec<NewNotification>, StoreError> {
        let Ok(event) = NotificationEvent::try_from(entry.event) else {
            return Ok(Vec::new());
        };
        let Some(incident) = self.store.incident(entry.incident_id).await? else {
            return Ok(Vec::new());
        };
        // Caused by an open parent incident: no one hears of it unless it is
        // released (then it is read again, unsuppressed, from `released`).
        if incident.suppressed {
            return Ok(Vec::new());
        }
        let context = self.asset_context(&incident.agent_id).await?;
        let input = RouteInput::from_record(&incident, context.tags.clone());
        let decision = self.config.route(&input);
        // "Resolved" is always sent, even for incidents held when they opened.
        let held = event != NotificationEvent::Resolved
            && self.in_maintenance(&context, entry.ts_ms).await?;
        let mut queued = Vec::with_capacity(decision.channels.len());
        let mut paged_alone = false;
        let mut first_group: Option<String> = None;
        for (position, channel) in decision.channels.iter().enumerate() {
            let grouping = decision
                .channel_routes
                .get(position)
                .and_then(|route| Some((*route, self.route_grouping(*route)?)));
            let group_key = match grouping {
                None => None,
                Some((route, grouping)) => {
                    match self
                        .group_for(
                            &incident, event, &input, channel, route, grouping, entry, groups,
                        )
                        .await?
                    {
                        Grouped::Alone => None,
                        Grouped::Into(key) => Some(key),
                        Grouped::NotSent => continue,
                    }
                }
            };
            paged_alone |= group_key.is_none();
            if first_group.is_none() {
                first_group.clone_from(&group_key);
            }
            queued.push(NewNotification {
                idempotency_key: idempotency_key(incident.id, event, channel),
                incident_id: incident.id,
                event: event.into(),
                channel: channel.clone(),
                due_ms: entry.ts_ms,
                held,
                group_key,
            });
        }
        match event {
            // A storm does not escalate host by host: only incidents paged on their own do.
            NotificationEvent::Opened if paged_alone || decision.channels.is_empty() => {
                if let Some(state) = self.escalation_for(&incident, &decision) {
                    escalations.insert(incident.id, state);
                }
            }
            // Sent only grouped: it escalates with its group, in one message.
            NotificationEvent::Opened => {
                let policy = decision
                    .escalation
                    .as_deref()
                    .and_then(|name| self.config.escalation(name));
                if let (Some(key), Some(policy)) = (first_group, policy) {
                    group_escalations.join(&key, incident.id, policy, incident.opened_at_ms);
                }
            }
            // Acknowledge stops escalation; resolve ends it.
            _ => {
                escalations.remove(&incident.id);
                group_escalations.leave(incident.id);
            }
        }
        Ok(queued)
    }

    fn route_grouping(&self, route: usize) -> Option<&Grouping> {
        self.config.routes.get(route)?.grouping.as_ref()
    }

    /// Whether one event of `incident` on a grouping route's `channel` goes
    /// alone, into a group message, or (acknowledgements and escalations of
    /// an incident sent in a group) nowhere.
    #[allow(clippy::too_many_arguments)]
    async fn group_for(
        &self,
        incident: &IncidentRecord,
        event: NotificationEvent,
        input: &RouteInput,
        channel: &str,
        route: usize,
        grouping: &Grouping,
        entry: &JournalEntry,
        groups: &mut GroupTracker,
    ) -> Result<Grouped, StoreError> {
        let key = super::routing::group_key(grouping, route, input);
        if event == NotificationEvent::Opened {
            return Ok(
                match groups.admit_open(&key, channel, grouping, entry.ts_ms) {
                    Admission::Individual => Grouped::Alone,
                    Admission::Grouped => Grouped::Into(key),
                },
            );
        }
        let opened = idempotency_key(incident.id, NotificationEvent::Opened, channel);
        match self.store.notification_state(opened).await? {
            Some((state, Some(opened_group))) if state.starts_with("grouped") => {
                if event == NotificationEvent::Resolved {
                    groups.admit_resolved(&opened_group, channel, grouping, entry.ts_ms);
                    Ok(Grouped::Into(format!("{opened_group}{RESOLVED_SUFFIX}")))
                } else {
                    Ok(Grouped::NotSent)
                }
            }
            _ => Ok(Grouped::Alone),
        }
    }

    /// Counts again the openings of the last storm window that were queued
    /// (alone or grouped) on a grouping route's channel, so a storm under way
    /// before a restart goes on instead of paging host by host again.
    async fn restore_storms(&self, groups: &mut GroupTracker) -> Result<(), StoreError> {
        let window = self
            .config
            .routes
            .iter()
            .filter_map(|route| route.grouping.as_ref())
            .map(|grouping| grouping.storm_window)
            .max();
        let Some(window) = window else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let since = now - window.as_millis() as i64;
        let mut restored = 0;
        for incident in self.store.incidents_opened_since(since).await? {
            if incident.suppressed {
                continue;
            }
            let context = self.asset_context(&incident.agent_id).await?;
            let input = RouteInput::from_record(&incident, context.tags);
            let decision = self.config.route(&input);
            for (position, channel) in decision.channels.iter().enumerate() {
                let Some(route) = decision.channel_routes.get(position).copied() else {
                    continue;
                };
                let Some(grouping) = self.route_grouping(route) else {
                    continue;
                };
                let opened = idempotency_key(incident.id, NotificationEvent::Opened, channel);
                if self.store.notification_state(opened).await?.is_none() {
                    continue;
                }
                let key = super::routing::group_key(grouping, route, &input);
                groups.restore_opening(&key, channel, grouping, incident.opened_at_ms, now);
                restored += 1;
            }
        }
        tracing::info!(message = "Storm counting restored.", openings = restored);
        Ok(())
    }

    /// Queues the message of every group that is due.
    async fn flush_groups(&self, groups: &mut GroupTracker) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        for (id, kind) in groups.due(now) {
            let (key, channel) = &id;
            let grouping = route_of(key).and_then(|route| self.route_grouping(route));
            let open_count = groups.open_count(&id);
            let window = grouping.map_or(0, |grouping| grouping.storm_window.as_secs());
            let timeline = match kind {
                GroupedKind::Storm => format!("Grouped into storm notification on {channel}."),
                GroupedKind::Digest => format!("Grouped into storm digest on {channel}."),
                GroupedKind::Group => format!("Grouped into one notification on {channel}."),
                GroupedKind::Resolved => {
                    format!("Resolution sent in a grouped message on {channel}.")
                }
                // Queued by `escalate_groups`, never kept in a tracker group.
                GroupedKind::Escalation => continue,
            };
            let flushed = self
                .store
                .flush_group(GroupFlush {
                    group_key: key.clone(),
                    channel: channel.clone(),
                    kind: kind.as_str().to_string(),
                    event: if kind == GroupedKind::Resolved {
                        crate::domain::IncidentEvent::Resolved
                    } else {
                        crate::domain::IncidentEvent::Opened
                    },
                    detail: serde_json::json!({
                        "opened_in_window": open_count,
                        "window_seconds": window,
                    })
                    .to_string(),
                    timeline,
                    now_ms: now,
                })
                .await?;
            groups.flushed(&id, grouping, now);
            if let Some((message, members)) = flushed {
                tracing::info!(
                    message = "Queued a grouped notification.",
                    kind = kind.as_str(),
                    group = %key,
                    channel = %channel,
                    incidents = members,
                    id = message,
                );
            }
        }
        Ok(())
    }

    /// Escalations of incidents that are open and unacknowledged, as they
    /// stand now, alone or with their group; steps already sent are dropped
    /// by their idempotency keys.
    async fn rebuild_escalations(
        &self,
    ) -> Result<(HashMap<i64, EscalationState>, GroupEscalations), StoreError> {
        let mut escalations = HashMap::new();
        let mut group_escalations = GroupEscalations::default();
        for incident in self.store.unresolved_incidents().await? {
            if incident.state != IncidentState::Open || incident.suppressed {
                continue;
            }
            let context = self.asset_context(&incident.agent_id).await?;
            let decision = self
                .config
                .route(&RouteInput::from_record(&incident, context.tags));
            if let Some(group) = self.sent_only_grouped(&incident, &decision).await? {
                let policy = decision
                    .escalation
                    .as_deref()
                    .and_then(|name| self.config.escalation(name));
                if let Some(policy) = policy {
                    group_escalations.join(&group, incident.id, policy, incident.opened_at_ms);
                }
                continue;
            }
            if let Some(state) = self.escalation_for(&incident, &decision) {
                escalations.insert(incident.id, state);
            }
        }
        Ok((escalations, group_escalations))
    }

    /// Several collectors: every collector escalates every open incident,
    /// whichever routed its opening (the steps' idempotency keys queue each
    /// page once, and a collector that dies leaves none behind). Adds the
    /// incidents this one does not track yet and drops those no longer
    /// escalating; a tracked state keeps its progress.
    async fn sync_escalations(
        &self,
        escalations: &mut HashMap<i64, EscalationState>,
        group_escalations: &mut GroupEscalations,
    ) -> Result<(), StoreError> {
        let (current, current_groups) = self.rebuild_escalations().await?;
        // Openings this recent are still being routed (by whichever collector
        // claimed them): until then alone-or-grouped is not known yet.
        let routed_before = self.clock.now_ms() - CLUSTER_ESCALATION_SYNC.as_millis() as i64 * 2;
        escalations.retain(|id, _| current.contains_key(id));
        for (id, state) in current {
            if state.opened_ms() < routed_before {
                escalations.entry(id).or_insert(state);
            }
        }
        group_escalations.merge(current_groups);
        Ok(())
    }

    /// The group of the first channel if every channel got the incident's
    /// opening in a group message (a storm does not escalate host by host,
    /// also after a restart: it escalates with its group).
    async fn sent_only_grouped(
        &self,
        incident: &IncidentRecord,
        decision: &RouteDecision,
    ) -> Result<Option<String>, StoreError> {
        let mut first = None;
        for channel in &decision.channels {
            let opened = idempotency_key(incident.id, NotificationEvent::Opened, channel);
            match self.store.notification_state(opened).await? {
                Some((state, Some(group))) if state.starts_with("grouped") => {
                    first.get_or_insert(group);
                }
                _ => return Ok(None),
            }
        }
        Ok(first)
    }

    /// Queues the escalation steps of groups that have come due: one group
    /// message per recipient listing the members still open and
    /// unacknowledged. Groups advance only once the messages are queued.
    async fn escalate_groups(&self, groups: &mut GroupEscalations) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let due = groups.due_steps(now);
        if due.is_empty() {
            return Ok(());
        }
        let mut messages = Vec::new();
        let mut still_waiting = Vec::with_capacity(due.len());
        for group in &due {
            let mut waiting = Vec::new();
            for id in &group.members {
                if let Some(incident) = self.store.incident(*id).await?
                    && incident.state == IncidentState::Open
                    && !incident.suppressed
                {
                    waiting.push(*id);
                }
            }
            if !waiting.is_empty() {
                for step in &group.steps {
                    tracing::info!(
                        message = "Escalating a group.",
                        group = %group.group_key,
                        incidents = waiting.len(),
                        level = step.level,
                        round = step.round
                    );
                    for target in &step.targets {
                        for contact in self.config.contacts_for(target, step.at_ms) {
                            let recipient = contact.recipient();
                            messages.push(GroupEscalationMessage {
                                idempotency_key: format!(
                                    "group-escalation:{}:{}:{}:{}:{recipient}",
                                    group.group_key, group.started_ms, step.level, step.round
                                ),
                                group_key: group.group_key.clone(),
                                event: crate::domain::IncidentEvent::Escalated {
                                    level: step.level,
                                    round: step.round,
                                },
                                channel: recipient.clone(),
                                due_ms: step.at_ms,
                                detail: serde_json::json!({
                                    "level": step.level,
                                    "round": step.round,
                                    "incidents": waiting,
                                })
                                .to_string(),
                                members: waiting.clone(),
                                timeline: format!(
                                    "Escalated with its group (level {}) to {recipient}.",
                                    step.level
                                ),
                            });
                        }
                    }
                }
            }
            still_waiting.push((group.group_key.clone(), waiting));
        }
        if !messages.is_empty() {
            self.store.enqueue_group_escalations(messages, now).await?;
        }
        for (key, waiting) in still_waiting {
            groups.advanced(&key, now, waiting);
        }
        Ok(())
    }

    /// The escalation the route names for `incident`, started at its opening.
    fn escalation_for(
        &self,
        incident: &IncidentRecord,
        decision: &RouteDecision,
    ) -> Option<EscalationState> {
        let policy = self.config.escalation(decision.escalation.as_deref()?)?;
        Some(EscalationState::start(
            policy.clone(),
            incident.opened_at_ms,
            incident.ack_due_at_ms,
        ))
    }

    /// Queues the escalation steps that have come due. The states advance
    /// only once the steps are durably queued, so a failed write retries them.
    async fn escalate(
        &self,
        escalations: &mut HashMap<i64, EscalationState>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut queued = Vec::new();
        let mut advanced = escalations.clone();
        for (incident_id, state) in advanced.iter_mut() {
            let steps = state.advance(now);
            if steps.is_empty() {
                continue;
            }
            let Some(incident) = self.store.incident(*incident_id).await? else {
                continue;
            };
            if incident.state != IncidentState::Open {
                // Acknowledged or resolved meanwhile, perhaps through another
                // collector whose journal entry this one never routes.
                state.acknowledge();
                continue;
            }
            let held = self
                .in_maintenance(&self.asset_context(&incident.agent_id).await?, now)
                .await?;
            for step in steps {
                let event = NotificationEvent::Escalated {
                    level: step.level,
                    round: step.round,
                };
                tracing::info!(
                    message = "Escalating.",
                    incident = incident.id,
                    level = step.level,
                    round = step.round
                );
                for target in &step.targets {
                    for contact in self.config.contacts_for(target, step.at_ms) {
                        let recipient = contact.recipient();
                        queued.push(NewNotification {
                            idempotency_key: idempotency_key(incident.id, event, &recipient),
                            incident_id: incident.id,
                            event: event.into(),
                            channel: recipient,
                            due_ms: step.at_ms,
                            held,
                            group_key: None,
                        });
                    }
                }
            }
        }
        if !queued.is_empty() {
            // Position 0 leaves the journal cursor where it is.
            self.store.enqueue_notifications(queued, 0, now).await?;
        }
        advanced.retain(|_, state| !state.is_finished());
        *escalations = advanced;
        Ok(())
    }

    async fn asset_context(&self, agent_id: &str) -> Result<AssetContext, StoreError> {
        let Some(asset_id) = self
            .store
            .asset_link(agent_id)
            .await?
            .map(|link| link.asset_id)
        else {
            return Ok(AssetContext::default());
        };
        let tags = match self.store.asset(&asset_id).await? {
            Some(row) => serde_json::from_str::<crate::assets::Asset>(&row.record)
                .map(|asset| asset.tags.into_iter().collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(AssetContext {
            asset_id: Some(asset_id),
            tags,
        })
    }

    /// Whether an open maintenance window covers the asset (by id or tag).
    async fn in_maintenance(&self, context: &AssetContext, at_ms: i64) -> Result<bool, StoreError> {
        let Some(asset_id) = &context.asset_id else {
            return Ok(false);
        };
        let windows = self.store.maintenance_windows(at_ms).await?;
        Ok(windows.iter().any(|window| {
            window.is_active(at_ms)
                && (window.asset_ids.contains(asset_id)
                    || window.tags.iter().any(|tag| context.tags.contains(tag)))
        }))
    }

    /// Pages held notifications once their window has closed, if the
    /// incident is still unresolved; otherwise they are suppressed.
    async fn release_held(&self) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        for notification in self.store.held_notifications().await? {
            let Some(incident) = self.store.incident(notification.incident_id).await? else {
                continue;
            };
            if incident.state.is_resolved() {
                self.store
                    .release_notification(notification.id, "suppressed", now)
                    .await?;
                continue;
            }
            let context = self.asset_context(&incident.agent_id).await?;
            if !self.in_maintenance(&context, now).await? {
                tracing::info!(message = "Maintenance over; paging a held notification.", key = %notification.idempotency_key);
                self.store
                    .release_notification(notification.id, "pending", now)
                    .await?;
            }
        }
        Ok(())
    }

    /// Delivers what is due, up to [`PARALLEL_DELIVERIES`] at once, and
    /// records each attempt as it finishes.
    async fn deliver_due(self: Arc<Self>) -> Result<(), StoreError> {
        let mut due = self
            .store
            .due_notifications(self.clock.now_ms(), 50)
            .await?
            .into_iter();
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            while in_flight.len() < PARALLEL_DELIVERIES {
                let Some(notification) = due.next() else {
                    break;
                };
                let this = Arc::clone(&self);
                in_flight.spawn(async move {
                    let attempt = this.deliver(&notification).await;
                    (notification, attempt)
                });
            }
            let Some(joined) = in_flight.join_next().await else {
                return Ok(());
            };
            let Ok((notification, attempt)) = joined else {
                continue;
            };
            match attempt.state {
                "delivered" => Telemetry::add(&self.telemetry.notifications_sent, 1),
                "failed" => {
                    Telemetry::add(&self.telemetry.notifications_failed, 1);
                    tracing::warn!(
                        message = "Notification failed for good.",
                        key = %notification.idempotency_key,
                        error = attempt.error.as_deref().unwrap_or(""),
                    );
                }
                _ => Telemetry::add(&self.telemetry.notification_retries, 1),
            }
            self.store.record_delivery(attempt).await?;
        }
    }

    #[tracing::instrument(name = "deliver", skip_all, fields(key = %notification.idempotency_key, channel = %notification.channel))]
    async fn deliver(&self, notification: &Notification) -> DeliveryAttempt {
        let now = self.clock.now_ms();
        let failed = |error: String| DeliveryAttempt {
            id: notification.id,
            ts_ms: now,
            status: None,
            error: Some(error),
            state: "failed",
            retry_at_ms: now,
        };
        // A person's direct email address goes out through the first email
        // channel's server, to that address alone.
        let direct_email;
        let channel = match notification.channel.split_once(':') {
            Some(("email", address)) => {
                let Some(server) =
                    self.config
                        .channels
                        .iter()
                        .find_map(|channel| match &channel.kind {
                            ChannelKind::Email(server) => Some(server),
                            _ => None,
                        })
                else {
                    return failed("no email channel is configured to send direct email".into());
                };
                direct_email = Channel {
                    name: notification.channel.clone(),
                    kind: ChannelKind::Email(EmailChannel {
                        to: vec![address.to_string()],
                        ..server.clone()
                    }),
                };
                &direct_email
            }
            Some((kind, _)) => {
                return failed(format!(
                    "direct {kind} contacts are not supported; use a channel"
                ));
            }
            None => match self.config.channel(&notification.channel) {
                Some(channel) => channel,
                None => {
                    return failed(format!(
                        "channel {:?} is no longer configured",
                        notification.channel
                    ));
                }
            },
        };
        let incident = match self.store.incident(notification.incident_id).await {
            Ok(Some(incident)) => incident,
            Ok(None) => return failed("incident not found".into()),
            Err(error) => {
                return self.retry(notification, now, None, format!("store: {error}"), None);
            }
        };
        let Ok(event) = NotificationEvent::try_from(notification.event) else {
            return failed(format!("{} is not delivered", notification.event.key()));
        };
        let latest = self.store.latest_value(&crate::store::SeriesKey {
            agent_id: incident.agent_id.clone(),
            metric: incident.metric.clone(),
            labels: incident.labels.clone(),
        });
        let json = serde_json::to_value(IncidentView::new(
            incident.clone(),
            latest.map(|latest| latest.value),
        ))
        .unwrap_or(serde_json::Value::Null);
        let problem = match incident.problem_id {
            None => None,
            Some(id) => match self.store.problem(id).await {
                Ok(problem) => problem,
                Err(error) => {
                    return self.retry(notification, now, None, format!("store: {error}"), None);
                }
            },
        };
        let context = MessageContext {
            event,
            incident: &incident,
            incident_json: &json,
            base_url: &self.base_url,
            sent_at_ms: now,
            problem: problem.as_ref(),
        };
        let group = match notification.digest_kind.as_deref() {
            None => None,
            Some(kind) => match self.group_context(notification, kind, now).await {
                Ok(group) => Some(group),
                Err(error) => {
                    return self.retry(notification, now, None, format!("store: {error}"), None);
                }
            },
        };
        let (url, body) = match (&channel.kind, &group) {
            (ChannelKind::Webhook { url, secret }, Some(group)) => (
                url,
                grouped::webhook(group, secret.as_ref(), &notification.idempotency_key),
            ),
            (ChannelKind::Webhook { url, secret }, None) => (
                url,
                payload::webhook(&context, secret.as_ref(), &notification.idempotency_key),
            ),
            (ChannelKind::Alertmanager { url }, Some(group)) => {
                (url, grouped::alertmanager(group, &channel.name))
            }
            (ChannelKind::Alertmanager { url }, None) => {
                (url, payload::alertmanager(&context, &channel.name))
            }
            (ChannelKind::PagerDuty { url, routing_key }, Some(group)) => {
                (url, grouped::pagerduty(group, routing_key))
            }
            (ChannelKind::PagerDuty { url, routing_key }, None) => {
                (url, payload::pagerduty(&context, routing_key))
            }
            (ChannelKind::Slack { url }, Some(group)) => (url, grouped::slack(group)),
            (ChannelKind::Slack { url }, None) => (url, payload::slack(&context)),
            (ChannelKind::Email(server), _) => {
                let message = match &group {
                    Some(group) => grouped::email(group),
                    None => payload::email(&context),
                };
                let sent = email::send_with_idempotency_key(
                    server,
                    &message,
                    &[],
                    &notification.idempotency_key,
                    REQUEST_TIMEOUT,
                )
                .await;
                return match sent {
                    Ok(()) => {
                        tracing::info!(message = "Email delivered.");
                        DeliveryAttempt {
                            id: notification.id,
                            ts_ms: now,
                            status: None,
                            error: None,
                            state: "delivered",
                            retry_at_ms: now,
                        }
                    }
                    Err(error) if error.is_permanent() => DeliveryAttempt {
                        status: error.smtp_code(),
                        ..failed(error.to_string())
                    },
                    Err(error) => self.retry(
                        notification,
                        now,
                        error.smtp_code(),
                        error.to_string(),
                        None,
                    ),
                };
            }
        };
        let mut headers = body.headers.clone();
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("idempotency-key"))
        {
            headers.push((
                "Idempotency-Key".into(),
                notification.idempotency_key.clone(),
            ));
        }
        match http::post(url, body.content_type, &headers, body.body, REQUEST_TIMEOUT).await {
            Ok(outcome) if (200..300).contains(&outcome.status) => {
                tracing::info!(message = "Notification delivered.", status = outcome.status);
                DeliveryAttempt {
                    id: notification.id,
                    ts_ms: now,
                    status: Some(outcome.status),
                    error: None,
                    state: "delivered",
                    retry_at_ms: now,
                }
            }
            Ok(outcome) if outcome.status == 429 || outcome.status >= 500 => self.retry(
                notification,
                now,
                Some(outcome.status),
                format!("receiver answered {}", outcome.status),
                outcome.retry_after,
            ),
            // Other answers (4xx, 3xx) will not change on retry.
            Ok(outcome) => DeliveryAttempt {
                status: Some(outcome.status),
                ..failed(format!("receiver refused with {}", outcome.status))
            },
            Err(error) => self.retry(notification, now, None, error.to_string(), None),
        }
    }

    /// The incidents a group message carries (the first [`MAX_LISTED`] in full).
    async fn group_context(
        &self,
        notification: &Notification,
        kind: &str,
        now: i64,
    ) -> Result<GroupContext, StoreError> {
        // An escalation lists its members; other group messages are pointed at by theirs.
        let members = match GroupedKind::parse(kind) {
            Some(GroupedKind::Escalation) => notification
                .group_detail
                .as_deref()
                .and_then(|detail| serde_json::from_str::<serde_json::Value>(detail).ok())
                .and_then(|detail| {
                    serde_json::from_value::<Vec<i64>>(detail["incidents"].clone()).ok()
                })
                .unwrap_or_default(),
            _ => self.store.group_members(notification.id).await?,
        };
        let mut incidents = Vec::new();
        let mut views = Vec::new();
        for id in members.iter().take(MAX_LISTED) {
            if let Some(incident) = self.store.incident(*id).await? {
                views.push(
                    serde_json::to_value(IncidentView::new(incident.clone(), None))
                        .unwrap_or(serde_json::Value::Null),
                );
                incidents.push(incident);
            }
        }
        Ok(GroupContext {
            kind: GroupedKind::parse(kind).unwrap_or(GroupedKind::Group),
            group_key: notification.group_key.clone().unwrap_or_default(),
            incidents,
            views,
            total: members.len(),
            detail: notification
                .group_detail
                .as_deref()
                .and_then(|detail| serde_json::from_str(detail).ok())
                .unwrap_or(serde_json::Value::Null),
            base_url: self.base_url.clone(),
            sent_at_ms: now,
        })
    }

    fn retry(
        &self,
        notification: &Notification,
        now: i64,
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    ) -> DeliveryAttempt {
        let attempts = notification.attempts + 1;
        let (state, delay) = if attempts >= MAX_ATTEMPTS {
            ("failed", Duration::ZERO)
        } else {
            (
                "pending",
                retry_after.map_or_else(|| backoff(attempts - 1), |after| after.min(MAX_BACKOFF)),
            )
        };
        tracing::warn!(message = "Notification attempt failed.", %error, attempts, retry_in_ms = delay.as_millis() as u64);
        DeliveryAttempt {
            id: notification.id,
            ts_ms: now,
            status,
            error: Some(error),
            state,
            retry_at_ms: now + delay.as_millis() as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(1250));
        assert!(backoff(3) >= Duration::from_secs(6));
        assert!(backoff(40) <= MAX_BACKOFF.mul_f64(1.25));
    }
}
