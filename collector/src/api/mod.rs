//! The HTTP API (axum): health, agents, latest series, and `/metrics`.
//!
//! The only module that maps errors to HTTP status codes. Reads are open on
//! the configured listener; every write route goes through [`require_token`].

mod agents;
mod assets;
pub mod incidents;
mod oncall;
mod paging;
mod series;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::registry::AgentRegistry;
use crate::store::Store;
use crate::telemetry::Telemetry;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub registry: Arc<AgentRegistry>,
    pub telemetry: Arc<Telemetry>,
    pub incidents: crate::incidents::IncidentHandle,
    pub assets: crate::assets::service::AssetHandle,
    pub asset_policy: Arc<crate::assets::AssetPolicy>,
    pub notify: Arc<crate::notify::NotifyConfig>,
    /// Bearer tokens accepted on write routes. Never logged.
    pub api_tokens: Arc<Vec<String>>,
    /// Supervised tasks that have failed, for `/healthz`.
    pub task_failures: crate::supervisor::TaskFailures,
}

pub fn router(state: ApiState) -> Router {
    let writes = Router::new()
        .route("/api/v1/incidents/{id}/ack", post(incidents::acknowledge))
        .route("/api/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route("/api/v1/incidents/{id}/notes", post(incidents::add_note))
        .route("/api/v1/assets/{id}", axum::routing::patch(assets::update))
        .route("/api/v1/assets/{id}/merge", post(assets::merge))
        .route("/api/v1/maintenance", post(oncall::create))
        .route("/api/v1/maintenance/{id}/end", post(oncall::end))
        .route("/api/v1/assets/{id}/split", post(assets::split))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/api/v1/incidents", get(incidents::list))
        .route("/api/v1/incidents/{id}", get(incidents::detail))
        .route("/api/v1/rules", get(incidents::rules))
        .route("/api/v1/notifications", get(incidents::notifications))
        .route("/api/v1/oncall", get(oncall::oncall))
        .route("/api/v1/maintenance", get(oncall::list))
        .route("/api/v1/assets", get(assets::list))
        .route("/api/v1/compliance", get(assets::compliance_view))
        .route("/api/v1/assets/export", get(assets::export))
        .route("/api/v1/assets/{id}", get(assets::detail))
        .route("/api/v1/assets/{id}/history", get(assets::history))
        .route("/api/v1/sla", get(incidents::sla))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/agents", get(agents::list))
        .route("/api/v1/agents/{id}", get(agents::detail))
        .route("/api/v1/agents/{id}/packages", get(agents::packages))
        .route("/api/v1/agents/{id}/changes", get(agents::changes))
        .route("/api/v1/series", get(series::latest))
        .route("/api/v1/series/query", get(series::history))
        .merge(writes)
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(state)
}

/// `ok`, or 503 with `{"status": "unhealthy", "failures": [{"task", "reason"}]}`
/// naming every failed task and a store that cannot write.
async fn healthz(State(state): State<ApiState>) -> Response {
    match health_failures(state.task_failures.list(), state.store.write_problem()) {
        None => "ok\n".into_response(),
        Some(failures) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "unhealthy", "failures": failures })),
        )
            .into_response(),
    }
}

/// Failed tasks, plus the store writer if it cannot write and the
/// supervisor has not already named it; `None` when healthy.
fn health_failures(
    mut failures: Vec<crate::supervisor::TaskFailure>,
    store_problem: Option<String>,
) -> Option<Vec<crate::supervisor::TaskFailure>> {
    const WRITER: &str = "store-writer";
    if let Some(reason) = store_problem
        && !failures.iter().any(|failure| failure.task == WRITER)
    {
        failures.push(crate::supervisor::TaskFailure {
            task: WRITER,
            reason,
        });
    }
    (!failures.is_empty()).then_some(failures)
}

async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.telemetry.render(),
    )
        .into_response()
}

/// One span per request with method, path and outcome.
async fn trace_request(request: Request, next: Next) -> Response {
    let span =
        tracing::info_span!("http", method = %request.method(), path = %request.uri().path());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = tracing::Instrument::instrument(next.run(request), span).await;
    tracing::debug!(message = "Served request.", %method, %path, status = response.status().as_u16());
    response
}

/// Rejects requests without `Authorization: Bearer <api token>`.
pub async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    let valid = !presented.is_empty()
        && state.api_tokens.iter().fold(false, |found, token| {
            found | crate::ingest::constant_time_eq(token.as_bytes(), presented.as_bytes())
        });
    if valid {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid API token is required (Authorization: Bearer …)",
        )
        .into_response()
    }
}

/// A JSON error body: `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::error!(message = "Store error while serving a request.", %error);
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

pub use steward_core::text::rfc3339_ms as rfc3339;

#[cfg(test)]
mod tests {
    use super::health_failures;
    use crate::supervisor::TaskFailure;

    fn failure(task: &'static str, reason: &str) -> TaskFailure {
        TaskFailure {
            task,
            reason: reason.to_string(),
        }
    }

    #[test]
    fn healthz_names_failed_tasks_and_a_store_that_cannot_commit() {
        let disk_full = || Some("cannot commit: database or disk is full".to_string());
        let cases = [
            (vec![], None, None),
            (
                vec![],
                disk_full(),
                Some(vec![failure(
                    "store-writer",
                    "cannot commit: database or disk is full",
                )]),
            ),
            (
                vec![failure("notify", "panicked: boom")],
                Some("closed for shutdown".to_string()),
                Some(vec![
                    failure("notify", "panicked: boom"),
                    failure("store-writer", "closed for shutdown"),
                ]),
            ),
            // The supervisor's account of the writer is kept, not repeated.
            (
                vec![failure("store-writer", "panicked: oops")],
                Some("panicked: oops".to_string()),
                Some(vec![failure("store-writer", "panicked: oops")]),
            ),
        ];
        for (tasks, store, expected) in cases {
            assert_eq!(
                health_failures(tasks.clone(), store.clone()),
                expected,
                "{tasks:?} {store:?}"
            );
        }
    }
}
