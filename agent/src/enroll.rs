//! `steward-agent enroll`: trade a one-time enrollment token for a client
//! certificate, trusting the collector only through a pinned CA fingerprint.
//!
//! Order matters: the collector's CA is fetched and checked against the
//! pinned fingerprint in a TLS handshake of its own, before anything is
//! sent; the token then travels only over a connection verified against
//! that CA. The key pair is generated here and only its CSR leaves the host.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use steward_proto::v1 as pb;
use steward_proto::v1::enrollment_client::EnrollmentClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// What `steward-agent enroll` was given.
#[derive(Clone)]
pub struct EnrollOptions {
    /// `https://HOST:PORT` of the collector's gRPC port.
    pub collector_url: String,
    /// The enrollment token; never logged.
    pub token: String,
    /// `sha256:HEX` of the collector's CA certificate.
    pub ca_fingerprint: String,
    /// Where `agent.toml`, `ca.pem`, `agent.pem` and `agent.key` go.
    pub dir: PathBuf,
    /// The agent's state directory (its id lives there).
    pub state_dir: PathBuf,
    /// Host name reported at enrollment; defaults to the system's.
    pub hostname: Option<String>,
}

impl std::fmt::Debug for EnrollOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollOptions")
            .field("collector_url", &self.collector_url)
            .field("token", &"<redacted>")
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("dir", &self.dir)
            .field("state_dir", &self.state_dir)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    #[error("--ca-fingerprint must be sha256: followed by 64 hex digits")]
    BadFingerprint,
    #[error("--collector must be https://HOST:PORT ({0})")]
    BadUrl(String),
    #[error("cannot use state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot reach the collector: {0}")]
    Connect(String),
    #[error(
        "the collector's certificate chain holds no CA with fingerprint {expected} that signed it; \
         refusing to send the token ({detail})"
    )]
    CaMismatch { expected: String, detail: String },
    #[error("cannot create the key pair or CSR: {0}")]
    Key(#[from] rcgen::Error),
    #[error("the collector refused the enrollment: {0}")]
    Refused(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What [`enroll`] did.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub agent_id: String,
    pub files: Vec<PathBuf>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn enroll(options: &EnrollOptions) -> Result<Enrolled, EnrollError> {
    let pin = parse_fingerprint(&options.ca_fingerprint)?;
    let (host, port) = parse_url(&options.collector_url)?;
    let agent_id =
        crate::identity::load_or_create_agent_id(&options.state_dir).map_err(|source| {
            EnrollError::StateDir {
                path: options.state_dir.clone(),
                source,
            }
        })?;
    let ca_der = fetch_pinned_ca(&host, port, pin, &options.ca_fingerprint).await?;
    let ca_pem = pem("CERTIFICATE", &ca_der);
    let key = rcgen::KeyPair::generate()?;
    let csr_pem = certificate_request(&agent_id, &key)?;

    let endpoint = Endpoint::from_shared(options.collector_url.clone())
        .map_err(|error| EnrollError::BadUrl(error.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CONNECT_TIMEOUT)
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca_pem))
                .domain_name(host.clone()),
        )
        .map_err(|error| EnrollError::Connect(error.to_string()))?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| EnrollError::Connect(steward_core::text::error_chain(&error)))?;
    let hostname = options
        .hostname
        .clone()
        .unwrap_or_else(steward_core::process::hostname);
    let response = EnrollmentClient::new(channel)
        .enroll(pb::EnrollRequest {
            token: options.token.trim().to_string(),
            agent_id: agent_id.clone(),
            hostname,
            csr_pem,
        })
        .await
        .map_err(|status| EnrollError::Refused(status.message().to_string()))?
        .into_inner();

    let dir = &options.dir;
    std::fs::create_dir_all(dir).map_err(|source| EnrollError::Write {
        path: dir.clone(),
        source,
    })?;
    let mut files = Vec::new();
    let mut put = |name: &str, contents: &str, secret: bool| -> Result<(), EnrollError> {
        let path = dir.join(name);
        write_atomically(&path, contents.as_bytes(), secret)?;
        files.push(path);
        Ok(())
    };
    // The key first: a certificate without its key is useless, the reverse harmless.
    put("agent.key", &key.serialize_pem(), true)?;
    put("agent.pem", &response.certificate_pem, false)?;
    put("ca.pem", &ca_pem, false)?;
    let state_dir = std::path::absolute(&options.state_dir).unwrap_or(options.state_dir.clone());
    put(
        "agent.toml",
        &agent_toml(&options.collector_url, &state_dir),
        false,
    )?;
    Ok(Enrolled { agent_id, files })
}

fn agent_toml(collector_url: &str, state_dir: &Path) -> String {
    format!(
        r#"# Steward agent configuration, written by `steward-agent enroll`.
# The agent authenticates with its client certificate (mutual TLS); it
# renews it by itself at two thirds of its lifetime.
collector = "{collector_url}"
ca = "ca.pem"
cert = "agent.pem"
key = "agent.key"
interval = "10s"
state_dir = "{state_dir}"
"#,
        state_dir = state_dir
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

/// A CSR for `key` naming `agent_id` (the collector sets the name anyway).
pub(crate) fn certificate_request(
    agent_id: &str,
    key: &rcgen::KeyPair,
) -> Result<String, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, agent_id);
    params.serialize_request(key)?.pem()
}

fn parse_fingerprint(text: &str) -> Result<[u8; 32], EnrollError> {
    let hex_digits = text
        .trim()
        .strip_prefix("sha256:")
        .ok_or(EnrollError::BadFingerprint)?
        .replace(':', "");
    let mut pin = [0u8; 32];
    if hex_digits.len() != 64 {
        return Err(EnrollError::BadFingerprint);
    }
    for (index, byte) in pin.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex_digits[index * 2..index * 2 + 2], 16)
            .map_err(|_| EnrollError::BadFingerprint)?;
    }
    Ok(pin)
}

fn parse_url(url: &str) -> Result<(String, u16), EnrollError> {
    let authority = url
        .strip_prefix("https://")
        .ok_or_else(|| EnrollError::BadUrl("the scheme must be https".into()))?
        .trim_end_matches('/');
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| EnrollError::BadUrl("no port".into()))?;
    let port = port
        .parse()
        .map_err(|_| EnrollError::BadUrl(format!("bad port {port:?}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(EnrollError::BadUrl("no host".into()));
    }
    Ok((host.to_string(), port))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Completes a TLS handshake that succeeds only if the collector's chain
/// holds a certificate with the pinned SHA-256 that verifies the collector's
/// own certificate (for `host`). Sends nothing; returns that CA (DER).
async fn fetch_pinned_ca(
    host: &str,
    port: u16,
    pin: [u8; 32],
    pin_text: &str,
) -> Result<Vec<u8>, EnrollError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCa {
        pin,
        provider: Arc::clone(&provider),
        found: Mutex::new(None),
        failure: Mutex::new(None),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| EnrollError::Connect(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>)
        .with_no_client_auth();
    let server_name = ServerName::try_from(host.to_string())
        .map_err(|error| EnrollError::BadUrl(error.to_string()))?;
    let connect = async {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|error| EnrollError::Connect(format!("{host}:{port}: {error}")))?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, stream)
            .await
            .map_err(|error| {
                let detail = verifier
                    .failure
                    .lock()
                    .ok()
                    .and_then(|failure| failure.clone())
                    .unwrap_or_else(|| error.to_string());
                EnrollError::CaMismatch {
                    expected: pin_text.trim().to_string(),
                    detail,
                }
            })
    };
    let _tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| EnrollError::Connect(format!("{host}:{port}: timed out")))??;
    let found = verifier.found.lock().ok().and_then(|found| found.clone());
    found.ok_or_else(|| EnrollError::CaMismatch {
        expected: pin_text.trim().to_string(),
        detail: "no certificate was checked".into(),
    })
}

/// Trusts the server only through the pinned CA (see [`fetch_pinned_ca`]).
#[derive(Debug)]
struct PinnedCa {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    /// The pinned CA, once the server's chain was verified against it.
    found: Mutex<Option<Vec<u8>>>,
    /// Why verification failed, for the error message.
    failure: Mutex<Option<String>>,
}

impl PinnedCa {
    fn fail(&self, why: String) -> rustls::Error {
        if let Ok(mut failure) = self.failure.lock() {
            *failure = Some(why.clone());
        }
        rustls::Error::General(why)
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .chain(std::iter::once(end_entity))
            .find(|certificate| sha256(certificate) == self.pin)
        else {
            return Err(
                self.fail("no certificate in the collector's chain has that fingerprint".into())
            );
        };
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|error| self.fail(format!("the pinned CA is unusable: {error}")))?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|error| self.fail(error.to_string()))?;
        verifier
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|error| {
                self.fail(format!(
                    "the collector's certificate does not verify against the pinned CA: {error}"
                ))
            })?;
        if let Ok(mut found) = self.found.lock() {
            *found = Some(ca.to_vec());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// PEM text of one DER object.
fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes via a temporary file and a rename, so a reader (the running
/// agent, at its next connect) never sees half a file. Secrets get 0600
/// from creation.
pub(crate) fn write_atomically(
    path: &Path,
    contents: &[u8],
    secret: bool,
) -> Result<(), EnrollError> {
    use std::io::Write;
    let error = |source| EnrollError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&temporary).map_err(error)?;
    file.write_all(contents).map_err(error)?;
    file.sync_all().map_err(error)?;
    std::fs::rename(&temporary, path).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_and_urls_are_checked() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_fingerprint(&format!("sha256:{hex}")).unwrap(),
            [0xab; 32]
        );
        assert!(parse_fingerprint(&hex).is_err(), "the prefix is required");
        assert!(parse_fingerprint("sha256:abcd").is_err());
        assert_eq!(
            parse_url("https://collector.example:7443").unwrap(),
            ("collector.example".to_string(), 7443)
        );
        assert_eq!(
            parse_url("https://[::1]:7443/").unwrap(),
            ("::1".to_string(), 7443)
        );
        assert!(parse_url("http://h:1").is_err());
        assert!(parse_url("https://h").is_err());
    }

    #[test]
    fn pem_round_trips_through_the_parser() {
        use rustls::pki_types::pem::PemObject;
        let der = vec![7u8; 200];
        let text = pem("CERTIFICATE", &der);
        let parsed = CertificateDer::from_pem_slice(text.as_bytes()).unwrap();
        assert_eq!(parsed.as_ref(), der.as_slice());
    }

    #[test]
    fn options_hide_the_token() {
        let options = EnrollOptions {
            collector_url: "https://h:1".into(),
            token: "stwe_secret".into(),
            ca_fingerprint: String::new(),
            dir: PathBuf::new(),
            state_dir: PathBuf::new(),
            hostname: None,
        };
        assert!(!format!("{options:?}").contains("stwe_secret"));
    }
}
