//! Ingest: the gRPC service agents stream to.
//!
//! The only collector module that sees proto and tonic types. It checks the
//! agent's token, turns messages into store records, and acknowledges a
//! batch only after the store reports it committed.

mod auth;
mod inventory;
mod validate;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use steward_proto::v1 as pb;
use steward_proto::v1::ingest_server::{Ingest, IngestServer};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

pub use auth::{AgentAuthenticator, constant_time_eq};

use crate::assets::service::AssetHandle;
use crate::incidents::{IncidentHandle, RulesInput};
use crate::registry::AgentRegistry;
use crate::store::{AgentHello, CommitOutcome, InventoryOutcome, SampleBatch, Store};
use crate::telemetry::Telemetry;

/// How long an agent may take to send its hello after opening a stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_AGENT_ID: usize = 128;
const MAX_HOSTNAME: usize = 255;

pub struct IngestService {
    pub store: Arc<Store>,
    pub registry: Arc<AgentRegistry>,
    pub telemetry: Arc<Telemetry>,
    pub auth: AgentAuthenticator,
    pub max_agents: usize,
    /// Where committed samples go for rule evaluation.
    pub incidents: IncidentHandle,
    /// Where committed inventory and patch levels go to update asset records.
    pub assets: AssetHandle,
    /// Ends every open stream when the collector shuts down.
    pub shutdown: CancellationToken,
}

impl IngestService {
    pub fn into_server(self, max_message_bytes: usize) -> IngestServer<Self> {
        IngestServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(1 << 20)
    }

    fn reject_protocol(&self, message: &'static str) -> Status {
        Telemetry::add(&self.telemetry.streams_rejected_protocol, 1);
        Status::invalid_argument(message)
    }
}

type OutboundStream = Pin<Box<dyn Stream<Item = Result<pb::CollectorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = OutboundStream;

    async fn stream(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |address| address.to_string());
        let mut inbound = request.into_inner();
        let first = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => return Err(self.reject_protocol("stream closed before hello")),
            Ok(Err(status)) => {
                Telemetry::add(&self.telemetry.streams_rejected_protocol, 1);
                tracing::warn!(message = "Rejected agent stream: unreadable first message.", %peer, error = %status.message());
                return Err(status);
            }
            Err(_) => return Err(self.reject_protocol("no hello within 10s")),
        };
        let Some(pb::agent_message::Kind::Hello(hello)) = first.kind else {
            tracing::warn!(message = "Rejected agent stream: first message was not a hello.", %peer);
            return Err(self.reject_protocol("the first message must be a hello"));
        };
        let hello = validate::clean_hello(hello);
        if !self.auth.is_valid(&hello.token) {
            Telemetry::add(&self.telemetry.agents_rejected_auth, 1);
            tracing::warn!(
                message = "Rejected agent: missing or invalid token.",
                %peer,
                // Not yet checked for control characters: refused below if it has any.
                agent_id = %steward_core::text::strip_control(truncate(&hello.agent_id, MAX_AGENT_ID)),
                hostname = %truncate(&hello.hostname, MAX_HOSTNAME),
            );
            return Err(Status::unauthenticated("invalid agent token"));
        }
        if let Err(problem) = check_hello_identity(&hello) {
            tracing::warn!(message = "Rejected agent stream: bad agent id or hostname.", %peer);
            return Err(self.reject_protocol(problem));
        }
        if !self.registry.is_connected(&hello.agent_id)
            && self.registry.connected_count() >= self.max_agents
        {
            tracing::warn!(message = "Rejected agent stream: too many agents connected.", %peer, limit = self.max_agents);
            return Err(Status::resource_exhausted(
                "the collector's agent limit is reached",
            ));
        }

        let now = steward_core::now_ms();
        let facts = hello
            .inventory
            .map(|inventory| inventory.facts.into_iter().collect())
            .unwrap_or_default();
        let record = AgentHello {
            agent_id: hello.agent_id.clone(),
            hostname: hello.hostname.clone(),
            version: hello.agent_version.clone(),
            facts,
            seen_ms: now,
        };
        self.store.record_hello(record).await.map_err(internal)?;
        let committed_seq = self
            .store
            .committed_seq(&hello.agent_id, hello.epoch)
            .await
            .map_err(internal)?;
        let packages_fingerprint = self
            .store
            .packages_fingerprint(&hello.agent_id)
            .await
            .map_err(internal)?;

        let (outbound, outbound_rx) = mpsc::channel(32);
        let welcome = pb::CollectorMessage {
            kind: Some(pb::collector_message::Kind::Welcome(pb::Welcome {
                committed_seq,
                collector_version: crate::VERSION.to_string(),
                packages_fingerprint,
            })),
        };
        // The channel is new with room for 32, so this cannot fail.
        let _ = outbound.try_send(Ok(welcome));

        self.incidents
            .send(RulesInput::Hello {
                agent_id: hello.agent_id.clone(),
                hostname: hello.hostname.clone(),
            })
            .await;
        let session = self.registry.connected(&hello.agent_id);
        self.telemetry.agents_connected.store(
            self.registry.connected_count() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        tracing::info!(
            message = "Agent connected.",
            %peer,
            agent_id = %hello.agent_id,
            hostname = %hello.hostname,
            version = %hello.agent_version,
            committed_seq,
        );
        let stream = AgentStream {
            agent_id: hello.agent_id.clone(),
            epoch: hello.epoch,
            last_seq: committed_seq,
            store: Arc::clone(&self.store),
            telemetry: Arc::clone(&self.telemetry),
            incidents: self.incidents.clone(),
            assets: self.assets.clone(),
        };
        let registry = Arc::clone(&self.registry);
        let telemetry = Arc::clone(&self.telemetry);
        let shutdown = self.shutdown.clone();
        let span = tracing::info_span!("agent_stream", agent_id = %hello.agent_id, %peer);
        tokio::spawn(
            async move {
                stream.run(inbound, outbound, shutdown).await;
                registry.disconnected(&hello.agent_id, session);
                telemetry.agents_connected.store(
                    registry.connected_count() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                tracing::info!(message = "Agent disconnected.");
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound_rx))))
    }
}

/// The id is an identity, so it is refused rather than cleaned: two
/// agents must not become one by losing a control character.
fn check_hello_identity(hello: &pb::Hello) -> Result<(), &'static str> {
    if hello.agent_id.is_empty()
        || hello.agent_id.len() > MAX_AGENT_ID
        || hello.agent_id.chars().any(char::is_control)
        || hello.hostname.len() > MAX_HOSTNAME
    {
        return Err(
            "agent_id must be 1..=128 bytes without control characters, hostname at most 255",
        );
    }
    Ok(())
}

/// Everything ingest does to one encoded `AgentMessage` short of the store,
/// the registry and the network: decode it as tonic would, then clean and
/// check a hello, validate a batch's samples, map an inventory update to its
/// record. Returns how many records survived (0 for a refused message).
///
/// For the fuzz targets in `fuzz/` (which must not see proto types); not
/// an API.
#[doc(hidden)]
pub fn screen_encoded_message(bytes: &[u8], now_ms: i64) -> usize {
    use prost::Message as _;

    let Ok(message) = pb::AgentMessage::decode(bytes) else {
        return 0;
    };
    match message.kind {
        Some(pb::agent_message::Kind::Hello(hello)) => {
            let hello = validate::clean_hello(hello);
            // What a refused hello's log line shows.
            let _ = steward_core::text::strip_control(truncate(&hello.agent_id, MAX_AGENT_ID));
            let _ = truncate(&hello.hostname, MAX_HOSTNAME);
            if check_hello_identity(&hello).is_err() {
                return 0;
            }
            hello.inventory.map_or(0, |inventory| inventory.facts.len()) + 1
        }
        Some(pb::agent_message::Kind::Batch(batch)) => batch
            .samples
            .into_iter()
            .filter_map(|sample| validate::to_record(sample, now_ms).ok())
            .count(),
        Some(pb::agent_message::Kind::Inventory(update)) => {
            let record = inventory::to_record("fuzz", 1, now_ms, update);
            record.facts_changed.len() + record.packages_upserted.len() + 1
        }
        Some(_) | None => 0,
    }
}

fn internal(error: crate::store::StoreError) -> Status {
    tracing::error!(message = "Store failure while opening an agent stream.", %error);
    Status::unavailable("the collector cannot store data right now")
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// One authenticated agent's stream after the hello.
struct AgentStream {
    agent_id: String,
    epoch: u64,
    /// Highest sequence number seen on this stream (or committed before it).
    last_seq: u64,
    store: Arc<Store>,
    telemetry: Arc<Telemetry>,
    incidents: IncidentHandle,
    assets: AssetHandle,
}

type Outbound = mpsc::Sender<Result<pb::CollectorMessage, Status>>;

impl AgentStream {
    async fn run(
        mut self,
        mut inbound: Streaming<pb::AgentMessage>,
        outbound: Outbound,
        shutdown: CancellationToken,
    ) {
        loop {
            // Shutdown is checked only between messages, so a batch being
            // committed is always finished and acknowledged first.
            let message = tokio::select! {
                message = inbound.message() => message,
                _ = shutdown.cancelled() => return,
            };
            let message = match message {
                Ok(Some(message)) => message,
                Ok(None) => return,
                Err(status) => {
                    Telemetry::add(&self.telemetry.streams_broken, 1);
                    tracing::warn!(message = "Agent stream broke.", code = ?status.code(), error = %status.message());
                    return;
                }
            };
            let reply = match message.kind {
                Some(pb::agent_message::Kind::Batch(batch)) => self.handle_batch(batch).await,
                Some(pb::agent_message::Kind::Inventory(update)) => {
                    self.handle_inventory(update).await
                }
                Some(pb::agent_message::Kind::Hello(_)) => {
                    Err(Status::invalid_argument("hello sent twice"))
                }
                // Kinds reserved for later work are accepted and ignored for now.
                Some(_) | None => continue,
            };
            match reply {
                Ok(ack) => {
                    if outbound.send(Ok(ack)).await.is_err() {
                        return;
                    }
                }
                Err(status) => {
                    if status.code() == tonic::Code::InvalidArgument {
                        Telemetry::add(&self.telemetry.streams_rejected_protocol, 1);
                    }
                    tracing::warn!(message = "Ending agent stream.", code = ?status.code(), error = %status.message());
                    let _ = outbound.send(Err(status)).await;
                    return;
                }
            }
        }
    }

    async fn handle_batch(
        &mut self,
        batch: pb::SampleBatch,
    ) -> Result<pb::CollectorMessage, Status> {
        // A resend of something already committed: acknowledge again, store nothing.
        if batch.seq <= self.last_seq && batch.seq != 0 {
            Telemetry::add(&self.telemetry.batches_duplicate, 1);
            return Ok(ack(batch.seq));
        }
        if batch.seq == 0 {
            return Err(Status::invalid_argument("batch seq must start at 1"));
        }
        let received = batch.samples.len();
        let mut samples = Vec::with_capacity(received);
        let now = steward_core::now_ms();
        for sample in batch.samples {
            match validate::to_record(sample, now) {
                Ok(record) => samples.push(record),
                Err(problem) => {
                    Telemetry::add(&self.telemetry.samples_rejected, 1);
                    tracing::debug!(message = "Dropped an invalid sample.", %problem, seq = batch.seq);
                }
            }
        }
        let for_rules: Vec<_> = samples
            .iter()
            .map(|sample| (sample.metric.clone(), sample.labels.clone(), sample.value))
            .collect();
        let patch: Vec<(String, f64)> = samples
            .iter()
            .filter(|sample| sample.metric.starts_with("patch."))
            .map(|sample| (sample.metric.clone(), sample.value))
            .collect();
        let record = SampleBatch {
            agent_id: self.agent_id.clone(),
            epoch: self.epoch,
            seq: batch.seq,
            received_ms: steward_core::now_ms(),
            samples,
        };
        match self.store.commit_batch(record).await {
            Ok(CommitOutcome::Stored { samples }) => {
                Telemetry::add(&self.telemetry.batches_committed, 1);
                Telemetry::add(&self.telemetry.samples_ingested, samples as u64);
                // Rules see a sample only once it is durable, so an incident
                // never refers to data a crash could take back.
                self.incidents
                    .send(RulesInput::Committed {
                        agent_id: self.agent_id.clone(),
                        samples: for_rules,
                        now_ms: steward_core::now_ms(),
                        synthetic: false,
                    })
                    .await;
                if !patch.is_empty() {
                    self.assets
                        .patch_committed(self.agent_id.clone(), patch, steward_core::now_ms())
                        .await;
                }
            }
            Ok(CommitOutcome::Duplicate) => Telemetry::add(&self.telemetry.batches_duplicate, 1),
            Err(error) => {
                Telemetry::add(&self.telemetry.batches_failed, 1);
                tracing::error!(message = "Cannot store batch; the agent will resend it.", %error, seq = batch.seq);
                return Err(Status::unavailable("cannot store the batch now"));
            }
        }
        self.last_seq = batch.seq;
        Ok(ack(batch.seq))
    }
}

impl AgentStream {
    async fn handle_inventory(
        &mut self,
        update: pb::InventoryUpdate,
    ) -> Result<pb::CollectorMessage, Status> {
        if update.seq == 0 {
            return Err(Status::invalid_argument("inventory seq must start at 1"));
        }
        if update.seq <= self.last_seq {
            Telemetry::add(&self.telemetry.batches_duplicate, 1);
            return Ok(ack(update.seq));
        }
        let seq = update.seq;
        let record =
            inventory::to_record(&self.agent_id, self.epoch, steward_core::now_ms(), update);
        match self.store.commit_inventory(record).await {
            Ok(InventoryOutcome::Stored(applied)) => {
                Telemetry::add(&self.telemetry.inventory_updates, 1);
                self.assets
                    .inventory_committed(self.agent_id.clone(), steward_core::now_ms())
                    .await;
                if !applied.packages_in_sync {
                    tracing::warn!(
                        message = "Package list out of sync with the agent; it will resend the full list on reconnect.",
                        seq
                    );
                }
            }
            Ok(InventoryOutcome::Duplicate) => Telemetry::add(&self.telemetry.batches_duplicate, 1),
            Err(error) => {
                Telemetry::add(&self.telemetry.batches_failed, 1);
                tracing::error!(message = "Cannot store inventory; the agent will resend it.", %error, seq);
                return Err(Status::unavailable("cannot store the inventory now"));
            }
        }
        self.last_seq = seq;
        Ok(ack(seq))
    }
}

fn ack(committed_seq: u64) -> pb::CollectorMessage {
    pb::CollectorMessage {
        kind: Some(pb::collector_message::Kind::Ack(pb::Ack { committed_seq })),
    }
}
