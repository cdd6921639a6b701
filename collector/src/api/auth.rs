//! Bearer-token authentication and scope checks for every HTTP route.
//!
//! `/healthz` is open; `/metrics` is open only with `[server] metrics_public`.
//! Everything else needs `Authorization: Bearer <token>`: a token from the
//! `api_tokens` table (looked up by SHA-256 on every request, so revocation
//! is immediate) or one from `[auth] api_tokens` (admin, hashed at load).
//! `GET`/`HEAD` need the read scope, other methods write; [`require_admin`]
//! guards administration routes. A source address that presents bad tokens
//! too often gets 429 instead of 401 (valid tokens from it still work, so an
//! attacker behind a shared NAT cannot lock the others out).
//!
//! The web console instead presents a session cookie (see [`super::session`]):
//! used only when there is no `Authorization` header, and its writes must
//! carry the session's CSRF token. The console's files and the login route
//! are public ([`super::session::is_public`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::actor::{Actor, Scope};
use super::session::{self, ConsoleSettings, Credential, Sessions};
use super::{ApiError, ApiState};
use crate::access::TokenHash;
use crate::ratelimit::SourceRateLimiter;
use crate::telemetry::{LogThrottle, Telemetry};

/// Bad tokens one address may present at once, then one per [`REFILL_EVERY`].
pub const FAILURE_BURST: u32 = 10;
pub const REFILL_EVERY: Duration = Duration::from_secs(6);

/// Console password checks computed at once; more wait their turn (within
/// the request timeout), so a burst of logins cannot take the memory.
const PASSWORD_CHECKS: usize = 2;

/// `last_used_ms` is written at most this often per token (one write per
/// request would put the writer thread on every read's path).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// What [`authenticate`] keeps between requests.
pub struct ApiAuth {
    /// `[auth] api_tokens`, hashed; named `config-{index + 1}`.
    config_tokens: Vec<TokenHash>,
    metrics_public: bool,
    failures: SourceRateLimiter,
    throttle: LogThrottle,
    /// When each database token's `last_used_ms` was last written.
    touched: Mutex<std::collections::HashMap<i64, Instant>>,
    /// `[console]`: users who log in with a password.
    pub(super) console: ConsoleSettings,
    /// Open console sessions.
    pub(super) sessions: Sessions,
    /// Password checks running at once (each argon2 check holds 19 MiB).
    pub(super) password_checks: tokio::sync::Semaphore,
}

impl std::fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAuth")
            .field("config_tokens", &self.config_tokens.len())
            .field("metrics_public", &self.metrics_public)
            .finish_non_exhaustive()
    }
}

impl ApiAuth {
    pub fn new(config_tokens: Vec<TokenHash>, metrics_public: bool) -> Self {
        Self {
            config_tokens,
            metrics_public,
            failures: SourceRateLimiter::new(FAILURE_BURST, REFILL_EVERY),
            throttle: LogThrottle::default(),
            touched: Mutex::default(),
            sessions: Sessions::new(
                ConsoleSettings::default().session_idle,
                ConsoleSettings::default().session_max,
            ),
            console: ConsoleSettings::default(),
            password_checks: tokio::sync::Semaphore::new(PASSWORD_CHECKS),
        }
    }

    /// With `[console]` users and session lifetime.
    pub fn with_console(mut self, console: ConsoleSettings) -> Self {
        self.sessions = Sessions::new(console.session_idle, console.session_max);
        self.console = console;
        self
    }

    /// How many `[auth] api_tokens` there are (`config-1` …).
    pub fn config_token_count(&self) -> usize {
        self.config_tokens.len()
    }
}

/// Why a request got no actor.
pub(super) enum Refusal {
    Missing,
    Invalid,
    /// The session cookie names no open session (expired, logged out,
    /// collector restarted) or one whose credential no longer holds.
    SessionEnded,
    /// A cookie-authenticated write without the session's CSRF token.
    CsrfMismatch,
    /// The token table cannot be read.
    Unavailable(ApiError),
}

/// Authenticates the request, checks the method's scope and hands the
/// [`Actor`] to the handler (see the module doc).
pub async fn authenticate(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let auth = Arc::clone(&state.auth);
    if path == "/healthz"
        || (path == "/metrics" && auth.metrics_public)
        || session::is_public(request.method(), path)
    {
        return next.run(request).await;
    }
    let source = source_of(&request);
    let presented = bearer_token(&request);
    let needed = if matches!(*request.method(), Method::GET | Method::HEAD) {
        Scope::Read
    } else {
        Scope::Write
    };
    let cookie = presented
        .is_none()
        .then(|| session::session_cookie(request.headers()))
        .flatten();
    let identified = match cookie {
        Some(id) => from_session(&state, &id, request.headers(), needed > Scope::Read).await,
        None => identify(&state, presented).await,
    };
    let actor = match identified {
        Ok(actor) => actor,
        Err(refusal) => return refuse(&state, source, refusal),
    };
    if actor.scope < needed {
        return forbidden(&actor, needed);
    }
    tracing::Span::current().record("actor", actor.name.as_str());
    request.extensions_mut().insert(actor);
    next.run(request).await
}

/// Route layer for administration routes: the actor needs the admin scope.
pub async fn require_admin(request: Request, next: Next) -> Response {
    match request.extensions().get::<Actor>() {
        Some(actor) if actor.scope >= Scope::Admin => next.run(request).await,
        Some(actor) => forbidden(actor, Scope::Admin),
        None => unauthorized("a valid API token is required (Authorization: Bearer …)"),
    }
}

/// The address the request came from (unspecified when unknown).
pub(super) fn source_of(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
}

/// The actor behind a session cookie; a write must repeat its CSRF token.
async fn from_session(
    state: &ApiState,
    id: &str,
    headers: &axum::http::HeaderMap,
    write: bool,
) -> Result<Actor, Refusal> {
    let Some(session) = state.auth.sessions.find(id, Instant::now()) else {
        return Err(Refusal::SessionEnded);
    };
    if write && !session::csrf_matches(headers, &session) {
        return Err(Refusal::CsrfMismatch);
    }
    match session.credential {
        Credential::Token(hash) => match identify(state, Some(hash)).await {
            // A token revoked since login ends the session.
            Err(Refusal::Invalid) => {
                state.auth.sessions.close(id);
                Err(Refusal::SessionEnded)
            }
            other => other,
        },
        Credential::User(name) => match state.auth.console.user(&name) {
            Some(user) => Ok(Actor {
                name: user.name.clone(),
                scope: user.scope,
            }),
            None => Err(Refusal::SessionEnded),
        },
    }
}

/// The actor behind the request's bearer token.
pub(super) async fn identify(
    state: &ApiState,
    presented: Option<TokenHash>,
) -> Result<Actor, Refusal> {
    let Some(hash) = presented else {
        return Err(Refusal::Missing);
    };
    // Every config token is compared, so the time taken does not say which matched.
    let config_match =
        state
            .auth
            .config_tokens
            .iter()
            .enumerate()
            .fold(None, |found, (index, token)| {
                if token.matches(&hash) {
                    Some(index)
                } else {
                    found
                }
            });
    if let Some(index) = config_match {
        return Ok(Actor {
            name: format!("config-{}", index + 1),
            scope: Scope::Admin,
        });
    }
    match state.store.active_api_token(hash).await {
        Ok(Some(token)) => {
            touch(state, token.id);
            Ok(Actor {
                name: token.name,
                scope: token.scope,
            })
        }
        Ok(None) => Err(Refusal::Invalid),
        Err(error) => Err(Refusal::Unavailable(error.into())),
    }
}

/// The hash of the request's bearer token, if it has one; the plaintext
/// goes no further than this function.
fn bearer_token(request: &Request) -> Option<TokenHash> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| TokenHash::of(token))
}

/// Writes `last_used_ms` in the background, at most once per [`TOUCH_EVERY`].
fn touch(state: &ApiState, id: i64) {
    let now = Instant::now();
    {
        let mut touched = state
            .auth
            .touched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if touched
            .get(&id)
            .is_some_and(|last| now.duration_since(*last) < TOUCH_EVERY)
        {
            return;
        }
        touched.insert(id, now);
    }
    let store = Arc::clone(&state.store);
    tokio::spawn(async move {
        if let Err(error) = store.touch_api_token(id, steward_core::now_ms()).await {
            tracing::debug!(message = "Cannot record API token use.", %error);
        }
    });
}

/// Takes one attempt from `source`'s failure budget; the 429 to answer
/// when it has none left.
pub(super) fn over_failure_budget(state: &ApiState, source: IpAddr) -> Option<Response> {
    let auth = &state.auth;
    if auth.failures.allow(source, Instant::now()) {
        return None;
    }
    Telemetry::add(&state.telemetry.http_auth_failures_throttled, 1);
    if let Some(held_back) = auth
        .throttle
        .allow("api-auth-throttled", &source.to_string())
    {
        tracing::warn!(
            message = "Too many failed logins or invalid API tokens from one address; answering 429.",
            %source,
            held_back,
        );
    }
    // An address just refused earns its next attempt one refill later.
    let retry_after = REFILL_EVERY.as_secs().max(1);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed logins or invalid API tokens from this address; retry later",
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Some(response)
}

/// 401 (429 for an address over its failure budget; 503 when the token
/// table cannot be read; 403 for a cookie write without its CSRF token),
/// counted and logged without the token.
pub(super) fn refuse(state: &ApiState, source: IpAddr, refusal: Refusal) -> Response {
    let telemetry = &state.telemetry;
    match refusal {
        Refusal::Unavailable(error) => error.into_response(),
        Refusal::Missing => {
            Telemetry::add(&telemetry.http_requests_unauthenticated, 1);
            unauthorized("a valid API token is required (Authorization: Bearer …)")
        }
        Refusal::SessionEnded => {
            Telemetry::add(&telemetry.http_requests_unauthenticated, 1);
            unauthorized("the console session has ended; log in again")
        }
        Refusal::CsrfMismatch => ApiError::new(
            StatusCode::FORBIDDEN,
            "a write with the session cookie needs the session's X-CSRF-Token header",
        )
        .with_code(super::ErrorCode::CsrfMismatch)
        .into_response(),
        Refusal::Invalid => {
            let auth = &state.auth;
            if let Some(too_many) = over_failure_budget(state, source) {
                return too_many;
            }
            Telemetry::add(&telemetry.http_auth_failures, 1);
            if let Some(held_back) = auth.throttle.allow("api-auth-invalid", &source.to_string()) {
                tracing::warn!(
                    message = "Refused an API request with an invalid or revoked token.",
                    %source,
                    held_back,
                );
            }
            unauthorized("invalid or revoked API token")
        }
    }
}

pub(super) fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"steward\""),
    );
    response
}

fn forbidden(actor: &Actor, needed: Scope) -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "token {:?} has the {} scope; this needs {}",
            actor.name, actor.scope, needed
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn with_authorization(value: &str) -> Request {
        Request::builder()
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn only_a_non_empty_bearer_credential_is_taken() {
        let token = "stw_0123";
        for value in ["Bearer stw_0123", "bearer stw_0123", "Bearer  stw_0123 "] {
            assert_eq!(
                bearer_token(&with_authorization(value)),
                Some(TokenHash::of(token)),
                "{value:?}"
            );
        }
        for value in ["Bearer ", "Basic c3R3XzAxMjM=", "stw_0123", ""] {
            assert_eq!(bearer_token(&with_authorization(value)), None, "{value:?}");
        }
        let none = Request::builder().body(Body::empty()).unwrap();
        assert_eq!(bearer_token(&none), None);
    }
}
