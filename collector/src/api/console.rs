//! The web console: its static files at `/` and `/console/…`, embedded in
//! the binary (no CDN, works offline), and the session routes it logs in with.
//!
//! The page holds no data: every figure comes from the JSON API with the
//! session cookie, so the files are served without credentials. Each file is
//! sent with a strict Content-Security-Policy (no inline script or style, no
//! other origin) and an ETag, and revalidated on every load (`no-cache`), so
//! an upgraded collector never serves a stale script.

use std::sync::OnceLock;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::actor::Actor;
use super::session::{self, Credential};
use super::{ApiError, ApiState, auth};
use crate::access::TokenHash;
use crate::telemetry::Telemetry;

/// Sent with every console file: scripts, styles, images and requests from
/// this origin only; inline code refused; never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Largest login body read.
const MAX_LOGIN_BODY: usize = 16 * 1024;

/// One embedded file.
struct StaticFile {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const FILES: &[StaticFile] = &[
    StaticFile {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/index.html"),
    },
    StaticFile {
        path: "/console/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/app.js"),
    },
    StaticFile {
        path: "/console/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/app.css"),
    },
    StaticFile {
        path: "/console/vendor/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/vendor/uPlot.iife.min.js"),
    },
    StaticFile {
        path: "/console/vendor/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/vendor/uPlot.min.css"),
    },
    StaticFile {
        path: "/console/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../web/favicon.svg"),
    },
];

/// The console's files, merged into the API router (behind its auth layer,
/// which lets the files and the login through). The session routes are
/// API routes: `api::documented_routes` registers them with their OpenAPI
/// documentation.
pub fn pages() -> Router<ApiState> {
    Router::new()
        .route("/", get(serve_file))
        .route("/console/{*file}", get(serve_file))
}

/// ETags of [`FILES`], in the same order (a hash prefix of each body).
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|file| {
                let digest = ring::digest::digest(&ring::digest::SHA256, file.body);
                format!("\"{}\"", hex::encode(&digest.as_ref()[..12]))
            })
            .collect()
    })
}

async fn serve_file(request: Request) -> Response {
    let path = request.uri().path();
    let Some(index) = FILES.iter().position(|file| file.path == path) else {
        return ApiError::new(StatusCode::NOT_FOUND, "no such console file").into_response();
    };
    let file = &FILES[index];
    let etag = &etags()[index];
    let unchanged = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Response::new(Body::from(file.body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(file.content_type),
        );
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Body of `POST /api/v1/session`: a token, or a user name and password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

/// What a session is: who, with which scope, and (for the page's writes)
/// its CSRF token.
fn session_view(actor: &Actor, csrf_token: Option<&str>) -> SessionView {
    SessionView {
        name: actor.name.clone(),
        scope: actor.scope.as_str(),
        csrf_token: csrf_token.map(str::to_string),
    }
}

/// Who a request or session is, as `/api/v1/session` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Session)]
pub(super) struct SessionView {
    /// The token's name, or the console user's.
    name: String,
    /// `read`, `write` or `admin`.
    scope: &'static str,
    /// Repeat it in `X-CSRF-Token` on writes made with the session cookie;
    /// null without one.
    csrf_token: Option<String>,
}

/// `POST /api/v1/session`: checks the token or password and sets the
/// session cookie. Invalid tokens count against the source's failure
/// budget like bearer tokens; every password attempt takes one from it
/// before the (deliberately slow) hash is computed, so guessing is held to
/// the limiter's rate.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    tag = "session",
    operation_id = "log_in",
    summary = "Open a console session with an API token or a console user's password",
    description = "Sets an `HttpOnly; Secure; SameSite=Strict` session cookie. Writes made with \
the cookie must repeat `csrf_token` in `X-CSRF-Token`. Open to all (it is the login).",
    request_body = LoginBody,
    security(()),
    responses(
        (status = 200, description = "The new session (its cookie is set)", body = SessionView),
        (status = 400, description = "`bad_request`: not a token or a user and password", body = super::error::ErrorBody),
        (status = 401, description = "`unauthorized`: wrong token or password", body = super::error::ErrorBody),
        (status = 413, description = "`payload_too_large`", body = super::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not sent as `application/json`", body = super::error::ErrorBody),
        (status = 429, description = "`rate_limited`: too many failed logins from this address", body = super::error::ErrorBody),
    ),
)]
pub(super) async fn log_in(State(state): State<ApiState>, request: Request) -> Response {
    // A cross-site form can post text/plain that parses as JSON (a password
    // may hold the form's `=`), logging a victim's browser into the
    // attacker's account; it cannot send application/json without a CORS
    // preflight, which the collector never grants.
    if !is_json(request.headers()) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a login is sent with Content-Type: application/json",
        )
        .into_response();
    }
    let source = auth::source_of(&request);
    let body = match axum::body::to_bytes(request.into_body(), MAX_LOGIN_BODY).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "login body too large")
                .into_response();
        }
    };
    let login: LoginBody = match serde_json::from_slice(&body) {
        Ok(login) => login,
        Err(error) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "invalid login body ({error}); expected {{\"token\": …}} or {{\"user\": …, \"password\": …}}"
                ),
            )
            .into_response();
        }
    };
    let (actor, credential) = match login {
        LoginBody {
            token: Some(token),
            user: None,
            password: None,
        } => {
            let hash = TokenHash::of(token.trim());
            match auth::identify(&state, Some(hash)).await {
                Ok(actor) => (actor, Credential::Token(hash)),
                Err(refusal) => return auth::refuse(&state, source, refusal),
            }
        }
        LoginBody {
            token: None,
            user: Some(name),
            password: Some(password),
        } => {
            if let Some(too_many) = auth::over_failure_budget(&state, source) {
                return too_many;
            }
            let Ok(_turn) = state.auth.password_checks.acquire().await else {
                return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
                    .into_response();
            };
            let user = state.auth.console.user(&name).cloned();
            let checked = user.clone();
            let verified = tokio::task::spawn_blocking(move || {
                session::verify_password(checked.as_ref(), &password)
            })
            .await
            .unwrap_or(false);
            match user {
                Some(user) if verified => (
                    Actor {
                        name: user.name.clone(),
                        scope: user.scope,
                    },
                    Credential::User(user.name),
                ),
                _ => {
                    Telemetry::add(&state.telemetry.http_auth_failures, 1);
                    tracing::warn!(
                        message = "Refused a console login: wrong user name or password.",
                        %source,
                    );
                    return auth::unauthorized("wrong user name or password");
                }
            }
        }
        _ => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "send either {\"token\": …} or {\"user\": …, \"password\": …}",
            )
            .into_response();
        }
    };
    let (id, csrf_token) = state
        .auth
        .sessions
        .open(credential, std::time::Instant::now());
    tracing::info!(message = "Console session opened.", actor = %actor.name, %source);
    let mut response = Json(session_view(&actor, Some(&csrf_token))).into_response();
    set_cookie(response.headers_mut(), &session::set_cookie(&id));
    response
}

/// `GET /api/v1/session`: who the request is authenticated as; with a
/// session cookie, also the session's CSRF token (a reloaded page has lost it).
#[utoipa::path(
    get,
    path = "/api/v1/session",
    tag = "session",
    operation_id = "who_am_i",
    summary = "Who the request is authenticated as (token or session cookie)",
    responses(
        (status = 200, description = "Who the request is authenticated as", body = SessionView),
    ),
)]
pub(super) async fn who_am_i(
    State(state): State<ApiState>,
    axum::Extension(actor): axum::Extension<Actor>,
    headers: HeaderMap,
) -> Json<SessionView> {
    let csrf_token = headers
        .get(header::AUTHORIZATION)
        .is_none()
        .then(|| session::session_cookie(&headers))
        .flatten()
        .and_then(|id| state.auth.sessions.find(&id, std::time::Instant::now()))
        .map(|session| session.csrf_token);
    Json(session_view(&actor, csrf_token.as_deref()))
}

/// `DELETE /api/v1/session`: ends the cookie's session (given its CSRF
/// token, so another site cannot log the user out) and clears the cookie.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    tag = "session",
    operation_id = "log_out",
    summary = "End the cookie's session and clear the cookie",
    security(()),
    responses(
        (status = 204, description = "Logged out (also when there was no session)"),
        (status = 403, description = "`csrf_mismatch`: the session's `X-CSRF-Token` is missing or wrong", body = super::error::ErrorBody),
    ),
)]
pub(super) async fn log_out(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(id) = session::session_cookie(&headers)
        && let Some(open) = state.auth.sessions.find(&id, std::time::Instant::now())
    {
        if !session::csrf_matches(&headers, &open) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "logging out needs the session's X-CSRF-Token header",
            )
            .with_code(super::ErrorCode::CsrfMismatch)
            .into_response();
        }
        state.auth.sessions.close(&id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(response.headers_mut(), &session::clear_cookie());
    response
}

fn set_cookie(headers: &mut HeaderMap, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(header::SET_COOKIE, value);
    }
}

/// Whether the body is declared `application/json` (parameters such as a
/// charset allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_json_content_type_is_a_login() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!with("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
