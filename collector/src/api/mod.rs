//! The HTTP API (axum): health, agents, latest series, and `/metrics`.
//!
//! The only module that maps errors to HTTP status codes. Every route but
//! `/healthz` (and `/metrics` if public) needs an API token: see [`auth`].
//! Every request goes through [`limit_requests`]: at most
//! `limits.http_max_concurrent_requests` at once (more are refused with 503
//! at once, not queued) and each answered 503 after
//! `limits.http_request_timeout`. `/healthz` and `/metrics` are cheap and are
//! not held to the concurrency limit, so monitoring still sees a busy
//! collector.

pub mod actor;
mod agents;
mod assets;
pub mod auth;
mod changes;
mod console;
pub mod fleet_metrics;
pub mod https;
pub mod incidents;
mod oncall;
mod paging;
mod problems;
mod series;
pub mod session;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::registry::AgentRegistry;
use crate::store::Store;
use crate::telemetry::{LogThrottle, Telemetry};

/// Bounds on the HTTP API (`[limits]` in collector.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request still running after this is answered 503.
    pub request_timeout: Duration,
    /// Requests served at once; more are answered 503 at once.
    pub max_concurrent_requests: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 64,
        }
    }
}

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub registry: Arc<AgentRegistry>,
    pub telemetry: Arc<Telemetry>,
    pub incidents: crate::incidents::IncidentHandle,
    pub assets: crate::assets::service::AssetHandle,
    pub asset_policy: Arc<crate::assets::AssetPolicy>,
    pub notify: Arc<crate::notify::NotifyConfig>,
    /// Token checks and the failed-login limiter (see [`auth`]).
    pub auth: Arc<auth::ApiAuth>,
    /// Supervised tasks that have failed, for `/healthz`.
    pub task_failures: crate::supervisor::TaskFailures,
    pub limits: HttpLimits,
    /// `[server] fleet_metrics`: `/metrics` also carries every agent series.
    pub fleet_metrics: Option<Arc<fleet_metrics::FleetMetrics>>,
}

/// What [`limit_requests`] needs: the limits and the slots they allow.
#[derive(Clone)]
struct RequestGate {
    limits: HttpLimits,
    /// One permit per request in progress.
    slots: Arc<tokio::sync::Semaphore>,
    telemetry: Arc<Telemetry>,
    throttle: Arc<LogThrottle>,
}

pub fn router(state: ApiState) -> Router {
    let gate = RequestGate {
        slots: Arc::new(tokio::sync::Semaphore::new(
            state.limits.max_concurrent_requests,
        )),
        limits: state.limits.clone(),
        telemetry: Arc::clone(&state.telemetry),
        throttle: Arc::new(LogThrottle::default()),
    };
    let writes = Router::new()
        .route("/api/v1/incidents/{id}/ack", post(incidents::acknowledge))
        .route("/api/v1/incidents/ack", post(incidents::acknowledge_group))
        .route("/api/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route("/api/v1/incidents/{id}/notes", post(incidents::add_note))
        .route("/api/v1/assets/{id}", axum::routing::patch(assets::update))
        .route("/api/v1/assets/{id}/merge", post(assets::merge))
        .route("/api/v1/maintenance", post(oncall::create))
        .route("/api/v1/maintenance/{id}/end", post(oncall::end))
        .route("/api/v1/assets/{id}/split", post(assets::split))
        .route(
            "/api/v1/problems/{id}",
            axum::routing::patch(problems::update),
        )
        .route("/api/v1/changes", post(changes::create))
        .route(
            "/api/v1/changes/{id}",
            axum::routing::patch(changes::update),
        );
    let administration = Router::new()
        .route("/api/v1/agents/{id}/revoke", post(agents::revoke))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{name}/revoke", post(tokens::revoke))
        .route_layer(axum::middleware::from_fn(auth::require_admin));
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
        .route("/api/v1/problems", get(problems::list))
        .route("/api/v1/changes", get(changes::list))
        .route("/api/v1/changes/stats", get(changes::stats))
        .route("/api/v1/changes/{id}", get(changes::detail))
        .route("/api/v1/problems/{id}", get(problems::detail))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/agents", get(agents::list))
        .route("/api/v1/agents/{id}", get(agents::detail))
        .route("/api/v1/agents/{id}/packages", get(agents::packages))
        .route("/api/v1/agents/{id}/changes", get(agents::changes))
        .route("/api/v1/series", get(series::latest))
        .route("/api/v1/series/query", get(series::history))
        .merge(writes)
        .merge(administration)
        .merge(console::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(gate, limit_requests))
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(state)
}

/// Refuses a request when too many are in progress and answers 503 when one
/// runs too long (see the module doc).
async fn limit_requests(State(gate): State<RequestGate>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let exempt = path == "/healthz" || path == "/metrics";
    let _slot = if exempt {
        None
    } else {
        match Arc::clone(&gate.slots).try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) => {
                Telemetry::add(&gate.telemetry.http_requests_refused_busy, 1);
                if let Some(held_back) = gate.throttle.allow("http-busy", "") {
                    tracing::warn!(
                        message = "Refused an HTTP request: limits.http_max_concurrent_requests are in progress.",
                        path,
                        limit = gate.limits.max_concurrent_requests,
                        held_back,
                    );
                }
                let mut response = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many requests in progress; retry shortly",
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                return response;
            }
        }
    };
    let path = path.to_string();
    let timeout = gate.limits.request_timeout;
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            Telemetry::add(&gate.telemetry.http_requests_timed_out, 1);
            if let Some(held_back) = gate.throttle.allow("http-timeout", &path) {
                tracing::warn!(
                    message = "An HTTP request ran past limits.http_request_timeout; answered 503.",
                    %path,
                    timeout = ?timeout,
                    held_back,
                );
            }
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the request took longer than {}",
                    humantime::format_duration(timeout)
                ),
            )
            .into_response()
        }
    }
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
    let mut body = state.telemetry.render();
    if let Some(fleet) = &state.fleet_metrics {
        body = fleet.append(body, &state.store).await;
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// One span per request with method, path and outcome.
async fn trace_request(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
        actor = tracing::field::Empty,
    );
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = tracing::Instrument::instrument(next.run(request), span).await;
    tracing::debug!(message = "Served request.", %method, %path, status = response.status().as_u16());
    response
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
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{HttpLimits, RequestGate, health_failures, limit_requests};
    use crate::supervisor::TaskFailure;
    use crate::telemetry::{LogThrottle, Telemetry};

    /// Serves `/slow` (waits until released), `/fast` and `/healthz` behind
    /// the request limits; returns the address.
    async fn serve(
        limits: HttpLimits,
        telemetry: Arc<Telemetry>,
        release: Arc<tokio::sync::Notify>,
    ) -> std::net::SocketAddr {
        let gate = RequestGate {
            slots: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_requests)),
            limits,
            telemetry,
            throttle: Arc::new(LogThrottle::default()),
        };
        let router = Router::new()
            .route(
                "/slow",
                get(move || async move {
                    release.notified().await;
                    "done"
                }),
            )
            .route("/fast", get(|| async { "fast" }))
            .route("/healthz", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(gate, limit_requests));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    }

    async fn status(address: std::net::SocketAddr, path: &str) -> u16 {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response[9..12].parse().unwrap()
    }

    #[tokio::test]
    async fn requests_past_the_concurrency_limit_are_refused_at_once_except_health() {
        let telemetry = Arc::new(Telemetry::default());
        let release = Arc::new(tokio::sync::Notify::new());
        let limits = HttpLimits {
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 1,
        };
        let address = serve(limits, Arc::clone(&telemetry), Arc::clone(&release)).await;
        let slow = tokio::spawn(status(address, "/slow"));
        // Wait until the slow request holds the only slot.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while status(address, "/fast").await != 503 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the slot was never taken"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(status(address, "/healthz").await, 200, "health is exempt");
        release.notify_one();
        assert_eq!(slow.await.unwrap(), 200);
        assert_eq!(status(address, "/fast").await, 200, "the slot came back");
        assert!(telemetry.http_requests_refused_busy.load(Ordering::Relaxed) >= 1);
    }

    #[tokio::test]
    async fn a_request_past_the_timeout_is_answered_503_and_counted() {
        let telemetry = Arc::new(Telemetry::default());
        let limits = HttpLimits {
            request_timeout: Duration::from_millis(100),
            max_concurrent_requests: 4,
        };
        let address = serve(limits, Arc::clone(&telemetry), Arc::default()).await;
        assert_eq!(status(address, "/slow").await, 503);
        assert_eq!(telemetry.http_requests_timed_out.load(Ordering::Relaxed), 1);
        assert_eq!(
            status(address, "/fast").await,
            200,
            "its slot was given back"
        );
    }

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
