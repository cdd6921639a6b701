//! Incident routes: list, detail with timeline, acknowledge, resolve, notes,
//! rules, and SLA figures (MTTA/MTTR and breaches per severity).

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use utoipa::{IntoParams, ToSchema};

use axum::response::Response;

use super::actor::Actor;
use super::error::{ErrorBody, ErrorCode};
use super::extract::{Path, Query};
use super::{ApiError, ApiState, paging, rfc3339};
use crate::domain::{IncidentRecord, IncidentState, IncidentView, Severity, TimelineView};
use crate::incidents::IncidentError;
use crate::rules::{Rule, RuleKind};
use crate::store::{IncidentFilter, NotificationFilter, SeriesKey};

pub fn view(state: &ApiState, incident: IncidentRecord) -> IncidentView {
    let latest = state
        .store
        .latest_value(&SeriesKey {
            agent_id: incident.agent_id.clone(),
            metric: incident.metric.clone(),
            labels: incident.labels.clone(),
        })
        .map(|latest| latest.value);
    IncidentView::new(incident, latest)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `open`, `acknowledged`, `flapping`, `suppressed`, `resolved` or
    /// `unresolved` (open or acknowledged).
    state: Option<String>,
    /// `critical`, `major`, `minor`, `warning` or `info`.
    severity: Option<String>,
    /// Agent id.
    agent: Option<String>,
    /// Host name containing this text, any case.
    host: Option<String>,
    /// Rows per page: 1 to 5000, default 500.
    limit: Option<u32>,
    /// `X-Next-Cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /api/v1/incidents`: newest first, paged (see `paging`).
#[utoipa::path(
    get,
    path = "/api/v1/incidents",
    tag = "incidents",
    operation_id = "list_incidents",
    summary = "Incidents, newest first, paged",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of incidents", body = Vec<IncidentView>,
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 400, description = "`bad_request` (unknown state or severity), `invalid_query` or `invalid_cursor`", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<ApiState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    // Flapping and suppressed are views of unresolved incidents: the store is
    // asked for unresolved ones (so their pages do not fill with resolved
    // rows) and the view is applied here.
    let (stored_state, unresolved, only_flapping, only_suppressed) = match query.state.as_deref() {
        None => (None, false, false, false),
        Some("unresolved") => (None, true, false, false),
        Some("flapping") => (None, true, true, false),
        Some("suppressed") => (None, true, false, true),
        Some(other) => match other.parse::<IncidentState>() {
            Ok(stored) => (Some(stored), false, false, false),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown state {other:?}; expected open, acknowledged, flapping, suppressed, resolved or unresolved"
                    ),
                ));
            }
        },
    };
    let severity = query
        .severity
        .as_deref()
        .map(str::parse::<Severity>)
        .transpose()
        .map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{error}; expected critical, major, minor, warning or info"),
            )
        })?;
    let limit = paging::limit(query.limit, 500, 5000);
    let incidents = state
        .store
        .incidents(IncidentFilter {
            state: stored_state,
            unresolved,
            severity,
            agent_id: query.agent,
            host_contains: query.host.filter(|host| !host.is_empty()),
            before_id: paging::id_cursor(query.cursor.as_deref())?,
            limit,
        })
        .await?;
    let next = (incidents.len() == limit as usize)
        .then(|| incidents.last().map(|incident| incident.id.to_string()))
        .flatten();
    Ok(paging::respond(
        incidents
            .into_iter()
            .filter(|incident| {
                !only_flapping || (incident.flapping && !incident.state.is_resolved())
            })
            .filter(|incident| {
                !only_suppressed || (incident.suppressed && !incident.state.is_resolved())
            })
            .map(|incident| view(&state, incident))
            .collect(),
        next,
    ))
}

/// `GET /api/v1/incidents/{id}`: one incident with its timeline.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}",
    tag = "incidents",
    operation_id = "get_incident",
    summary = "One incident with its timeline",
    params(("id" = i64, Path, description = "Incident id")),
    responses(
        (status = 200, description = "The incident, `timeline` included", body = IncidentView),
        (status = 400, description = "`invalid_path`: the id is not a number", body = ErrorBody),
        (status = 404, description = "`not_found`: no such incident", body = ErrorBody),
    ),
)]
pub async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<IncidentView>, ApiError> {
    let incident = state
        .store
        .incident(id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such incident"))?;
    let timeline = state.store.incident_timeline(id).await?;
    let mut view = view(&state, incident);
    view.timeline = Some(
        timeline
            .into_iter()
            .map(|entry| TimelineView::new(entry.ts_ms, entry.kind, entry.actor, entry.detail))
            .collect(),
    );
    Ok(Json(view))
}

/// Body of ack/resolve/notes; every field optional except a note's `text`.
/// Who acts is the token's name ([`Actor`]); a `by` field, which older
/// clients send, is accepted and ignored.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// Ignored: the actor is the token's name.
    #[serde(default, rename = "by")]
    #[schema(value_type = Option<String>, deprecated)]
    _by: Option<serde::de::IgnoredAny>,
    /// A note recorded with an acknowledgement.
    note: Option<String>,
    /// The text of a note (`POST …/notes`); `note` is accepted too.
    text: Option<String>,
}

fn parse_body(body: &str) -> Result<ActionBody, ApiError> {
    if body.trim().is_empty() {
        return Ok(ActionBody::default());
    }
    serde_json::from_str(body).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {error}"),
        )
        .with_code(ErrorCode::InvalidJson)
    })
}

impl From<IncidentError> for ApiError {
    fn from(error: IncidentError) -> Self {
        match error {
            IncidentError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "no such incident"),
            IncidentError::AlreadyResolved => {
                ApiError::new(StatusCode::CONFLICT, "the incident is already resolved")
                    .with_code(ErrorCode::AlreadyResolved)
            }
            IncidentError::AlreadyAcknowledged => {
                ApiError::new(StatusCode::CONFLICT, "the incident is already acknowledged")
                    .with_code(ErrorCode::AlreadyAcknowledged)
            }
            IncidentError::Store(error) => error.into(),
        }
    }
}

/// `POST /api/v1/incidents/{id}/ack`: acknowledged by the token's name.
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{id}/ack",
    tag = "incidents",
    operation_id = "acknowledge_incident",
    summary = "Acknowledge an incident, optionally with a `note`",
    params(("id" = i64, Path, description = "Incident id")),
    request_body(content = Option<ActionBody>, description = "Optional; may be empty"),
    responses(
        (status = 200, description = "The acknowledged incident", body = IncidentView),
        (status = 400, description = "`invalid_json` or `invalid_path`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such incident", body = ErrorBody),
        (status = 409, description = "`already_acknowledged` or `already_resolved`", body = ErrorBody),
    ),
)]
pub async fn acknowledge(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<i64>,
    body: String,
) -> Result<Json<IncidentView>, ApiError> {
    let body = parse_body(&body)?;
    let incident = state
        .incidents
        .acknowledge(id, actor.name, body.note.clone())
        .await?;
    Ok(Json(view(&state, incident)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GroupQuery {
    /// The `group` of a grouped message (webhook `group`, Alertmanager
    /// `groupKey`, PagerDuty `dedup_key` without `steward-group:`).
    group: String,
}

/// The incidents one group acknowledgement took.
#[derive(Serialize, ToSchema)]
pub struct GroupAcknowledged {
    /// The group key, without `steward-group:`.
    group: String,
    /// Ids of the incidents acknowledged.
    acknowledged: Vec<i64>,
}

/// `POST /api/v1/incidents/ack?group=KEY`: acknowledges the incidents of
/// one grouped message (storm summary, digest, group) at once.
#[utoipa::path(
    post,
    path = "/api/v1/incidents/ack",
    tag = "incidents",
    operation_id = "acknowledge_incident_group",
    summary = "Acknowledge every incident of one grouped notification",
    params(GroupQuery),
    request_body(content = Option<ActionBody>, description = "Optional; may be empty"),
    responses(
        (status = 200, description = "The incidents acknowledged", body = GroupAcknowledged),
        (status = 400, description = "`invalid_query` (no `group`) or `invalid_json`", body = ErrorBody),
        (status = 404, description = "`not_found`: no incident was sent in this group", body = ErrorBody),
    ),
)]
pub async fn acknowledge_group(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Query(query): Query<GroupQuery>,
    body: String,
) -> Result<Json<GroupAcknowledged>, ApiError> {
    let body = parse_body(&body)?;
    let group = query
        .group
        .strip_prefix("steward-group:")
        .unwrap_or(&query.group);
    let acknowledged = state
        .incidents
        .acknowledge_group(group, actor.name, body.note.clone())
        .await
        .map_err(|error| match error {
            IncidentError::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "no incident was sent in this group")
            }
            other => other.into(),
        })?;
    let ids: Vec<i64> = acknowledged.iter().map(|incident| incident.id).collect();
    Ok(Json(GroupAcknowledged {
        group: group.to_string(),
        acknowledged: ids,
    }))
}

/// `POST /api/v1/incidents/{id}/resolve`: resolved by the token's name.
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{id}/resolve",
    tag = "incidents",
    operation_id = "resolve_incident",
    summary = "Resolve an incident by hand",
    params(("id" = i64, Path, description = "Incident id")),
    request_body(content = Option<ActionBody>, description = "Optional; may be empty"),
    responses(
        (status = 200, description = "The resolved incident", body = IncidentView),
        (status = 400, description = "`invalid_json` or `invalid_path`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such incident", body = ErrorBody),
        (status = 409, description = "`already_resolved`", body = ErrorBody),
    ),
)]
pub async fn resolve(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<i64>,
    body: String,
) -> Result<Json<IncidentView>, ApiError> {
    // Nothing of the body is used, but a malformed one is still refused.
    parse_body(&body)?;
    let incident = state.incidents.resolve(id, actor.name).await?;
    Ok(Json(view(&state, incident)))
}

/// `POST /api/v1/incidents/{id}/notes`: a note on the timeline.
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{id}/notes",
    tag = "incidents",
    operation_id = "add_incident_note",
    summary = "Add a note to an incident's timeline",
    params(("id" = i64, Path, description = "Incident id")),
    request_body = ActionBody,
    responses(
        (status = 201, description = "The incident", body = IncidentView),
        (status = 400, description = "`bad_request` (no `text`), `invalid_json` or `invalid_path`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such incident", body = ErrorBody),
    ),
)]
pub async fn add_note(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<i64>,
    body: String,
) -> Result<(StatusCode, Json<IncidentView>), ApiError> {
    let body = parse_body(&body)?;
    let text = body
        .text
        .clone()
        .or(body.note.clone())
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "a note needs a non-empty \"text\"")
        })?;
    let incident = state.incidents.add_note(id, actor.name, text).await?;
    Ok((StatusCode::CREATED, Json(view(&state, incident))))
}

/// Which condition a rule fires on.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
#[schema(as = RuleKind)]
pub enum RuleKindName {
    /// The value crosses `threshold` for `for_seconds`.
    Threshold,
    /// The series stops reporting.
    Absent,
}

/// An alert rule in force. The threshold keys (`op` through
/// `keep_firing_for_seconds`) are present only on `threshold` rules.
#[derive(Serialize, ToSchema)]
#[schema(as = Rule)]
pub struct RuleView {
    name: String,
    metric: String,
    /// Labels a series must carry with exactly these values; empty selects
    /// every series of `metric`.
    #[serde(rename = "match")]
    matchers: BTreeMap<String, String>,
    severity: Severity,
    /// The incident summary template.
    summary: String,
    runbook: Option<String>,
    kind: RuleKindName,
    /// `>`, `>=`, `<`, `<=`, `==` or `!=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    op: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
    /// Where the value must return to before the incident resolves; null
    /// when it is `threshold` itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    clear: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    for_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_firing_for_seconds: Option<f64>,
}

impl From<&Rule> for RuleView {
    fn from(rule: &Rule) -> Self {
        let threshold = match &rule.kind {
            RuleKind::Threshold(threshold) => Some(threshold),
            RuleKind::Absent(_) => None,
        };
        RuleView {
            name: rule.name.clone(),
            metric: rule.metric.clone(),
            matchers: rule.matchers.clone(),
            severity: rule.severity,
            summary: rule.summary.clone(),
            runbook: rule.runbook.clone(),
            kind: match rule.kind {
                RuleKind::Threshold(_) => RuleKindName::Threshold,
                RuleKind::Absent(_) => RuleKindName::Absent,
            },
            op: threshold.map(|threshold| threshold.op.as_str()),
            threshold: threshold.map(|threshold| threshold.threshold),
            clear: threshold.map(|threshold| threshold.clear),
            for_seconds: threshold.map(|threshold| threshold.for_duration.as_secs_f64()),
            keep_firing_for_seconds: threshold
                .map(|threshold| threshold.keep_firing_for.as_secs_f64()),
        }
    }
}

/// `GET /api/v1/rules`: the loaded rules, described.
#[utoipa::path(
    get,
    path = "/api/v1/rules",
    tag = "incidents",
    operation_id = "list_rules",
    summary = "The alert rules in force",
    responses((status = 200, description = "Every rule", body = Vec<RuleView>)),
)]
pub async fn rules(State(state): State<ApiState>) -> Json<Vec<RuleView>> {
    Json(state.incidents.rules().iter().map(RuleView::from).collect())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SlaQuery {
    /// Window to report on, e.g. `7d` (default), `24h`.
    window: Option<String>,
}

/// One severity's figures over the window.
#[derive(Serialize, Default, ToSchema)]
pub struct SeverityFigures {
    /// Incidents opened in the window.
    incidents: u64,
    acknowledged: u64,
    resolved: u64,
    open: u64,
    /// Mean time to acknowledge; null when none was acknowledged.
    mtta_seconds: Option<f64>,
    /// Mean time to resolve; null when none was resolved.
    mttr_seconds: Option<f64>,
    /// Acknowledged (or still not) past the severity's SLA.
    ack_breaches: u64,
    /// Resolved (or still not) past the severity's SLA.
    resolve_breaches: u64,
}

/// MTTA, MTTR and breaches per severity over a window.
#[derive(Serialize, ToSchema)]
pub struct SlaReport {
    window_seconds: u64,
    /// RFC 3339: the start of the window.
    since: String,
    /// By severity name; a severity without incidents in the window is absent.
    severities: BTreeMap<String, SeverityFigures>,
}

/// `GET /api/v1/sla`: MTTA/MTTR and breaches per severity.
#[utoipa::path(
    get,
    path = "/api/v1/sla",
    tag = "incidents",
    operation_id = "sla_figures",
    summary = "MTTA, MTTR and SLA breaches per severity over a window",
    params(SlaQuery),
    responses(
        (status = 200, description = "`window_seconds`, `since` and `severities` (per severity: counts, `mtta_seconds`, `mttr_seconds`, breaches)", body = SlaReport),
        (status = 400, description = "`bad_request`: invalid or too long window", body = ErrorBody),
    ),
)]
pub async fn sla(
    State(state): State<ApiState>,
    Query(query): Query<SlaQuery>,
) -> Result<Json<SlaReport>, ApiError> {
    let window = match query.window.as_deref() {
        None => std::time::Duration::from_secs(7 * 24 * 3600),
        Some(text) => humantime::parse_duration(text).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("invalid window {text:?}: {error}"),
            )
        })?,
    };
    // Resolved incidents are kept 400 days by default; a longer window reads
    // the whole table for nothing.
    const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(400 * 24 * 3600);
    if window > MAX_WINDOW {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "window must be at most 400d",
        ));
    }
    let now = steward_core::now_ms();
    let since = now - window.as_millis() as i64;
    let incidents = state.store.incidents_opened_since(since).await?;
    let mut by_severity: std::collections::BTreeMap<
        Severity,
        (SeverityFigures, Vec<f64>, Vec<f64>),
    > = Default::default();
    for incident in incidents {
        let view = view(&state, incident.clone());
        let (figures, ack_times, resolve_times) = by_severity.entry(incident.severity).or_default();
        figures.incidents += 1;
        if let Some(at) = incident.acknowledged_at_ms {
            figures.acknowledged += 1;
            ack_times.push((at - incident.opened_at_ms) as f64 / 1000.0);
        }
        match incident.resolved_at_ms {
            Some(at) => {
                figures.resolved += 1;
                resolve_times.push((at - incident.opened_at_ms) as f64 / 1000.0);
            }
            None => figures.open += 1,
        }
        figures.ack_breaches += u64::from(view.sla_ack_breached);
        figures.resolve_breaches += u64::from(view.sla_resolve_breached);
    }
    let mean = |values: &[f64]| {
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let severities = by_severity
        .into_iter()
        .map(|(severity, (mut figures, ack_times, resolve_times))| {
            figures.mtta_seconds = mean(&ack_times);
            figures.mttr_seconds = mean(&resolve_times);
            (severity.to_string(), figures)
        })
        .collect();
    Ok(Json(SlaReport {
        window_seconds: window.as_secs(),
        since: rfc3339(since),
        severities,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// `pending`, `held`, `delivered`, `failed`, `grouped` or `grouped_sent`.
    state: Option<String>,
    /// Only this incident's rows (`grouped`/`grouped_sent`: its place in a grouped message).
    incident: Option<i64>,
    /// Rows per page: 1 to 5000, default 200.
    limit: Option<u32>,
    /// `X-Next-Cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /api/v1/notifications`: the outbox, newest first (failed deliveries
/// included), paged.
#[utoipa::path(
    get,
    path = "/api/v1/notifications",
    tag = "incidents",
    operation_id = "list_notifications",
    summary = "The notification outbox, newest first, paged",
    params(NotificationsQuery),
    responses(
        (status = 200, description = "A page of notifications", body = Vec<NotificationView>,
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 400, description = "`invalid_query` or `invalid_cursor`", body = ErrorBody),
    ),
)]
pub async fn notifications(
    State(state): State<ApiState>,
    Query(query): Query<NotificationsQuery>,
) -> Result<Response, ApiError> {
    let limit = paging::limit(query.limit, 200, 5000);
    let before_id = paging::id_cursor(query.cursor.as_deref())?;
    let rows = state
        .store
        .notifications(NotificationFilter {
            state: query.state,
            incident_id: query.incident,
            before_id,
            limit,
        })
        .await?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|row| row.id.to_string()))
        .flatten();
    Ok(paging::respond(
        rows.into_iter()
            .map(|row| NotificationView {
                id: row.id,
                idempotency_key: row.idempotency_key,
                incident_id: row.incident_id,
                event: row.event,
                channel: row.channel,
                state: row.state,
                attempts: row.attempts,
                next_attempt_at: rfc3339(row.next_attempt_ms),
                last_error: row.last_error,
                created_at: rfc3339(row.created_ms),
                delivered_at: row.delivered_ms.map(rfc3339),
            })
            .collect(),
        next,
    ))
}

/// One row of the notification outbox.
#[derive(Serialize, ToSchema)]
#[schema(as = Notification)]
pub struct NotificationView {
    id: i64,
    /// Sent to the receiver so it can drop duplicates.
    idempotency_key: String,
    incident_id: i64,
    /// What happened to the incident (`opened`, `acknowledged`, `resolved`, …).
    #[schema(value_type = String)]
    event: crate::domain::IncidentEvent,
    /// The channel's name in collector.toml.
    channel: String,
    /// `pending`, `held`, `delivered` or `failed`.
    state: String,
    attempts: i64,
    /// RFC 3339.
    next_attempt_at: String,
    last_error: Option<String>,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    delivered_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::incidents::describe_rule;
    use crate::rules::{AbsentRule, Op, ThresholdRule};

    fn rule(kind: RuleKind, runbook: Option<&str>) -> Rule {
        Rule {
            name: "disk".to_string(),
            metric: "disk.used_percent".to_string(),
            matchers: [("mount".to_string(), "/".to_string())].into(),
            severity: Severity::Major,
            summary: "{value}% used".to_string(),
            runbook: runbook.map(str::to_string),
            kind,
        }
    }

    /// Guards the typed `Rule` of issue #14 against changing the JSON
    /// `describe_rule` built: same keys, absent on absence rules.
    #[test]
    fn the_rule_view_serialises_as_describe_rule() {
        let threshold = |clear| {
            RuleKind::Threshold(ThresholdRule {
                op: Op::Ge,
                threshold: 90.0,
                clear,
                for_duration: Duration::from_secs(300),
                keep_firing_for: Duration::from_millis(1500),
                flap: None,
            })
        };
        let absent = RuleKind::Absent(AbsentRule {
            after: Some(Duration::from_secs(60)),
            intervals: None,
        });
        for rule in [
            rule(threshold(Some(80.0)), Some("https://runbooks/disk")),
            rule(threshold(None), None),
            rule(absent, None),
        ] {
            assert_eq!(
                serde_json::to_value(RuleView::from(&rule)).unwrap(),
                describe_rule(&rule)
            );
        }
    }

    #[test]
    fn the_sla_report_serialises_as_the_hand_built_json_did() {
        let figures = || SeverityFigures {
            incidents: 3,
            acknowledged: 2,
            resolved: 1,
            open: 2,
            mtta_seconds: Some(12.5),
            mttr_seconds: None,
            ack_breaches: 1,
            resolve_breaches: 0,
        };
        let report = SlaReport {
            window_seconds: 604_800,
            since: rfc3339(0),
            severities: [("major".to_string(), figures())].into(),
        };
        let mut severities = serde_json::Map::new();
        severities.insert(
            "major".to_string(),
            serde_json::to_value(figures()).unwrap(),
        );
        let old = serde_json::json!({
            "window_seconds": 604_800u64,
            "since": rfc3339(0),
            "severities": severities,
        });
        assert_eq!(serde_json::to_value(&report).unwrap(), old);
        let figures = serde_json::to_value(figures()).unwrap();
        assert!(figures["mttr_seconds"].is_null(), "{figures}");
    }
}
