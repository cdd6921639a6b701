//! Change routes: create (with its maintenance window), list, detail with
//! linked incidents, update (outcome closes it), and the DORA-style figures:
//! change failure rate and time to restore change-induced incidents.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::actor::Actor;
use super::error::ErrorBody;
use super::extract::{JsonBody, Path, Query};
use super::oncall::planned_span;
use super::{ApiError, ApiState, paging, rfc3339};
use crate::domain::{ChangeOutcome, ChangeRecord, ChangeRisk};
use crate::store::ChangeUpdate;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// A change record as the API shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = Change)]
pub struct ChangeView {
    id: i64,
    /// `C-{id}`.
    reference: String,
    title: String,
    description: Option<String>,
    /// RFC 3339.
    starts_at: String,
    /// RFC 3339.
    ends_at: String,
    /// In its window now and not closed.
    active: bool,
    /// Affected asset ids.
    assets: Vec<String>,
    /// Affected tags.
    tags: Vec<String>,
    risk: ChangeRisk,
    implementer: Option<String>,
    /// Set when the change is closed.
    outcome: Option<ChangeOutcome>,
    /// Id of its maintenance window.
    maintenance_window: Option<i64>,
    /// The name of the token that recorded it.
    created_by: String,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    updated_at: String,
    /// Incidents linked to the change (lists and detail).
    #[serde(skip_serializing_if = "Option::is_none")]
    incident_count: Option<i64>,
    /// The linked incidents (detail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    incidents: Option<Vec<ChangeIncident>>,
}

/// An incident linked to a change.
#[derive(Serialize, ToSchema)]
pub struct ChangeIncident {
    id: i64,
    /// RFC 3339.
    opened_at: String,
    /// RFC 3339.
    resolved_at: Option<String>,
}

pub fn view(change: &ChangeRecord, now_ms: i64) -> ChangeView {
    ChangeView {
        id: change.id,
        reference: change.reference(),
        title: change.title.clone(),
        description: change.description.clone(),
        starts_at: rfc3339(change.starts_ms),
        ends_at: rfc3339(change.ends_ms),
        active: change.is_active(now_ms),
        assets: change.asset_ids.clone(),
        tags: change.tags.clone(),
        risk: change.risk,
        implementer: change.implementer.clone(),
        outcome: change.outcome,
        maintenance_window: change.window_id,
        created_by: change.created_by.clone(),
        created_at: rfc3339(change.created_ms),
        updated_at: rfc3339(change.updated_ms),
        incident_count: None,
        incidents: None,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChange {
    /// Required, not blank.
    title: String,
    description: Option<String>,
    /// RFC 3339; default now.
    starts_at: Option<String>,
    /// RFC 3339; or give `duration`.
    ends_at: Option<String>,
    /// e.g. "2h"; from `starts_at`.
    duration: Option<String>,
    /// Affected asset ids; give assets or tags.
    #[serde(default)]
    assets: Vec<String>,
    /// Affected tags; give assets or tags.
    #[serde(default)]
    tags: Vec<String>,
    /// low, medium (default) or high.
    risk: Option<String>,
    implementer: Option<String>,
}

/// `POST /api/v1/changes`: the change and its maintenance window.
#[utoipa::path(
    post,
    path = "/api/v1/changes",
    tag = "changes",
    operation_id = "create_change",
    summary = "Record a change; its maintenance window opens with it",
    request_body = NewChange,
    responses(
        (status = 201, description = "The change record", body = ChangeView),
        (status = 400, description = "`bad_request` (no title, assets or tags; bad times or risk) or `invalid_json`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_body`: missing, unknown or mistyped fields", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<NewChange>,
) -> Result<(StatusCode, Json<ChangeView>), ApiError> {
    if body.title.trim().is_empty() {
        return Err(bad("a change needs a `title`"));
    }
    if body.assets.is_empty() && body.tags.is_empty() {
        return Err(bad("a change needs affected `assets` (ids) or `tags`"));
    }
    let now = steward_core::now_ms();
    let (starts_ms, ends_ms) = planned_span(
        body.starts_at.as_deref(),
        body.ends_at.as_deref(),
        body.duration.as_deref(),
        now,
        "the change",
    )?;
    let risk = match body.risk.as_deref() {
        None => ChangeRisk::Medium,
        Some(text) => ChangeRisk::parse(text).ok_or_else(|| {
            bad(format!(
                "unknown risk {text:?}; expected low, medium or high"
            ))
        })?,
    };
    let change = state
        .store
        .create_change(ChangeRecord {
            id: 0,
            title: body.title.trim().to_string(),
            description: body.description,
            starts_ms,
            ends_ms,
            asset_ids: body.assets,
            tags: body.tags,
            risk,
            implementer: body.implementer,
            outcome: None,
            window_id: None,
            created_by: actor.name.clone(),
            created_ms: now,
            updated_ms: now,
        })
        .await?;
    tracing::info!(message = "Change recorded.", id = change.id, by = %actor.name, window = ?change.window_id);
    Ok((StatusCode::CREATED, Json(view(&change, now))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Rows per page: 1 to 5000, default 200.
    limit: Option<u32>,
    /// `X-Next-Cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /api/v1/changes`: newest first, paged.
#[utoipa::path(
    get,
    path = "/api/v1/changes",
    tag = "changes",
    operation_id = "list_changes",
    summary = "Change records with `incident_count`, newest first, paged",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of change records", body = Vec<ChangeView>,
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 400, description = "`invalid_query` or `invalid_cursor`", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<ApiState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = paging::limit(query.limit, 200, 5000);
    let changes = state
        .store
        .changes(paging::id_cursor(query.cursor.as_deref())?, limit)
        .await?;
    let next = (changes.len() == limit as usize)
        .then(|| changes.last().map(|(change, _)| change.id.to_string()))
        .flatten();
    let now = steward_core::now_ms();
    let rows = changes
        .iter()
        .map(|(change, incident_count)| {
            let mut row = view(change, now);
            row.incident_count = Some(*incident_count);
            row
        })
        .collect();
    Ok(paging::respond(rows, next))
}

/// `GET /api/v1/changes/{id}`: the change and the incidents linked to it.
#[utoipa::path(
    get,
    path = "/api/v1/changes/{id}",
    tag = "changes",
    operation_id = "get_change",
    summary = "One change record with its linked incidents",
    params(("id" = i64, Path, description = "Change id")),
    responses(
        (status = 200, description = "The change, `incidents` included", body = ChangeView),
        (status = 400, description = "`invalid_path`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such change", body = ErrorBody),
    ),
)]
pub async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<ChangeView>, ApiError> {
    let change = state
        .store
        .change(id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such change"))?;
    let mut body = view(&change, steward_core::now_ms());
    let incidents: Vec<ChangeIncident> = state
        .store
        .change_incidents(id)
        .await?
        .into_iter()
        .map(|(incident, opened, resolved)| ChangeIncident {
            id: incident,
            opened_at: rfc3339(opened),
            resolved_at: resolved.map(rfc3339),
        })
        .collect();
    body.incident_count = Some(incidents.len() as i64);
    body.incidents = Some(incidents);
    Ok(Json(body))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePatch {
    title: Option<String>,
    description: Option<String>,
    implementer: Option<String>,
    /// successful, failed or rolled_back; closes the change (a window still open ends now).
    outcome: Option<String>,
}

/// `PATCH /api/v1/changes/{id}`.
#[utoipa::path(
    patch,
    path = "/api/v1/changes/{id}",
    tag = "changes",
    operation_id = "update_change",
    summary = "Edit a change record; an `outcome` closes it",
    params(("id" = i64, Path, description = "Change id")),
    request_body = ChangePatch,
    responses(
        (status = 200, description = "The change record", body = ChangeView),
        (status = 400, description = "`bad_request` (unknown outcome), `invalid_json` or `invalid_path`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such change", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
    ),
)]
pub async fn update(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<i64>,
    JsonBody(patch): JsonBody<ChangePatch>,
) -> Result<Json<ChangeView>, ApiError> {
    let outcome = patch
        .outcome
        .as_deref()
        .map(|text| {
            ChangeOutcome::parse(text).ok_or_else(|| {
                bad(format!(
                    "unknown outcome {text:?}; expected successful, failed or rolled_back"
                ))
            })
        })
        .transpose()?;
    let now = steward_core::now_ms();
    let change = state
        .store
        .update_change(
            id,
            ChangeUpdate {
                title: patch.title.filter(|title| !title.trim().is_empty()),
                description: patch.description,
                implementer: patch.implementer,
                outcome,
                now_ms: now,
            },
        )
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such change"))?;
    tracing::info!(message = "Change updated.", id, outcome = ?change.outcome, by = %actor.name);
    Ok(Json(view(&change, now)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// e.g. `30d` (default).
    window: Option<String>,
}

/// `GET /api/v1/changes/stats?window=30d`: of the changes that started in
/// the window, how many had incidents linked (the change failure rate), and
/// the mean time to restore those incidents.
#[utoipa::path(
    get,
    path = "/api/v1/changes/stats",
    tag = "changes",
    operation_id = "change_stats",
    summary = "Change failure rate and mean time to restore over a window",
    params(StatsQuery),
    responses(
        (status = 200, description = "`window_seconds`, `since`, `changes`, `changes_with_incidents`, `change_failure_rate`, `incidents`, `restored_incidents`, `mean_time_to_restore_seconds`, `outcomes`", body = ChangeView),
        (status = 400, description = "`bad_request`: invalid or too long window", body = ErrorBody),
    ),
)]
pub async fn stats(
    State(state): State<ApiState>,
    Query(query): Query<StatsQuery>,
) -> Result<Json<Value>, ApiError> {
    let window = match query.window.as_deref() {
        None => std::time::Duration::from_secs(30 * 24 * 3600),
        Some(text) => humantime::parse_duration(text)
            .map_err(|error| bad(format!("invalid window {text:?}: {error}")))?,
    };
    if window > std::time::Duration::from_secs(400 * 24 * 3600) {
        return Err(bad("window must be at most 400d"));
    }
    let now = steward_core::now_ms();
    let since = now - window.as_millis() as i64;
    let changes = state.store.changes_started_between(since, now).await?;
    let (mut failed, mut incidents, mut restore_seconds) = (0usize, 0usize, Vec::new());
    let mut outcomes = serde_json::Map::new();
    for change in &changes {
        let linked = state.store.change_incidents(change.id).await?;
        failed += usize::from(!linked.is_empty());
        incidents += linked.len();
        restore_seconds.extend(linked.iter().filter_map(|(_, opened, resolved)| {
            Some((resolved.as_ref()? - opened) as f64 / 1000.0)
        }));
        let outcome = change.outcome.map_or("open", ChangeOutcome::as_str);
        let count = outcomes.entry(outcome).or_insert(Value::from(0));
        *count = Value::from(count.as_u64().unwrap_or(0) + 1);
    }
    let rate = (!changes.is_empty()).then(|| failed as f64 / changes.len() as f64);
    let mttr = (!restore_seconds.is_empty())
        .then(|| restore_seconds.iter().sum::<f64>() / restore_seconds.len() as f64);
    Ok(Json(json!({
        "window_seconds": window.as_secs(),
        "since": rfc3339(since),
        "changes": changes.len(),
        "changes_with_incidents": failed,
        "change_failure_rate": rate,
        "incidents": incidents,
        "restored_incidents": restore_seconds.len(),
        "mean_time_to_restore_seconds": mttr,
        "outcomes": outcomes,
    })))
}
