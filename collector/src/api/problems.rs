//! Problem routes: list, detail with linked incidents, and the operator's
//! update (state, root cause, workaround, linked change).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::actor::Actor;
use super::error::{ErrorBody, ErrorCode};
use super::extract::{JsonBody, Path, Query};
use super::{ApiError, ApiState, paging, rfc3339};
use crate::domain::{ProblemRecord, ProblemState};
use crate::store::{ProblemFilter, ProblemRefused, ProblemUpdate};

pub fn view(problem: &ProblemRecord) -> ProblemView {
    ProblemView {
        id: problem.id,
        reference: problem.reference(),
        title: problem.title.clone(),
        state: problem.state,
        rule: problem.rule.clone(),
        agent_id: problem.agent_id.clone(),
        host: problem.host.clone(),
        root_cause: problem.root_cause.clone(),
        workaround: problem.workaround.clone(),
        change_id: problem.change_id,
        opened_at: rfc3339(problem.opened_ms),
        updated_at: rfc3339(problem.updated_ms),
        updated_by: problem.updated_by.clone(),
        resolved_at: problem.resolved_ms.map(rfc3339),
        incident_count: None,
        incidents: None,
    }
}

/// A problem record as the API shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemView {
    id: i64,
    /// `P-{id}`.
    reference: String,
    title: String,
    state: ProblemState,
    /// The rule whose incidents it groups.
    rule: String,
    /// Set when the problem is about one agent.
    agent_id: Option<String>,
    host: Option<String>,
    root_cause: Option<String>,
    /// Required once the state is `known_error`.
    workaround: Option<String>,
    /// The change record that fixes it.
    change_id: Option<i64>,
    /// RFC 3339.
    opened_at: String,
    /// RFC 3339.
    updated_at: String,
    /// The name of the token that last changed it.
    updated_by: Option<String>,
    /// RFC 3339.
    resolved_at: Option<String>,
    /// Incidents grouped under it (lists and detail).
    #[serde(skip_serializing_if = "Option::is_none")]
    incident_count: Option<i64>,
    /// The grouped incidents (detail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    incidents: Option<Vec<ProblemIncident>>,
}

/// An incident grouped under a problem.
#[derive(Serialize, ToSchema)]
pub struct ProblemIncident {
    id: i64,
    host: String,
    /// The incident's stored state.
    #[schema(value_type = String)]
    state: crate::domain::IncidentState,
    summary: String,
    /// RFC 3339.
    opened_at: String,
    /// RFC 3339.
    resolved_at: Option<String>,
}

fn parse_state(text: &str) -> Result<ProblemState, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown state {text:?}; expected open, known_error or resolved"),
        )
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `open`, `known_error` or `resolved`.
    state: Option<String>,
    /// Rows per page: 1 to 5000, default 200.
    limit: Option<u32>,
    /// `X-Next-Cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /api/v1/problems`: newest first, paged.
#[utoipa::path(
    get,
    path = "/api/v1/problems",
    tag = "problems",
    operation_id = "list_problems",
    summary = "Problem records with `incident_count`, newest first, paged",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of problems", body = Vec<ProblemView>,
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 400, description = "`bad_request` (unknown state), `invalid_query` or `invalid_cursor`", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<ApiState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = paging::limit(query.limit, 200, 5000);
    let problems = state
        .store
        .problems(ProblemFilter {
            state: query.state.as_deref().map(parse_state).transpose()?,
            before_id: paging::id_cursor(query.cursor.as_deref())?,
            limit,
        })
        .await?;
    let next = (problems.len() == limit as usize)
        .then(|| problems.last().map(|(problem, _)| problem.id.to_string()))
        .flatten();
    let rows = problems
        .iter()
        .map(|(problem, incident_count)| {
            let mut row = view(problem);
            row.incident_count = Some(*incident_count);
            row
        })
        .collect();
    Ok(paging::respond(rows, next))
}

/// `GET /api/v1/problems/{id}`: the problem and its linked incidents.
#[utoipa::path(
    get,
    path = "/api/v1/problems/{id}",
    tag = "problems",
    operation_id = "get_problem",
    summary = "One problem with its linked incidents",
    params(("id" = i64, Path, description = "Problem id")),
    responses(
        (status = 200, description = "The problem, `incidents` included", body = ProblemView),
        (status = 400, description = "`invalid_path`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such problem", body = ErrorBody),
    ),
)]
pub async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<ProblemView>, ApiError> {
    let problem = state
        .store
        .problem(id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such problem"))?;
    let mut body = view(&problem);
    let mut incidents = Vec::new();
    for incident in state.store.problem_incidents(id).await? {
        if let Some(record) = state.store.incident(incident).await? {
            incidents.push(ProblemIncident {
                id: record.id,
                host: record.host,
                state: record.state,
                summary: record.summary,
                opened_at: rfc3339(record.opened_at_ms),
                resolved_at: record.resolved_at_ms.map(rfc3339),
            });
        }
    }
    body.incident_count = Some(incidents.len() as i64);
    body.incidents = Some(incidents);
    Ok(Json(body))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProblemPatch {
    title: Option<String>,
    /// `open` → `known_error` (needs a `workaround`) → `resolved`.
    state: Option<String>,
    root_cause: Option<String>,
    workaround: Option<String>,
    change_id: Option<i64>,
}

/// `PATCH /api/v1/problems/{id}`.
#[utoipa::path(
    patch,
    path = "/api/v1/problems/{id}",
    tag = "problems",
    operation_id = "update_problem",
    summary = "Edit a problem: state, root cause, workaround, linked change",
    params(("id" = i64, Path, description = "Problem id")),
    request_body = ProblemPatch,
    responses(
        (status = 200, description = "The problem", body = ProblemView),
        (status = 400, description = "`bad_request` (unknown state, no workaround, no such change), `invalid_json` or `invalid_path`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such problem", body = ErrorBody),
        (status = 409, description = "`invalid_transition`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
    ),
)]
pub async fn update(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<i64>,
    JsonBody(patch): JsonBody<ProblemPatch>,
) -> Result<Json<ProblemView>, ApiError> {
    let update = ProblemUpdate {
        title: patch.title.filter(|title| !title.trim().is_empty()),
        state: patch.state.as_deref().map(parse_state).transpose()?,
        root_cause: patch.root_cause,
        workaround: patch.workaround,
        change_id: patch.change_id,
        by: actor.name.clone(),
        now_ms: steward_core::now_ms(),
    };
    let problem = match state.store.update_problem(id, update).await? {
        Ok(problem) => problem,
        Err(ProblemRefused::NotFound) => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "no such problem"));
        }
        Err(ProblemRefused::Transition(from, to)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("a problem cannot go from {from} to {to} (open → known_error → resolved)"),
            )
            .with_code(ErrorCode::InvalidTransition));
        }
        Err(ProblemRefused::NoWorkaround) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "a known error needs a `workaround`",
            ));
        }
        Err(ProblemRefused::UnknownChange) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "no such change"));
        }
    };
    tracing::info!(message = "Problem updated.", id, state = %problem.state, by = %actor.name);
    Ok(Json(view(&problem)))
}
