//! How one request reaches a receiver, per exporter: remote_write over HTTP
//! (through `notify::http`'s client) and OTLP over gRPC (a tonic channel).
//! Each turns the receiver's answer into a [`Verdict`] and logs failures;
//! the queue, batching, retries and counters are `service.rs`'s and the
//! same for both.

use std::future::Future;
use std::time::Duration;

use base64::Engine;
use steward_proto::opentelemetry::proto::collector::metrics::v1 as otlp_pb;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::config::{Compression, Credential, OtlpTarget, RemoteWriteTarget, parse_roots};
use super::otlp;
use super::queue::{QueuedSlice, Verdict};
use super::remote_write;
use crate::notify::http::{HttpError, ProxySettings, WebhookClient};
use crate::telemetry::{ExportCounters, Telemetry};

/// Which exporter: its counters and its supervised task's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterKind {
    RemoteWrite,
    Otlp,
}

impl ExporterKind {
    pub fn counters(self, telemetry: &Telemetry) -> &ExportCounters {
        match self {
            Self::RemoteWrite => &telemetry.remote_write,
            Self::Otlp => &telemetry.otlp,
        }
    }

    pub fn task_name(self) -> &'static str {
        match self {
            Self::RemoteWrite => "remote-write",
            Self::Otlp => "otlp",
        }
    }
}

/// One exporter's wire format and client.
pub trait Transport: Send + Sync + 'static {
    const KIND: ExporterKind;
    /// Built once per request and sent again as is on a retry.
    type Request: Clone + Send + Sync + 'static;

    fn build(&self, slices: &[QueuedSlice]) -> Self::Request;

    /// One attempt; a failure to connect or a timeout is a retry.
    fn send(&self, request: Self::Request) -> impl Future<Output = Verdict> + Send;
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("remote_write {name:?}: cannot set up the HTTP client: {source}")]
    Http { name: String, source: HttpError },
    #[error("otlp {name:?}: cannot set up the gRPC channel: {source}")]
    Grpc {
        name: String,
        source: tonic::transport::Error,
    },
}

/// remote_write 1.0: a Snappy-compressed `WriteRequest` POSTed.
pub struct RemoteWriteTransport {
    target: RemoteWriteTarget,
    client: WebhookClient,
    /// remote_write's headers and the credential (never logged).
    headers: Vec<(String, String)>,
}

impl RemoteWriteTransport {
    pub fn new(target: &RemoteWriteTarget, proxy: &ProxySettings) -> Result<Self, ExportError> {
        let roots = target
            .tls_ca_pem
            .as_deref()
            .map(parse_roots)
            .unwrap_or_default();
        let client =
            WebhookClient::with_extra_roots(proxy, &roots).map_err(|source| ExportError::Http {
                name: target.name.clone(),
                source,
            })?;
        Ok(Self {
            headers: request_headers(target.credential.as_ref()),
            target: target.clone(),
            client,
        })
    }
}

fn request_headers(credential: Option<&Credential>) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = remote_write::HEADERS
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    match credential {
        None => {}
        Some(Credential::Bearer(token)) => {
            headers.push(("Authorization".into(), format!("Bearer {token}")));
        }
        Some(Credential::Basic { username, password }) => {
            let pair =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            headers.push(("Authorization".into(), format!("Basic {pair}")));
        }
    }
    headers
}

impl Transport for RemoteWriteTransport {
    const KIND: ExporterKind = ExporterKind::RemoteWrite;
    type Request = Vec<u8>;

    fn build(&self, slices: &[QueuedSlice]) -> Vec<u8> {
        remote_write::encode(&remote_write::write_request(slices))
    }

    async fn send(&self, body: Vec<u8>) -> Verdict {
        let outcome = self
            .client
            .post(
                &self.target.url,
                remote_write::CONTENT_TYPE,
                &self.headers,
                body,
                self.target.limits.timeout,
            )
            .await;
        match outcome {
            Ok(outcome) => {
                let verdict = remote_write::classify_status(outcome.status, outcome.retry_after);
                if verdict != Verdict::Sent {
                    tracing::warn!(
                        message = "remote_write receiver did not accept a request.",
                        endpoint = %self.target.name,
                        status = outcome.status,
                        retried = matches!(verdict, Verdict::Retry { .. }),
                    );
                }
                verdict
            }
            Err(error) => {
                tracing::warn!(
                    message = "Cannot reach the remote_write receiver; retrying.",
                    endpoint = %self.target.name,
                    %error,
                );
                Verdict::Retry { at_least: None }
            }
        }
    }
}

type MetricsClient = otlp_pb::metrics_service_client::MetricsServiceClient<Channel>;

/// OTLP/gRPC: `MetricsService/Export` on a channel that connects lazily and
/// reconnects by itself.
pub struct OtlpTransport {
    name: String,
    client: MetricsClient,
    /// The configured headers (secret ones never logged).
    metadata: MetadataMap,
    timeout: Duration,
}

impl OtlpTransport {
    /// Needs a tokio runtime (the channel's worker is spawned here).
    pub fn new(target: &OtlpTarget) -> Result<Self, ExportError> {
        let grpc_error = |source| ExportError::Grpc {
            name: target.name.clone(),
            source,
        };
        let timeout = target.limits.timeout;
        let mut endpoint = Endpoint::from_shared(target.endpoint.clone())
            .map_err(grpc_error)?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true);
        if target.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(pem) = &target.tls_ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(tls).map_err(grpc_error)?;
        }
        let mut client = MetricsClient::new(endpoint.connect_lazy());
        if target.compression == Compression::Gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let mut metadata = MetadataMap::new();
        for header in &target.headers {
            // Validated at load (lower-case ASCII name, printable value);
            // one that still fails is skipped rather than sent malformed.
            if let (Ok(key), Ok(value)) = (
                MetadataKey::from_bytes(header.name.as_bytes()),
                MetadataValue::try_from(header.value.as_str()),
            ) {
                metadata.insert(key, value);
            }
        }
        Ok(Self {
            name: target.name.clone(),
            client,
            metadata,
            timeout,
        })
    }
}

impl Transport for OtlpTransport {
    const KIND: ExporterKind = ExporterKind::Otlp;
    type Request = otlp_pb::ExportMetricsServiceRequest;

    fn build(&self, slices: &[QueuedSlice]) -> Self::Request {
        otlp::export_request(slices)
    }

    async fn send(&self, request: Self::Request) -> Verdict {
        let mut request = tonic::Request::new(request);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        let mut client = self.client.clone();
        // The channel's own timeout covers the call; this one also covers
        // waiting for a connection.
        let answer = tokio::time::timeout(self.timeout, client.export(request)).await;
        let (verdict, code, detail) = match answer {
            Ok(Ok(response)) => {
                let verdict = otlp::classify_response(response.get_ref());
                let detail = response
                    .get_ref()
                    .partial_success
                    .as_ref()
                    .map(|partial| partial.error_message.clone())
                    .unwrap_or_default();
                (verdict, tonic::Code::Ok, detail)
            }
            Ok(Err(status)) => (
                otlp::classify_status(status.code(), otlp::retry_delay(status.details())),
                status.code(),
                status.message().to_string(),
            ),
            Err(_) => (
                Verdict::Retry { at_least: None },
                tonic::Code::DeadlineExceeded,
                "timed out".to_string(),
            ),
        };
        if verdict != Verdict::Sent {
            tracing::warn!(
                message = "OTLP receiver did not accept a request.",
                endpoint = %self.name,
                code = ?code,
                detail = %steward_core::text::strip_control(&detail),
                retried = matches!(verdict, Verdict::Retry { .. }),
            );
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_an_authorization_header() {
        let headers = request_headers(Some(&Credential::Basic {
            username: "steward".into(),
            password: "pw".into(),
        }));
        assert!(headers.contains(&("Authorization".into(), "Basic c3Rld2FyZDpwdw==".into())));
        assert!(headers.contains(&("Content-Encoding".into(), "snappy".into())));
        let headers = request_headers(Some(&Credential::Bearer("t0k".into())));
        assert!(headers.contains(&("Authorization".into(), "Bearer t0k".into())));
        assert_eq!(request_headers(None).len(), 2);
    }
}
