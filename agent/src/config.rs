//! The agent's configuration: `agent.toml`, parsed raw then validated.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config_file::{self, ConfigError, ConfigSource};

/// `agent.toml` as written. Unknown keys are errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgentConfig {
    /// Collector gRPC URL, `https://host:port`.
    collector: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the collector's certificate.
    #[serde(default)]
    ca: Option<PathBuf>,
    /// Name to verify in the collector's certificate; defaults to the URL's host.
    #[serde(default)]
    server_name: Option<String>,
    #[serde(
        default = "default_interval",
        deserialize_with = "config_file::duration"
    )]
    interval: Duration,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    /// Overrides the host name reported to the collector.
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default = "default_max_buffered_batches")]
    max_buffered_batches: usize,
    /// Plain-text gRPC for loopback development only.
    #[serde(default)]
    allow_plaintext: bool,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/steward-agent")
}

fn default_max_buffered_batches() -> usize {
    1024
}

/// A validated agent configuration.
#[derive(Clone)]
pub struct AgentConfig {
    pub collector_url: String,
    /// Shared secret presented in the hello. Never logged (see the manual `Debug`).
    pub token: String,
    /// PEM bytes of the CA; `None` only with plaintext.
    pub ca_pem: Option<Vec<u8>>,
    pub server_name: String,
    pub interval: Duration,
    pub state_dir: PathBuf,
    pub hostname: Option<String>,
    pub max_buffered_batches: usize,
    pub plaintext: bool,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("collector_url", &self.collector_url)
            .field("token", &"<redacted>")
            .field("server_name", &self.server_name)
            .field("interval", &self.interval)
            .field("state_dir", &self.state_dir)
            .field("hostname", &self.hostname)
            .field("max_buffered_batches", &self.max_buffered_batches)
            .field("plaintext", &self.plaintext)
            .finish()
    }
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = ConfigSource::read(path)?;
        let raw: RawAgentConfig = source.parse()?;
        Self::validate(&source, raw)
    }

    fn validate(source: &ConfigSource, raw: RawAgentConfig) -> Result<Self, ConfigError> {
        let (scheme, authority) = raw
            .collector
            .split_once("://")
            .ok_or_else(|| source.error("collector", "expected a URL like https://host:7443"))?;
        let host = host_of(authority)
            .ok_or_else(|| source.error("collector", "the URL has no host"))?
            .to_string();
        let plaintext = match scheme {
            "https" => false,
            "http" if !raw.allow_plaintext => {
                return Err(source.error(
                    "collector",
                    "http:// sends the token in clear; use https:// or set allow_plaintext = true (loopback only)",
                ));
            }
            "http" if !is_loopback_host(&host) => {
                return Err(source.error(
                    "allow_plaintext",
                    "plain-text gRPC is allowed only to a loopback collector",
                ));
            }
            "http" => true,
            other => {
                return Err(source.error(
                    "collector",
                    format!("unsupported scheme {other:?}; expected https"),
                ));
            }
        };
        let token = match (raw.token, raw.token_file) {
            (Some(token), None) => token,
            (None, Some(file)) => {
                let file = source.resolve(&file);
                std::fs::read_to_string(&file)
                    .map_err(|error| {
                        source.error(
                            "token_file",
                            format!("cannot read {}: {error}", file.display()),
                        )
                    })?
                    .trim()
                    .to_string()
            }
            (Some(_), Some(_)) => {
                return Err(source.error("token_file", "set either token or token_file, not both"));
            }
            (None, None) => {
                return Err(source.error("token", "missing: the agent must authenticate"));
            }
        };
        if token.is_empty() {
            return Err(source.error("token", "must not be empty"));
        }
        let ca_pem = match (&raw.ca, plaintext) {
            (Some(ca), _) => {
                let ca = source.resolve(ca);
                Some(std::fs::read(&ca).map_err(|error| {
                    source.error("ca", format!("cannot read {}: {error}", ca.display()))
                })?)
            }
            (None, true) => None,
            (None, false) => {
                return Err(source.error(
                    "ca",
                    "missing: needed to verify the collector's certificate",
                ));
            }
        };
        if raw.interval < Duration::from_secs(1) {
            return Err(source.error("interval", "must be at least 1s"));
        }
        if raw.max_buffered_batches == 0 {
            return Err(source.error("max_buffered_batches", "must be at least 1"));
        }
        Ok(Self {
            collector_url: raw.collector,
            token,
            ca_pem,
            server_name: raw.server_name.unwrap_or(host),
            interval: raw.interval,
            state_dir: source.resolve(&raw.state_dir),
            hostname: raw.hostname,
            max_buffered_batches: raw.max_buffered_batches,
            plaintext,
        })
    }
}

fn host_of(authority: &str) -> Option<&str> {
    let authority = authority.split('/').next()?;
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next()?
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    };
    (!host.is_empty()).then_some(host)
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AgentConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "pem").unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        AgentConfig::load(&path)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config =
            load("collector = \"https://127.0.0.1:7443\"\ntoken = \"t\"\nca = \"ca.pem\"\n")
                .unwrap();
        assert_eq!(config.interval, Duration::from_secs(10));
        assert_eq!(config.server_name, "127.0.0.1");
        assert!(!config.plaintext);
        assert!(
            !format!("{config:?}").contains("\"t\""),
            "token must not show in Debug"
        );
    }

    #[test]
    fn rejects_bad_values_naming_the_key() {
        let cases = [
            (
                "collector = \"https://h:1\"\ntoken = \"t\"\nca = \"ca.pem\"\ninterval = \"fast\"\n",
                "interval",
                4,
            ),
            (
                "collector = \"https://h:1\"\ntoken = \"t\"\nca = \"ca.pem\"\nintervl = \"1s\"\n",
                "intervl",
                4,
            ),
            (
                "collector = \"https://h:1\"\ntoken = \"t\"\nca = \"missing.pem\"\n",
                "ca",
                3,
            ),
            (
                "collector = \"http://h:1\"\ntoken = \"t\"\n",
                "collector",
                1,
            ),
            (
                "collector = \"http://10.0.0.1:1\"\ntoken = \"t\"\nallow_plaintext = true\n",
                "allow_plaintext",
                3,
            ),
            ("collector = \"https://h:1\"\nca = \"ca.pem\"\n", "token", 0),
        ];
        for (text, key, line) in cases {
            let error = load(text).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{text}: {error}");
            assert_eq!(error.line.unwrap_or(0), line, "{text}: {error}");
        }
    }

    #[test]
    fn plaintext_only_to_loopback_when_allowed() {
        let config =
            load("collector = \"http://127.0.0.1:9\"\ntoken = \"t\"\nallow_plaintext = true\n")
                .unwrap();
        assert!(config.plaintext);
        assert!(config.ca_pem.is_none());
    }
}
