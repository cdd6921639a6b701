//! `steward-collector init DIR`: a dev CA, a server certificate, tokens and
//! matching `collector.toml` / `agent.toml`.
//!
//! The local agent is enrolled on the spot: init signs its client
//! certificate with the CA it just made (for the agent id it writes into the
//! agent's state directory) and records the binding in the database, so the
//! default set-up uses mutual TLS. Shared agent tokens are written but left
//! switched off in `collector.toml` (the weaker mode).
//!
//! With `state_dir`, the database goes there instead of DIR: the packaged
//! collector keeps its setup in `/etc/steward` and its database in
//! `/var/lib/steward` (see docs/packaging.md).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// Overwrite an existing setup.
    pub force: bool,
    /// Where `collector.toml` puts the database; `None`: beside the config.
    pub state_dir: Option<PathBuf>,
    /// Names (DNS names or IP addresses) agents use to reach the collector,
    /// added to the server certificate beside localhost and the host name.
    pub server_names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    #[error("{0} already holds a setup (collector.toml exists); pass --force to overwrite")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot sign the local agent's certificate: {0}")]
    Authority(#[from] crate::enrollment::AuthorityError),
    #[error("cannot record the local agent's certificate: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot read the local agent's id in {path}: {message}")]
    AgentId { path: PathBuf, message: String },
    #[error("cannot create the admin API token: {0}")]
    ApiToken(#[from] super::token_cli::TokenCliError),
}

/// Files written by [`init`], for the caller to print.
#[derive(Debug)]
pub struct InitReport {
    pub files: Vec<(PathBuf, &'static str)>,
}

pub fn init(options: &InitOptions) -> Result<InitReport, InitError> {
    let dir = &options.dir;
    if dir.join("collector.toml").exists() && !options.force {
        return Err(InitError::Exists(dir.clone()));
    }
    create_dir(dir)?;
    let hostname = steward_core::process::hostname();

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Steward development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    for name in std::iter::once(&hostname).chain(&options.server_names) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let mut server_params = CertificateParams::new(names)?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "steward-collector");
    // Server use only: with no extended key usage the certificate would also
    // pass the client-certificate check of an agent's mutual TLS.
    server_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &ca)?;

    // The local agent, enrolled directly by the CA.
    let ca_pem = ca.pem();
    let authority = crate::enrollment::CertificateAuthority::load(
        &ca_pem,
        &ca_key_pem,
        crate::enrollment::DEFAULT_CERT_LIFETIME,
    )?;
    let agent_id = local_agent_id(&dir.join(LOCAL_AGENT_STATE))?;
    let agent_key = KeyPair::generate()?;
    let agent_cert = authority.issue(&agent_id, &agent_key, steward_core::now_ms())?;
    crate::store::AdminDb::open(&database_path(options))?.bind_certificate(&agent_cert.record)?;

    let agent_token = steward_core::ids::random_token();
    let api_token = admin_token(&database_path(options))?;
    let mut report = InitReport { files: Vec::new() };
    let mut put =
        |name: &str, contents: &str, secret: bool, what: &'static str| -> Result<(), InitError> {
            let path = dir.join(name);
            write_file(&path, contents, secret)?;
            report.files.push((path, what));
            Ok(())
        };
    put(
        "ca.pem",
        &ca.pem(),
        false,
        "development CA certificate (give to agents)",
    )?;
    put(
        "ca.key",
        &ca_key_pem,
        true,
        "development CA key (keep private)",
    )?;
    put(
        "server.pem",
        &server_cert.pem(),
        false,
        "collector TLS certificate",
    )?;
    put(
        "server.key",
        &server_key.serialize_pem(),
        true,
        "collector TLS key",
    )?;
    put(
        "agent.pem",
        &agent_cert.pem,
        false,
        "local agent's client certificate (mutual TLS)",
    )?;
    put(
        "agent.key",
        &agent_key.serialize_pem(),
        true,
        "local agent's private key",
    )?;
    put(
        "agent-tokens",
        &format!("# One agent token per line.\n{agent_token}\n"),
        true,
        "shared agent tokens (off unless enabled in collector.toml; weaker than enrollment)",
    )?;
    put(
        "api-token",
        &format!("{api_token}\n"),
        true,
        "admin API token (the database keeps only its hash)",
    )?;
    put(
        "default-rules.toml",
        DEFAULT_RULES,
        false,
        "default alert rules (included by collector.toml)",
    )?;
    put(
        "collector.toml",
        &collector_toml(options),
        false,
        "collector configuration",
    )?;
    put(
        "agent.toml",
        &agent_toml(options.grpc_listen),
        false,
        "local agent configuration",
    )?;
    report.files.push((
        database_path(options),
        "database, holding the admin token's hash",
    ));
    Ok(report)
}

/// The shipped default rules; the same file as `deploy/default-rules.toml`.
pub const DEFAULT_RULES: &str = include_str!("../../../deploy/default-rules.toml");

fn collector_toml(options: &InitOptions) -> String {
    let sqlite = match &options.state_dir {
        Some(_) => database_path(options).display().to_string(),
        None => DATABASE.to_string(),
    };
    format!(
        r#"# Steward collector configuration, written by `steward-collector init`.
# Relative paths are relative to this file.
include = ["default-rules.toml"]

[server]
grpc_listen = "{grpc}"
http_listen = "{http}"
{http_tls}
[tls]
cert = "server.pem"
key = "server.key"
# The CA: agents pin it and present certificates it signed; with its key
# the collector enrolls agents (`steward-collector enroll-token create`).
ca = "ca.pem"
ca_key = "ca.key"

[auth]
# Shared agent tokens are the weaker mode: any holder may connect as any
# agent id not bound to a certificate. Uncomment to allow them.
# agent_token_file = "agent-tokens"
# API tokens live in the database: steward-collector token create|list|revoke.

[storage]
sqlite = {sqlite}
retention = "30d"
"#,
        grpc = options.grpc_listen,
        http = options.http_listen,
        sqlite = toml_string(&sqlite),
        // Off loopback, API tokens must not cross the network in clear.
        http_tls = if options.http_listen.ip().is_loopback() {
            "# http_tls = true        # HTTPS for the API, with the [tls] certificate\n"
        } else {
            "http_tls = true          # HTTPS for the API, with the [tls] certificate\n"
        },
    )
}

/// The local agent's state directory, relative to the setup directory.
const LOCAL_AGENT_STATE: &str = "agent-state";

/// The agent id in `state_dir/agent-id` (the agent's own format, see
/// `steward_agent::identity`), created when missing.
fn local_agent_id(state_dir: &Path) -> Result<String, InitError> {
    let path = state_dir.join("agent-id");
    let error = |message: String| InitError::AgentId {
        path: path.clone(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if steward_core::ids::is_uuid(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => return Err(error("not a UUID".into())),
        Err(read) if read.kind() == std::io::ErrorKind::NotFound => {}
        Err(read) => return Err(error(read.to_string())),
    }
    create_dir(state_dir)?;
    let id = steward_core::ids::new_uuid_v4();
    write_file(&path, &format!("{id}\n"), false)?;
    Ok(id)
}

/// The database `collector.toml` names, relative to the setup directory.
const DATABASE: &str = "steward.db";

/// Name of the token `init` creates.
pub const ADMIN_TOKEN_NAME: &str = "admin";

/// A new admin token in the database at `path` (created if needed); an
/// earlier setup's `admin` token (`--force`) is revoked first.
fn admin_token(path: &Path) -> Result<String, InitError> {
    use super::token_cli::TokenCliError;
    let now_ms = steward_core::now_ms();
    let table = crate::store::ApiTokenTable::open(path).map_err(TokenCliError::from)?;
    table
        .revoke(ADMIN_TOKEN_NAME, now_ms)
        .map_err(TokenCliError::from)?;
    Ok(super::token_cli::create(
        path,
        ADMIN_TOKEN_NAME,
        crate::access::Scope::Admin,
        now_ms,
    )?)
}

/// `text` as a TOML basic string, quoted and escaped (a path may hold `"` or
/// `\`). serde_json's escapes (`\"`, `\\`, `\n`, `\uXXXX`, ...) are all valid
/// TOML, and the build has no TOML serializer.
fn toml_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// Where the database goes: `state_dir` when given, else next to the configs.
fn database_path(options: &InitOptions) -> PathBuf {
    options
        .state_dir
        .as_deref()
        .unwrap_or(&options.dir)
        .join(DATABASE)
}

fn agent_toml(grpc_listen: SocketAddr) -> String {
    let host = if grpc_listen.ip().is_unspecified() || grpc_listen.ip().is_loopback() {
        "127.0.0.1".to_string()
    } else {
        grpc_listen.ip().to_string()
    };
    format!(
        r#"# Steward agent configuration, written by `steward-collector init`.
# It authenticates with its client certificate (mutual TLS), signed by init.
collector = "https://{host}:{port}"
ca = "ca.pem"
cert = "agent.pem"
key = "agent.key"
interval = "10s"
state_dir = "agent-state"
"#,
        port = grpc_listen.port(),
    )
}

fn create_dir(dir: &Path) -> Result<(), InitError> {
    std::fs::create_dir_all(dir).map_err(|source| InitError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), InitError> {
    let error = |source| InitError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(error)?;
    // `mode` applies only to new files; tighten an existing one too.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(error)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    file.write_all(contents.as_bytes()).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_setup_both_configs_accept() {
        let dir = tempfile::tempdir().unwrap();
        let options = InitOptions {
            dir: dir.path().join("setup"),
            grpc_listen: "127.0.0.1:7443".parse().unwrap(),
            http_listen: "127.0.0.1:7080".parse().unwrap(),
            force: false,
            state_dir: None,
            server_names: Vec::new(),
        };
        let report = init(&options).unwrap();
        assert_eq!(report.files.len(), 12);
        let collector = crate::CollectorConfig::load(&options.dir.join("collector.toml")).unwrap();
        assert!(collector.tls.is_some());
        assert!(
            collector.api_tokens.is_empty(),
            "the admin token is in the database"
        );
        let token = std::fs::read_to_string(options.dir.join("api-token")).unwrap();
        let tokens = crate::store::ApiTokenTable::open(&collector.sqlite_path)
            .unwrap()
            .list()
            .unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(
            (tokens[0].name.as_str(), tokens[0].scope),
            (ADMIN_TOKEN_NAME, crate::access::Scope::Admin)
        );
        let database = std::fs::read(&collector.sqlite_path).unwrap();
        let plaintext = token.trim().as_bytes();
        assert!(
            !database
                .windows(plaintext.len())
                .any(|window| window == plaintext),
            "the token must not be stored in plaintext"
        );
        assert!(
            collector.rules.iter().any(|rule| rule.name == "agent-down"),
            "default rules are included"
        );
        #[cfg(feature = "embedded-agent")]
        {
            let agent = steward_agent::AgentConfig::load(&options.dir.join("agent.toml")).unwrap();
            assert_eq!(agent.collectors[0].url, "https://127.0.0.1:7443");
            assert!(agent.client_cert.is_some(), "the local agent uses mTLS");
            assert!(agent.token.is_empty());
            assert!(
                collector.agent_tokens.is_empty(),
                "shared tokens are off by default"
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for secret in ["api-token", "agent.key", "ca.key"] {
                let mode = std::fs::metadata(options.dir.join(secret))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{secret}");
            }
        }
        assert!(matches!(init(&options), Err(InitError::Exists(_))));
        assert!(
            init(&InitOptions {
                force: true,
                ..options.clone()
            })
            .is_ok()
        );
        let tokens = crate::store::ApiTokenTable::open(&collector.sqlite_path)
            .unwrap()
            .list()
            .unwrap();
        assert_eq!(tokens.len(), 2);
        assert!(
            tokens[0].revoked_ms.is_some() && tokens[1].revoked_ms.is_none(),
            "--force replaces the admin token"
        );
    }

    #[test]
    fn init_with_a_state_dir_puts_the_database_there_and_names_in_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let options = InitOptions {
            dir: dir.path().join("etc"),
            grpc_listen: "0.0.0.0:7443".parse().unwrap(),
            http_listen: "127.0.0.1:7080".parse().unwrap(),
            force: false,
            state_dir: Some(dir.path().join("var \"lib\"")),
            server_names: vec!["collector.example.net".into(), "192.0.2.7".into()],
        };
        init(&options).unwrap();
        let collector = crate::CollectorConfig::load(&options.dir.join("collector.toml")).unwrap();
        assert_eq!(
            collector.sqlite_path,
            dir.path().join("var \"lib\"").join("steward.db")
        );
        // A SAN dNSName is the name's bytes in the DER, an iPAddress its octets.
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let der = CertificateDer::from_pem_file(options.dir.join("server.pem")).unwrap();
        let contains = |needle: &[u8]| der.windows(needle.len()).any(|window| window == needle);
        assert!(contains(b"collector.example.net"));
        assert!(contains(b"localhost"));
        assert!(contains(&[192, 0, 2, 7]));
    }
}
