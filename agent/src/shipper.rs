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
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::buffer::{Batch, BatchBuffer, InventoryChange, Payload};
use crate::config::AgentConfig;
use crate::probes::inventory::{DiskInfo, InterfaceInfo};
use crate::schedule::InventoryState;

/// Who this agent is, sent in every hello.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub agent_id: String,
    pub hostname: String,
    /// Random per process: scopes sequence numbers (see the proto).
    pub epoch: u64,
    pub facts: std::collections::HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot connect: {}", chain(.0))]
    Connect(#[from] tonic::transport::Error),
    #[error("the collector refused the stream: {0}")]
    Refused(tonic::Status),
    #[error("the stream broke: {0}")]
    Broken(tonic::Status),
    #[error("the collector closed the stream")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// "outer: inner: innermost", since tonic's top-level messages say little.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs until `shutdown` fires, reconnecting as needed.
pub async fn run(
    config: Arc<AgentConfig>,
    identity: AgentIdentity,
    buffer: Arc<BatchBuffer>,
    inventory: Arc<InventoryState>,
    shutdown: CancellationToken,
) {
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let result = session(
            &config,
            &identity,
            &buffer,
            &inventory,
            &shutdown,
            &mut backoff,
        )
        .await;
        if shutdown.is_cancelled() {
            return;
        }
        match result {
            Ok(()) => {}
            Err(SessionError::Refused(status)) if status.code() == tonic::Code::Unauthenticated => {
                tracing::error!(
                    message = "Collector rejected this agent's token; check `token` in the agent config.",
                    collector = %config.collector_url,
                );
                backoff = MAX_BACKOFF;
            }
            Err(error) => {
                tracing::warn!(message = "Collector session ended.", %error, collector = %config.collector_url);
            }
        }
        let delay = with_jitter(backoff);
        tracing::debug!(
            message = "Reconnecting after backoff.",
            delay_ms = delay.as_millis() as u64
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A random delay in [backoff/2, backoff], so agents restarted together do
/// not reconnect in lockstep.
fn with_jitter(backoff: Duration) -> Duration {
    let half = backoff / 2;
    half + half.mul_f64(rand::random::<f64>())
}

fn endpoint(config: &AgentConfig) -> Result<Endpoint, tonic::transport::Error> {
    let mut endpoint = Endpoint::from_shared(config.collector_url.clone())?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if let Some(ca) = &config.ca_pem {
        endpoint = endpoint.tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name(config.server_name.clone()),
        )?;
    }
    Ok(endpoint)
}

#[tracing::instrument(name = "session", skip_all, fields(collector = %config.collector_url))]
async fn session(
    config: &AgentConfig,
    identity: &AgentIdentity,
    buffer: &Arc<BatchBuffer>,
    inventory: &InventoryState,
    shutdown: &CancellationToken,
    backoff: &mut Duration,
) -> Result<(), SessionError> {
    let endpoint = endpoint(config)?;
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
    *backoff = INITIAL_BACKOFF;
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
            loop {
                match inbound.message().await {
                    Ok(Some(pb::CollectorMessage {
                        kind: Some(pb::collector_message::Kind::Ack(ack)),
                    })) => buffer.acknowledge(ack.committed_seq),
                    Ok(Some(_)) => {}
                    Ok(None) => return SessionError::Closed,
                    Err(status) => return SessionError::Broken(status),
                }
            }
        }
    });
    inventory.resync_if_needed(buffer, welcome.packages_fingerprint);
    let result = send_batches(
        buffer,
        welcome.committed_seq,
        welcome.packages_fingerprint,
        &outbound,
        &mut acks,
        shutdown,
    )
    .await;
    if result.is_ok() {
        // Shutting down: stop sending, give in-flight batches a moment to be acknowledged.
        drop(outbound);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut acks).await;
    }
    acks.abort();
    result
}

/// Sends every buffered batch after `last_sent`, then each new one as it is
/// pushed, until the stream breaks (error) or shutdown (Ok).
async fn send_batches(
    buffer: &Arc<BatchBuffer>,
    mut last_sent: u64,
    collector_fingerprint: u64,
    outbound: &mpsc::Sender<pb::AgentMessage>,
    acks: &mut tokio::task::JoinHandle<SessionError>,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let mut newest = buffer.subscribe();
    loop {
        newest.borrow_and_update();
        if let Some(batch) = buffer.next_after(last_sent) {
            tokio::select! {
                sent = outbound.send(to_proto(&batch, collector_fingerprint)) => {
                    sent.map_err(|_| SessionError::Closed)?;
                    last_sent = batch.seq;
                }
                ended = &mut *acks => return Err(ended.unwrap_or(SessionError::Closed)),
                _ = shutdown.cancelled() => return Ok(()),
            }
        } else {
            tokio::select! {
                changed = newest.changed() => changed.map_err(|_| SessionError::Closed)?,
                ended = &mut *acks => return Err(ended.unwrap_or(SessionError::Closed)),
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }
}

/// Maps a buffered batch to its message. A full inventory whose package list
/// the collector already holds (same fingerprint) travels without the list.
fn to_proto(batch: &Batch, collector_packages_fingerprint: u64) -> pb::AgentMessage {
    let samples = match &batch.payload {
        Payload::Samples(samples) => samples,
        Payload::Inventory(change) => {
            return pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Inventory(inventory_to_proto(
                    batch.seq,
                    change,
                    collector_packages_fingerprint,
                ))),
            };
        }
    };
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Batch(pb::SampleBatch {
            seq: batch.seq,
            samples: samples
                .iter()
                .map(|sample| pb::Sample {
                    metric: sample.metric.to_string(),
                    labels: sample
                        .labels
                        .iter()
                        .map(|(key, value)| pb::Label {
                            key: (*key).to_string(),
                            value: value.clone(),
                        })
                        .collect(),
                    value: sample.value,
                    timestamp_ms: sample.timestamp_ms,
                })
                .collect(),
        })),
    }
}

fn inventory_to_proto(
    seq: u64,
    change: &InventoryChange,
    collector_packages_fingerprint: u64,
) -> pb::InventoryUpdate {
    let diff = &change.diff;
    let skip_packages =
        change.full && change.packages_fingerprint == collector_packages_fingerprint;
    let disk = |disk: &DiskInfo| pb::Disk {
        device: disk.device.clone(),
        model: disk.model.clone().unwrap_or_default(),
        size_bytes: disk.size_bytes,
        filesystem: disk.filesystem.clone(),
        mount: disk.mount.clone(),
    };
    let interface = |interface: &InterfaceInfo| pb::NetworkInterface {
        name: interface.name.clone(),
        mac: interface.mac.clone().unwrap_or_default(),
        ipv4: interface.ipv4.clone(),
        ipv6: interface.ipv6.clone(),
    };
    pb::InventoryUpdate {
        seq,
        full: change.full,
        facts_changed: diff.facts_changed.clone().into_iter().collect(),
        facts_removed: diff.facts_removed.clone(),
        disks_changed: diff.disks.is_some(),
        disks: diff.disks.iter().flatten().map(disk).collect(),
        interfaces_changed: diff.interfaces.is_some(),
        interfaces: diff.interfaces.iter().flatten().map(interface).collect(),
        packages_replaced: change.full && !skip_packages,
        packages_upserted: if skip_packages {
            Vec::new()
        } else {
            diff.packages_upserted
                .iter()
                .map(|(name, version)| pb::Package {
                    name: name.clone(),
                    version: version.clone(),
                })
                .collect()
        },
        packages_removed: diff.packages_removed.clone(),
        packages_fingerprint: change.packages_fingerprint,
        timestamp_ms: change.timestamp_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::inventory::InventoryDiff;

    fn change(full: bool) -> InventoryChange {
        InventoryChange {
            full,
            diff: InventoryDiff {
                packages_upserted: [("bash".to_string(), "5.2".to_string())].into(),
                ..Default::default()
            },
            packages_fingerprint: 42,
            timestamp_ms: 1,
        }
    }

    #[test]
    fn full_inventory_omits_packages_the_collector_already_holds() {
        let same = inventory_to_proto(1, &change(true), 42);
        assert!(!same.packages_replaced);
        assert!(same.packages_upserted.is_empty());
        let different = inventory_to_proto(1, &change(true), 7);
        assert!(different.packages_replaced);
        assert_eq!(different.packages_upserted.len(), 1);
        let diff = inventory_to_proto(2, &change(false), 42);
        assert!(!diff.packages_replaced, "a diff never replaces the list");
        assert_eq!(diff.packages_upserted.len(), 1);
    }
}
