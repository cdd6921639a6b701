//! The one shape of every HTTP API error: `{"error": "<code>", "message": "…"}`.
//!
//! `error` is a stable snake_case [`ErrorCode`] clients can branch on;
//! `message` is for people and may change. Handlers return [`ApiError`];
//! axum's own answers (extractor rejections, 404 for an unknown route, 405)
//! get the same shape through `extract::Query` and friends,
//! [`unknown_route`] and the [`json_errors`] safety net.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Stable error codes. Adding one is fine; renaming one breaks clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A parameter or body field has a value the API does not accept.
    BadRequest,
    /// The query string does not parse (e.g. `limit=abc`).
    InvalidQuery,
    /// A path segment does not parse (e.g. a non-numeric incident id).
    InvalidPath,
    /// The body is not well-formed JSON.
    InvalidJson,
    /// The body is JSON but not the expected fields or types.
    InvalidBody,
    /// `cursor` is not one this endpoint handed out.
    InvalidCursor,
    /// No or an invalid/revoked bearer token.
    Unauthorized,
    /// The token's scope is below what the route needs (read < write < admin).
    InsufficientScope,
    /// A write with the console session cookie lacks the session's `X-CSRF-Token`.
    CsrfMismatch,
    /// The route exists but the thing named in it does not.
    NotFound,
    /// No route has this path.
    UnknownRoute,
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// The request conflicts with the current state.
    Conflict,
    /// The incident is already resolved.
    AlreadyResolved,
    /// The incident is already acknowledged.
    AlreadyAcknowledged,
    /// A problem cannot move between these states.
    InvalidTransition,
    /// Something with this name already exists.
    AlreadyExists,
    /// The body is larger than the collector accepts.
    PayloadTooLarge,
    /// The body needs `Content-Type: application/json`.
    UnsupportedMediaType,
    /// Too many invalid tokens from this address; see `Retry-After`.
    RateLimited,
    /// Too many requests in progress; see `Retry-After`.
    Busy,
    /// The request ran past `limits.http_request_timeout`.
    Timeout,
    /// The database cannot be read or written.
    StorageUnavailable,
    /// The collector is shutting down.
    ShuttingDown,
    /// The collector cannot serve this now; retry later.
    Unavailable,
    /// An unexpected failure inside the collector.
    Internal,
}

impl ErrorCode {
    /// Every code, for documentation and the tests that keep it complete.
    pub const ALL: [ErrorCode; 26] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidPath,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidBody,
        ErrorCode::InvalidCursor,
        ErrorCode::Unauthorized,
        ErrorCode::InsufficientScope,
        ErrorCode::CsrfMismatch,
        ErrorCode::NotFound,
        ErrorCode::UnknownRoute,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::AlreadyResolved,
        ErrorCode::AlreadyAcknowledged,
        ErrorCode::InvalidTransition,
        ErrorCode::AlreadyExists,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::Busy,
        ErrorCode::Timeout,
        ErrorCode::StorageUnavailable,
        ErrorCode::ShuttingDown,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidCursor => "invalid_cursor",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::CsrfMismatch => "csrf_mismatch",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnknownRoute => "unknown_route",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::AlreadyResolved => "already_resolved",
            ErrorCode::AlreadyAcknowledged => "already_acknowledged",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Busy => "busy",
            ErrorCode::Timeout => "timeout",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code of an error that has no more specific reason.
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
            StatusCode::FORBIDDEN => ErrorCode::InsufficientScope,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::CONFLICT => ErrorCode::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidBody,
            StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ErrorCode::Timeout,
            status if status.is_server_error() => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer of the HTTP API.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error, example = json!({"error": "not_found", "message": "no such incident"}))]
pub struct ErrorBody {
    /// Stable, for programs.
    pub error: ErrorCode,
    /// For people; wording may change.
    pub message: String,
}

/// An error answer: a status, a stable code and a message.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl ApiError {
    /// An error with the default code of `status` ([`ErrorCode::for_status`]).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code: ErrorCode::for_status(status),
            message: message.into(),
        }
    }

    /// The same error with a more specific code.
    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = code;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::error!(message = "Store error while serving a request.", %error);
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
            .with_code(ErrorCode::StorageUnavailable)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(ErrorBody {
                error: self.code,
                message: self.message,
            }),
        )
            .into_response()
    }
}

/// The fallback: a path no route has is `unknown_route`, so a client (and
/// the route-coverage test) can tell it from a missing incident or asset.
pub async fn unknown_route(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
    .with_code(ErrorCode::UnknownRoute)
}

/// Error bodies longer than this are cut when [`json_errors`] wraps them.
const WRAPPED_BODY_LIMIT: usize = 4096;

/// Safety net for errors answered outside our handlers (axum's 405, a body
/// extractor's plain-text rejection): any 4xx/5xx that is not JSON gets the
/// error shape, its text as the message and its other headers (`Allow`,
/// `WWW-Authenticate`, `Retry-After`) kept.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, WRAPPED_BODY_LIMIT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    } else {
        text
    };
    let body = ErrorBody {
        error: ErrorCode::for_status(status),
        message,
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serialises_as_its_stable_name() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::from(code.as_str()),
            );
        }
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "codes are unique");
    }

    #[test]
    fn statuses_without_a_reason_get_their_default_code() {
        let cases = [
            (StatusCode::BAD_REQUEST, "bad_request"),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            (StatusCode::FORBIDDEN, "insufficient_scope"),
            (StatusCode::NOT_FOUND, "not_found"),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            (StatusCode::CONFLICT, "conflict"),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            (StatusCode::IM_A_TEAPOT, "bad_request"),
        ];
        for (status, code) in cases {
            assert_eq!(ErrorCode::for_status(status).as_str(), code, "{status}");
        }
    }

    /// Guards the README table: every code a client can see is explained there.
    #[test]
    fn the_readme_lists_every_code() {
        let readme = include_str!("../../../README.md");
        for code in ErrorCode::ALL {
            assert!(
                readme.contains(&format!("| `{code}` |")),
                "README.md \"HTTP API\" has no row for `{code}`"
            );
        }
    }
}
