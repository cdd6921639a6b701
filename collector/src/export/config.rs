//! `[[export.remote_write]]` in `collector.toml`: raw, then validated into
//! [`RemoteWriteTarget`]. Credential files are read here, once, at load.

use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use steward_core::config_file::{self, ConfigError, ConfigSource};

/// Certificates in PEM text (anything else in it is skipped).
pub fn parse_roots(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// `[export]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    #[serde(default)]
    remote_write: Vec<RawRemoteWrite>,
}

/// One `[[export.remote_write]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteWrite {
    /// In logs; default: the URL's host and port.
    name: Option<String>,
    url: String,
    #[serde(
        default = "default_timeout",
        deserialize_with = "config_file::duration"
    )]
    timeout: Duration,
    #[serde(default = "default_max_samples_per_send")]
    max_samples_per_send: usize,
    #[serde(
        default = "default_batch_wait",
        deserialize_with = "config_file::duration"
    )]
    batch_wait: Duration,
    #[serde(default = "default_max_queued_samples")]
    max_queued_samples: usize,
    #[serde(
        default = "default_min_backoff",
        deserialize_with = "config_file::duration"
    )]
    min_backoff: Duration,
    #[serde(
        default = "default_max_backoff",
        deserialize_with = "config_file::duration"
    )]
    max_backoff: Duration,
    basic_auth_username: Option<String>,
    basic_auth_password_file: Option<PathBuf>,
    bearer_token_file: Option<PathBuf>,
    /// PEM CA certificates trusted for an `https://` receiver, besides the system's.
    tls_ca_file: Option<PathBuf>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_samples_per_send() -> usize {
    2000
}
fn default_batch_wait() -> Duration {
    Duration::from_secs(1)
}
fn default_max_queued_samples() -> usize {
    100_000
}
fn default_min_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

/// The credential sent with every request. Never in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { username, .. } => write!(f, "Basic {{ username: {username:?}, .. }}"),
            Self::Bearer(_) => f.write_str("Bearer(..)"),
        }
    }
}

/// A validated remote_write endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWriteTarget {
    pub name: String,
    pub url: String,
    /// One request, connecting included.
    pub timeout: Duration,
    pub max_samples_per_send: usize,
    /// How long the first queued sample waits for a fuller request.
    pub batch_wait: Duration,
    pub max_queued_samples: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub credential: Option<Credential>,
    /// PEM text of `tls_ca_file`.
    pub tls_ca_pem: Option<Vec<u8>>,
}

/// `[export]`, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportConfig {
    pub remote_write: Vec<RemoteWriteTarget>,
}

impl ExportConfig {
    pub fn validate(source: &ConfigSource, raw: RawExport) -> Result<Self, ConfigError> {
        let mut remote_write: Vec<RemoteWriteTarget> = Vec::new();
        for (index, raw) in raw.remote_write.into_iter().enumerate() {
            let target = validate_target(source, index, raw)?;
            if remote_write.iter().any(|other| other.name == target.name) {
                return Err(source.error(
                    &format!("export.remote_write[{index}].name"),
                    format!(
                        "{:?} names two endpoints; give each its own name",
                        target.name
                    ),
                ));
            }
            remote_write.push(target);
        }
        Ok(Self { remote_write })
    }
}

fn validate_target(
    source: &ConfigSource,
    index: usize,
    raw: RawRemoteWrite,
) -> Result<RemoteWriteTarget, ConfigError> {
    let error = |key: &str, message: String| {
        source.error(&format!("export.remote_write[{index}].{key}"), message)
    };
    let url = reqwest::Url::parse(&raw.url)
        .map_err(|problem| error("url", format!("{:?} is not a URL: {problem}", raw.url)))?;
    let host = match (url.scheme(), url.host_str()) {
        ("http" | "https", Some(host)) if !host.is_empty() => host.to_string(),
        _ => {
            return Err(error(
                "url",
                format!(
                    "{:?} is not an http:// or https:// URL with a host",
                    raw.url
                ),
            ));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(error(
            "url",
            "must not hold credentials: use basic_auth_username and basic_auth_password_file"
                .into(),
        ));
    }
    if raw.max_samples_per_send == 0 || raw.max_samples_per_send > 100_000 {
        return Err(error(
            "max_samples_per_send",
            "must be between 1 and 100000".into(),
        ));
    }
    if raw.max_queued_samples < raw.max_samples_per_send {
        return Err(error(
            "max_queued_samples",
            format!(
                "must be at least max_samples_per_send ({})",
                raw.max_samples_per_send
            ),
        ));
    }
    let within = |key: &str, value: Duration, low: Duration, high: Duration| {
        if value < low || value > high {
            Err(error(
                key,
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(low),
                    humantime::format_duration(high)
                ),
            ))
        } else {
            Ok(())
        }
    };
    let (millis, seconds) = (Duration::from_millis, Duration::from_secs);
    within("timeout", raw.timeout, millis(100), seconds(300))?;
    within("batch_wait", raw.batch_wait, millis(10), seconds(60))?;
    within("min_backoff", raw.min_backoff, millis(10), seconds(60))?;
    within(
        "max_backoff",
        raw.max_backoff,
        raw.min_backoff,
        seconds(600),
    )?;
    let read_secret = |key: &str, path: &PathBuf| -> Result<String, ConfigError> {
        let path = source.resolve(path);
        let text = std::fs::read_to_string(&path)
            .map_err(|problem| error(key, format!("cannot read {}: {problem}", path.display())))?;
        let secret = text.trim().to_string();
        if secret.is_empty() {
            return Err(error(key, format!("{} is empty", path.display())));
        }
        Ok(secret)
    };
    let credential = match (
        raw.basic_auth_username,
        &raw.basic_auth_password_file,
        &raw.bearer_token_file,
    ) {
        (None, None, None) => None,
        (Some(username), Some(password), None) => Some(Credential::Basic {
            username,
            password: read_secret("basic_auth_password_file", password)?,
        }),
        (None, None, Some(token)) => {
            Some(Credential::Bearer(read_secret("bearer_token_file", token)?))
        }
        (_, _, Some(_)) => {
            return Err(error(
                "bearer_token_file",
                "set either bearer_token_file or basic_auth_*, not both".into(),
            ));
        }
        (Some(_), None, None) => {
            return Err(error(
                "basic_auth_username",
                "needs basic_auth_password_file".into(),
            ));
        }
        (None, Some(_), None) => {
            return Err(error(
                "basic_auth_password_file",
                "needs basic_auth_username".into(),
            ));
        }
    };
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    if credential.is_some() && url.scheme() == "http" && !loopback {
        return Err(error(
            "url",
            "credentials would cross the network in clear: use https://".into(),
        ));
    }
    let tls_ca_pem = match &raw.tls_ca_file {
        None => None,
        Some(path) => {
            let resolved = source.resolve(path);
            let pem = std::fs::read(&resolved).map_err(|problem| {
                error(
                    "tls_ca_file",
                    format!("cannot read {}: {problem}", resolved.display()),
                )
            })?;
            if parse_roots(&pem).is_empty() {
                return Err(error(
                    "tls_ca_file",
                    format!("{} holds no PEM certificate", resolved.display()),
                ));
            }
            Some(pem)
        }
    };
    let name = raw.name.unwrap_or_else(|| match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    });
    Ok(RemoteWriteTarget {
        name,
        url: raw.url,
        timeout: raw.timeout,
        max_samples_per_send: raw.max_samples_per_send,
        batch_wait: raw.batch_wait,
        max_queued_samples: raw.max_queued_samples,
        min_backoff: raw.min_backoff,
        max_backoff: raw.max_backoff,
        credential,
        tls_ca_pem,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        #[serde(default)]
        export: RawExport,
    }

    fn load(dir: &Path, text: &str) -> Result<ExportConfig, ConfigError> {
        let path = dir.join("collector.toml");
        std::fs::write(&path, text).unwrap();
        let source = ConfigSource::read(&path).unwrap();
        let file: File = source.parse()?;
        ExportConfig::validate(&source, file.export)
    }

    #[test]
    fn defaults_fill_a_minimal_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let config = load(
            dir.path(),
            "[[export.remote_write]]\nurl = \"http://127.0.0.1:9090/api/v1/write\"\n",
        )
        .unwrap();
        assert_eq!(
            config.remote_write,
            vec![RemoteWriteTarget {
                name: "127.0.0.1:9090".into(),
                url: "http://127.0.0.1:9090/api/v1/write".into(),
                timeout: Duration::from_secs(30),
                max_samples_per_send: 2000,
                batch_wait: Duration::from_secs(1),
                max_queued_samples: 100_000,
                min_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(30),
                credential: None,
                tls_ca_pem: None,
            }]
        );
        assert_eq!(load(dir.path(), "").unwrap(), ExportConfig::default());
    }

    #[test]
    fn credentials_are_read_from_files_and_kept_out_of_debug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret-token\n").unwrap();
        let config = load(
            dir.path(),
            "[[export.remote_write]]\nurl = \"https://mimir.example/api/v1/push\"\nbearer_token_file = \"token\"\n",
        )
        .unwrap();
        let target = &config.remote_write[0];
        assert_eq!(
            target.credential,
            Some(Credential::Bearer("s3cret-token".into()))
        );
        assert!(!format!("{target:?}").contains("s3cret"));
    }

    #[test]
    fn invalid_endpoints_name_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("password"), "pw").unwrap();
        let endpoint = |extra: &str| {
            format!(
                "[[export.remote_write]]\nurl = \"http://127.0.0.1:1/w\"\n\n[[export.remote_write]]\n{extra}\n"
            )
        };
        let table = [
            (
                endpoint("url = \"ftp://x/\""),
                "export.remote_write[1].url",
                5,
            ),
            (
                endpoint("url = \"not a url\""),
                "export.remote_write[1].url",
                5,
            ),
            (
                endpoint("url = \"http://u:p@127.0.0.1/\""),
                "export.remote_write[1].url",
                5,
            ),
            (
                endpoint("url = \"http://127.0.0.1/\"\nmax_samples_per_send = 0"),
                "export.remote_write[1].max_samples_per_send",
                6,
            ),
            (
                endpoint("url = \"http://127.0.0.1/\"\nmax_queued_samples = 10"),
                "export.remote_write[1].max_queued_samples",
                6,
            ),
            (
                endpoint("url = \"http://127.0.0.1/\"\nmax_backoff = \"1ms\""),
                "export.remote_write[1].max_backoff",
                6,
            ),
            (
                endpoint("url = \"http://127.0.0.1/\"\nbasic_auth_username = \"u\""),
                "export.remote_write[1].basic_auth_username",
                6,
            ),
            (
                endpoint("url = \"http://127.0.0.1/\"\nbearer_token_file = \"missing\""),
                "export.remote_write[1].bearer_token_file",
                6,
            ),
            (
                endpoint(
                    "url = \"http://mimir.example/\"\nbasic_auth_username = \"u\"\nbasic_auth_password_file = \"password\"",
                ),
                "export.remote_write[1].url",
                5,
            ),
            (
                endpoint("url = \"http://127.0.0.1/\"\ntls_ca_file = \"password\""),
                "export.remote_write[1].tls_ca_file",
                6,
            ),
            (
                endpoint("name = \"127.0.0.1:1\"\nurl = \"http://127.0.0.1/\""),
                "export.remote_write[1].name",
                5,
            ),
        ];
        for (text, key, line) in table {
            let error = load(dir.path(), &text).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{text}: {error}");
            assert_eq!(error.line, Some(line), "{text}: {error}");
        }
        let error = load(
            dir.path(),
            "[[export.remote_write]]\nurl = \"http://127.0.0.1/\"\nurls = 1\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("urls"), "{error}");
        assert_eq!(error.line, Some(3), "{error}");
    }
}
