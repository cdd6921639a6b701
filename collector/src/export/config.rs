//! `[[export.remote_write]]` and `[[export.otlp]]` in `collector.toml`: raw,
//! then validated into [`RemoteWriteTarget`] and [`OtlpTarget`]. Credential files are read here, once, at load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    #[serde(default)]
    otlp: Vec<RawOtlp>,
}

/// An endpoint table: the keys every exporter shares (name, timeout,
/// batching, queue, backoff, `tls_ca_file`) and the exporter's own.
/// (serde's `flatten` cannot be combined with `deny_unknown_fields`.)
macro_rules! raw_endpoint {
    ($(#[$meta:meta])* struct $raw:ident { $($(#[$field_meta:meta])* $field:ident: $type:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $raw {
            /// In logs; default: the URL's host and port.
            name: Option<String>,
            #[serde(default = "default_timeout", deserialize_with = "config_file::duration")]
            timeout: Duration,
            #[serde(default = "default_max_samples_per_send")]
            max_samples_per_send: usize,
            #[serde(default = "default_batch_wait", deserialize_with = "config_file::duration")]
            batch_wait: Duration,
            #[serde(default = "default_max_queued_samples")]
            max_queued_samples: usize,
            #[serde(default = "default_min_backoff", deserialize_with = "config_file::duration")]
            min_backoff: Duration,
            #[serde(default = "default_max_backoff", deserialize_with = "config_file::duration")]
            max_backoff: Duration,
            /// PEM CA certificates trusted for an `https://` receiver, besides the system's.
            tls_ca_file: Option<PathBuf>,
            $($(#[$field_meta])* $field: $type,)*
        }

        impl $raw {
            fn limits(&self) -> SendLimits {
                SendLimits {
                    timeout: self.timeout,
                    max_samples_per_send: self.max_samples_per_send,
                    batch_wait: self.batch_wait,
                    max_queued_samples: self.max_queued_samples,
                    min_backoff: self.min_backoff,
                    max_backoff: self.max_backoff,
                }
            }
        }
    };
}

raw_endpoint! {
    /// One `[[export.remote_write]]` table.
    struct RawRemoteWrite {
        url: String,
        basic_auth_username: Option<String>,
        basic_auth_password_file: Option<PathBuf>,
        bearer_token_file: Option<PathBuf>,
    }
}

raw_endpoint! {
    /// One `[[export.otlp]]` table.
    struct RawOtlp {
        /// `https://host:4317`, or `http://` to a loopback address.
        endpoint: String,
        /// gRPC metadata sent as is (not secret: may be logged).
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// gRPC metadata whose value is read from a file (API keys).
        #[serde(default)]
        header_files: BTreeMap<String, PathBuf>,
        #[serde(default)]
        compression: Compression,
    }
}

/// `compression` of an OTLP endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
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

/// What every exporter's endpoint shares: one request's time limit,
/// batching, the queue bound and the backoff.
#[derive(Debug, Clone, PartialEq)]
pub struct SendLimits {
    /// One request, connecting included.
    pub timeout: Duration,
    pub max_samples_per_send: usize,
    /// How long the first queued sample waits for a fuller request.
    pub batch_wait: Duration,
    pub max_queued_samples: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

/// A validated remote_write endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWriteTarget {
    pub name: String,
    pub url: String,
    pub limits: SendLimits,
    pub credential: Option<Credential>,
    /// PEM text of `tls_ca_file`.
    pub tls_ca_pem: Option<Vec<u8>>,
}

/// One gRPC metadata entry sent with every OTLP request.
#[derive(Clone, PartialEq, Eq)]
pub struct MetadataHeader {
    /// Lower case, as HTTP/2 sends it.
    pub name: String,
    pub value: String,
    /// Read from a file: never in `Debug` output or logs.
    pub secret: bool,
}

impl std::fmt::Debug for MetadataHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.secret {
            write!(f, "{}: ..", self.name)
        } else {
            write!(f, "{}: {:?}", self.name, self.value)
        }
    }
}

/// A validated OTLP/gRPC endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpTarget {
    pub name: String,
    /// `http(s)://host:port`, no path.
    pub endpoint: String,
    pub limits: SendLimits,
    pub headers: Vec<MetadataHeader>,
    pub compression: Compression,
    /// PEM text of `tls_ca_file`.
    pub tls_ca_pem: Option<Vec<u8>>,
}

/// `[export]`, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportConfig {
    pub remote_write: Vec<RemoteWriteTarget>,
    pub otlp: Vec<OtlpTarget>,
}

impl ExportConfig {
    pub fn validate(source: &ConfigSource, raw: RawExport) -> Result<Self, ConfigError> {
        let mut remote_write: Vec<RemoteWriteTarget> = Vec::new();
        for (index, raw) in raw.remote_write.into_iter().enumerate() {
            let table = Table {
                source,
                path: format!("export.remote_write[{index}]"),
            };
            let target = validate_remote_write(&table, raw)?;
            table.unique_name(&target.name, remote_write.iter().map(|t| &t.name))?;
            remote_write.push(target);
        }
        let mut otlp: Vec<OtlpTarget> = Vec::new();
        for (index, raw) in raw.otlp.into_iter().enumerate() {
            let table = Table {
                source,
                path: format!("export.otlp[{index}]"),
            };
            let target = validate_otlp(&table, raw)?;
            table.unique_name(&target.name, otlp.iter().map(|t| &t.name))?;
            otlp.push(target);
        }
        Ok(Self { remote_write, otlp })
    }
}

/// One endpoint table being validated: errors name its keys.
struct Table<'a> {
    source: &'a ConfigSource,
    /// `export.otlp[2]`.
    path: String,
}

impl Table<'_> {
    fn error(&self, key: &str, message: String) -> ConfigError {
        self.source.error(&format!("{}.{key}", self.path), message)
    }

    fn unique_name<'n>(
        &self,
        name: &str,
        mut earlier: impl Iterator<Item = &'n String>,
    ) -> Result<(), ConfigError> {
        if earlier.any(|other| other == name) {
            return Err(self.error(
                "name",
                format!("{name:?} names two endpoints; give each its own name"),
            ));
        }
        Ok(())
    }

    fn limits(&self, raw: SendLimits) -> Result<SendLimits, ConfigError> {
        if raw.max_samples_per_send == 0 || raw.max_samples_per_send > 100_000 {
            return Err(self.error(
                "max_samples_per_send",
                "must be between 1 and 100000".into(),
            ));
        }
        if raw.max_queued_samples < raw.max_samples_per_send {
            return Err(self.error(
                "max_queued_samples",
                format!(
                    "must be at least max_samples_per_send ({})",
                    raw.max_samples_per_send
                ),
            ));
        }
        let within = |key: &str, value: Duration, low: Duration, high: Duration| {
            if value < low || value > high {
                Err(self.error(
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
        Ok(raw)
    }

    /// A file's text, trimmed; empty is an error.
    fn secret(&self, key: &str, path: &Path) -> Result<String, ConfigError> {
        let path = self.source.resolve(path);
        let text = std::fs::read_to_string(&path).map_err(|problem| {
            self.error(key, format!("cannot read {}: {problem}", path.display()))
        })?;
        let secret = text.trim().to_string();
        if secret.is_empty() {
            return Err(self.error(key, format!("{} is empty", path.display())));
        }
        Ok(secret)
    }

    fn tls_ca(&self, path: Option<&PathBuf>) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(path) = path else {
            return Ok(None);
        };
        let resolved = self.source.resolve(path);
        let pem = std::fs::read(&resolved).map_err(|problem| {
            self.error(
                "tls_ca_file",
                format!("cannot read {}: {problem}", resolved.display()),
            )
        })?;
        if parse_roots(&pem).is_empty() {
            return Err(self.error(
                "tls_ca_file",
                format!("{} holds no PEM certificate", resolved.display()),
            ));
        }
        Ok(Some(pem))
    }

    /// An `http://` or `https://` URL with a host and no credentials;
    /// returns it with its host.
    fn url(&self, key: &str, text: &str) -> Result<(reqwest::Url, String), ConfigError> {
        let url = reqwest::Url::parse(text)
            .map_err(|problem| self.error(key, format!("{text:?} is not a URL: {problem}")))?;
        let host = match (url.scheme(), url.host_str()) {
            ("http" | "https", Some(host)) if !host.is_empty() => host.to_string(),
            _ => {
                return Err(self.error(
                    key,
                    format!("{text:?} is not an http:// or https:// URL with a host"),
                ));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.error(
                key,
                "must not hold credentials: read them from files (see README)".into(),
            ));
        }
        Ok((url, host))
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

fn default_name(url: &reqwest::Url, host: &str) -> String {
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

fn validate_remote_write(
    table: &Table<'_>,
    raw: RawRemoteWrite,
) -> Result<RemoteWriteTarget, ConfigError> {
    let (url, host) = table.url("url", &raw.url)?;
    let limits = table.limits(raw.limits())?;
    let credential = match (
        raw.basic_auth_username,
        &raw.basic_auth_password_file,
        &raw.bearer_token_file,
    ) {
        (None, None, None) => None,
        (Some(username), Some(password), None) => Some(Credential::Basic {
            username,
            password: table.secret("basic_auth_password_file", password)?,
        }),
        (None, None, Some(token)) => Some(Credential::Bearer(
            table.secret("bearer_token_file", token)?,
        )),
        (_, _, Some(_)) => {
            return Err(table.error(
                "bearer_token_file",
                "set either bearer_token_file or basic_auth_*, not both".into(),
            ));
        }
        (Some(_), None, None) => {
            return Err(table.error(
                "basic_auth_username",
                "needs basic_auth_password_file".into(),
            ));
        }
        (None, Some(_), None) => {
            return Err(table.error(
                "basic_auth_password_file",
                "needs basic_auth_username".into(),
            ));
        }
    };
    if credential.is_some() && url.scheme() == "http" && !is_loopback(&host) {
        return Err(table.error(
            "url",
            "credentials would cross the network in clear: use https://".into(),
        ));
    }
    Ok(RemoteWriteTarget {
        name: raw.name.unwrap_or_else(|| default_name(&url, &host)),
        url: raw.url,
        limits,
        credential,
        tls_ca_pem: table.tls_ca(raw.tls_ca_file.as_ref())?,
    })
}

/// gRPC metadata that HTTP/2 or gRPC itself sets: not configurable.
const RESERVED_HEADERS: [&str; 5] = ["content-type", "te", "user-agent", "host", "connection"];

fn validate_otlp(table: &Table<'_>, raw: RawOtlp) -> Result<OtlpTarget, ConfigError> {
    let (url, host) = table.url("endpoint", &raw.endpoint)?;
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(table.error(
            "endpoint",
            format!(
                "{:?} must be scheme://host:port only: gRPC chooses the path",
                raw.endpoint
            ),
        ));
    }
    if url.scheme() == "http" && !is_loopback(&host) {
        return Err(table.error(
            "endpoint",
            "http:// is for a receiver on this machine (loopback) only: use https://".into(),
        ));
    }
    let limits = table.limits(raw.limits())?;
    let mut headers = Vec::new();
    let literal = raw
        .headers
        .iter()
        .map(|(name, value)| ("headers", name, Ok::<_, ConfigError>(value.clone()), false));
    let from_files = raw.header_files.iter().map(|(name, path)| {
        (
            "header_files",
            name,
            table.secret("header_files", path),
            true,
        )
    });
    for (key, name, value, secret) in literal.chain(from_files) {
        let value = value?;
        let lower = name.to_ascii_lowercase();
        let valid_name = !lower.is_empty()
            && lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_name
            || lower.starts_with("grpc-")
            || lower.ends_with("-bin")
            || RESERVED_HEADERS.contains(&lower.as_str())
        {
            return Err(table.error(
                key,
                format!("{name:?} is not a header Steward can set: letters, digits, '-', '_' and '.'; not grpc-*, *-bin or a header HTTP/2 sets"),
            ));
        }
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(table.error(
                key,
                format!("the value of {name:?} must be printable ASCII"),
            ));
        }
        if headers
            .iter()
            .any(|header: &MetadataHeader| header.name == lower)
        {
            return Err(table.error(
                key,
                format!("{name:?} is set twice (headers and header_files)"),
            ));
        }
        headers.push(MetadataHeader {
            name: lower,
            value,
            secret,
        });
    }
    Ok(OtlpTarget {
        name: raw.name.unwrap_or_else(|| default_name(&url, &host)),
        endpoint: raw.endpoint.trim_end_matches('/').to_string(),
        limits,
        headers,
        compression: raw.compression,
        tls_ca_pem: table.tls_ca(raw.tls_ca_file.as_ref())?,
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

    fn default_limits() -> SendLimits {
        SendLimits {
            timeout: Duration::from_secs(30),
            max_samples_per_send: 2000,
            batch_wait: Duration::from_secs(1),
            max_queued_samples: 100_000,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
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
                limits: default_limits(),
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

    #[test]
    fn an_otlp_endpoint_takes_headers_from_the_file_and_keeps_secrets_out_of_debug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api-key"), "k3y-s3cret\n").unwrap();
        let config = load(
            dir.path(),
            "[[export.otlp]]\nendpoint = \"https://otel.example:4317\"\nheaders = { X-Scope-OrgID = \"ops\" }\nheader_files = { api-key = \"api-key\" }\ncompression = \"gzip\"\nbatch_wait = \"50ms\"\n",
        )
        .unwrap();
        let target = &config.otlp[0];
        assert_eq!(
            *target,
            OtlpTarget {
                name: "otel.example:4317".into(),
                endpoint: "https://otel.example:4317".into(),
                limits: SendLimits {
                    batch_wait: Duration::from_millis(50),
                    ..default_limits()
                },
                headers: vec![
                    MetadataHeader {
                        name: "x-scope-orgid".into(),
                        value: "ops".into(),
                        secret: false,
                    },
                    MetadataHeader {
                        name: "api-key".into(),
                        value: "k3y-s3cret".into(),
                        secret: true,
                    },
                ],
                compression: Compression::Gzip,
                tls_ca_pem: None,
            }
        );
        let debug = format!("{target:?}");
        assert!(
            !debug.contains("s3cret") && debug.contains("ops"),
            "{debug}"
        );
        let config = load(
            dir.path(),
            "[[export.otlp]]\nendpoint = \"http://127.0.0.1:4317/\"\n",
        )
        .unwrap();
        assert_eq!(config.otlp[0].endpoint, "http://127.0.0.1:4317");
        assert_eq!(config.otlp[0].compression, Compression::None);
    }

    #[test]
    fn invalid_otlp_endpoints_name_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let endpoint = |extra: &str| {
            format!(
                "[[export.otlp]]\nendpoint = \"http://127.0.0.1:4317\"\n\n[[export.otlp]]\n{extra}\n"
            )
        };
        let ok = "endpoint = \"http://[::1]:4317\"";
        let table = [
            (
                endpoint("endpoint = \"http://otel.example:4317\""),
                "export.otlp[1].endpoint",
                5,
            ),
            (
                endpoint("endpoint = \"https://otel.example:4317/v1/metrics\""),
                "export.otlp[1].endpoint",
                5,
            ),
            (
                endpoint("endpoint = \"grpc://127.0.0.1:4317\""),
                "export.otlp[1].endpoint",
                5,
            ),
            (
                endpoint(&format!("{ok}\nheaders = {{ grpc-timeout = \"1S\" }}")),
                "export.otlp[1].headers",
                6,
            ),
            (
                endpoint(&format!("{ok}\nheaders = {{ \"bad name\" = \"x\" }}")),
                "export.otlp[1].headers",
                6,
            ),
            (
                endpoint(&format!("{ok}\nheaders = {{ a = \"line\\nbreak\" }}")),
                "export.otlp[1].headers",
                6,
            ),
            (
                endpoint(&format!("{ok}\nheader_files = {{ a = \"empty\" }}")),
                "export.otlp[1].header_files",
                6,
            ),
            (
                endpoint(&format!(
                    "{ok}\nheaders = {{ a = \"x\" }}\nheader_files = {{ A = \"missing\" }}"
                )),
                "export.otlp[1].header_files",
                7,
            ),
            (
                endpoint(&format!("{ok}\nmax_samples_per_send = 0")),
                "export.otlp[1].max_samples_per_send",
                6,
            ),
            (
                endpoint(&format!("{ok}\ntls_ca_file = \"empty\"")),
                "export.otlp[1].tls_ca_file",
                6,
            ),
            (
                endpoint("name = \"127.0.0.1:4317\"\nendpoint = \"http://[::1]:1\""),
                "export.otlp[1].name",
                5,
            ),
        ];
        for (text, key, line) in table {
            let error = load(dir.path(), &text).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{text}: {error}");
            assert_eq!(error.line, Some(line), "{text}: {error}");
        }
        for text in [
            endpoint(&format!("{ok}\ncompression = \"zstd\"")),
            endpoint(&format!("{ok}\nurl = \"x\"")),
        ] {
            let error = load(dir.path(), &text).unwrap_err();
            assert_eq!(error.line, Some(6), "{text}: {error}");
        }
    }
}
