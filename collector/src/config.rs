//! The collector's configuration: `collector.toml`, parsed raw then validated.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use steward_core::config_file::{self, ConfigError, ConfigSource};

use crate::assets::{AssetPolicy, RawAssetPolicy};
use crate::incidents::SlaPolicy;
use crate::incidents::sla::RawSlaTarget;
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default = "yes")]
    enabled: bool,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            enabled: true,
            cert: None,
            key: None,
        }
    }
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
    sqlite: PathBuf,
    #[serde(
        default = "default_retention",
        deserialize_with = "config_file::duration"
    )]
    retention: Duration,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_max_message_bytes")]
    max_message_bytes: usize,
    #[serde(default = "default_max_agents")]
    max_agents: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: default_max_message_bytes(),
            max_agents: default_max_agents(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_max_message_bytes() -> usize {
    4 << 20
}
fn default_max_agents() -> usize {
    10_000
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
    pub agent_tokens: Vec<String>,
    pub api_tokens: Vec<String>,
    pub sqlite_path: PathBuf,
    pub retention: Duration,
    /// How long records other than samples are kept.
    pub record_retention: RetentionPolicy,
    /// How often retention runs.
    pub prune_every: Duration,
    pub max_message_bytes: usize,
    pub max_agents: usize,
    pub rules: Vec<Rule>,
    pub sla: SlaPolicy,
    pub assets: AssetPolicy,
    pub notify: std::sync::Arc<NotifyConfig>,
    /// Public URL of the HTTP API, for links in notifications.
    pub base_url: String,
    /// Where this config came from, so SIGHUP can re-read it.
    pub path: PathBuf,
}

impl std::fmt::Debug for CollectorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorConfig")
            .field("grpc_listen", &self.grpc_listen)
            .field("http_listen", &self.http_listen)
            .field("tls", &self.tls.is_some())
            .field("agent_tokens", &self.agent_tokens.len())
            .field("api_tokens", &self.api_tokens.len())
            .field("sqlite_path", &self.sqlite_path)
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
            Some(TlsIdentity {
                cert_pem: read("tls.cert", cert)?,
                key_pem: read("tls.key", key)?,
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
        if agent_tokens.is_empty() {
            return Err(source.error(
                "auth",
                "no agent tokens: set agent_tokens or agent_token_file, or no agent can connect",
            ));
        }
        let api_tokens = gather_tokens(
            source,
            raw.auth.api_tokens,
            raw.auth.api_token_file.as_deref(),
            "auth.api_tokens",
            "auth.api_token_file",
        )?;
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
            .unwrap_or_else(|| format!("http://{}", raw.server.http_listen))
            .trim_end_matches('/')
            .to_string();
        if raw.retention.every < Duration::from_secs(1) {
            return Err(source.error("retention.every", "must be at least 1s"));
        }
        if raw.limits.max_message_bytes < 1024 {
            return Err(source.error("limits.max_message_bytes", "must be at least 1024"));
        }
        Ok(Self {
            grpc_listen: raw.server.grpc_listen,
            http_listen: raw.server.http_listen,
            tls,
            agent_tokens,
            api_tokens,
            sqlite_path: source.resolve(&raw.storage.sqlite),
            retention: raw.storage.retention,
            record_retention: RetentionPolicy {
                resolved_incidents: raw.retention.resolved_incidents,
                notifications: raw.retention.notifications,
                inventory_events: raw.retention.inventory_events,
                asset_events: raw.retention.asset_events,
                silent_agents: raw.retention.silent_agents,
            },
            prune_every: raw.retention.every,
            max_message_bytes: raw.limits.max_message_bytes,
            max_agents: raw.limits.max_agents,
            rules,
            sla,
            assets,
            notify: std::sync::Arc::new(notify),
            base_url,
            path: source.path.clone(),
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
        assert_eq!(config.max_message_bytes, 4 << 20);
        assert!(
            !format!("{config:?}").contains(TOKEN),
            "tokens must not show in Debug"
        );
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
        ];
        for (text, key, line) in cases {
            let error = CollectorConfig::load(&write(dir.path(), &text)).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{error}");
            assert_eq!(error.line, Some(line), "{error}");
        }
    }
}
