//! What can go wrong in `stewardctl`, and the exit status each maps to:
//! 2 for usage and configuration problems (nothing was sent), 1 when the
//! collector refused or could not be reached.

use steward_core::config_file::ConfigError;

/// Exit status of a usage or configuration error (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a refusal by the collector or a failed connection.
pub const EXIT_REFUSED: u8 = 1;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CtlError {
    /// Arguments or settings that cannot work; nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// `ctl.toml` is invalid; the message names file, line and key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The collector answered 4xx/5xx.
    #[error("{}", refused_text(*status, code.as_deref(), message))]
    Refused {
        status: u16,
        /// The machine-readable `error` code, when the body carries a `message` beside it.
        code: Option<String>,
        message: String,
    },
    /// No HTTP answer: refused connection, TLS failure, timeout.
    #[error("cannot reach the collector at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// An answer that is not what the API promises (e.g. not JSON).
    #[error("unexpected answer from the collector: {0}")]
    Protocol(String),
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) | CtlError::Config(_) => EXIT_USAGE,
            CtlError::Refused { .. } | CtlError::Unreachable { .. } | CtlError::Protocol(_) => {
                EXIT_REFUSED
            }
        }
    }
}

fn refused_text(status: u16, code: Option<&str>, message: &str) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("");
    let code = code.map(|code| format!(", {code}")).unwrap_or_default();
    format!("the collector refused ({status} {reason}{code}): {message}")
}

/// The error an error body describes: `{"error": CODE, "message": TEXT}`
/// (message shown, code kept), or `{"error": TEXT}` from older collectors,
/// or whatever text came back (a proxy's page), cut short.
pub fn refusal(status: u16, body: &str) -> CtlError {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|value| value.get(name))
            .and_then(serde_json::Value::as_str)
            .map(|text| steward_core::text::strip_control(text).into_owned())
    };
    let (code, message) = match (field("error"), field("message")) {
        (code, Some(message)) => (code, message),
        (Some(error), None) => (None, error),
        (None, None) => {
            let text: String = steward_core::text::strip_control(body.trim())
                .chars()
                .take(200)
                .collect();
            (
                None,
                if text.is_empty() {
                    "(no body)".into()
                } else {
                    text
                },
            )
        }
    };
    CtlError::Refused {
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_show_the_message_and_keep_the_code() {
        let error = refusal(403, r#"{"error":"forbidden","message":"needs write"}"#);
        assert_eq!(
            error.to_string(),
            "the collector refused (403 Forbidden, forbidden): needs write"
        );
        let error = refusal(409, r#"{"error":"the incident is already resolved"}"#);
        assert_eq!(
            error.to_string(),
            "the collector refused (409 Conflict): the incident is already resolved"
        );
        let error = refusal(502, "<html>\x1b[31mbad gateway</html>");
        assert!(
            error
                .to_string()
                .ends_with(": <html>[31mbad gateway</html>"),
            "{error}"
        );
        assert_eq!(error.exit_code(), EXIT_REFUSED);
        assert_eq!(CtlError::Usage("x".into()).exit_code(), EXIT_USAGE);
    }
}
