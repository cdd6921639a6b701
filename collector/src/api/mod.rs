//! The HTTP API (axum): health, agents, latest series, and `/metrics`.
//!
//! The only module that maps errors to HTTP status codes, and every error
//! answer is `{"error": "<stable code>", "message": "…"}` ([`error`]).
//! Every `/api/v1` route is registered with its OpenAPI documentation
//! (`documented_routes`, served by [`openapi`]). Every route but
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
pub mod error;
mod extract;
pub mod fleet_metrics;
pub mod https;
pub mod incidents;
mod oncall;
pub mod openapi;
mod overview;
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
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::registry::AgentRegistry;
use crate::store::Store;
use crate::telemetry::{LogThrottle, Telemetry};
pub use error::{ApiError, ErrorCode};

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

/// Every `/api/v1` route, each registered with `routes!` together with its
/// `#[utoipa::path]` documentation, so none can be served undocumented
/// (tests/tests/openapi.rs checks every `/api/v1/` path under src/ is in the
/// document). A new API module adds one `.merge(module::routes())` line here,
/// its `routes()` returning an `OpenApiRouter<ApiState>`.
pub(crate) fn documented_routes() -> OpenApiRouter<ApiState> {
    let reads = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(openapi::serve))
        .routes(routes!(overview::overview))
        .routes(routes!(incidents::list))
        .routes(routes!(incidents::detail))
        .routes(routes!(incidents::rules))
        .routes(routes!(incidents::notifications))
        .routes(routes!(incidents::sla))
        .routes(routes!(oncall::oncall))
        .routes(routes!(oncall::list))
        .routes(routes!(assets::list))
        .routes(routes!(assets::compliance_view))
        .routes(routes!(assets::export))
        .routes(routes!(assets::detail))
        .routes(routes!(assets::history))
        .routes(routes!(problems::list))
        .routes(routes!(problems::detail))
        .routes(routes!(changes::list))
        .routes(routes!(changes::stats))
        .routes(routes!(changes::detail))
        .routes(routes!(agents::list))
        .routes(routes!(agents::detail))
        .routes(routes!(agents::packages))
        .routes(routes!(agents::changes))
        .routes(routes!(series::latest))
        .routes(routes!(series::history))
        .routes(routes!(
            console::who_am_i,
            console::log_in,
            console::log_out
        ));
    let writes = OpenApiRouter::new()
        .routes(routes!(incidents::acknowledge))
        .routes(routes!(incidents::acknowledge_group))
        .routes(routes!(incidents::resolve))
        .routes(routes!(incidents::add_note))
        .routes(routes!(assets::update))
        .routes(routes!(assets::merge))
        .routes(routes!(assets::split))
        .routes(routes!(oncall::create))
        .routes(routes!(oncall::end))
        .routes(routes!(problems::update))
        .routes(routes!(changes::create))
        .routes(routes!(changes::update));
    let administration = OpenApiRouter::new()
        .routes(routes!(agents::revoke))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .route_layer(axum::middleware::from_fn(auth::require_admin));
    reads.merge(writes).merge(administration)
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
    let (api, _) = documented_routes().split_for_parts();
    // Routes outside the API document (plain text, open to all, or pages and
    // assets of other modules: `.merge(module::pages())` goes here; their
    // `/api/v1` routes go in `documented_routes`).
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(error::unknown_route)
        .merge(console::pages())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(gate, limit_requests))
        .layer(axum::middleware::from_fn(trace_request))
        .layer(axum::middleware::from_fn(error::json_errors))
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
                .with_code(ErrorCode::Busy)
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
            .with_code(ErrorCode::Timeout)
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
        answer(address, "GET", path).await.0
    }

    /// (status, head, body) of one request.
    async fn answer(
        address: std::net::SocketAddr,
        method: &str,
        path: &str,
    ) -> (u16, String, String) {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(
                format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (
            response[9..12].parse().unwrap(),
            head.to_ascii_lowercase(),
            body.to_string(),
        )
    }

    fn error_code(body: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(value["message"].is_string(), "{body}");
        value["error"].as_str().unwrap().to_string()
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
        let refused = loop {
            let (status, head, body) = answer(address, "GET", "/fast").await;
            if status == 503 {
                assert!(head.contains("retry-after: 1"), "{head}");
                break body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the slot was never taken"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(error_code(&refused), "busy");
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
        let (status_code, _, body) = answer(address, "GET", "/slow").await;
        assert_eq!(status_code, 503);
        assert_eq!(error_code(&body), "timeout");
        assert_eq!(telemetry.http_requests_timed_out.load(Ordering::Relaxed), 1);
        assert_eq!(
            status(address, "/fast").await,
            200,
            "its slot was given back"
        );
    }

    /// axum's own answers (405, a plain-text rejection, an unknown route)
    /// leave in the API's error shape, their headers kept.
    #[tokio::test]
    async fn errors_from_outside_the_handlers_get_the_error_shape() {
        let router = Router::new()
            .route("/write-only", axum::routing::post(|| async { "done" }))
            .route(
                "/plain",
                get(|| async { (axum::http::StatusCode::BAD_REQUEST, "plain text refusal") }),
            )
            .route("/fine", get(|| async { "fine" }))
            .fallback(super::error::unknown_route)
            .layer(axum::middleware::from_fn(super::error::json_errors));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });

        let (status, head, body) = answer(address, "GET", "/write-only").await;
        assert_eq!(status, 405);
        assert!(head.contains("allow: post"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(error_code(&body), "method_not_allowed");

        let (status, _, body) = answer(address, "GET", "/plain").await;
        assert_eq!(status, 400);
        assert_eq!(error_code(&body), "bad_request");
        assert!(body.contains("plain text refusal"), "{body}");

        let (status, _, body) = answer(address, "DELETE", "/nowhere").await;
        assert_eq!(status, 404);
        assert_eq!(error_code(&body), "unknown_route");
        assert!(body.contains("DELETE /nowhere"), "{body}");

        assert_eq!(answer(address, "GET", "/fine").await.2, "fine");
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
