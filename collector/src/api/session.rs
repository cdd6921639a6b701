//! Console sessions: what a browser holds instead of a bearer token.
//!
//! `POST /api/v1/session` trades an API token, or a `[[console.users]]` name
//! and password, for a random session id in a cookie (`HttpOnly; Secure;
//! SameSite=Strict`). Only the id's SHA-256 is kept, in memory: a restart
//! logs everyone out. A session ends after `console.session_idle` without a
//! request, `console.session_max` after login however busy (a console left
//! open keeps polling), or at logout. Writes made with the cookie must repeat the
//! session's CSRF token in `X-CSRF-Token` (double submit; bearer-token
//! requests need none). A session made with an API token re-checks that
//! token on every request, so revoking the token ends the session too.
//!
//! This file holds no HTTP handlers (those are in `console.rs`) and never
//! looks at tokens itself: it only stores which credential a session stands for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::{HeaderMap, Method, header};
use serde::Deserialize;
use steward_core::config_file::{ConfigError, ConfigSource};

use crate::access::{Scope, TokenHash, valid_token_name};

/// The cookie that carries the session id.
pub const COOKIE: &str = "steward_session";
/// The header a cookie-authenticated write repeats the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sessions kept at once; the least recently used goes first beyond this.
const MAX_SESSIONS: usize = 10_000;

/// Paths served without any credential: the console's static files (they
/// hold no data) and the login itself. Logout needs none either: it only
/// ends the session its cookie names.
pub fn is_public(method: &Method, path: &str) -> bool {
    path == "/"
        || path.starts_with("/console/")
        || (path == "/api/v1/session" && matches!(*method, Method::POST | Method::DELETE))
}

/// `[console]` in collector.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    #[serde(default)]
    users: Vec<RawConsoleUser>,
    /// A session unused this long is closed.
    #[serde(
        default = "default_session_idle",
        deserialize_with = "steward_core::config_file::duration"
    )]
    session_idle: Duration,
    /// A session this old is closed, used or not.
    #[serde(
        default = "default_session_max",
        deserialize_with = "steward_core::config_file::duration"
    )]
    session_max: Duration,
}

impl Default for RawConsole {
    fn default() -> Self {
        Self {
            users: Vec::new(),
            session_idle: default_session_idle(),
            session_max: default_session_max(),
        }
    }
}

fn default_session_idle() -> Duration {
    Duration::from_secs(12 * 3600)
}

fn default_session_max() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

/// `[[console.users]]`: a person who logs in with a password.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsoleUser {
    name: String,
    /// An argon2id PHC string (`steward-collector hash-password`).
    password_hash: String,
    scope: String,
}

/// A validated console user. The hash is kept as text and parsed per login.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    pub name: String,
    password_hash: String,
    pub scope: Scope,
}

impl std::fmt::Debug for ConsoleUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleUser")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// `[console]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    pub users: Vec<ConsoleUser>,
    pub session_idle: Duration,
    pub session_max: Duration,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            users: Vec::new(),
            session_idle: default_session_idle(),
            session_max: default_session_max(),
        }
    }
}

impl ConsoleSettings {
    pub fn validate(source: &ConfigSource, raw: RawConsole) -> Result<Self, ConfigError> {
        if raw.session_idle < Duration::from_secs(60) {
            return Err(source.error("console.session_idle", "must be at least 1m"));
        }
        if raw.session_max < raw.session_idle {
            return Err(source.error(
                "console.session_max",
                format!(
                    "must be at least session_idle ({})",
                    humantime::format_duration(raw.session_idle)
                ),
            ));
        }
        let mut users: Vec<ConsoleUser> = Vec::with_capacity(raw.users.len());
        for (index, user) in raw.users.into_iter().enumerate() {
            let key = |field: &str| format!("console.users[{index}].{field}");
            if !valid_token_name(&user.name) {
                return Err(source.error(
                    &key("name"),
                    format!("{:?}: expected 1-64 of A-Z a-z 0-9 . _ -", user.name),
                ));
            }
            if users.iter().any(|existing| existing.name == user.name) {
                return Err(source.error(
                    &key("name"),
                    format!("user {:?} is listed twice", user.name),
                ));
            }
            if let Err(reason) = check_password_hash(&user.password_hash) {
                return Err(source.error(&key("password_hash"), reason));
            }
            let scope = Scope::from_name(&user.scope).ok_or_else(|| {
                source.error(
                    &key("scope"),
                    format!(
                        "unknown scope {:?}; expected read, write or admin",
                        user.scope
                    ),
                )
            })?;
            users.push(ConsoleUser {
                name: user.name,
                password_hash: user.password_hash,
                scope,
            });
        }
        Ok(Self {
            users,
            session_idle: raw.session_idle,
            session_max: raw.session_max,
        })
    }

    pub fn user(&self, name: &str) -> Option<&ConsoleUser> {
        self.users.iter().find(|user| user.name == name)
    }
}

/// Why a configured hash cannot be used.
fn check_password_hash(text: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(text).map_err(|error| {
        format!("not a PHC string ({error}); make one with `steward-collector hash-password`")
    })?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "uses {}; expected argon2id (`steward-collector hash-password`)",
            parsed.algorithm
        ));
    }
    argon2::Params::try_from(&parsed)
        .map(|_| ())
        .map_err(|error| format!("invalid argon2 parameters: {error}"))
}

/// Errors of [`hash_password`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// An argon2id PHC string for `password` with a fresh random salt
/// (argon2's default cost: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|error| PasswordError::Hash(error.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| PasswordError::Hash(error.to_string()))
}

/// A hash no password matches in practice, verified for unknown user names
/// so that a wrong name takes as long as a wrong password.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c3Rld2FyZC1kZWNveQ$eDe1rs5FmJvYDqdVZZsyuD9y6hlQhK8VO5cT5FW1j6M";

/// Whether `password` is `user`'s (CPU-heavy: call off the async runtime).
pub fn verify_password(user: Option<&ConsoleUser>, password: &str) -> bool {
    let text = user.map_or(DECOY_HASH, |user| user.password_hash.as_str());
    let Ok(parsed) = PasswordHash::new(text) else {
        return false;
    };
    let matches = argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    matches && user.is_some()
}

/// What a session stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API token (its hash), checked again on every request.
    Token(TokenHash),
    /// A `[[console.users]]` name.
    User(String),
}

/// One open session.
#[derive(Debug, Clone)]
pub struct Session {
    pub credential: Credential,
    /// Must come back in [`CSRF_HEADER`] on writes.
    pub csrf_token: String,
    opened: Instant,
    last_used: Instant,
}

/// Open sessions, keyed by the SHA-256 of their id (the id itself is only
/// in the browser's cookie).
pub struct Sessions {
    idle: Duration,
    max: Duration,
    open: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("idle", &self.idle)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    pub fn new(idle: Duration, max: Duration) -> Self {
        Self {
            idle,
            max,
            open: Mutex::default(),
        }
    }

    /// Opens a session; returns its id (for the cookie) and its CSRF token.
    pub fn open(&self, credential: Credential, now: Instant) -> (String, String) {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let csrf_token = hex::encode(rand::random::<[u8; 32]>());
        let mut open = self.lock();
        if open.len() >= MAX_SESSIONS {
            open.retain(|_, session| self.is_live(session, now));
        }
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, session)| session.last_used)
                .map(|(key, _)| *key)
        {
            open.remove(&oldest);
        }
        open.insert(
            TokenHash::of(&id).0,
            Session {
                credential,
                csrf_token: csrf_token.clone(),
                opened: now,
                last_used: now,
            },
        );
        (id, csrf_token)
    }

    /// Neither idle too long nor too old.
    fn is_live(&self, session: &Session, now: Instant) -> bool {
        now.saturating_duration_since(session.last_used) < self.idle
            && now.saturating_duration_since(session.opened) < self.max
    }

    /// The session `id` names, if open, not idle too long and not too old;
    /// marks it used.
    pub fn find(&self, id: &str, now: Instant) -> Option<Session> {
        let key = TokenHash::of(id).0;
        let mut open = self.lock();
        let session = open.get_mut(&key)?;
        if !self.is_live(session, now) {
            open.remove(&key);
            return None;
        }
        session.last_used = now;
        Some(session.clone())
    }

    /// Ends the session `id` names; true if there was one.
    pub fn close(&self, id: &str) -> bool {
        self.lock().remove(&TokenHash::of(id).0).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The session id in the request's `Cookie` header(s), if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_string())
}

/// Whether the request repeats the session's CSRF token (compared in constant time).
pub fn csrf_matches(headers: &HeaderMap, session: &Session) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|presented| {
            TokenHash::of(presented).matches(&TokenHash::of(&session.csrf_token))
        })
}

/// `Set-Cookie` for a new session: a browser-session cookie, script-proof,
/// sent only over HTTPS (or to loopback, which browsers trust) and only
/// with requests from the console's own pages.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict")
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert_eq!(check_password_hash(&hash), Ok(()));
        let user = ConsoleUser {
            name: "alice".into(),
            password_hash: hash,
            scope: Scope::Write,
        };
        assert!(verify_password(Some(&user), "correct horse"));
        assert!(!verify_password(Some(&user), "correct horse "));
        assert!(!verify_password(None, "correct horse"));
        assert!(matches!(hash_password(""), Err(PasswordError::Empty)));
    }

    #[test]
    fn the_decoy_is_a_valid_argon2id_hash() {
        assert_eq!(check_password_hash(DECOY_HASH), Ok(()));
    }

    #[test]
    fn only_argon2id_phc_strings_are_accepted() {
        for bad in [
            "",
            "hunter2",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        ] {
            assert!(check_password_hash(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sessions_expire_when_idle_and_close_at_logout() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(3600));
        let start = Instant::now();
        let (id, csrf) = sessions.open(Credential::User("alice".into()), start);
        assert_ne!(id, csrf);
        let found = sessions.find(&id, start + Duration::from_secs(59)).unwrap();
        assert_eq!(found.credential, Credential::User("alice".into()));
        // Use moved the idle clock on.
        assert!(
            sessions
                .find(&id, start + Duration::from_secs(118))
                .is_some()
        );
        assert!(
            sessions
                .find(&id, start + Duration::from_secs(178))
                .is_none()
        );
        assert!(sessions.find(&id, start).is_none(), "expired means gone");
        let (id, _) = sessions.open(Credential::User("bob".into()), start);
        assert!(sessions.find("not-the-id", start).is_none());
        assert!(sessions.close(&id));
        assert!(sessions.find(&id, start).is_none());
    }

    #[test]
    fn a_session_in_constant_use_still_ends_at_its_maximum_age() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(300));
        let start = Instant::now();
        let (id, _) = sessions.open(Credential::User("alice".into()), start);
        for second in (30..300).step_by(30) {
            assert!(
                sessions
                    .find(&id, start + Duration::from_secs(second))
                    .is_some(),
                "in use at {second}s"
            );
        }
        assert!(
            sessions
                .find(&id, start + Duration::from_secs(300))
                .is_none()
        );
    }

    #[test]
    fn the_cookie_and_csrf_header_are_read_exactly() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        assert_eq!(session_cookie(&headers), None);
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("x=y; steward_session=abc; z=1"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
        let session = Session {
            credential: Credential::User("alice".into()),
            csrf_token: "t0k".into(),
            opened: Instant::now(),
            last_used: Instant::now(),
        };
        assert!(!csrf_matches(&headers, &session));
        headers.insert(CSRF_HEADER, HeaderValue::from_static("t0k"));
        assert!(csrf_matches(&headers, &session));
        headers.insert(CSRF_HEADER, HeaderValue::from_static("t0"));
        assert!(!csrf_matches(&headers, &session));
        let cookie = set_cookie("abc");
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
    }

    #[test]
    fn only_the_console_files_and_login_are_public() {
        assert!(is_public(&Method::GET, "/"));
        assert!(is_public(&Method::GET, "/console/app.js"));
        assert!(is_public(&Method::POST, "/api/v1/session"));
        assert!(is_public(&Method::DELETE, "/api/v1/session"));
        assert!(!is_public(&Method::GET, "/api/v1/session"));
        assert!(!is_public(&Method::GET, "/api/v1/incidents"));
        assert!(!is_public(&Method::GET, "/consolex"));
    }
}
