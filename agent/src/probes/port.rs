//! TCP port and TLS certificate probe for the services configured as
//! `[[port]]` tables in `agent.toml`: whether a service accepts connections,
//! how long connecting takes, and, for TLS services, when the presented
//! certificate chain expires and whether it verifies.
//!
//! A bad certificate is a measurement, not a failure. The handshake records
//! the chain and the verification verdict and then carries on, so an expired,
//! self-signed or mismatched certificate is reported (`tls.verified = 0` with
//! its expiry) instead of vanishing behind a handshake error. This is safe only
//! because the probe never sends application data over the connection; it must
//! never be reused to talk to a service.
//!
//! Metrics, each labelled `target` (the configured `host:port`) and, when
//! configured, `name`:
//! - `port.up`: 1 if a TCP connection was established within `timeout`, else 0.
//! - `port.connect_ms`: time to establish it (without name resolution); only when up.
//! - With `tls = true` and the port up:
//!   - `tls.handshake_ok`: 1 if the TLS handshake completed.
//!   - `tls.verified`: 1 if the handshake completed and the chain verified
//!     against the configured `ca` or the system bundle for `server_name`.
//!   - `tls.cert_expiry_days`: days from now to the earliest notAfter in the
//!     presented chain, fractional, negative once expired; only when the
//!     server presented a parsable chain.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use x509_parser::certificate::X509CertificateParser;
use x509_parser::error::X509Error;
use x509_parser::nom::Parser;

use super::Sample;
use steward_core::config_file;
use steward_core::tls::trust_roots;

const MILLIS_PER_DAY: f64 = 86_400_000.0;

/// One `[[port]]` table in `agent.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortTarget {
    /// `host:port`; an IPv6 address in brackets (`[::1]:443`). Names are
    /// resolved again every round.
    pub target: String,
    /// Human name, reported as the `name` label.
    #[serde(default)]
    pub name: Option<String>,
    /// Budget for resolving, connecting and (with `tls`) the handshake together.
    #[serde(
        default = "default_timeout",
        deserialize_with = "config_file::duration"
    )]
    pub timeout: Duration,
    /// Complete a TLS handshake and report on the certificate.
    #[serde(default)]
    pub tls: bool,
    /// Name sent as SNI and verified against the certificate; defaults to the
    /// host part of `target`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM file of the CA certificates to verify against instead of the system
    /// bundle. The config loader resolves it relative to `agent.toml`.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(3)
}

/// A `[[port]]` table that parsed but cannot be used. `key` is the field
/// inside the table, so the config loader can point at `port.<key>`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct InvalidPortTarget {
    pub key: &'static str,
    pub message: String,
}

impl PortTarget {
    /// A plain TCP target with the documented defaults.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            name: None,
            timeout: default_timeout(),
            tls: false,
            server_name: None,
            ca: None,
        }
    }

    pub fn validate(&self) -> Result<(), InvalidPortTarget> {
        let invalid = |key, message: String| Err(InvalidPortTarget { key, message });
        if split_host_port(&self.target).is_none() {
            return invalid(
                "target",
                "must be host:port (an IPv6 address in brackets: [::1]:443)".into(),
            );
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return invalid("timeout", "must be more than 0s and at most 60s".into());
        }
        if !self.tls && (self.server_name.is_some() || self.ca.is_some()) {
            let key = if self.ca.is_some() {
                "ca"
            } else {
                "server_name"
            };
            return invalid(key, "only applies with tls = true".into());
        }
        if self.tls
            && let Err(error) = ServerName::try_from(self.verified_name().to_string())
        {
            return invalid(
                "server_name",
                format!("not a DNS name or IP address: {error}"),
            );
        }
        Ok(())
    }

    /// The name sent as SNI and checked against the certificate.
    pub fn verified_name(&self) -> &str {
        match &self.server_name {
            Some(name) => name,
            None => split_host_port(&self.target).map_or("", |(host, _)| host),
        }
    }

    fn labelled(&self, sample: Sample) -> Sample {
        let sample = sample.label("target", self.target.clone());
        match &self.name {
            Some(name) => sample.label("name", name.clone()),
            None => sample,
        }
    }
}

/// `host:port` or `[v6]:port` → (host without brackets, port).
fn split_host_port(target: &str) -> Option<(&str, u16)> {
    let (host, port) = target.trim().rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.strip_suffix(']')?,
        // A bare IPv6 address is ambiguous: which colon starts the port?
        None if host.contains(':') => return None,
        None => host,
    };
    (!host.is_empty()).then_some((host, port))
}

/// Why a port probe found the port down, or TLS unhealthy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    #[error("{target} is not host:port")]
    InvalidTarget { target: String },
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("{host} resolved to no address")]
    NoAddress { host: String },
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: SocketAddr,
        source: io::Error,
    },
    #[error("no connection within {0:?}")]
    TimedOut(Duration),
    #[error("invalid TLS server name {name:?}")]
    InvalidServerName { name: String },
    #[error("cannot set up TLS: {0}")]
    TlsConfig(#[source] rustls::Error),
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    #[error("TLS handshake not finished within {0:?}")]
    HandshakeTimedOut(Duration),
}

/// What one probe measured for one target.
#[derive(Debug)]
pub struct PortOutcome {
    pub target: PortTarget,
    /// The address connected to, when the connection succeeded.
    pub address: Option<SocketAddr>,
    /// Time to establish the TCP connection; `Some` exactly when the port is up.
    pub connect: Option<Duration>,
    /// Present when `tls = true` and the port is up.
    pub tls: Option<TlsOutcome>,
    /// Why the port is down.
    pub error: Option<PortError>,
}

/// The TLS part of a port probe.
#[derive(Debug)]
pub struct TlsOutcome {
    pub handshake_ok: bool,
    /// The presented chain verified and the handshake completed.
    pub verified: bool,
    /// Why the chain did not verify (untrusted, expired, wrong name, no trust anchors).
    pub verification_error: Option<String>,
    /// Certificates the server presented, leaf first.
    pub chain_len: usize,
    /// Earliest notAfter of the presented chain, Unix seconds.
    pub earliest_not_after: Option<i64>,
    /// Why the handshake did not complete.
    pub error: Option<PortError>,
}

impl PortOutcome {
    fn down(target: &PortTarget, error: PortError) -> Self {
        Self {
            target: target.clone(),
            address: None,
            connect: None,
            tls: None,
            error: Some(error),
        }
    }

    pub fn is_up(&self) -> bool {
        self.connect.is_some()
    }

    /// The samples this outcome reports; see the module documentation.
    pub fn samples(&self, timestamp_ms: i64) -> Vec<Sample> {
        let target = &self.target;
        let sample = |metric, value| target.labelled(Sample::new(metric, value, timestamp_ms));
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        let mut samples = vec![sample("port.up", flag(self.is_up()))];
        if let Some(connect) = self.connect {
            samples.push(sample("port.connect_ms", connect.as_secs_f64() * 1000.0));
        }
        if let Some(tls) = &self.tls {
            samples.push(sample("tls.handshake_ok", flag(tls.handshake_ok)));
            samples.push(sample("tls.verified", flag(tls.verified)));
            if let Some(not_after) = tls.earliest_not_after {
                samples.push(sample(
                    "tls.cert_expiry_days",
                    expiry_days(not_after, timestamp_ms),
                ));
            }
        }
        samples
    }
}

/// Fractional days from `now_ms` to `not_after` (Unix seconds); negative once past.
fn expiry_days(not_after: i64, now_ms: i64) -> f64 {
    (not_after as f64 * 1000.0 - now_ms as f64) / MILLIS_PER_DAY
}

/// Probes every target concurrently; each takes at most its own `timeout`.
/// Samples come in the order of `targets`, all stamped `timestamp_ms`, which
/// is also the "now" certificate expiry is measured from.
pub async fn probe_all(targets: &[PortTarget], timestamp_ms: i64) -> Vec<Sample> {
    let mut probes = JoinSet::new();
    for (index, target) in targets.iter().enumerate() {
        let target = target.clone();
        probes.spawn(async move { (index, probe(&target).await) });
    }
    let mut outcomes: Vec<Option<PortOutcome>> = targets.iter().map(|_| None).collect();
    while let Some(joined) = probes.join_next().await {
        match joined {
            Ok((index, outcome)) => {
                if let Some(slot) = outcomes.get_mut(index) {
                    *slot = Some(outcome);
                }
            }
            Err(error) => tracing::error!(message = "Port probe task failed.", %error),
        }
    }
    let mut samples = Vec::with_capacity(targets.len() * 5);
    for outcome in outcomes.into_iter().flatten() {
        if let Some(error) = &outcome.error {
            tracing::debug!(message = "Port down.", target = %outcome.target.target, %error);
        }
        if let Some(tls) = &outcome.tls {
            let error = tls.error.as_ref().map(ToString::to_string);
            let verification = tls.verification_error.as_deref();
            if error.is_some() || verification.is_some() {
                tracing::debug!(
                    message = "TLS not healthy.",
                    target = %outcome.target.target,
                    error = error.as_deref().unwrap_or(""),
                    verification = verification.unwrap_or(""),
                );
            }
        }
        samples.extend(outcome.samples(timestamp_ms));
    }
    samples
}

/// Probes one target within its `timeout`.
pub async fn probe(target: &PortTarget) -> PortOutcome {
    let deadline = Instant::now() + target.timeout;
    let Some((host, port)) = split_host_port(&target.target) else {
        return PortOutcome::down(
            target,
            PortError::InvalidTarget {
                target: target.target.clone(),
            },
        );
    };
    let (stream, address, connect) = match connect(host, port, deadline, target.timeout).await {
        Ok(connected) => connected,
        Err(error) => return PortOutcome::down(target, error),
    };
    let tls = if target.tls {
        Some(handshake(stream, target, deadline).await)
    } else {
        None
    };
    PortOutcome {
        target: target.clone(),
        address: Some(address),
        connect: Some(connect),
        tls,
        error: None,
    }
}

/// Connects to the first address that accepts, trying them in resolver order.
async fn connect(
    host: &str,
    port: u16,
    deadline: Instant,
    budget: Duration,
) -> Result<(TcpStream, SocketAddr, Duration), PortError> {
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match timeout_at(deadline, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(found)) => found.collect(),
            Ok(Err(source)) => {
                return Err(PortError::Resolve {
                    host: host.to_string(),
                    source,
                });
            }
            Err(_) => return Err(PortError::TimedOut(budget)),
        },
    };
    let mut last_error = PortError::NoAddress {
        host: host.to_string(),
    };
    for address in addresses {
        let started = Instant::now();
        match timeout_at(deadline, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok((stream, address, started.elapsed())),
            Ok(Err(source)) => last_error = PortError::Connect { address, source },
            Err(_) => return Err(PortError::TimedOut(budget)),
        }
    }
    Err(last_error)
}

/// Runs a TLS handshake that records the chain and verdict instead of
/// aborting on a bad certificate.
async fn handshake(stream: TcpStream, target: &PortTarget, deadline: Instant) -> TlsOutcome {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = trust_roots(target.ca.as_deref())
        .map_err(|error| error.to_string())
        .and_then(|roots| {
            WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|error| format!("cannot build a certificate verifier: {error}"))
        });
    let recorder = Arc::new(RecordingVerifier {
        webpki,
        provider: Arc::clone(&provider),
        presented: Mutex::new(None),
    });
    let failed = |error| TlsOutcome {
        handshake_ok: false,
        verified: false,
        verification_error: None,
        chain_len: 0,
        earliest_not_after: None,
        error: Some(error),
    };
    let name = target.verified_name().to_string();
    let Ok(server_name) = ServerName::try_from(name.clone()) else {
        return failed(PortError::InvalidServerName { name });
    };
    let mut config = match ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(&recorder) as Arc<dyn ServerCertVerifier>)
            .with_no_client_auth(),
        Err(error) => return failed(PortError::TlsConfig(error)),
    };
    // A resumed session skips certificate verification, and then there would
    // be nothing to report; every probe must see the chain afresh.
    config.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    let result = timeout_at(deadline, connector.connect(server_name, stream)).await;
    let error = match result {
        Ok(Ok(mut tls)) => {
            // Say goodbye properly so the service does not log an aborted
            // connection every round; within what is left of the budget.
            let _ = timeout_at(deadline, tls.shutdown()).await;
            None
        }
        Ok(Err(error)) => Some(PortError::Handshake(error)),
        Err(_) => Some(PortError::HandshakeTimedOut(target.timeout)),
    };
    let presented = recorder
        .presented
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let handshake_ok = error.is_none();
    match presented {
        Some(presented) => TlsOutcome {
            handshake_ok,
            verified: handshake_ok && presented.verdict.is_ok(),
            verification_error: presented.verdict.err(),
            chain_len: presented.chain.len(),
            earliest_not_after: presented
                .chain
                .iter()
                .filter_map(|certificate| certificate_not_after(certificate).ok())
                .min(),
            error,
        },
        None => TlsOutcome {
            handshake_ok,
            verified: false,
            verification_error: None,
            chain_len: 0,
            earliest_not_after: None,
            error,
        },
    }
}

/// What the server presented and whether webpki accepted it.
struct Presented {
    chain: Vec<CertificateDer<'static>>,
    verdict: Result<(), String>,
}

/// Verifies like [`WebPkiServerVerifier`] but, instead of failing the
/// handshake, records the chain and the verdict and accepts. Handshake
/// signatures are still checked, so a completed handshake still proves the
/// server holds the certificate's key.
struct RecordingVerifier {
    /// Why no chain can be checked at all, reported as `tls.verified = 0`.
    webpki: Result<Arc<WebPkiServerVerifier>, String>,
    provider: Arc<CryptoProvider>,
    /// Written by the handshake (one per verifier: each probe builds its own).
    presented: Mutex<Option<Presented>>,
}

impl std::fmt::Debug for RecordingVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingVerifier")
            .field("webpki", &self.webpki.as_ref().map(|_| "webpki"))
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.webpki {
            Ok(webpki) => webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ())
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.clone()),
        };
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|certificate| certificate.clone().into_owned())
            .collect();
        *self
            .presented
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Presented { chain, verdict });
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A certificate whose validity period could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot read the certificate's validity period")]
pub struct CertificateTimeError(#[source] X509Error);

/// The notAfter of an X.509 certificate in DER, as Unix seconds.
///
/// Extensions are not parsed: only the validity period is needed, and a
/// certificate whose extensions this parser does not understand still has an
/// expiry worth reporting. Data after the certificate is ignored.
pub fn certificate_not_after(der: &[u8]) -> Result<i64, CertificateTimeError> {
    let (_rest, certificate) = X509CertificateParser::new()
        .with_deep_parse_extensions(false)
        .parse(der)
        .map_err(|error| CertificateTimeError(X509Error::from(error)))?;
    Ok(certificate.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;
    use std::time::{SystemTime, UNIX_EPOCH};

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, date_time_ymd,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    const DAY: u64 = 86_400;

    fn value(samples: &[Sample], metric: &str) -> Option<f64> {
        samples
            .iter()
            .find(|sample| sample.metric == metric)
            .map(|sample| sample.value)
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn now_ms() -> i64 {
        steward_core::now_ms()
    }

    /// A private CA: its issuer handle and its certificate as a PEM file.
    struct TestCa {
        issuer: Issuer<'static, KeyPair>,
        pem_file: tempfile::NamedTempFile,
    }

    impl TestCa {
        fn new() -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, "Steward test CA");
            let key = KeyPair::generate().unwrap();
            let certificate = params.self_signed(&key).unwrap();
            let mut pem_file = tempfile::NamedTempFile::new().unwrap();
            pem_file.write_all(certificate.pem().as_bytes()).unwrap();
            Self {
                issuer: Issuer::new(params, key),
                pem_file,
            }
        }

        /// A leaf for 127.0.0.1 and localhost expiring at `not_after` (Unix seconds).
        fn leaf(&self, not_after: u64) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
            let mut params =
                CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                    .unwrap();
            params.not_after = date_time_ymd(1970, 1, 1) + Duration::from_secs(not_after);
            let key = KeyPair::generate().unwrap();
            let certificate = params.signed_by(&key, &self.issuer).unwrap();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            (certificate.der().clone(), key)
        }
    }

    /// Serves TLS on 127.0.0.1 with `chain` until the test's runtime ends.
    async fn tls_server(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> SocketAddr {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        let mut byte = [0u8; 1];
                        let _ = tls.read(&mut byte).await;
                    }
                });
            }
        });
        address
    }

    fn tls_target(address: SocketAddr, ca: Option<&Path>) -> PortTarget {
        PortTarget {
            tls: true,
            ca: ca.map(Path::to_path_buf),
            ..PortTarget::new(address.to_string())
        }
    }

    #[tokio::test]
    async fn open_port_is_up_and_closed_port_is_down() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let target = PortTarget {
            name: Some("web".into()),
            ..PortTarget::new(address.to_string())
        };
        let samples = probe_all(std::slice::from_ref(&target), 11).await;
        assert_eq!(samples[0], {
            Sample::new("port.up", 1.0, 11)
                .label("target", address.to_string())
                .label("name", "web")
        });
        let connect_ms = value(&samples, "port.connect_ms").expect("connect time");
        assert!((0.0..3000.0).contains(&connect_ms), "{connect_ms}");
        assert!(value(&samples, "tls.verified").is_none());

        drop(listener);
        let started = Instant::now();
        let outcome = probe(&target).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refusal should be quick"
        );
        assert!(
            matches!(outcome.error, Some(PortError::Connect { .. })),
            "{outcome:?}"
        );
        let samples = outcome.samples(12);
        assert_eq!(value(&samples, "port.up"), Some(0.0));
        assert!(value(&samples, "port.connect_ms").is_none());
    }

    #[tokio::test]
    async fn reports_expiry_and_verification_of_a_trusted_certificate() {
        let ca = TestCa::new();
        let not_after = unix_now() + 3 * DAY;
        let (leaf, key) = ca.leaf(not_after);
        let address = tls_server(vec![leaf], key).await;

        let trusted = probe_all(&[tls_target(address, Some(ca.pem_file.path()))], now_ms()).await;
        assert_eq!(value(&trusted, "port.up"), Some(1.0), "{trusted:?}");
        assert_eq!(
            value(&trusted, "tls.handshake_ok"),
            Some(1.0),
            "{trusted:?}"
        );
        assert_eq!(value(&trusted, "tls.verified"), Some(1.0), "{trusted:?}");
        let days = value(&trusted, "tls.cert_expiry_days").expect("expiry");
        assert!((days - 3.0).abs() < 0.1, "{days}");

        // Same server, but the CA is not among the system roots.
        let untrusted = probe(&tls_target(address, None)).await;
        let tls = untrusted.tls.as_ref().expect("tls outcome");
        assert!(tls.handshake_ok && !tls.verified, "{untrusted:?}");
        assert!(tls.verification_error.is_some(), "{untrusted:?}");
        let samples = untrusted.samples(now_ms());
        assert_eq!(value(&samples, "tls.verified"), Some(0.0));
        let days = value(&samples, "tls.cert_expiry_days").expect("expiry");
        assert!((days - 3.0).abs() < 0.1, "{days}");
    }

    #[tokio::test]
    async fn expired_certificate_is_reported_not_hidden() {
        let ca = TestCa::new();
        let (leaf, key) = ca.leaf(unix_now() - 2 * DAY);
        let address = tls_server(vec![leaf], key).await;
        let outcome = probe(&tls_target(address, Some(ca.pem_file.path()))).await;
        let tls = outcome.tls.as_ref().expect("tls outcome");
        assert!(tls.handshake_ok && !tls.verified, "{outcome:?}");
        let reason = tls.verification_error.as_deref().unwrap_or_default();
        assert!(reason.to_lowercase().contains("expired"), "{reason}");
        let samples = outcome.samples(now_ms());
        let days = value(&samples, "tls.cert_expiry_days").expect("expiry");
        assert!((days + 2.0).abs() < 0.1, "{days}");
        assert_eq!(value(&samples, "tls.verified"), Some(0.0));
    }

    #[tokio::test]
    async fn name_mismatch_is_reported_as_unverified() {
        let ca = TestCa::new();
        let (leaf, key) = ca.leaf(unix_now() + 30 * DAY);
        let address = tls_server(vec![leaf], key).await;
        let target = PortTarget {
            server_name: Some("other.example".into()),
            ..tls_target(address, Some(ca.pem_file.path()))
        };
        let outcome = probe(&target).await;
        let tls = outcome.tls.as_ref().expect("tls outcome");
        assert!(tls.handshake_ok && !tls.verified, "{outcome:?}");
        assert!(tls.earliest_not_after.is_some(), "{outcome:?}");
    }

    #[tokio::test]
    async fn earliest_expiry_of_the_chain_wins() {
        let ca = TestCa::new();
        let (leaf, key) = ca.leaf(unix_now() + 30 * DAY);
        // An extra, sooner-expiring certificate in the chain the server sends.
        let (sooner, _) = ca.leaf(unix_now() + 5 * DAY);
        let address = tls_server(vec![leaf, sooner], key).await;
        let outcome = probe(&tls_target(address, Some(ca.pem_file.path()))).await;
        let tls = outcome.tls.as_ref().expect("tls outcome");
        assert_eq!(tls.chain_len, 2, "{outcome:?}");
        let days = value(&outcome.samples(now_ms()), "tls.cert_expiry_days").expect("expiry");
        assert!((days - 5.0).abs() < 0.1, "{days}");
    }

    #[tokio::test]
    async fn plain_tcp_service_fails_the_handshake_but_stays_up() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Accepts and hangs up at once, like a service that does not speak TLS.
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let outcome = probe(&tls_target(address, None)).await;
        let samples = outcome.samples(1);
        assert_eq!(value(&samples, "port.up"), Some(1.0));
        assert_eq!(value(&samples, "tls.handshake_ok"), Some(0.0));
        assert_eq!(value(&samples, "tls.verified"), Some(0.0));
        assert!(value(&samples, "tls.cert_expiry_days").is_none());
        let tls = outcome.tls.expect("tls outcome");
        assert!(
            matches!(tls.error, Some(PortError::Handshake(_))),
            "{tls:?}"
        );
    }

    #[tokio::test]
    async fn unusable_ca_file_means_unverified_not_down() {
        let ca = TestCa::new();
        let (leaf, key) = ca.leaf(unix_now() + 10 * DAY);
        let address = tls_server(vec![leaf], key).await;
        let empty = tempfile::NamedTempFile::new().unwrap();
        let outcome = probe(&tls_target(address, Some(empty.path()))).await;
        let tls = outcome.tls.as_ref().expect("tls outcome");
        assert!(tls.handshake_ok && !tls.verified, "{outcome:?}");
        let reason = tls.verification_error.as_deref().unwrap_or_default();
        assert!(reason.contains("no usable certificate"), "{reason}");
        assert!(tls.earliest_not_after.is_some());
    }

    #[tokio::test]
    async fn probes_run_concurrently_within_their_timeouts() {
        // Listeners that never accept still complete TCP connections (the
        // kernel's backlog does), but never answer a TLS ClientHello.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = silent.local_addr().unwrap();
        let target = PortTarget {
            timeout: Duration::from_millis(400),
            ..tls_target(address, None)
        };
        let started = Instant::now();
        let samples = probe_all(&[target.clone(), target.clone(), target], 1).await;
        let elapsed = started.elapsed();
        // One after another they would take 1.2 s.
        assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
        let handshakes: Vec<f64> = samples
            .iter()
            .filter(|sample| sample.metric == "tls.handshake_ok")
            .map(|sample| sample.value)
            .collect();
        assert_eq!(handshakes, [0.0, 0.0, 0.0]);
        drop(silent);
    }

    #[test]
    fn reads_not_after_from_generated_certificates() {
        let key = KeyPair::generate().unwrap();
        let at = |year, month, day, seconds| {
            date_time_ymd(year, month, day) + Duration::from_secs(seconds)
        };
        for (not_after, expected) in [
            (at(2030, 1, 1, 0), 1_893_456_000),
            (at(1999, 12, 31, 0), 946_598_400),
            (at(2000, 2, 29, 45_296), 951_827_696),
            // The last UTCTime second, and the first years written as GeneralizedTime.
            (at(2049, 12, 31, 86_399), 2_524_607_999),
            (at(2051, 6, 15, 0), 2_570_400_000),
        ] {
            let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            params.not_before = date_time_ymd(1990, 1, 1);
            params.not_after = not_after;
            let certificate = params.self_signed(&key).unwrap();
            assert_eq!(
                certificate_not_after(certificate.der()),
                Ok(expected),
                "{not_after:?}"
            );
        }
    }

    /// One DER element; contents shorter than 256 bytes are all these tests need.
    fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let length = u8::try_from(contents.len()).expect("test DER under 256 bytes");
        let mut element = vec![tag];
        if length >= 0x80 {
            element.push(0x81);
        }
        element.push(length);
        element.extend_from_slice(contents);
        element
    }

    /// A version 1 certificate (its TBSCertificate omits the `[0]` version
    /// element), built by hand because rcgen only writes version 3. The
    /// signature is not valid; nothing here verifies it.
    fn v1_certificate(not_before: &[u8], not_after: &[u8]) -> Vec<u8> {
        // sha256WithRSAEncryption and rsaEncryption, each with NULL parameters.
        let sha256_rsa = der(
            0x30,
            &[
                &der(
                    0x06,
                    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
                )[..],
                &[0x05, 0x00],
            ]
            .concat(),
        );
        let rsa = der(
            0x30,
            &[
                &der(
                    0x06,
                    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
                )[..],
                &[0x05, 0x00],
            ]
            .concat(),
        );
        let name = der(
            0x30,
            &der(
                0x31,
                &der(
                    0x30,
                    &[&der(0x06, &[0x55, 0x04, 0x03])[..], &der(0x0c, b"v1")].concat(),
                ),
            ),
        );
        let validity = der(
            0x30,
            &[der(0x17, not_before), der(0x17, not_after)].concat(),
        );
        let key = der(0x30, &[rsa, der(0x03, &[0x00, 0x00])].concat());
        let tbs = der(
            0x30,
            &[
                der(0x02, &[0x01]),
                sha256_rsa.clone(),
                name.clone(),
                validity,
                name,
                key,
            ]
            .concat(),
        );
        der(0x30, &[tbs, sha256_rsa, der(0x03, &[0x00, 0x00])].concat())
    }

    #[test]
    fn reads_not_after_without_a_version_field() {
        let certificate = v1_certificate(b"990101000000Z", b"300101000000Z");
        assert_eq!(certificate_not_after(&certificate), Ok(1_893_456_000));
        // RFC 5280 requires seconds, BER's UTCTime does not; the parser is
        // lenient, and an expiry is still worth reporting.
        let without_seconds = v1_certificate(b"990101000000Z", b"3001010000Z");
        assert_eq!(certificate_not_after(&without_seconds), Ok(1_893_456_000));
    }

    #[test]
    fn malformed_certificates_are_errors_not_panics() {
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = certificate.der().to_vec();
        for cut in 0..der.len() {
            assert!(certificate_not_after(&der[..cut]).is_err(), "cut at {cut}");
        }
        assert!(certificate_not_after(&[]).is_err());
        // Not a SEQUENCE; and BER's indefinite length, which DER forbids.
        assert!(certificate_not_after(&[0x04, 0x00]).is_err());
        assert!(certificate_not_after(&[0x30, 0x80]).is_err());
        // No time zone; month 13.
        for time in [&b"300101000000"[..], b"301301000000Z"] {
            assert!(
                certificate_not_after(&v1_certificate(b"990101000000Z", time)).is_err(),
                "{time:?}"
            );
        }
    }

    #[test]
    fn expiry_is_fractional_days_and_negative_when_past() {
        assert_eq!(expiry_days(86_400, 0), 1.0);
        assert_eq!(expiry_days(0, 43_200_000), -0.5);
    }

    #[test]
    fn splits_host_and_port() {
        assert_eq!(split_host_port("db:5432"), Some(("db", 5432)));
        assert_eq!(split_host_port("[::1]:443"), Some(("::1", 443)));
        assert_eq!(split_host_port("::1:443"), None);
        assert_eq!(split_host_port("db"), None);
        assert_eq!(split_host_port(":80"), None);
        assert_eq!(split_host_port("db:http"), None);
        assert_eq!(split_host_port("db:70000"), None);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        port: Vec<PortTarget>,
    }

    #[test]
    fn parses_port_tables_with_defaults() {
        let file: File = toml::from_str(
            "[[port]]\ntarget = \"db:5432\"\n\n\
             [[port]]\ntarget = \"[::1]:443\"\nname = \"web\"\ntimeout = \"1s\"\ntls = true\n\
             server_name = \"www.example\"\nca = \"ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(file.port[0], PortTarget::new("db:5432"));
        assert_eq!(file.port[0].verified_name(), "db");
        let web = &file.port[1];
        assert!(web.tls);
        assert_eq!(web.timeout, Duration::from_secs(1));
        assert_eq!(web.verified_name(), "www.example");
        assert_eq!(web.ca.as_deref(), Some(Path::new("ca.pem")));
        assert!(file.port.iter().all(|target| target.validate().is_ok()));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let unknown = toml::from_str::<File>("[[port]]\ntarget = \"a:1\"\nsni = \"x\"\n");
        assert!(unknown.unwrap_err().to_string().contains("sni"));
        for (target, key) in [
            (PortTarget::new("no-port"), "target"),
            (
                PortTarget {
                    timeout: Duration::ZERO,
                    ..PortTarget::new("a:1")
                },
                "timeout",
            ),
            (
                PortTarget {
                    ca: Some("ca.pem".into()),
                    ..PortTarget::new("a:1")
                },
                "ca",
            ),
            (
                PortTarget {
                    tls: true,
                    server_name: Some("not a name".into()),
                    ..PortTarget::new("a:1")
                },
                "server_name",
            ),
        ] {
            assert_eq!(target.validate().unwrap_err().key, key, "{target:?}");
        }
    }
}
