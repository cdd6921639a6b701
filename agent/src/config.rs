//! The agent's configuration: `agent.toml`, parsed raw then validated.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::probes::ping::PingTarget;
use crate::probes::port::PortTarget;
use steward_core::config_file::{self, ConfigError, ConfigSource};

/// `agent.toml` as written. Unknown keys are errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgentConfig {
    /// Collector gRPC URL, `https://host:port`, or a list of them: the
    /// agent streams to one and moves to the next when it fails.
    #[serde(deserialize_with = "one_or_more_urls")]
    collector: Vec<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the collector's certificate.
    #[serde(default)]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) from `steward-agent enroll`: the agent
    /// authenticates with it (mutual TLS) instead of a shared token.
    #[serde(default)]
    cert: Option<PathBuf>,
    /// The certificate's private key (PEM, mode 0600).
    #[serde(default)]
    key: Option<PathBuf>,
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
    /// Retired with the in-memory buffer; accepted so old configs still
    /// start, and warned about (see `AgentConfig::retired_keys`).
    #[serde(default)]
    max_buffered_batches: Option<toml::Value>,
    /// Plain-text gRPC for loopback development only.
    #[serde(default)]
    allow_plaintext: bool,
    /// How often ping and port checks run; defaults to `interval`.
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    check_interval: Option<Duration>,
    #[serde(default)]
    ping: Vec<PingTarget>,
    #[serde(default)]
    port: Vec<PortTarget>,
    #[serde(default)]
    patch: PatchConfig,
    #[serde(default)]
    inventory: InventoryConfig,
    #[serde(default)]
    spool: RawSpoolConfig,
}

/// `[spool]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpoolConfig {
    #[serde(default)]
    max_bytes: Option<ByteSize>,
}

/// A size as an integer number of bytes or a string like "256MiB".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    fn bytes(&self) -> Result<u64, String> {
        let text = match self {
            Self::Bytes(bytes) => return Ok(*bytes),
            Self::Text(text) => text.trim(),
        };
        let split = text
            .find(|character: char| !character.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown unit {other:?} in {text:?}; use bytes or B, KiB, MiB, GiB"
                ));
            }
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|number| number.checked_mul(multiplier))
            .ok_or_else(|| format!("{text:?} is not a size like \"256MiB\""))
    }
}

/// `[spool]`: the on-disk buffer of batches the collector has not acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Bound on the spool's files; past it the oldest sample batches are dropped.
    pub max_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_SPOOL_MAX_BYTES,
        }
    }
}

const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 << 20;
/// Below this a spool holds a handful of batches; it exists for tests.
const MIN_SPOOL_MAX_BYTES: u64 = 16 << 10;

/// `[patch]`: OS patch level, checked on its own slow schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(
        default = "default_patch_interval",
        deserialize_with = "config_file::duration"
    )]
    pub interval: Duration,
    #[serde(
        default = "default_patch_timeout",
        deserialize_with = "config_file::duration"
    )]
    pub timeout: Duration,
}

impl Default for PatchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: default_patch_interval(),
            timeout: default_patch_timeout(),
        }
    }
}

/// `[inventory]`: hardware/software inventory, diffed and sent when it changes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(
        default = "default_inventory_interval",
        deserialize_with = "config_file::duration"
    )]
    pub interval: Duration,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: default_inventory_interval(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_patch_interval() -> Duration {
    Duration::from_secs(3600)
}

fn default_patch_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_inventory_interval() -> Duration {
    Duration::from_secs(900)
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/steward-agent")
}

/// Where the agent's client certificate and key live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One collector the agent may stream to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorAddress {
    /// `https://host:port` (or `http://` with `allow_plaintext`).
    pub url: String,
    /// Name verified in the collector's certificate: `server_name`, or the URL's host.
    pub server_name: String,
}

/// At most this many collector URLs (a list longer than any real cluster is a mistake).
const MAX_COLLECTORS: usize = 16;

/// A validated agent configuration.
#[derive(Clone)]
pub struct AgentConfig {
    /// In the configured order; never empty. The shipper starts at a random
    /// one and moves on when it fails (see `shipper::run`).
    pub collectors: Vec<CollectorAddress>,
    /// Shared secret presented in the hello; empty with a client
    /// certificate. Never logged (see the manual `Debug`).
    pub token: String,
    /// Client certificate and key files, read at every connect (renewal
    /// replaces them in place).
    pub client_cert: Option<ClientCertFiles>,
    /// PEM bytes of the CA; `None` only with plaintext.
    pub ca_pem: Option<Vec<u8>>,
    pub interval: Duration,
    pub state_dir: PathBuf,
    pub hostname: Option<String>,
    pub plaintext: bool,
    pub check_interval: Duration,
    pub ping: Vec<PingTarget>,
    pub port: Vec<PortTarget>,
    pub patch: PatchConfig,
    pub inventory: InventoryConfig,
    pub spool: SpoolConfig,
    /// Keys that no longer do anything, for a warning at start.
    pub retired_keys: Vec<&'static str>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("collectors", &self.collectors)
            .field("token", &"<redacted>")
            .field("client_cert", &self.client_cert)
            .field("interval", &self.interval)
            .field("state_dir", &self.state_dir)
            .field("hostname", &self.hostname)
            .field("plaintext", &self.plaintext)
            .field("check_interval", &self.check_interval)
            .field("ping", &self.ping.len())
            .field("port", &self.port.len())
            .field("patch", &self.patch)
            .field("inventory", &self.inventory)
            .field("spool", &self.spool)
            .finish()
    }
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_source(&ConfigSource::read(path)?)
    }

    /// Parses and validates text already read. Files it names (`token_file`,
    /// `ca`) are still read, relative to `source.path`'s directory.
    pub fn from_source(source: &ConfigSource) -> Result<Self, ConfigError> {
        let raw: RawAgentConfig = source.parse()?;
        Self::validate(source, raw)
    }

    fn validate(source: &ConfigSource, raw: RawAgentConfig) -> Result<Self, ConfigError> {
        if raw.collector.is_empty() {
            return Err(source.error("collector", "expected a URL like https://host:7443"));
        }
        if raw.collector.len() > MAX_COLLECTORS {
            return Err(source.error(
                "collector",
                format!("at most {MAX_COLLECTORS} collector URLs"),
            ));
        }
        let mut collectors = Vec::with_capacity(raw.collector.len());
        let mut schemes = Vec::with_capacity(raw.collector.len());
        for (index, url) in raw.collector.iter().enumerate() {
            // Name the entry when there are several.
            let which = if raw.collector.len() > 1 {
                format!("entry {} ({url:?}): ", index + 1)
            } else {
                String::new()
            };
            let (plaintext, host) = check_collector_url(url, raw.allow_plaintext)
                .map_err(|(key, message)| source.error(key, format!("{which}{message}")))?;
            if collectors
                .iter()
                .any(|known: &CollectorAddress| known.url == *url)
            {
                return Err(source.error("collector", format!("{which}listed twice")));
            }
            schemes.push(plaintext);
            collectors.push(CollectorAddress {
                url: url.clone(),
                server_name: raw.server_name.clone().unwrap_or(host),
            });
        }
        if schemes.iter().any(|&plaintext| plaintext != schemes[0]) {
            return Err(source.error(
                "collector",
                "mixes http:// and https:// URLs; every collector must use the same scheme",
            ));
        }
        let plaintext = schemes[0];
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
            (None, None) => String::new(),
        };
        let client_cert = match (&raw.cert, &raw.key) {
            (Some(cert), Some(key)) => {
                let files = ClientCertFiles {
                    cert: source.resolve(cert),
                    key: source.resolve(key),
                };
                for (name, path) in [("cert", &files.cert), ("key", &files.key)] {
                    std::fs::metadata(path).map_err(|error| {
                        source.error(name, format!("cannot read {}: {error}", path.display()))
                    })?;
                }
                if plaintext {
                    return Err(source.error("cert", "a client certificate needs https://"));
                }
                Some(files)
            }
            (Some(_), None) => return Err(source.error("key", "missing: `cert` needs its `key`")),
            (None, Some(_)) => return Err(source.error("cert", "missing: `key` needs its `cert`")),
            (None, None) => None,
        };
        if token.is_empty() && client_cert.is_none() {
            return Err(source.error(
                "token",
                "missing: the agent must authenticate (run `steward-agent enroll`, or set a shared token)",
            ));
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
        let check_interval = raw.check_interval.unwrap_or(raw.interval);
        if check_interval < Duration::from_secs(1) {
            return Err(source.error("check_interval", "must be at least 1s"));
        }
        for (index, target) in raw.ping.iter().enumerate() {
            target.validate().map_err(|invalid| {
                source.error(&format!("ping[{index}].{}", invalid.key), invalid.message)
            })?;
        }
        let mut port = raw.port;
        for (index, target) in port.iter_mut().enumerate() {
            target.validate().map_err(|invalid| {
                source.error(&format!("port[{index}].{}", invalid.key), invalid.message)
            })?;
            // A CA path in the file is relative to the file, like every other path.
            if let Some(ca) = &target.ca {
                target.ca = Some(source.resolve(ca));
            }
        }
        if raw.patch.interval < Duration::from_secs(60) {
            return Err(source.error(
                "patch.interval",
                "must be at least 1m (patch scans are expensive)",
            ));
        }
        if raw.inventory.interval < Duration::from_secs(10) {
            return Err(source.error("inventory.interval", "must be at least 10s"));
        }
        let spool = match &raw.spool.max_bytes {
            None => SpoolConfig::default(),
            Some(size) => {
                let max_bytes = size
                    .bytes()
                    .map_err(|message| source.error("spool.max_bytes", message))?;
                if max_bytes < MIN_SPOOL_MAX_BYTES {
                    return Err(source.error("spool.max_bytes", "must be at least 16KiB"));
                }
                SpoolConfig { max_bytes }
            }
        };
        let mut retired_keys = Vec::new();
        if raw.max_buffered_batches.is_some() {
            retired_keys.push("max_buffered_batches");
        }
        Ok(Self {
            collectors,
            token,
            client_cert,
            ca_pem,
            interval: raw.interval,
            state_dir: source.resolve(&raw.state_dir),
            hostname: raw.hostname,
            plaintext,
            check_interval,
            ping: raw.ping,
            port,
            patch: raw.patch,
            inventory: raw.inventory,
            spool,
            retired_keys,
        })
    }
}

/// `collector` as one string or an array of strings.
fn one_or_more_urls<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a URL string or an array of URL strings")]
    enum OneOrMore {
        One(String),
        More(Vec<String>),
    }
    Ok(match OneOrMore::deserialize(deserializer)? {
        OneOrMore::One(url) => vec![url],
        OneOrMore::More(urls) => urls,
    })
}

/// Whether `url` is plain text, and its host; or the key and message of
/// what is wrong with it.
fn check_collector_url(
    url: &str,
    allow_plaintext: bool,
) -> Result<(bool, String), (&'static str, String)> {
    let (scheme, authority) = url
        .split_once("://")
        .ok_or(("collector", "expected a URL like https://host:7443".into()))?;
    let host = host_of(authority)
        .ok_or(("collector", "the URL has no host".to_string()))?
        .to_string();
    match scheme {
        "https" => Ok((false, host)),
        "http" if !allow_plaintext => Err((
            "collector",
            "http:// sends the token in clear; use https:// or set allow_plaintext = true (loopback only)"
                .into(),
        )),
        "http" if !is_loopback_host(&host) => Err((
            "allow_plaintext",
            "plain-text gRPC is allowed only to a loopback collector".into(),
        )),
        "http" => Ok((true, host)),
        other => Err((
            "collector",
            format!("unsupported scheme {other:?}; expected https"),
        )),
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
        assert_eq!(config.spool.max_bytes, 256 << 20);
        assert!(config.retired_keys.is_empty());
        assert_eq!(config.collectors[0].server_name, "127.0.0.1");
        assert!(!config.plaintext);
        assert!(
            !format!("{config:?}").contains("\"t\""),
            "token must not show in Debug"
        );
    }

    #[test]
    fn collector_is_one_url_or_a_list_each_with_its_own_server_name() {
        let config = load(
            "collector = [\"https://a.example:7443\", \"https://[::1]:7443\"]\ntoken = \"t\"\nca = \"ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            config.collectors,
            vec![
                CollectorAddress {
                    url: "https://a.example:7443".into(),
                    server_name: "a.example".into(),
                },
                CollectorAddress {
                    url: "https://[::1]:7443".into(),
                    server_name: "::1".into(),
                },
            ]
        );
        let config = load(
            "collector = [\"https://a:1\", \"https://b:1\"]\nserver_name = \"steward\"\ntoken = \"t\"\nca = \"ca.pem\"\n",
        )
        .unwrap();
        assert!(
            config
                .collectors
                .iter()
                .all(|collector| collector.server_name == "steward"),
            "an explicit server_name applies to every collector"
        );
    }

    #[test]
    fn a_bad_collector_list_is_refused_naming_the_entry() {
        let cases = [
            (
                "collector = []\ntoken = \"t\"\nca = \"ca.pem\"\n",
                "expected a URL",
            ),
            (
                "collector = [\"https://a:1\", \"ftp://b:1\"]\ntoken = \"t\"\nca = \"ca.pem\"\n",
                "entry 2 (\"ftp://b:1\"): unsupported scheme",
            ),
            (
                "collector = [\"https://a:1\", \"https://a:1\"]\ntoken = \"t\"\nca = \"ca.pem\"\n",
                "listed twice",
            ),
            (
                "collector = [\"https://127.0.0.1:1\", \"http://127.0.0.1:2\"]\ntoken = \"t\"\nca = \"ca.pem\"\nallow_plaintext = true\n",
                "same scheme",
            ),
            (
                "collector = 7\ntoken = \"t\"\nca = \"ca.pem\"\n",
                "array of URL strings",
            ),
        ];
        for (text, expected) in cases {
            let error = load(text).unwrap_err();
            assert_eq!(error.line, Some(1), "{error}");
            assert!(error.to_string().contains(expected), "{text}: {error}");
        }
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
            (
                "collector = \"https://h:1\"\ntoken = \"t\"\nca = \"ca.pem\"\n[spool]\nmax_bytes = \"1KiB\"\n",
                "spool.max_bytes",
                5,
            ),
            (
                "collector = \"https://h:1\"\ntoken = \"t\"\nca = \"ca.pem\"\n[spool]\nmax_bytes = \"5 TB\"\n",
                "spool.max_bytes",
                5,
            ),
            (
                "collector = \"https://h:1\"\ntoken = \"t\"\nca = \"ca.pem\"\n[spool]\nmax_files = 3\n",
                "spool.max_files",
                5,
            ),
        ];
        for (text, key, line) in cases {
            let error = load(text).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{text}: {error}");
            assert_eq!(error.line.unwrap_or(0), line, "{text}: {error}");
        }
    }

    #[test]
    fn checks_are_parsed_and_validated_with_their_index() {
        let base = "collector = \"https://h:1\"\ntoken = \"t\"\nca = \"ca.pem\"\n";
        let config = load(&format!(
            "{base}[[ping]]\ntarget = \"127.0.0.1\"\n[[port]]\ntarget = \"127.0.0.1:22\"\ntls = true\nca = \"ca.pem\"\n[patch]\ninterval = \"2h\"\n"
        ))
        .unwrap();
        assert_eq!(config.ping.len(), 1);
        assert_eq!(config.check_interval, config.interval);
        assert!(config.port[0].ca.as_ref().unwrap().is_absolute());
        assert_eq!(config.patch.interval, Duration::from_secs(7200));
        let error = load(&format!(
            "{base}[[ping]]\ntarget = \"a\"\n[[ping]]\ntarget = \"b\"\ncount = 0\n"
        ))
        .unwrap_err();
        assert_eq!(error.key.as_deref(), Some("ping[1].count"), "{error}");
        assert_eq!(error.line, Some(8), "{error}");
    }

    #[test]
    fn spool_sizes_are_bytes_or_text_and_the_old_buffer_key_is_retired() {
        let base = "collector = \"https://h:1\"\ntoken = \"t\"\nca = \"ca.pem\"\n";
        for (value, bytes) in [
            ("\"256MiB\"", 256 << 20),
            ("\"64 KiB\"", 64 << 10),
            ("\"2GiB\"", 2 << 30),
            ("\"20000B\"", 20_000),
            ("1048576", 1 << 20),
        ] {
            let config = load(&format!("{base}[spool]\nmax_bytes = {value}\n")).unwrap();
            assert_eq!(config.spool.max_bytes, bytes, "{value}");
        }
        let config = load(&format!("max_buffered_batches = 1024\n{base}")).unwrap();
        assert_eq!(config.retired_keys, ["max_buffered_batches"]);
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
