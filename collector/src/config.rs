//! The collector's configuration: `collector.toml`, parsed raw then validated.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use steward_core::config_file::{self, ConfigError, ConfigSource};

use crate::api::HttpLimits;
use crate::api::session::{ConsoleSettings, RawConsole};
use crate::assets::{AssetPolicy, RawAssetPolicy};
use crate::incidents::sla::RawSlaTarget;
use crate::incidents::{
    RawDependency, RawProblemPolicy, ServicePolicy, SlaPolicy, validate_dependencies,
};
use crate::ingest::{GrpcLimits, IngestLimits, InventoryLimits, SampleLimits};
use crate::notify::NotifyConfig;
use crate::notify::config::{
    RawChannel, RawEscalation, RawNotify, RawPerson, RawRoute, RawSchedule,
};
use crate::rules::{RawRule, Rule, validate_rules};
use crate::store::RetentionPolicy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollectorConfig {
    /// Further files whose `[[rule]]` tables are added to this file's.
    #[serde(default)]
    include: Vec<PathBuf>,
    server: RawServer,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    enrollment: RawEnrollment,
    storage: RawStorage,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    sla: BTreeMap<String, RawSlaTarget>,
    #[serde(default)]
    dependency: Vec<RawDependency>,
    #[serde(default)]
    problems: RawProblemPolicy,
    #[serde(default)]
    changes: RawChanges,
    #[serde(default)]
    assets: RawAssetPolicy,
    #[serde(default)]
    notify: RawNotifySettings,
    #[serde(default)]
    channel: Vec<RawChannel>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    person: Vec<RawPerson>,
    #[serde(default)]
    schedule: Vec<RawSchedule>,
    #[serde(default)]
    escalation: Vec<RawEscalation>,
    /// `[console]`, `[[console.users]]`: the web console's logins.
    #[serde(default)]
    console: RawConsole,
    /// `[[export.remote_write]]`, `[[export.otlp]]`: metric history to
    /// Prometheus-compatible stores and OTLP receivers.
    #[serde(default)]
    export: crate::export::RawExport,
}

/// `[changes]`: how change records are linked to incidents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChanges {
    /// Incidents on a change's assets opening this long after it ended are
    /// linked to it (and count towards the change failure rate).
    #[serde(
        default = "default_change_link_after",
        deserialize_with = "config_file::duration"
    )]
    link_after: Duration,
}

impl Default for RawChanges {
    fn default() -> Self {
        Self {
            link_after: default_change_link_after(),
        }
    }
}

fn default_change_link_after() -> Duration {
    Duration::from_secs(3600)
}

/// `[notify]`: settings shared by every channel.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotifySettings {
    /// Public URL of the HTTP API, for links in messages; defaults to `http://{http_listen}`.
    base_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    grpc_listen: SocketAddr,
    http_listen: SocketAddr,
    /// Serve the HTTP API over HTTPS.
    #[serde(default)]
    http_tls: bool,
    /// The API's certificate and key; default: `[tls]`'s (the collector's).
    http_cert: Option<PathBuf>,
    http_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback `http_listen` (behind a TLS proxy).
    #[serde(default)]
    allow_plain_http: bool,
    /// Serve `/metrics` without a token.
    #[serde(default)]
    metrics_public: bool,
    /// `/metrics` also carries the latest value of every agent series.
    #[serde(default)]
    fleet_metrics: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default = "yes")]
    enabled: bool,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    /// The CA that signed `cert`: served in the chain (agents pin it) and
    /// trusted for agent client certificates.
    ca: Option<PathBuf>,
    /// The CA's private key: with it the collector enrolls agents.
    ca_key: Option<PathBuf>,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            enabled: true,
            cert: None,
            key: None,
            ca: None,
            ca_key: None,
        }
    }
}

/// `[enrollment]`: agent certificates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnrollment {
    /// Lifetime of a signed agent certificate; agents renew at two thirds.
    #[serde(
        default = "default_cert_lifetime",
        deserialize_with = "config_file::duration"
    )]
    cert_lifetime: Duration,
    /// Enrollment attempts one address may make at once...
    #[serde(default = "default_enroll_burst")]
    rate_burst: u32,
    /// ...and then one more per this.
    #[serde(
        default = "default_enroll_every",
        deserialize_with = "config_file::duration"
    )]
    rate_every: Duration,
}

impl Default for RawEnrollment {
    fn default() -> Self {
        Self {
            cert_lifetime: default_cert_lifetime(),
            rate_burst: default_enroll_burst(),
            rate_every: default_enroll_every(),
        }
    }
}

fn default_cert_lifetime() -> Duration {
    crate::enrollment::DEFAULT_CERT_LIFETIME
}
fn default_enroll_burst() -> u32 {
    10
}
fn default_enroll_every() -> Duration {
    Duration::from_secs(6)
}

/// Validated `[enrollment]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentSettings {
    pub cert_lifetime: Duration,
    pub rate_burst: u32,
    pub rate_every: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    agent_tokens: Vec<String>,
    agent_token_file: Option<PathBuf>,
    #[serde(default)]
    api_tokens: Vec<String>,
    api_token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    /// The embedded database of a single collector.
    #[serde(default)]
    sqlite: Option<PathBuf>,
    /// The PostgreSQL database several collectors share (instead of `sqlite`).
    #[serde(default)]
    postgres: Option<String>,
    /// A file holding the `postgres` URL (it carries a password: keep it in
    /// a secret, not in the config).
    #[serde(default)]
    postgres_file: Option<PathBuf>,
    /// Most connections to `postgres` this collector holds open.
    #[serde(default = "default_postgres_pool_size")]
    postgres_pool_size: usize,
    /// PEM CA that signed the PostgreSQL server's certificate (`sslmode=require`
    /// or stricter); the system roots when unset.
    #[serde(default)]
    postgres_ca_file: Option<PathBuf>,
    /// This collector's name in the shared database's claims and leases;
    /// the hostname when unset. Must differ between collectors.
    #[serde(default)]
    instance: Option<String>,
    #[serde(
        default = "default_retention",
        deserialize_with = "config_file::duration"
    )]
    retention: Duration,
    /// How long 5-minute rollups (min/avg/max/count) are kept.
    #[serde(
        default = "default_rollup_retention",
        deserialize_with = "config_file::duration"
    )]
    rollup_retention: Duration,
}

fn default_postgres_pool_size() -> usize {
    16
}

/// `[retention]`: how long records other than samples are kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    /// How often retention runs (samples and records).
    #[serde(
        default = "retention_default::every",
        deserialize_with = "config_file::duration"
    )]
    every: Duration,
    #[serde(
        default = "retention_default::resolved_incidents",
        deserialize_with = "config_file::duration"
    )]
    resolved_incidents: Duration,
    #[serde(
        default = "retention_default::notifications",
        deserialize_with = "config_file::duration"
    )]
    notifications: Duration,
    #[serde(
        default = "retention_default::inventory_events",
        deserialize_with = "config_file::duration"
    )]
    inventory_events: Duration,
    #[serde(
        default = "retention_default::asset_events",
        deserialize_with = "config_file::duration"
    )]
    asset_events: Duration,
    #[serde(
        default = "retention_default::silent_agents",
        deserialize_with = "config_file::duration"
    )]
    silent_agents: Duration,
}

impl Default for RawRetention {
    fn default() -> Self {
        let policy = RetentionPolicy::default();
        Self {
            every: retention_default::every(),
            resolved_incidents: policy.resolved_incidents,
            notifications: policy.notifications,
            inventory_events: policy.inventory_events,
            asset_events: policy.asset_events,
            silent_agents: policy.silent_agents,
        }
    }
}

/// serde defaults for `[retention]`, from [`RetentionPolicy::default`].
mod retention_default {
    use std::time::Duration;

    use crate::store::RetentionPolicy;

    pub fn every() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn resolved_incidents() -> Duration {
        RetentionPolicy::default().resolved_incidents
    }
    pub fn notifications() -> Duration {
        RetentionPolicy::default().notifications
    }
    pub fn inventory_events() -> Duration {
        RetentionPolicy::default().inventory_events
    }
    pub fn asset_events() -> Duration {
        RetentionPolicy::default().asset_events
    }
    pub fn silent_agents() -> Duration {
        RetentionPolicy::default().silent_agents
    }
}

/// `[limits]`: every key optional; defaults come from the typed limits'
/// `Default`s (`IngestLimits`, `HttpLimits`), so they are written once.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_message_bytes: Option<usize>,
    max_agents: Option<usize>,
    max_samples_per_batch: Option<usize>,
    max_series_per_agent: Option<usize>,
    max_labels_per_sample: Option<usize>,
    max_label_key_bytes: Option<usize>,
    max_label_value_bytes: Option<usize>,
    max_agent_version_bytes: Option<usize>,
    max_facts: Option<usize>,
    max_fact_key_bytes: Option<usize>,
    max_fact_value_bytes: Option<usize>,
    max_disks: Option<usize>,
    max_interfaces: Option<usize>,
    max_addresses_per_interface: Option<usize>,
    max_packages: Option<usize>,
    max_package_field_bytes: Option<usize>,
    max_inventory_text_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_streams_per_connection: Option<u32>,
    max_pending_hellos: Option<usize>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    hello_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    handshake_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    keepalive_interval: Option<Duration>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    keepalive_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    http_request_timeout: Option<Duration>,
    http_max_concurrent_requests: Option<usize>,
}

/// Everything `[limits]` bounds, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub ingest: IngestLimits,
    pub http: HttpLimits,
}

impl Limits {
    fn validate(source: &ConfigSource, raw: RawLimits) -> Result<Self, ConfigError> {
        let defaults = Limits::default();
        // A count of zero would refuse everything: always a mistake.
        let count =
            |key: &str, value: Option<usize>, default: usize| -> Result<usize, ConfigError> {
                match value {
                    None => Ok(default),
                    Some(0) => Err(source.error(&format!("limits.{key}"), "must be at least 1")),
                    Some(value) => Ok(value),
                }
            };
        let duration = |key: &str,
                        value: Option<Duration>,
                        default: Duration,
                        range: (Duration, Duration)|
         -> Result<Duration, ConfigError> {
            let value = value.unwrap_or(default);
            if value < range.0 || value > range.1 {
                return Err(source.error(
                    &format!("limits.{key}"),
                    format!(
                        "must be between {} and {}",
                        humantime::format_duration(range.0),
                        humantime::format_duration(range.1)
                    ),
                ));
            }
            Ok(value)
        };
        let ingest = defaults.ingest;
        let (samples, inventory, grpc) = (ingest.samples, ingest.inventory, ingest.grpc);
        let max_message_bytes = count(
            "max_message_bytes",
            raw.max_message_bytes,
            ingest.max_message_bytes,
        )?;
        if max_message_bytes < 1024 {
            return Err(source.error("limits.max_message_bytes", "must be at least 1024"));
        }
        let max_agents = count("max_agents", raw.max_agents, ingest.max_agents)?;
        let max_pending_hellos = count(
            "max_pending_hellos",
            raw.max_pending_hellos,
            grpc.max_pending_hellos,
        )?;
        // By default room for every agent plus those still saying hello.
        let max_connections = count(
            "max_connections",
            raw.max_connections,
            max_agents + max_pending_hellos,
        )?;
        let seconds = Duration::from_secs;
        let keepalive_interval = duration(
            "keepalive_interval",
            raw.keepalive_interval,
            grpc.keepalive_interval,
            (seconds(1), seconds(3600)),
        )?;
        let keepalive_timeout = duration(
            "keepalive_timeout",
            raw.keepalive_timeout,
            grpc.keepalive_timeout,
            (seconds(1), seconds(600)),
        )?;
        let idle_timeout = duration(
            "idle_timeout",
            raw.idle_timeout,
            grpc.idle_timeout,
            (seconds(1), seconds(24 * 3600)),
        )?;
        if idle_timeout <= keepalive_interval + keepalive_timeout {
            return Err(source.error(
                "limits.idle_timeout",
                "must be longer than keepalive_interval + keepalive_timeout, or live agents that only answer keepalive pings are cut off",
            ));
        }
        let grpc = GrpcLimits {
            max_connections,
            max_streams_per_connection: match raw.max_streams_per_connection {
                Some(0) => {
                    return Err(
                        source.error("limits.max_streams_per_connection", "must be at least 1")
                    );
                }
                Some(value) => value,
                None => grpc.max_streams_per_connection,
            },
            max_pending_hellos,
            hello_timeout: duration(
                "hello_timeout",
                raw.hello_timeout,
                grpc.hello_timeout,
                (Duration::from_millis(100), seconds(60)),
            )?,
            handshake_timeout: duration(
                "handshake_timeout",
                raw.handshake_timeout,
                grpc.handshake_timeout,
                (Duration::from_millis(100), seconds(60)),
            )?,
            idle_timeout,
            keepalive_interval,
            keepalive_timeout,
        };
        let samples = SampleLimits {
            max_labels: count(
                "max_labels_per_sample",
                raw.max_labels_per_sample,
                samples.max_labels,
            )?,
            max_label_key_bytes: count(
                "max_label_key_bytes",
                raw.max_label_key_bytes,
                samples.max_label_key_bytes,
            )?,
            max_label_value_bytes: count(
                "max_label_value_bytes",
                raw.max_label_value_bytes,
                samples.max_label_value_bytes,
            )?,
        };
        let inventory = InventoryLimits {
            max_facts: count("max_facts", raw.max_facts, inventory.max_facts)?,
            max_fact_key_bytes: count(
                "max_fact_key_bytes",
                raw.max_fact_key_bytes,
                inventory.max_fact_key_bytes,
            )?,
            max_fact_value_bytes: count(
                "max_fact_value_bytes",
                raw.max_fact_value_bytes,
                inventory.max_fact_value_bytes,
            )?,
            max_disks: count("max_disks", raw.max_disks, inventory.max_disks)?,
            max_interfaces: count(
                "max_interfaces",
                raw.max_interfaces,
                inventory.max_interfaces,
            )?,
            max_addresses_per_interface: count(
                "max_addresses_per_interface",
                raw.max_addresses_per_interface,
                inventory.max_addresses_per_interface,
            )?,
            max_packages: count("max_packages", raw.max_packages, inventory.max_packages)?,
            max_package_field_bytes: count(
                "max_package_field_bytes",
                raw.max_package_field_bytes,
                inventory.max_package_field_bytes,
            )?,
            max_text_bytes: count(
                "max_inventory_text_bytes",
                raw.max_inventory_text_bytes,
                inventory.max_text_bytes,
            )?,
            max_agent_version_bytes: count(
                "max_agent_version_bytes",
                raw.max_agent_version_bytes,
                inventory.max_agent_version_bytes,
            )?,
        };
        let http = HttpLimits {
            request_timeout: duration(
                "http_request_timeout",
                raw.http_request_timeout,
                defaults.http.request_timeout,
                (seconds(1), seconds(3600)),
            )?,
            max_concurrent_requests: count(
                "http_max_concurrent_requests",
                raw.http_max_concurrent_requests,
                defaults.http.max_concurrent_requests,
            )?,
        };
        Ok(Self {
            ingest: IngestLimits {
                max_message_bytes,
                max_agents,
                max_samples_per_batch: count(
                    "max_samples_per_batch",
                    raw.max_samples_per_batch,
                    ingest.max_samples_per_batch,
                )?,
                max_series_per_agent: count(
                    "max_series_per_agent",
                    raw.max_series_per_agent,
                    ingest.max_series_per_agent,
                )?,
                samples,
                inventory,
                grpc,
            },
            http,
        })
    }
}

fn yes() -> bool {
    true
}
fn default_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_rollup_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

/// An included file holds only rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<RawRule>,
}

/// PEM certificate chain and key for the gRPC listener.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// `[tls] ca`: trusted for agent client certificates; appended to the
    /// served chain when `cert` does not already hold it.
    pub ca_pem: Option<Vec<u8>>,
    /// `[tls] ca_key`: present when this collector can enroll agents.
    pub ca_key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity { .. }")
    }
}

/// A validated collector configuration. Secrets are redacted from `Debug`.
#[derive(Clone)]
pub struct CollectorConfig {
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// `None` only when TLS was explicitly disabled on a loopback listener.
    pub tls: Option<TlsIdentity>,
    /// The HTTPS identity of the HTTP API; `None`: plain HTTP.
    pub http_tls: Option<TlsIdentity>,
    /// `/metrics` answers without a token.
    pub metrics_public: bool,
    /// `/metrics` also exposes the latest value of every agent series
    /// (Prometheus names from `prometheus_names`).
    pub fleet_metrics: bool,
    /// Shared agent tokens (the weaker mode); may be empty when agents enroll.
    pub agent_tokens: Vec<String>,
    /// `[auth] api_tokens` / `api_token_file`, hashed at load (admin scope,
    /// named `config-1`, `config-2`, … in that order); the plaintext is dropped.
    pub api_tokens: Vec<crate::access::TokenHash>,
    pub enrollment: EnrollmentSettings,
    /// The embedded database; empty when `postgres` is set.
    pub sqlite_path: PathBuf,
    /// `[storage] postgres`: the shared database instead of `sqlite_path`.
    pub postgres: Option<crate::store::postgres::PgSettings>,
    /// `[storage] instance`: this collector's name among several.
    pub instance: String,
    /// Raw samples (whole chunks), batch records and delivery history.
    pub retention: Duration,
    /// How long records other than samples are kept.
    pub record_retention: RetentionPolicy,
    /// How often retention runs.
    pub prune_every: Duration,
    /// 5-minute rollups.
    pub rollup_retention: Duration,
    /// `[limits]`: bounds on every input, gRPC and HTTP.
    pub limits: Limits,
    pub rules: Vec<Rule>,
    pub sla: SlaPolicy,
    /// `[[dependency]]` (hosts whose alerts are caused by a parent check)
    /// and `[problems]` (when recurring incidents become a problem).
    pub service: ServicePolicy,
    pub assets: AssetPolicy,
    pub notify: std::sync::Arc<NotifyConfig>,
    /// Public URL of the HTTP API, for links in notifications.
    pub base_url: String,
    /// `[console]`: users who log in to the web console with a password.
    pub console: ConsoleSettings,
    /// Where this config came from, so SIGHUP can re-read it.
    pub path: PathBuf,
    /// `[export]`: remote_write and OTLP endpoints.
    pub export: crate::export::ExportConfig,
}

impl std::fmt::Debug for CollectorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorConfig")
            .field("grpc_listen", &self.grpc_listen)
            .field("http_listen", &self.http_listen)
            .field("tls", &self.tls.is_some())
            .field("http_tls", &self.http_tls.is_some())
            .field("agent_tokens", &self.agent_tokens.len())
            .field("api_tokens", &self.api_tokens.len())
            .field("sqlite_path", &self.sqlite_path)
            .field("postgres", &self.postgres)
            .field("retention", &self.retention)
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl CollectorConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_source(&ConfigSource::read(path)?)
    }

    /// Parses and validates text already read. Files it names (TLS
    /// identity, token files, includes) are still read, relative to
    /// `source.path`'s directory.
    pub fn from_source(source: &ConfigSource) -> Result<Self, ConfigError> {
        let raw: RawCollectorConfig = source.parse()?;
        Self::validate(source, raw)
    }

    fn validate(source: &ConfigSource, raw: RawCollectorConfig) -> Result<Self, ConfigError> {
        let read = |key: &str, path: &Path| -> Result<Vec<u8>, ConfigError> {
            let path = source.resolve(path);
            std::fs::read(&path).map_err(|error| {
                source.error(key, format!("cannot read {}: {error}", path.display()))
            })
        };
        let tls = if raw.tls.enabled {
            let cert = raw.tls.cert.as_deref().ok_or_else(|| {
                source.error(
                    "tls",
                    "missing `cert` (or set enabled = false for loopback development)",
                )
            })?;
            let key = raw
                .tls
                .key
                .as_deref()
                .ok_or_else(|| source.error("tls", "missing `key`"))?;
            let ca_pem = raw
                .tls
                .ca
                .as_deref()
                .map(|path| read("tls.ca", path))
                .transpose()?;
            let ca_key_pem = raw
                .tls
                .ca_key
                .as_deref()
                .map(|path| read("tls.ca_key", path))
                .transpose()?;
            if ca_key_pem.is_some() && ca_pem.is_none() {
                return Err(source.error("tls.ca_key", "needs `ca`, the certificate it belongs to"));
            }
            Some(TlsIdentity {
                cert_pem: read("tls.cert", cert)?,
                key_pem: read("tls.key", key)?,
                ca_pem,
                ca_key_pem,
            })
        } else if raw.server.grpc_listen.ip().is_loopback() {
            None
        } else {
            return Err(source.error(
                "tls.enabled",
                "TLS may be disabled only when server.grpc_listen is a loopback address",
            ));
        };
        let agent_tokens = gather_tokens(
            source,
            raw.auth.agent_tokens,
            raw.auth.agent_token_file.as_deref(),
            "auth.agent_tokens",
            "auth.agent_token_file",
        )?;
        let can_enroll = tls.as_ref().is_some_and(|tls| tls.ca_key_pem.is_some());
        if agent_tokens.is_empty() && !can_enroll {
            return Err(source.error(
                "auth",
                "no agent tokens and no [tls] ca_key to enroll agents with: no agent could connect",
            ));
        }
        if raw.enrollment.cert_lifetime < Duration::from_secs(60) {
            return Err(source.error("enrollment.cert_lifetime", "must be at least 1m"));
        }
        if raw.enrollment.rate_burst == 0 {
            return Err(source.error("enrollment.rate_burst", "must be at least 1"));
        }
        let enrollment = EnrollmentSettings {
            cert_lifetime: raw.enrollment.cert_lifetime,
            rate_burst: raw.enrollment.rate_burst,
            rate_every: raw.enrollment.rate_every,
        };
        let api_tokens = gather_tokens(
            source,
            raw.auth.api_tokens,
            raw.auth.api_token_file.as_deref(),
            "auth.api_tokens",
            "auth.api_token_file",
        )?
        .iter()
        .map(|token| crate::access::TokenHash::of(token))
        .collect();
        let http_tls = if raw.server.http_tls {
            let (cert, key) = match (&raw.server.http_cert, &raw.server.http_key) {
                (Some(cert), Some(key)) => (
                    read("server.http_cert", cert)?,
                    read("server.http_key", key)?,
                ),
                (None, None) => match &tls {
                    Some(identity) => (identity.cert_pem.clone(), identity.key_pem.clone()),
                    None => {
                        return Err(source.error(
                            "server.http_tls",
                            "needs a certificate: set http_cert and http_key, or enable [tls]",
                        ));
                    }
                },
                _ => {
                    return Err(source.error(
                        "server.http_cert",
                        "set both http_cert and http_key, or neither (to use [tls]'s)",
                    ));
                }
            };
            // The API asks no client certificate, so it needs no CA.
            Some(TlsIdentity {
                cert_pem: cert,
                key_pem: key,
                ca_pem: None,
                ca_key_pem: None,
            })
        } else if raw.server.http_cert.is_some() || raw.server.http_key.is_some() {
            return Err(source.error(
                "server.http_cert",
                "http_cert and http_key are used only with http_tls = true",
            ));
        } else if !raw.server.http_listen.ip().is_loopback() && !raw.server.allow_plain_http {
            return Err(source.error(
                "server.http_listen",
                "is not a loopback address, so API tokens would cross the network in clear: \
                 set http_tls = true, or allow_plain_http = true if a TLS proxy fronts the API",
            ));
        } else {
            None
        };
        let mut rules = validate_rules(source, raw.rule)?;
        for (index, include) in raw.include.iter().enumerate() {
            let path = source.resolve(include);
            let included = ConfigSource::read(&path)
                .map_err(|error| source.error(&format!("include[{index}]"), error.to_string()))?;
            let file: RulesFile = included.parse()?;
            for rule in validate_rules(&included, file.rule)? {
                if rules.iter().any(|existing| existing.name == rule.name) {
                    return Err(
                        included.error("rule", format!("rule {:?} is defined twice", rule.name))
                    );
                }
                rules.push(rule);
            }
        }
        let sla = SlaPolicy::validate(source, raw.sla)?;
        let service = ServicePolicy {
            dependencies: validate_dependencies(source, raw.dependency, &rules)?,
            recurrence: raw.problems.validate(source)?,
            change_link_after: raw.changes.link_after,
        };
        let assets = AssetPolicy::validate(source, raw.assets)?;
        let notify = NotifyConfig::validate(
            source,
            RawNotify {
                channel: raw.channel,
                route: raw.route,
                person: raw.person,
                schedule: raw.schedule,
                escalation: raw.escalation,
            },
        )?;
        let base_url = raw
            .notify
            .base_url
            .unwrap_or_else(|| {
                let scheme = if http_tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{}", raw.server.http_listen)
            })
            .trim_end_matches('/')
            .to_string();
        if raw.retention.every < Duration::from_secs(1) {
            return Err(source.error("retention.every", "must be at least 1s"));
        }
        let limits = Limits::validate(source, raw.limits)?;
        let postgres_url = match (raw.storage.postgres, &raw.storage.postgres_file) {
            (Some(_), Some(_)) => {
                return Err(source.error(
                    "storage.postgres_file",
                    "set either postgres or postgres_file, not both",
                ));
            }
            (Some(url), None) => Some(url),
            (None, Some(file)) => {
                let path = source.resolve(file);
                let text = std::fs::read_to_string(&path).map_err(|error| {
                    source.error(
                        "storage.postgres_file",
                        format!("cannot read {}: {error}", path.display()),
                    )
                })?;
                Some(text.trim().to_string())
            }
            (None, None) => None,
        };
        if let Some(url) = &postgres_url
            && let Err(error) = url.parse::<tokio_postgres::Config>()
        {
            // The URL may hold a password: the message names the key, not the value.
            return Err(source.error(
                if raw.storage.postgres_file.is_some() {
                    "storage.postgres_file"
                } else {
                    "storage.postgres"
                },
                format!("not a PostgreSQL URL: {error}"),
            ));
        }
        let (sqlite_path, postgres) = match (&raw.storage.sqlite, postgres_url) {
            (Some(_), Some(_)) => {
                return Err(source.error(
                    "storage.postgres",
                    "set either sqlite (one collector) or postgres (shared by several), not both",
                ));
            }
            (None, None) => {
                return Err(source.error(
                    "storage.sqlite",
                    "missing: set sqlite = \"PATH\" (or postgres = \"postgres://...\")",
                ));
            }
            (Some(path), None) => (source.resolve(path), None),
            (None, Some(url)) => {
                if raw.storage.postgres_pool_size == 0 {
                    return Err(source.error("storage.postgres_pool_size", "must be at least 1"));
                }
                (
                    PathBuf::new(),
                    Some(crate::store::postgres::PgSettings {
                        url,
                        pool_size: raw.storage.postgres_pool_size,
                        ca_file: raw
                            .storage
                            .postgres_ca_file
                            .as_deref()
                            .map(|path| source.resolve(path)),
                    }),
                )
            }
        };
        let instance = match raw.storage.instance {
            Some(name) if name.trim().is_empty() => {
                return Err(source.error("storage.instance", "must not be empty"));
            }
            Some(name) => name,
            None => steward_core::process::hostname(),
        };
        let console = ConsoleSettings::validate(source, raw.console)?;
        let export = crate::export::ExportConfig::validate(source, raw.export)?;
        Ok(Self {
            grpc_listen: raw.server.grpc_listen,
            http_listen: raw.server.http_listen,
            tls,
            http_tls,
            metrics_public: raw.server.metrics_public,
            fleet_metrics: raw.server.fleet_metrics,
            agent_tokens,
            api_tokens,
            enrollment,
            sqlite_path,
            postgres,
            instance,
            retention: raw.storage.retention,
            record_retention: RetentionPolicy {
                resolved_incidents: raw.retention.resolved_incidents,
                notifications: raw.retention.notifications,
                inventory_events: raw.retention.inventory_events,
                asset_events: raw.retention.asset_events,
                silent_agents: raw.retention.silent_agents,
            },
            prune_every: raw.retention.every,
            rollup_retention: raw.storage.rollup_retention,
            limits,
            rules,
            sla,
            service,
            assets,
            notify: std::sync::Arc::new(notify),
            base_url,
            console,
            path: source.path.clone(),
            export,
        })
    }
}

/// Tokens listed inline plus one per line of a file (`#` starts a comment).
fn gather_tokens(
    source: &ConfigSource,
    mut inline: Vec<String>,
    file: Option<&Path>,
    inline_key: &str,
    file_key: &str,
) -> Result<Vec<String>, ConfigError> {
    if let Some(file) = file {
        let path = source.resolve(file);
        let text = std::fs::read_to_string(&path).map_err(|error| {
            source.error(file_key, format!("cannot read {}: {error}", path.display()))
        })?;
        inline.extend(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_string),
        );
    }
    if inline.iter().any(|token| token.len() < 16) {
        return Err(source.error(
            if file.is_some() { file_key } else { inline_key },
            "tokens must be at least 16 characters",
        ));
    }
    Ok(inline)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123";

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("collector.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn base(extra: &str) -> String {
        format!(
            "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\n[tls]\nenabled = false\n\n[auth]\nagent_tokens = [\"{TOKEN}\"]\n\n[storage]\nsqlite = \"db.sqlite\"\n{extra}"
        )
    }

    #[test]
    fn loopback_plaintext_config_loads_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config = CollectorConfig::load(&write(dir.path(), &base(""))).unwrap();
        assert!(config.tls.is_none());
        assert_eq!(config.sqlite_path, dir.path().join("db.sqlite"));
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.limits.ingest.max_message_bytes, 4 << 20);
        assert_eq!(
            config.limits.ingest.grpc.max_connections,
            10_000 + 256,
            "room for max_agents plus max_pending_hellos"
        );
        assert!(
            !format!("{config:?}").contains(TOKEN),
            "tokens must not show in Debug"
        );
    }

    #[test]
    fn console_users_load_and_bad_ones_are_refused_by_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let hash = crate::api::session::hash_password("s3cret").unwrap();
        let user = |name: &str, hash: &str, scope: &str| {
            format!(
                "\n[[console.users]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\nscope = \"{scope}\"\n"
            )
        };
        let good = base(&format!(
            "\n[console]\nsession_idle = \"2h\"\n{}{}",
            user("alice", &hash, "write"),
            user("rita", &hash, "read")
        ));
        let config = CollectorConfig::load(&write(dir.path(), &good)).unwrap();
        assert_eq!(config.console.session_idle, Duration::from_secs(7200));
        let names: Vec<_> = config
            .console
            .users
            .iter()
            .map(|user| (user.name.as_str(), user.scope))
            .collect();
        assert_eq!(
            names,
            [
                ("alice", crate::access::Scope::Write),
                ("rita", crate::access::Scope::Read)
            ]
        );
        assert!(
            !format!("{config:?}").contains(&hash),
            "hashes stay out of Debug"
        );
        // 12 lines of base, then a blank line, the table header, name, hash, scope.
        let cases = [
            (
                user("bob", "hunter2", "write"),
                "console.users[0].password_hash",
                16,
            ),
            (user("bob", &hash, "root"), "console.users[0].scope", 17),
            (
                user("bob smith", &hash, "read"),
                "console.users[0].name",
                15,
            ),
            (
                format!(
                    "{}{}",
                    user("bob", &hash, "read"),
                    user("bob", &hash, "read")
                ),
                "console.users[1].name",
                20,
            ),
            (
                "\n[console]\nsession_idle = \"5s\"\n".to_string(),
                "console.session_idle",
                15,
            ),
            (
                "\n[console]\nsession_idle = \"2h\"\nsession_max = \"1h\"\n".to_string(),
                "console.session_max",
                16,
            ),
        ];
        for (extra, key, line) in cases {
            let error = CollectorConfig::load(&write(dir.path(), &base(&extra))).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{extra}: {error}");
            assert_eq!(error.line, Some(line), "{extra}: {error}");
        }
    }

    #[test]
    fn storage_is_sqlite_or_postgres_and_the_url_stays_out_of_errors() {
        let dir = tempfile::tempdir().unwrap();
        let on_postgres = |storage: &str| base("").replace("sqlite = \"db.sqlite\"\n", storage);
        let url = "postgres://steward:s3cret@db.example:5432/steward?sslmode=require";
        let config = CollectorConfig::load(&write(
            dir.path(),
            &on_postgres(&format!("postgres = {url:?}\ninstance = \"collector-a\"\n")),
        ))
        .unwrap();
        let settings = config.postgres.as_ref().unwrap();
        assert_eq!(settings.url, url);
        assert_eq!(settings.pool_size, 16);
        assert_eq!(config.instance, "collector-a");
        assert!(!format!("{config:?}").contains("s3cret"), "{config:?}");

        std::fs::write(dir.path().join("pg-url"), format!("{url}\n")).unwrap();
        let config = CollectorConfig::load(&write(
            dir.path(),
            &on_postgres("postgres_file = \"pg-url\"\n"),
        ))
        .unwrap();
        assert_eq!(config.postgres.unwrap().url, url);
        assert_eq!(config.instance, steward_core::process::hostname());

        let cases = [
            (on_postgres(""), "storage.sqlite"),
            (base(&format!("postgres = {url:?}\n")), "storage.postgres"),
            (
                on_postgres("postgres = \"postgres://x:s3cret@h/db?sslmode=sometimes\"\n"),
                "storage.postgres",
            ),
            (
                on_postgres(&format!("postgres = {url:?}\npostgres_file = \"pg-url\"\n")),
                "storage.postgres_file",
            ),
            (
                on_postgres("postgres_file = \"missing\"\n"),
                "storage.postgres_file",
            ),
            (
                on_postgres(&format!("postgres = {url:?}\ninstance = \" \"\n")),
                "storage.instance",
            ),
            (
                on_postgres(&format!("postgres = {url:?}\npostgres_pool_size = 0\n")),
                "storage.postgres_pool_size",
            ),
        ];
        for (text, key) in cases {
            let error = CollectorConfig::load(&write(dir.path(), &text)).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{text}: {error}");
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (base("retention = \"forever\"\n"), "storage.retention", 13),
            (base("bogus = 1\n"), "storage.bogus", 13),
            (
                base("").replace("enabled = false", "cert = \"nope.pem\"\nkey = \"nope.key\""),
                "tls.cert",
                6,
            ),
            (
                base("").replace("127.0.0.1:0\"\nhttp", "0.0.0.0:0\"\nhttp"),
                "tls.enabled",
                6,
            ),
            (
                base("").replace("agent_tokens = [\"0123456789abcdef0123\"]", ""),
                "auth",
                8,
            ),
            (
                base("").replace(
                    "http_listen = \"127.0.0.1:0\"",
                    "http_listen = \"0.0.0.0:0\"",
                ),
                "server.http_listen",
                3,
            ),
            (
                base("").replace(
                    "http_listen = \"127.0.0.1:0\"",
                    "http_listen = \"127.0.0.1:0\"\nhttp_tls = true",
                ),
                "server.http_tls",
                4,
            ),
        ];
        for (text, key, line) in cases {
            let error = CollectorConfig::load(&write(dir.path(), &text)).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{error}");
            assert_eq!(error.line, Some(line), "{error}");
        }
    }

    #[test]
    fn plain_http_off_loopback_needs_allow_plain_http_and_config_tokens_are_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let text = base("")
            .replace("[auth]\n", &format!("[auth]\napi_tokens = [\"{TOKEN}\"]\n"))
            .replace(
                "http_listen = \"127.0.0.1:0\"",
                "http_listen = \"0.0.0.0:0\"\nallow_plain_http = true",
            );
        let config = CollectorConfig::load(&write(dir.path(), &text)).unwrap();
        assert!(config.http_tls.is_none());
        assert_eq!(config.base_url, "http://0.0.0.0:0");
        assert_eq!(config.api_tokens, vec![crate::access::TokenHash::of(TOKEN)]);
    }

    #[test]
    fn http_tls_uses_the_collector_certificate_by_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), "CERT").unwrap();
        std::fs::write(dir.path().join("c.key"), "KEY").unwrap();
        let text = base("")
            .replace("enabled = false", "cert = \"c.pem\"\nkey = \"c.key\"")
            .replace(
                "http_listen = \"127.0.0.1:0\"",
                "http_listen = \"127.0.0.1:0\"\nhttp_tls = true",
            );
        let config = CollectorConfig::load(&write(dir.path(), &text)).unwrap();
        let identity = config.http_tls.unwrap();
        assert_eq!(identity.cert_pem, b"CERT");
        assert_eq!(config.base_url, "https://127.0.0.1:0");
    }

    #[test]
    fn enrollment_settings_are_validated_and_a_ca_key_needs_its_ca() {
        let dir = tempfile::tempdir().unwrap();
        let config = CollectorConfig::load(&write(dir.path(), &base(""))).unwrap();
        assert_eq!(
            config.enrollment.cert_lifetime,
            crate::enrollment::DEFAULT_CERT_LIFETIME
        );
        for (extra, key) in [
            (
                "\n[enrollment]\ncert_lifetime = \"10s\"\n",
                "enrollment.cert_lifetime",
            ),
            ("\n[enrollment]\nrate_burst = 0\n", "enrollment.rate_burst"),
            ("\n[enrollment]\nbogus = 1\n", "enrollment.bogus"),
        ] {
            let error = CollectorConfig::load(&write(dir.path(), &base(extra))).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{extra}: {error}");
        }
        std::fs::write(dir.path().join("s.pem"), "pem").unwrap();
        let text = base("").replace(
            "enabled = false",
            "cert = \"s.pem\"\nkey = \"s.pem\"\nca_key = \"s.pem\"",
        );
        let error = CollectorConfig::load(&write(dir.path(), &text)).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("tls.ca_key"), "{error}");
        // With a CA key, shared agent tokens are optional.
        let text = base("")
            .replace(
                "enabled = false",
                "cert = \"s.pem\"\nkey = \"s.pem\"\nca = \"s.pem\"\nca_key = \"s.pem\"",
            )
            .replace("agent_tokens = [\"0123456789abcdef0123\"]", "");
        let config = CollectorConfig::load(&write(dir.path(), &text)).unwrap();
        assert!(config.agent_tokens.is_empty());
    }

    #[test]
    fn service_management_settings_load_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        const RULE: &str = "\n[[rule]]\nname = \"gw-down\"\nmetric = \"port.up\"\nop = \"<\"\nthreshold = 1\nseverity = \"critical\"\n";
        let text = base(&format!(
            "{RULE}\n[[dependency]]\ntags = [\"site:a\"]\ndepends_on = {{ rule = \"gw-down\", labels = {{ name = \"gw\" }} }}\nhold = \"45s\"\n\n[problems]\nrecurrences = 4\nwithin = \"1d\"\nscope = \"rule\"\n\n[changes]\nlink_after = \"30m\"\n"
        ));
        let config = CollectorConfig::load(&write(dir.path(), &text)).unwrap();
        assert_eq!(config.service.dependencies.len(), 1);
        assert_eq!(config.service.dependencies[0].tags, ["site:a"]);
        assert_eq!(config.service.dependencies[0].hold, Duration::from_secs(45));
        let recurrence = config.service.recurrence.unwrap();
        assert_eq!((recurrence.count, recurrence.across_agents), (4, true));
        assert_eq!(recurrence.within_ms, 24 * 3_600_000);
        assert_eq!(config.service.change_link_after, Duration::from_secs(1800));
        let defaults = CollectorConfig::load(&write(dir.path(), &base(""))).unwrap();
        assert_eq!(defaults.service.recurrence.unwrap().count, 3);
        assert_eq!(
            defaults.service.change_link_after,
            Duration::from_secs(3600)
        );
        let cases = [
            (
                format!(
                    "{RULE}[[dependency]]\nhosts = [\"a\"]\ndepends_on = {{ rule = \"nope\" }}\n"
                ),
                "dependency[0].depends_on.rule",
            ),
            (
                format!("{RULE}[[dependency]]\ndepends_on = {{ rule = \"gw-down\" }}\n"),
                "dependency[0].hosts",
            ),
            (
                format!(
                    "{RULE}[[dependency]]\nhosts = [\"a\"]\ndepends_on = {{ rule = \"gw-down\" }}\nhold = \"soon\"\n"
                ),
                "dependency.hold",
            ),
            (
                "[problems]\nscope = \"site\"\n".to_string(),
                "problems.scope",
            ),
            ("[problems]\nevery = 2\n".to_string(), "problems.every"),
            ("[changes]\nwindow = \"1h\"\n".to_string(), "changes.window"),
        ];
        for (extra, key) in cases {
            let text = base(&format!("\n{extra}"));
            let error = CollectorConfig::load(&write(dir.path(), &text)).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{extra}: {error}");
        }
    }

    #[test]
    fn limit_errors_name_the_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("max_series_per_agent = 0", "limits.max_series_per_agent"),
            ("max_bogus = 1", "limits.max_bogus"),
            ("hello_timeout = \"soon\"", "limits.hello_timeout"),
            ("hello_timeout = \"10m\"", "limits.hello_timeout"),
            ("idle_timeout = \"30s\"", "limits.idle_timeout"),
            (
                "max_streams_per_connection = 0",
                "limits.max_streams_per_connection",
            ),
            ("max_message_bytes = 100", "limits.max_message_bytes"),
            (
                "http_max_concurrent_requests = -1",
                "limits.http_max_concurrent_requests",
            ),
        ];
        for (line, key) in cases {
            let text = base(&format!("\n[limits]\n{line}\n"));
            let error = CollectorConfig::load(&write(dir.path(), &text)).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{line}: {error}");
            assert_eq!(error.line, Some(15), "{line}: {error}");
        }
    }

    #[test]
    fn limits_are_read_and_max_connections_follows_max_agents() {
        let dir = tempfile::tempdir().unwrap();
        let text = base(
            "\n[limits]\nmax_agents = 100\nmax_pending_hellos = 10\nmax_series_per_agent = 50\nhello_timeout = \"2s\"\nhttp_request_timeout = \"5s\"\n",
        );
        let limits = CollectorConfig::load(&write(dir.path(), &text))
            .unwrap()
            .limits;
        assert_eq!(limits.ingest.max_series_per_agent, 50);
        assert_eq!(limits.ingest.grpc.max_connections, 110);
        assert_eq!(limits.ingest.grpc.hello_timeout, Duration::from_secs(2));
        assert_eq!(limits.http.request_timeout, Duration::from_secs(5));
        assert_eq!(
            limits.ingest.inventory,
            InventoryLimits::default(),
            "unset keys keep their defaults"
        );
    }

    /// The `[limits]` tables of the deploy examples state the defaults, so
    /// the documentation cannot drift from the code.
    #[test]
    fn deploy_examples_state_the_default_limits() {
        let dir = tempfile::tempdir().unwrap();
        for example in ["collector-full.toml", "collector.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy")
                .join(example);
            let text = std::fs::read_to_string(&path).unwrap();
            let start = text.find("\n[limits]\n").unwrap();
            let rest = &text[start + 1..];
            let end = rest[1..].find("\n[").map_or(rest.len(), |end| end + 2);
            let limits = &rest[..end];
            let config = CollectorConfig::load(&write(dir.path(), &base(&format!("\n{limits}"))))
                .unwrap_or_else(|error| panic!("{example}: {error}"));
            assert_eq!(config.limits, Limits::default(), "{example}");
            // Every key is listed (commented out where the default is derived).
            for key in [
                "max_samples_per_batch",
                "max_series_per_agent",
                "max_connections",
                "max_pending_hellos",
                "hello_timeout",
                "http_request_timeout",
                "http_max_concurrent_requests",
            ] {
                assert!(
                    limits.contains(&format!("{key} =")),
                    "{example} lacks {key}"
                );
            }
        }
    }
}
