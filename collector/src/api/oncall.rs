//! On-call and maintenance routes: who is on call now and next, and
//! maintenance windows (create, list, end).

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::actor::Actor;
use super::error::ErrorBody;
use super::extract::{JsonBody, Path, Query};
use super::{ApiError, ApiState, paging, rfc3339};
use crate::notify::{OnCall, next, on_call};
use crate::store::MaintenanceWindow;

/// One person's turn on a schedule.
#[derive(Serialize, ToSchema)]
pub struct Shift {
    person: String,
    /// RFC 3339.
    from: String,
    /// RFC 3339.
    until: String,
}

/// Who is on call for one schedule.
#[derive(Serialize, ToSchema)]
pub struct OnCallView {
    schedule: String,
    /// IANA name, e.g. `Europe/Berlin`; null for a zone without one.
    time_zone: Option<String>,
    /// Null when nobody is on call now.
    now: Option<Shift>,
    /// Null when nobody follows.
    next: Option<Shift>,
}

fn shift(on_call: Option<OnCall>) -> Option<Shift> {
    on_call.map(|shift| Shift {
        person: shift.person,
        from: rfc3339(shift.from_ms),
        until: rfc3339(shift.until_ms),
    })
}

/// `GET /api/v1/oncall`: for each schedule, who is on call now and who is next.
#[utoipa::path(
    get,
    path = "/api/v1/oncall",
    tag = "oncall",
    operation_id = "on_call_now",
    summary = "For each schedule, who is on call now and who is next",
    responses((status = 200, description = "Who is on call now and next, per schedule", body = Vec<OnCallView>)),
)]
pub async fn oncall(State(state): State<ApiState>) -> Json<Vec<OnCallView>> {
    Json(on_call_views(&state, steward_core::now_ms()))
}

/// Who is on call at `now` and who is next, per schedule.
pub(super) fn on_call_views(state: &ApiState, now: i64) -> Vec<OnCallView> {
    state
        .notify
        .schedules
        .iter()
        .map(|schedule| OnCallView {
            schedule: schedule.name.clone(),
            time_zone: schedule.time_zone.iana_name().map(str::to_string),
            now: shift(on_call(schedule, now)),
            next: shift(next(schedule, now)),
        })
        .collect()
}

/// A maintenance window as the API shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = MaintenanceWindow)]
pub struct WindowView {
    id: i64,
    /// Asset ids it silences.
    assets: Vec<String>,
    /// Tags it silences (assets carrying any).
    tags: Vec<String>,
    /// RFC 3339.
    starts_at: String,
    /// RFC 3339.
    ends_at: String,
    /// In force now.
    active: bool,
    /// Change reference (ticket), e.g. `C-12`.
    change: Option<String>,
    /// The change record it belongs to.
    change_id: Option<i64>,
    reason: Option<String>,
    /// The name of the token that created it.
    created_by: String,
    /// RFC 3339.
    created_at: String,
}

pub(super) fn window_view(window: &MaintenanceWindow, now_ms: i64) -> WindowView {
    WindowView {
        id: window.id,
        assets: window.asset_ids.clone(),
        tags: window.tags.clone(),
        starts_at: rfc3339(window.starts_ms),
        ends_at: rfc3339(window.ends_ms),
        active: window.is_active(now_ms),
        change: window.change_ref.clone(),
        change_id: window.change_id,
        reason: window.reason.clone(),
        created_by: window.created_by.clone(),
        created_at: rfc3339(window.created_ms),
    }
}

/// `GET /api/v1/maintenance`: current and future windows.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Rows per page: 1 to 5000, default 500.
    limit: Option<u32>,
    /// The id of the last window of the previous page.
    cursor: Option<String>,
}

/// Windows that have not ended, by id, paged (see `paging`).
#[utoipa::path(
    get,
    path = "/api/v1/maintenance",
    tag = "oncall",
    operation_id = "list_maintenance_windows",
    summary = "Maintenance windows that have not ended, by id, paged",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of maintenance windows", body = Vec<WindowView>,
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 400, description = "`invalid_query` or `invalid_cursor`", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<ApiState>,
    Query(query): Query<ListQuery>,
) -> Result<axum::response::Response, ApiError> {
    let now = steward_core::now_ms();
    let limit = paging::limit(query.limit, 500, 5000) as usize;
    let after = paging::id_cursor(query.cursor.as_deref())?;
    let mut windows = state.store.maintenance_windows(now).await?;
    windows.sort_by_key(|window| window.id);
    let mut page: Vec<_> = windows
        .iter()
        .filter(|window| after.is_none_or(|after| window.id > after))
        .take(limit + 1)
        .collect();
    let next = (page.len() > limit)
        .then(|| {
            page.truncate(limit);
            page.last().map(|window| window.id.to_string())
        })
        .flatten();
    Ok(paging::respond(
        page.into_iter()
            .map(|window| window_view(window, now))
            .collect::<Vec<_>>(),
        next,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWindow {
    #[serde(default)]
    assets: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    /// RFC 3339; default now.
    starts_at: Option<String>,
    /// RFC 3339; or give `duration`.
    ends_at: Option<String>,
    /// e.g. "2h"; from `starts_at`.
    duration: Option<String>,
    /// Change reference (ticket), optional.
    change: Option<String>,
    /// A change record this window belongs to (its id); its reference
    /// `C-{id}` becomes the window's `change` unless one is given.
    change_id: Option<i64>,
    reason: Option<String>,
    /// Ignored: the window is recorded as created by the token's name.
    #[serde(default, rename = "by")]
    #[schema(value_type = Option<String>, deprecated)]
    _by: Option<serde::de::IgnoredAny>,
}

pub(super) fn parse_time(text: &str) -> Result<i64, ApiError> {
    humantime::parse_rfc3339_weak(text)
        .map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("invalid time {text:?}: {error}"),
            )
        })
        .map(|time| {
            time.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis() as i64)
        })
}

/// The `[start, end)` of planned work in ms, from optional `starts_at`
/// (default now) and exactly one of `ends_at` and `duration`; `what` names
/// it in the error ("the window", "the change").
pub(super) fn planned_span(
    starts_at: Option<&str>,
    ends_at: Option<&str>,
    duration: Option<&str>,
    now_ms: i64,
    what: &str,
) -> Result<(i64, i64), ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let starts_ms = starts_at.map(parse_time).transpose()?.unwrap_or(now_ms);
    let ends_ms = match (ends_at, duration) {
        (Some(end), None) => parse_time(end)?,
        (None, Some(duration)) => {
            let duration = humantime::parse_duration(duration)
                .map_err(|error| bad(format!("invalid duration: {error}")))?;
            starts_ms + duration.as_millis() as i64
        }
        _ => return Err(bad("give exactly one of `ends_at` and `duration`".into())),
    };
    if ends_ms <= starts_ms {
        return Err(bad(format!("{what} must end after it starts")));
    }
    Ok((starts_ms, ends_ms))
}

/// `POST /api/v1/maintenance`
#[utoipa::path(
    post,
    path = "/api/v1/maintenance",
    tag = "oncall",
    operation_id = "create_maintenance_window",
    summary = "Open a maintenance window for assets or tags",
    request_body = NewWindow,
    responses(
        (status = 201, description = "The window", body = WindowView),
        (status = 400, description = "`bad_request` (no assets or tags, bad times, unknown change) or `invalid_json`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_body`: unknown fields or wrong types", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<NewWindow>,
) -> Result<(StatusCode, Json<WindowView>), ApiError> {
    let bad = |message: &str| ApiError::new(StatusCode::BAD_REQUEST, message.to_string());
    if body.assets.is_empty() && body.tags.is_empty() {
        return Err(bad("a window needs `assets` (ids) or `tags`"));
    }
    let now = steward_core::now_ms();
    let (starts_ms, ends_ms) = planned_span(
        body.starts_at.as_deref(),
        body.ends_at.as_deref(),
        body.duration.as_deref(),
        now,
        "the window",
    )?;
    if let Some(change) = body.change_id
        && state.store.change(change).await?.is_none()
    {
        return Err(bad("no such change record (`change_id`)"));
    }
    let mut window = MaintenanceWindow {
        id: 0,
        asset_ids: body.assets,
        tags: body.tags,
        starts_ms,
        ends_ms,
        change_ref: body
            .change
            .or(body.change_id.map(|change| format!("C-{change}"))),
        change_id: body.change_id,
        reason: body.reason,
        created_by: actor.name,
        created_ms: now,
    };
    window.id = state.store.create_maintenance(window.clone()).await?;
    tracing::info!(message = "Maintenance window created.", id = window.id, by = %window.created_by);
    Ok((StatusCode::CREATED, Json(window_view(&window, now))))
}

/// A maintenance window just ended.
#[derive(Serialize, ToSchema)]
pub struct WindowEnded {
    id: i64,
    /// RFC 3339.
    ended_at: String,
}

/// `POST /api/v1/maintenance/{id}/end`: closes the window now.
#[utoipa::path(
    post,
    path = "/api/v1/maintenance/{id}/end",
    tag = "oncall",
    operation_id = "end_maintenance_window",
    summary = "End a maintenance window now",
    params(("id" = i64, Path, description = "Window id")),
    responses(
        (status = 200, description = "The window is over", body = WindowEnded),
        (status = 404, description = "`not_found`: no such maintenance window", body = ErrorBody),
    ),
)]
pub async fn end(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<i64>,
) -> Result<Json<WindowEnded>, ApiError> {
    let now = steward_core::now_ms();
    if !state.store.end_maintenance(id, now).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such maintenance window",
        ));
    }
    tracing::info!(message = "Maintenance window ended.", id, by = %actor.name);
    Ok(Json(WindowEnded {
        id,
        ended_at: rfc3339(now),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_span_takes_an_end_or_a_duration_and_refuses_the_rest() {
        let now = 1_000;
        assert_eq!(
            planned_span(None, None, Some("1h"), now, "the window").unwrap(),
            (now, now + 3_600_000)
        );
        let (start, end) = planned_span(
            Some("2026-12-02T10:00:00Z"),
            Some("2026-12-02T11:00:00Z"),
            None,
            now,
            "the change",
        )
        .unwrap();
        assert_eq!(end - start, 3_600_000);
        for (ends_at, duration, expected) in [
            (None, None, "exactly one of"),
            (Some("2026-12-02T11:00:00Z"), Some("1h"), "exactly one of"),
            (None, Some("soon"), "invalid duration"),
            (Some("yesterday"), None, "invalid time"),
        ] {
            let error = planned_span(None, ends_at, duration, now, "the window").unwrap_err();
            assert!(error.message.contains(expected), "{}", error.message);
        }
        let error = planned_span(
            Some("2026-12-02T11:00:00Z"),
            Some("2026-12-02T10:00:00Z"),
            None,
            now,
            "the change",
        )
        .unwrap_err();
        assert!(
            error
                .message
                .contains("the change must end after it starts")
        );
    }
}
