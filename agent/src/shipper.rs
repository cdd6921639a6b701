//! Ships buffered batches to the collector over one long-lived gRPC stream,
//! reconnecting with exponential backoff and jitter.
//!
//! This is the only agent module that sees proto and tonic types.

use std::sync::Arc;
use std::time::Duration;

use steward_proto::v1 as pb;
use steward_proto::v1::ingest_client::IngestClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::buffer::BatchBuffer;
use crate::codec;
use crate::config::{AgentConfig, CollectorAddress};
use crate::schedule::InventoryState;
use crate::spool::SpoolError;

/// Who this agent is, sent in every hello.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub agent_id: String,
    pub hostname: String,
    /// Scopes sequence numbers (see the proto). Chosen at random when the
    /// spool is empty, otherwise continued from it, so resent batches are
    /// still deduplicated after an agent restart.
    pub epoch: u64,
    pub facts: std::collections::HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("cannot read the client certificate: {0}")]
    ClientCertificate(String),
    #[error("cannot connect: {}", steward_core::text::error_chain(.0))]
    Connect(#[from] tonic::transport::Error),
    #[error("the collector refused the stream: {0}")]
    Refused(tonic::Status),
    #[error("the stream broke: {0}")]
    Broken(tonic::Status),
    #[error("the collector closed the stream")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("cannot read the spool: {0}")]
    Spool(#[from] SpoolError),
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs until `shutdown` fires, reconnecting as needed.
///
/// With several collectors the agent starts at a random one (a fleet spreads
/// over them) and moves to the next whenever its session ends; it tries every
/// collector once, a short jittered pause apart, before it backs off. The
/// spool makes a move lossless: batches the old collector never acknowledged
/// are sent again to the new one.
pub async fn run(
    config: Arc<AgentConfig>,
    identity: AgentIdentity,
    buffer: Arc<BatchBuffer>,
    inventory: Arc<InventoryState>,
    shutdown: CancellationToken,
) {
    let count = config.collectors.len();
    let mut index = if count > 1 {
        rand::random_range(0..count)
    } else {
        0
    };
    let mut backoff = INITIAL_BACKOFF;
    // Sessions that ended without a welcome since the last one that got one.
    let mut failed_in_a_row = 0usize;
    loop {
        let target = &config.collectors[index];
        let mut welcomed = false;
        let result = session(
            &config,
            target,
            &identity,
            &buffer,
            &inventory,
            &shutdown,
            &mut welcomed,
        )
        .await;
        if shutdown.is_cancelled() {
            return;
        }
        if welcomed {
            backoff = INITIAL_BACKOFF;
            failed_in_a_row = 0;
        } else {
            failed_in_a_row += 1;
        }
        match result {
            Ok(()) => {}
            Err(SessionError::Refused(status) | SessionError::Broken(status))
                if status.code() == tonic::Code::Unauthenticated =>
            {
                if config.client_cert.is_some() {
                    tracing::error!(
                        message = "Collector refused this agent's certificate (revoked?); enroll again.",
                        collector = %target.url,
                        error = %status.message(),
                    );
                } else {
                    tracing::error!(
                        message = "Collector rejected this agent's token; check `token` in the agent config.",
                        collector = %target.url,
                    );
                }
                backoff = MAX_BACKOFF;
            }
            Err(SessionError::Refused(status))
                if status.code() == tonic::Code::PermissionDenied =>
            {
                tracing::error!(
                    message = "Collector refused this agent's identity: the agent id is bound to another credential.",
                    collector = %target.url,
                    error = %status.message(),
                );
                backoff = MAX_BACKOFF;
            }
            Err(error) => {
                tracing::warn!(message = "Collector session ended.", %error, collector = %target.url);
            }
        }
        if count > 1 {
            index = (index + 1) % count;
            tracing::info!(
                message = "Moving to the next collector.",
                collector = %config.collectors[index].url,
            );
        }
        let delay = if failed_in_a_row == 0 || !failed_in_a_row.is_multiple_of(count) {
            with_jitter(INITIAL_BACKOFF)
        } else {
            // Every collector failed once more: back off.
            let delay = with_jitter(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            delay
        };
        tracing::debug!(
            message = "Reconnecting after backoff.",
            delay_ms = delay.as_millis() as u64
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// A random delay in [backoff/2, backoff], so agents restarted together do
/// not reconnect in lockstep.
fn with_jitter(backoff: Duration) -> Duration {
    let half = backoff / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// The endpoint of collector `target`; with a client certificate, its files
/// are read now, so a renewed certificate is used from the next connect on.
pub(crate) fn endpoint(
    config: &AgentConfig,
    target: &CollectorAddress,
) -> Result<Endpoint, SessionError> {
    let mut endpoint = Endpoint::from_shared(target.url.clone())?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if let Some(ca) = &config.ca_pem {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(target.server_name.clone());
        if let Some(files) = &config.client_cert {
            // Never a mismatched pair, even during a renewal or after a crash in one.
            let (cert, key) = crate::cert_files::load(files)
                .map_err(|error| SessionError::ClientCertificate(error.to_string()))?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    Ok(endpoint)
}

#[tracing::instrument(name = "session", skip_all, fields(collector = %target.url))]
async fn session(
    config: &AgentConfig,
    target: &CollectorAddress,
    identity: &AgentIdentity,
    buffer: &Arc<BatchBuffer>,
    inventory: &InventoryState,
    shutdown: &CancellationToken,
    welcomed: &mut bool,
) -> Result<(), SessionError> {
    let endpoint = endpoint(config, target)?;
    let channel: Channel = tokio::select! {
        channel = endpoint.connect() => channel?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let mut client = IngestClient::new(channel)
        .max_decoding_message_size(1 << 20)
        .max_encoding_message_size(16 << 20);
    let (outbound, outbound_rx) = mpsc::channel::<pb::AgentMessage>(16);
    let hello = pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(pb::Hello {
            agent_id: identity.agent_id.clone(),
            agent_version: crate::VERSION.to_string(),
            hostname: identity.hostname.clone(),
            token: config.token.clone(),
            epoch: identity.epoch,
            inventory: Some(pb::Inventory {
                facts: identity.facts.clone(),
                ..Default::default()
            }),
        })),
    };
    // Capacity is 16 and the channel is new, so this cannot fail or wait.
    let _ = outbound.try_send(hello);
    let response = client
        .stream(ReceiverStream::new(outbound_rx))
        .await
        .map_err(SessionError::Refused)?;
    let mut inbound = response.into_inner();
    let welcome = match inbound.message().await.map_err(SessionError::Broken)? {
        Some(pb::CollectorMessage {
            kind: Some(pb::collector_message::Kind::Welcome(welcome)),
        }) => welcome,
        Some(_) => return Err(SessionError::Protocol("expected a welcome first")),
        None => return Err(SessionError::Closed),
    };
    *welcomed = true;
    buffer.skip_past(welcome.committed_seq);
    buffer.acknowledge(welcome.committed_seq);
    tracing::info!(
        message = "Connected to collector.",
        committed_seq = welcome.committed_seq,
        collector_version = %welcome.collector_version,
    );

    // Acks arrive on their own task so reading never races sending.
    let mut acks = tokio::spawn({
        let buffer = Arc::clone(buffer);
        async move {
            let mut refusals = RefusalLog::default();
            loop {
                match inbound.message().await {
                    Ok(Some(pb::CollectorMessage {
                        kind: Some(pb::collector_message::Kind::Ack(ack)),
                    })) => {
                        buffer.acknowledge(ack.committed_seq);
                        refusals.note(&ack);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return SessionError::Closed,
                    Err(status) => return SessionError::Broken(status),
                }
            }
        }
    });
    inventory.resync_if_needed(buffer, welcome.packages_fingerprint);
    buffer.set_connected(true);
    let result = send_batches(
        buffer,
        welcome.committed_seq,
        welcome.packages_fingerprint,
        &outbound,
        &mut acks,
        shutdown,
    )
    .await;
    buffer.set_connected(false);
    if result.is_ok() {
        // Shutting down: stop sending, give in-flight batches a moment to be
        // acknowledged. Nothing is lost if they are not: they stay in the
        // spool, and the next start resends what the welcome does not cover.
        drop(outbound);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut acks).await;
    }
    acks.abort();
    result
}

/// Samples the collector acknowledged but refused (over its limits), logged
/// at most once a minute with how many were held back, so a misconfigured
/// cardinality cannot flood the agent's log either.
#[derive(Debug, Default)]
struct RefusalLog {
    last_logged: Option<std::time::Instant>,
    held_back: u64,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(60);

    fn note(&mut self, ack: &pb::Ack) {
        if ack.refused_samples == 0 {
            return;
        }
        self.held_back += ack.refused_samples;
        if self
            .last_logged
            .is_some_and(|logged| logged.elapsed() < Self::EVERY)
        {
            return;
        }
        tracing::warn!(
            message = "The collector refused samples; the rest of the batch is stored.",
            seq = ack.committed_seq,
            reason = %ack.refused_reason,
            refused_since_last_line = self.held_back,
        );
        self.last_logged = Some(std::time::Instant::now());
        self.held_back = 0;
    }
}

/// Sends every durable spooled batch after `last_sent`, then each new one
/// as soon as it is fsynced, until the stream breaks (error) or shutdown (Ok).
async fn send_batches(
    buffer: &Arc<BatchBuffer>,
    mut last_sent: u64,
    collector_fingerprint: u64,
    outbound: &mpsc::Sender<pb::AgentMessage>,
    acks: &mut tokio::task::JoinHandle<SessionError>,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let mut durable = buffer.subscribe_durable();
    loop {
        durable.borrow_and_update();
        let window = tokio::select! {
            window = buffer.read_after(last_sent) => window?,
            ended = &mut *acks => return Err(ended.unwrap_or(SessionError::Closed)),
            _ = shutdown.cancelled() => return Ok(()),
        };
        if window.is_empty() {
            // Anything pushed but not yet fsynced is sent once it is.
            buffer.request_sync();
            tokio::select! {
                changed = durable.changed() => changed.map_err(|_| SessionError::Closed)?,
                ended = &mut *acks => return Err(ended.unwrap_or(SessionError::Closed)),
                _ = shutdown.cancelled() => return Ok(()),
            }
            continue;
        }
        for record in window {
            let message = match codec::to_message(&record, collector_fingerprint) {
                Ok(message) => message,
                Err(error) => {
                    // Checksummed on disk, so this is a payload an older or
                    // newer agent wrote that this one cannot read: skip it.
                    tracing::error!(message = "Cannot decode a spooled batch; skipping it.", %error, seq = record.seq);
                    last_sent = record.seq;
                    continue;
                }
            };
            tokio::select! {
                sent = outbound.send(message) => {
                    sent.map_err(|_| SessionError::Closed)?;
                    last_sent = record.seq;
                }
                ended = &mut *acks => return Err(ended.unwrap_or(SessionError::Closed)),
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_a_minute_with_the_count_held_back() {
        let ack = |refused| pb::Ack {
            committed_seq: 7,
            refused_samples: refused,
            refused_reason: "over limits.max_series_per_agent".into(),
        };
        let mut log = RefusalLog::default();
        log.note(&ack(0));
        assert!(log.last_logged.is_none(), "nothing refused, nothing logged");
        log.note(&ack(3));
        assert!(log.last_logged.is_some());
        assert_eq!(log.held_back, 0, "logged at once");
        log.note(&ack(2));
        log.note(&ack(5));
        assert_eq!(log.held_back, 7, "held back within the minute");
    }
}
