//! The incident as readers see it: the HTTP API returns it and notifications
//! embed exactly the same JSON, so a webhook receiver and an operator read
//! one shape.

use serde::Serialize;
use steward_core::text::rfc3339_ms;

use super::{IncidentRecord, IncidentState, Labels, Severity};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Incident)]
pub struct IncidentView {
    pub id: i64,
    pub rule: String,
    pub metric: String,
    pub agent_id: String,
    pub host: String,
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub labels: Labels,
    pub severity: Severity,
    /// `open`, `acknowledged`, `flapping` (unresolved and held), `suppressed`
    /// (unresolved, caused by an open parent incident) or `resolved`.
    pub state: &'static str,
    pub flapping: bool,
    pub summary: String,
    pub runbook: Option<String>,
    pub value: Option<f64>,
    pub last_value: Option<f64>,
    pub opened_at: String,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
    pub resolve_reason: Option<String>,
    pub ack_due_at: Option<String>,
    pub resolve_due_at: Option<String>,
    pub sla_breached: bool,
    pub sla_ack_breached: bool,
    pub sla_resolve_breached: bool,
    pub dedup_key: String,
    pub previous_id: Option<i64>,
    pub suppressed: bool,
    pub caused_by: Option<i64>,
    pub problem_id: Option<i64>,
    pub change_id: Option<i64>,
    /// Suppressed until then while waiting for a parent check's incident to
    /// open (`[[dependency]] hold`); it pages then if none did.
    pub waiting_for_parent_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineView>>,
}

/// One line of an incident's timeline, as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TimelineEntry)]
pub struct TimelineView {
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub detail: String,
}

impl TimelineView {
    pub fn new(ts_ms: i64, kind: String, actor: String, detail: String) -> Self {
        Self {
            at: rfc3339_ms(ts_ms),
            kind,
            actor,
            detail,
        }
    }
}

impl IncidentView {
    /// The view of `incident`, given the latest value of its series (shown
    /// while the incident is unresolved).
    pub fn new(incident: IncidentRecord, latest: Option<f64>) -> Self {
        let late = |done: Option<i64>, due: Option<i64>| matches!((done, due), (Some(done), Some(due)) if done > due);
        let ack_breached =
            incident.ack_breached || late(incident.acknowledged_at_ms, incident.ack_due_at_ms);
        let resolve_breached =
            incident.resolve_breached || late(incident.resolved_at_ms, incident.resolve_due_at_ms);
        let resolved = incident.state.is_resolved();
        Self {
            id: incident.id,
            last_value: if resolved {
                incident.last_value
            } else {
                latest.or(incident.last_value)
            },
            rule: incident.rule,
            metric: incident.metric,
            agent_id: incident.agent_id,
            host: incident.host,
            labels: incident.labels,
            severity: incident.severity,
            state: if incident.suppressed && !resolved {
                "suppressed"
            } else {
                shown_state(incident.state, incident.flapping)
            },
            flapping: incident.flapping,
            summary: incident.summary,
            runbook: incident.runbook,
            value: incident.value,
            opened_at: rfc3339_ms(incident.opened_at_ms),
            acknowledged_at: incident.acknowledged_at_ms.map(rfc3339_ms),
            acknowledged_by: incident.acknowledged_by,
            resolved_at: incident.resolved_at_ms.map(rfc3339_ms),
            resolved_by: incident.resolved_by,
            resolve_reason: incident.resolve_reason,
            ack_due_at: incident.ack_due_at_ms.map(rfc3339_ms),
            resolve_due_at: incident.resolve_due_at_ms.map(rfc3339_ms),
            sla_breached: ack_breached || resolve_breached,
            sla_ack_breached: ack_breached,
            sla_resolve_breached: resolve_breached,
            dedup_key: incident.dedup_key,
            previous_id: incident.previous_id,
            suppressed: incident.suppressed,
            caused_by: incident.caused_by,
            problem_id: incident.problem_id,
            change_id: incident.change_id,
            waiting_for_parent_until: incident.held_until_ms.map(rfc3339_ms),
            timeline: None,
        }
    }
}

/// The state shown: a held (flapping) unresolved incident reads `flapping`.
pub fn shown_state(state: IncidentState, flapping: bool) -> &'static str {
    if flapping && !state.is_resolved() {
        "flapping"
    } else {
        state.as_str()
    }
}
