//! `GET /api/v1/overview`: what the console's first page shows, counted by
//! the collector over the whole fleet (every unresolved incident, agent and
//! asset), so no figure is cut short by a list's page size.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::extract::Query;
use super::incidents::view as incident_view;
use super::oncall::{OnCallView, WindowView, on_call_views, window_view};
use super::{ApiError, ApiState, assets, paging, rfc3339};
use crate::assets::{Asset, compliance};
use crate::domain::{IncidentRecord, IncidentState, IncidentView, Severity};

/// An agent without a stream for less than this is `stale` (likely
/// reconnecting or restarting); longer, it is `missing`.
pub const STALE_FOR_MS: i64 = 10 * 60 * 1000;

/// Collectors sharing a database cannot see each other's streams: an agent
/// whose collector is alive and which stored a batch this recently counts
/// as connected there.
pub const ELSEWHERE_SEEN_WITHIN_MS: i64 = 2 * 60 * 1000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// How many of the most urgent incidents and of the assets needing
    /// attention to list: 1 to 500, default 20.
    limit: Option<u32>,
}

/// The fleet at a glance.
#[derive(Serialize, ToSchema)]
pub struct Overview {
    /// RFC 3339: when the figures were taken.
    generated_at: String,
    incidents: IncidentSummary,
    agents: AgentSummary,
    assets: AssetSummary,
    /// Who is on call now and next, per schedule.
    oncall: Vec<OnCallView>,
    /// Maintenance windows in force now.
    maintenance: Vec<WindowView>,
}

/// Every unresolved incident, counted.
#[derive(Serialize, ToSchema, Default)]
pub struct IncidentSummary {
    /// Open or acknowledged.
    unresolved: u64,
    acknowledged: u64,
    /// Held back by a dependency on a parent incident.
    suppressed: u64,
    /// Past their acknowledge or resolve due time.
    sla_breached: u64,
    by_severity: SeverityCounts,
    /// The most urgent first: severity, then paging (not suppressed by a
    /// parent), then not yet acknowledged, then the oldest; at most `limit`.
    most_urgent: Vec<IncidentView>,
}

#[derive(Serialize, ToSchema, Default)]
pub struct SeverityCounts {
    critical: u64,
    major: u64,
    minor: u64,
    warning: u64,
    info: u64,
}

impl SeverityCounts {
    fn count(&mut self, severity: Severity) {
        *match severity {
            Severity::Critical => &mut self.critical,
            Severity::Major => &mut self.major,
            Severity::Minor => &mut self.minor,
            Severity::Warning => &mut self.warning,
            Severity::Info => &mut self.info,
        } += 1;
    }
}

/// Agents by whether they stream to a collector now.
#[derive(Serialize, ToSchema, Default)]
pub struct AgentSummary {
    total: u64,
    /// Holding a stream to this collector now, or (collectors sharing a
    /// database) to another live one and stored a batch in the last 2 minutes.
    connected: u64,
    /// Of `connected`, those streaming to another collector.
    on_other_collectors: u64,
    /// Without a stream for less than `stale_after_seconds`.
    stale: u64,
    /// Without a stream for longer.
    missing: u64,
    stale_after_seconds: u64,
}

/// In-service assets (active, stale or missing) that need an operator.
#[derive(Serialize, ToSchema, Default)]
pub struct AssetSummary {
    /// In service: active, stale or missing.
    in_service: u64,
    /// With at least one security update pending.
    security_updates: u64,
    reboot_required: u64,
    /// With pending security updates, a reboot due or a failed compliance check.
    needing_attention: u64,
    /// Those needing attention, most security updates first; at most `limit`.
    attention: Vec<AssetAttention>,
}

/// One asset needing attention, and why.
#[derive(Serialize, ToSchema)]
pub struct AssetAttention {
    id: String,
    hostname: Option<String>,
    security_updates: u64,
    reboot_required: bool,
    /// The compliance checks it fails, e.g. `os_end_of_life`.
    findings: Vec<String>,
}

/// Open incidents by severity, agents by connection, assets needing patches
/// or reboots, who is on call, maintenance in force.
#[utoipa::path(
    get,
    path = "/api/v1/overview",
    tag = "overview",
    operation_id = "overview",
    summary = "The fleet at a glance: unresolved incidents, agents, assets needing attention, on call, maintenance",
    params(OverviewQuery),
    responses(
        (status = 200, description = "Counts over the whole fleet and the most urgent items", body = Overview),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
    ),
)]
pub async fn overview(
    State(state): State<ApiState>,
    Query(query): Query<OverviewQuery>,
) -> Result<Json<Overview>, ApiError> {
    let limit = paging::limit(query.limit, 20, 500) as usize;
    let now = steward_core::now_ms();
    let (incidents, agents, windows, owners) = tokio::try_join!(
        async { Ok::<_, ApiError>(state.store.unresolved_incidents().await?) },
        async { Ok(state.store.agents().await?) },
        async { Ok(state.store.maintenance_windows(now).await?) },
        // Empty on the embedded backend.
        async {
            Ok(state
                .store
                .agent_owners(crate::incidents::COLLECTOR_DEAD_AFTER)
                .await?)
        },
    )?;
    let me = state.store.cluster_instance();
    let elsewhere: HashSet<&str> = owners
        .iter()
        .filter(|owner| {
            owner.collector_alive
                && owner
                    .collector
                    .as_deref()
                    .is_some_and(|name| Some(name) != me)
                && now - owner.last_seen_ms < ELSEWHERE_SEEN_WITHIN_MS
        })
        .map(|owner| owner.agent_id.as_str())
        .collect();
    let assets = assets::load_with(&state, &agents).await?;
    let mut agent_summary = AgentSummary {
        stale_after_seconds: (STALE_FOR_MS / 1000) as u64,
        ..AgentSummary::default()
    };
    for agent in &agents {
        agent_summary.total += 1;
        if state.registry.is_connected(&agent.id) {
            agent_summary.connected += 1;
        } else if elsewhere.contains(agent.id.as_str()) {
            agent_summary.connected += 1;
            agent_summary.on_other_collectors += 1;
        } else if now - agent.last_seen_ms < STALE_FOR_MS {
            agent_summary.stale += 1;
        } else {
            agent_summary.missing += 1;
        }
    }
    Ok(Json(Overview {
        generated_at: rfc3339(now),
        incidents: summarize_incidents(&state, incidents, now, limit),
        agents: agent_summary,
        assets: summarize_assets(&state, &assets, now, limit),
        oncall: on_call_views(&state, now),
        maintenance: windows
            .iter()
            .filter(|window| window.is_active(now))
            .map(|window| window_view(window, now))
            .collect(),
    }))
}

fn summarize_incidents(
    state: &ApiState,
    mut incidents: Vec<IncidentRecord>,
    now: i64,
    limit: usize,
) -> IncidentSummary {
    let mut summary = IncidentSummary::default();
    for incident in &incidents {
        summary.unresolved += 1;
        summary.by_severity.count(incident.severity);
        summary.acknowledged += u64::from(incident.state == IncidentState::Acknowledged);
        summary.suppressed += u64::from(incident.suppressed);
        summary.sla_breached += u64::from(incident.sla_breached_at(now));
    }
    incidents.sort_by_key(|incident| {
        (
            std::cmp::Reverse(incident.severity),
            incident.suppressed,
            incident.state == IncidentState::Acknowledged,
            incident.opened_at_ms,
            incident.id,
        )
    });
    incidents.truncate(limit);
    summary.most_urgent = incidents
        .into_iter()
        .map(|incident| incident_view(state, incident))
        .collect();
    summary
}

fn summarize_assets(state: &ApiState, assets: &[Asset], now: i64, limit: usize) -> AssetSummary {
    let mut summary = AssetSummary::default();
    let mut attention = Vec::new();
    for asset in assets.iter().filter(|asset| asset.status.is_automatic()) {
        summary.in_service += 1;
        let security_updates = asset.patch.security.unwrap_or(0);
        let reboot_required = asset.patch.reboot_required == Some(true);
        let findings: Vec<String> = compliance(asset, now, &state.asset_policy)
            .into_iter()
            .map(|finding| finding.check.to_string())
            .collect();
        summary.security_updates += u64::from(security_updates > 0);
        summary.reboot_required += u64::from(reboot_required);
        if security_updates > 0 || reboot_required || !findings.is_empty() {
            attention.push(AssetAttention {
                id: asset.id.clone(),
                hostname: asset.hostname.clone(),
                security_updates,
                reboot_required,
                findings,
            });
        }
    }
    summary.needing_attention = attention.len() as u64;
    attention.sort_by(|a, b| {
        b.security_updates
            .cmp(&a.security_updates)
            .then(b.reboot_required.cmp(&a.reboot_required))
            .then(b.findings.len().cmp(&a.findings.len()))
            .then_with(|| a.hostname.cmp(&b.hostname))
    });
    attention.truncate(limit);
    summary.attention = attention;
    summary
}
