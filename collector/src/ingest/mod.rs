//! Ingest: the gRPC service agents stream to.
//!
//! The only collector module that sees proto and tonic types. It checks the
//! agent's token, turns messages into store records, and acknowledges a
//! batch only after the store reports it committed.
//!
//! Every input is bounded by `[limits]` (see [`IngestLimits`]): what is over
//! a limit is refused or cut, counted in [`Telemetry`], and logged at most
//! once a minute per agent (or peer) and kind, so a hostile sender can fill
//! neither the memory nor the log. Samples and inventory over a limit are
//! dropped, never their whole batch, so no batch is resent forever. The
//! batch's `Ack` says how many of its samples were refused and why, so the
//! agent's log shows it too.

mod auth;
mod cardinality;
mod connections;
mod enroll;
mod inventory;
mod revocation;
mod streams;
mod validate;

use std::pin::Pin;
use std::sync::Arc;

use steward_proto::v1 as pb;
use steward_proto::v1::enrollment_server::EnrollmentServer;
use steward_proto::v1::ingest_server::{Ingest, IngestServer};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

pub use auth::{AgentAuthenticator, constant_time_eq};
pub use connections::{
    BoundedConnection, BoundedIncoming, CONNECTION_WINDOW_BYTES, GrpcLimits, STREAM_WINDOW_BYTES,
};
pub use enroll::EnrollmentHandler;
pub use inventory::InventoryLimits;
pub use revocation::RevocationWatcher;
// `to_record` is public for the hot-path benches (collector/benches/hot_paths.rs).
pub use validate::{SampleLimits, SampleProblem, to_record};

use self::cardinality::SeriesBudget;
use self::streams::{StreamEnd, StreamTable};
use crate::assets::service::AssetHandle;
use crate::enrollment::{CertificateAuthority, agent_id_of, sha256_hex};
use crate::export::ExportHandle;
use crate::incidents::{IncidentHandle, RulesInput};
use crate::ratelimit::SourceRateLimiter;
use crate::registry::AgentRegistry;
use crate::store::{AgentHello, CommitOutcome, InventoryOutcome, SampleBatch, Store};
use crate::telemetry::{LogThrottle, Telemetry};

const MAX_AGENT_ID: usize = 128;
const MAX_HOSTNAME: usize = 255;

/// Everything `[limits]` bounds on the gRPC side. Defaults are the safe
/// values documented in `deploy/collector-full.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestLimits {
    /// Larger gRPC messages end that stream (decoding refuses them).
    pub max_message_bytes: usize,
    /// Distinct agents connected at once.
    pub max_agents: usize,
    /// Samples stored from one batch; the rest of it is dropped.
    pub max_samples_per_batch: usize,
    /// Series one agent may hold; samples of new series past it are dropped.
    pub max_series_per_agent: usize,
    pub samples: SampleLimits,
    pub inventory: InventoryLimits,
    pub grpc: GrpcLimits,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 << 20,
            max_agents: 10_000,
            max_samples_per_batch: 10_000,
            max_series_per_agent: 10_000,
            samples: SampleLimits::default(),
            inventory: InventoryLimits::default(),
            grpc: GrpcLimits::default(),
        }
    }
}

pub struct IngestService {
    pub store: Arc<Store>,
    pub registry: Arc<AgentRegistry>,
    pub telemetry: Arc<Telemetry>,
    pub auth: AgentAuthenticator,
    pub limits: IngestLimits,
    /// Where committed samples go for rule evaluation.
    pub incidents: IncidentHandle,
    /// Where committed inventory and patch levels go to update asset records.
    pub assets: AssetHandle,
    /// Where committed samples go for remote_write export.
    pub export: ExportHandle,
    /// Ends every open stream when the collector shuts down.
    pub shutdown: CancellationToken,
    /// Signs agent certificates; `None` when the collector has no CA key
    /// (then only shared tokens and existing certificates work).
    pub authority: Option<Arc<CertificateAuthority>>,
    /// Enrollment and renewal attempts per source address.
    pub enroll_limiter: Arc<SourceRateLimiter>,
}

/// The gRPC services and the task that applies revocations.
pub struct IngestParts {
    pub ingest: IngestServer<IngestHandler>,
    pub enrollment: Option<EnrollmentServer<EnrollmentHandler>>,
    pub revocations: RevocationWatcher,
}

impl IngestService {
    pub fn into_parts(self) -> IngestParts {
        let max_message_bytes = self.limits.max_message_bytes;
        let streams = Arc::new(StreamTable::default());
        let throttle = Arc::new(LogThrottle::default());
        let revocations = RevocationWatcher {
            store: Arc::clone(&self.store),
            streams: Arc::clone(&streams),
            assets: self.assets.clone(),
            telemetry: Arc::clone(&self.telemetry),
        };
        let enrollment = self.authority.clone().map(|authority| {
            EnrollmentServer::new(EnrollmentHandler {
                authority,
                store: Arc::clone(&self.store),
                telemetry: Arc::clone(&self.telemetry),
                limiter: Arc::clone(&self.enroll_limiter),
                throttle: Arc::clone(&throttle),
            })
            .max_decoding_message_size(64 << 10)
        });
        let handler = IngestHandler {
            pending_hellos: Arc::new(Semaphore::new(self.limits.grpc.max_pending_hellos)),
            streams,
            throttle,
            limits: Arc::new(self.limits.clone()),
            service: self,
        };
        let ingest = IngestServer::new(handler)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(1 << 20);
        IngestParts {
            ingest,
            enrollment,
            revocations,
        }
    }
}

/// The service with the state its limits need.
pub struct IngestHandler {
    service: IngestService,
    limits: Arc<IngestLimits>,
    /// One permit per stream still waiting for its hello.
    pending_hellos: Arc<Semaphore>,
    /// The one open stream of each agent id.
    streams: Arc<StreamTable>,
    throttle: Arc<LogThrottle>,
}

impl IngestHandler {
    fn reject_protocol(&self, message: &'static str) -> Status {
        Telemetry::add(&self.service.telemetry.streams_rejected_protocol, 1);
        Status::invalid_argument(message)
    }

    /// Whether a line about `kind` for `subject` may be logged now.
    fn may_log(&self, kind: &'static str, subject: &str) -> Option<u64> {
        self.throttle.allow(kind, subject)
    }
}

/// The address part of a peer, so every port of one host shares a log budget.
fn peer_host(peer: &str) -> &str {
    peer.rsplit_once(':').map_or(peer, |(host, _)| host)
}

type OutboundStream = Pin<Box<dyn Stream<Item = Result<pb::CollectorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Ingest for IngestHandler {
    type StreamStream = OutboundStream;

    async fn stream(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let service = &self.service;
        let telemetry = &service.telemetry;
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |address| address.to_string());
        let host = peer_host(&peer);
        // The client certificate, verified against the CA by the TLS layer.
        let certificate = request
            .peer_certs()
            .and_then(|certificates| certificates.first().map(|der| der.to_vec()));
        // Held until the hello is checked: bounds the streams anyone can
        // hold open without a token.
        let awaiting_hello = match Arc::clone(&self.pending_hellos).try_acquire_owned() {
            Ok(permit) => (permit, telemetry.hold(|t| &t.streams_awaiting_hello)),
            Err(_) => {
                Telemetry::add(&telemetry.streams_refused_pending_hellos, 1);
                if let Some(held_back) = self.may_log("pending-hellos", "") {
                    tracing::warn!(
                        message = "Refused agent stream: too many streams are waiting for their hello.",
                        %peer,
                        limit = self.limits.grpc.max_pending_hellos,
                        held_back,
                    );
                }
                return Err(Status::resource_exhausted(
                    "too many streams are waiting for their hello; retry later",
                ));
            }
        };
        let mut inbound = request.into_inner();
        let hello_timeout = self.limits.grpc.hello_timeout;
        let first = match tokio::time::timeout(hello_timeout, inbound.message()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => return Err(self.reject_protocol("stream closed before hello")),
            Ok(Err(status)) => {
                Telemetry::add(&telemetry.streams_rejected_protocol, 1);
                if let Some(held_back) = self.may_log("unreadable-hello", host) {
                    tracing::warn!(message = "Rejected agent stream: unreadable first message.", %peer, error = %status.message(), held_back);
                }
                return Err(status);
            }
            Err(_) => {
                Telemetry::add(&telemetry.streams_hello_timeout, 1);
                if let Some(held_back) = self.may_log("hello-timeout", host) {
                    tracing::warn!(message = "Closed agent stream: no hello in time.", %peer, timeout = ?hello_timeout, held_back);
                }
                return Err(Status::deadline_exceeded(format!(
                    "no hello within {hello_timeout:?}"
                )));
            }
        };
        let Some(pb::agent_message::Kind::Hello(hello)) = first.kind else {
            if let Some(held_back) = self.may_log("not-hello", host) {
                tracing::warn!(message = "Rejected agent stream: first message was not a hello.", %peer, held_back);
            }
            return Err(self.reject_protocol("the first message must be a hello"));
        };
        let hello = validate::clean_hello(hello);
        if let Some(certificate) = &certificate {
            self.check_certificate(certificate, &hello.agent_id, &peer)
                .await?;
        } else if !service.auth.is_valid(&hello.token) {
            Telemetry::add(&telemetry.agents_rejected_auth, 1);
            if let Some(held_back) = self.may_log("auth", host) {
                tracing::warn!(
                    message = "Rejected agent: missing or invalid token.",
                    %peer,
                    // Not yet checked for control characters: refused below if it has any.
                    agent_id = %steward_core::text::strip_control(truncate(&hello.agent_id, MAX_AGENT_ID)),
                    hostname = %truncate(&hello.hostname, MAX_HOSTNAME),
                    held_back,
                );
            }
            return Err(Status::unauthenticated("invalid agent token"));
        }
        // The id is an identity, so it is refused rather than cleaned: two
        // agents must not become one by losing a control character.
        if let Err(problem) = check_hello_identity(&hello) {
            if let Some(held_back) = self.may_log("agent-id", host) {
                tracing::warn!(message = "Rejected agent stream: bad agent id or hostname.", %peer, held_back);
            }
            return Err(self.reject_protocol(problem));
        }
        if certificate.is_none() {
            self.check_unbound(&hello.agent_id, &peer).await?;
        }
        drop(awaiting_hello);
        let max_agents = self.limits.max_agents;
        if !service.registry.is_connected(&hello.agent_id)
            && service.registry.connected_count() >= max_agents
        {
            Telemetry::add(&telemetry.streams_refused_agent_limit, 1);
            if let Some(held_back) = self.may_log("agent-limit", "") {
                tracing::warn!(message = "Refused agent stream: limits.max_agents agents are connected.", %peer, agent_id = %hello.agent_id, limit = max_agents, held_back);
            }
            return Err(Status::resource_exhausted(
                "the collector's agent limit is reached",
            ));
        }
        let (hello, trimmed) = inventory::bound_hello(hello, &self.limits.inventory);
        if !trimmed.is_empty() {
            Telemetry::add(&telemetry.inventory_items_dropped, trimmed.dropped);
            Telemetry::add(&telemetry.agent_strings_truncated, trimmed.truncated);
            if let Some(held_back) = self.may_log("hello-limits", &hello.agent_id) {
                tracing::warn!(
                    message = "Cut an agent's hello to its limits (agent version, facts).",
                    agent_id = %hello.agent_id,
                    dropped = trimmed.dropped,
                    truncated = trimmed.truncated,
                    held_back,
                );
            }
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
        service.store.record_hello(record).await.map_err(internal)?;
        let committed_seq = service
            .store
            .committed_seq(&hello.agent_id, hello.epoch)
            .await
            .map_err(internal)?;
        let packages_fingerprint = service
            .store
            .packages_fingerprint(&hello.agent_id)
            .await
            .map_err(internal)?;

        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let welcome = pb::CollectorMessage {
            kind: Some(pb::collector_message::Kind::Welcome(pb::Welcome {
                committed_seq,
                collector_version: crate::VERSION.to_string(),
                packages_fingerprint,
            })),
        };
        // The channel is new with room for 32, so this cannot fail.
        let _ = outbound.try_send(Box::new(Ok(welcome)));

        service
            .incidents
            .send(RulesInput::Hello {
                agent_id: hello.agent_id.clone(),
                hostname: hello.hostname.clone(),
            })
            .await;
        let session = service.registry.connected(&hello.agent_id);
        // Not a child of `shutdown`: a stream ended by shutdown must not be
        // told it was replaced.
        let end = StreamEnd::default();
        if self.streams.open(&hello.agent_id, session, end.clone()) {
            Telemetry::add(&telemetry.streams_replaced, 1);
            if let Some(held_back) = self.may_log("replaced", &hello.agent_id) {
                tracing::warn!(
                    message = "A new stream replaced this agent's open stream (a reconnect, or two hosts with one agent id).",
                    %peer,
                    agent_id = %hello.agent_id,
                    held_back,
                );
            }
        }
        // A revocation committed between the check above and `open` would
        // be missed by the watcher (it may have looked already): look again.
        if certificate.is_some()
            && let Ok(Some(binding)) = service.store.identity_binding(&hello.agent_id).await
            && binding.revoked
        {
            self.streams.revoke(&hello.agent_id);
        }
        telemetry.agents_connected.store(
            service.registry.connected_count() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        tracing::info!(
            message = "Agent connected.",
            mtls = certificate.is_some(),
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
            store: Arc::clone(&service.store),
            telemetry: Arc::clone(telemetry),
            incidents: service.incidents.clone(),
            assets: service.assets.clone(),
            export: service.export.clone(),
            host: Arc::from(hello.hostname.as_str()),
            limits: Arc::clone(&self.limits),
            series: None,
            throttle: Arc::clone(&self.throttle),
        };
        let registry = Arc::clone(&service.registry);
        let streams = Arc::clone(&self.streams);
        let telemetry = Arc::clone(telemetry);
        let shutdown = service.shutdown.clone();
        let span = tracing::info_span!("agent_stream", agent_id = %hello.agent_id, %peer);
        tokio::spawn(
            async move {
                stream.run(inbound, outbound, shutdown, end).await;
                streams.close(&hello.agent_id, session);
                registry.disconnected(&hello.agent_id, session);
                telemetry.agents_connected.store(
                    registry.connected_count() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                tracing::info!(message = "Agent disconnected.");
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(
            ReceiverStream::new(outbound_rx).map(|message| *message),
        )))
    }
}

impl IngestHandler {
    /// A certificate-bound stream: the hello must claim the certificate's
    /// agent id (else PERMISSION_DENIED), and the certificate must be a
    /// current one of a live enrollment (else UNAUTHENTICATED).
    async fn check_certificate(
        &self,
        certificate: &[u8],
        claimed: &str,
        peer: &str,
    ) -> Result<(), Status> {
        let telemetry = &self.service.telemetry;
        let bound = agent_id_of(certificate).unwrap_or_default();
        if bound != claimed {
            Telemetry::add(&telemetry.agents_refused_identity, 1);
            if let Some(held_back) = self.may_log("identity", peer_host(peer)) {
                tracing::warn!(
                    message = "Refused agent stream: its certificate is for another agent id.",
                    %peer,
                    certificate_agent_id = %bound,
                    claimed_agent_id = %steward_core::text::strip_control(truncate(claimed, MAX_AGENT_ID)),
                    held_back,
                );
            }
            return Err(Status::permission_denied(
                "the client certificate is for another agent id",
            ));
        }
        let binding = self
            .service
            .store
            .identity_binding(&bound)
            .await
            .map_err(internal)?;
        let fingerprint = sha256_hex(certificate);
        let current = binding
            .is_some_and(|binding| !binding.revoked && binding.certificates.contains(&fingerprint));
        if !current {
            Telemetry::add(&telemetry.agents_refused_revoked, 1);
            if let Some(held_back) = self.may_log("revoked", &bound) {
                tracing::warn!(message = "Refused agent stream: its certificate was revoked or superseded.", %peer, agent_id = %bound, held_back);
            }
            return Err(Status::unauthenticated(
                "this agent's certificate was revoked; enroll again",
            ));
        }
        Ok(())
    }

    /// A shared-token stream may not claim an agent id bound to certificates.
    async fn check_unbound(&self, claimed: &str, peer: &str) -> Result<(), Status> {
        let binding = self
            .service
            .store
            .identity_binding(claimed)
            .await
            .map_err(internal)?;
        if binding.is_none() {
            return Ok(());
        }
        Telemetry::add(&self.service.telemetry.agents_refused_identity, 1);
        if let Some(held_back) = self.may_log("identity", peer_host(peer)) {
            tracing::warn!(
                message = "Refused agent stream: a shared token claimed a certificate-bound agent id.",
                %peer,
                agent_id = %claimed,
                held_back,
            );
        }
        Err(Status::permission_denied(
            "this agent id is bound to a client certificate; connect with it",
        ))
    }
}

/// An agent id is an identity, so it is refused rather than cleaned.
fn check_agent_id(agent_id: &str) -> Result<(), &'static str> {
    if agent_id.is_empty()
        || agent_id.len() > MAX_AGENT_ID
        || agent_id.chars().any(char::is_control)
    {
        return Err("bad agent id");
    }
    Ok(())
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
/// Limits are the defaults of `[limits]`. For the fuzz targets in `fuzz/` (which must not see proto types); not
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
        Some(pb::agent_message::Kind::Batch(batch)) => {
            let limits = SampleLimits::default();
            batch
                .samples
                .into_iter()
                .filter_map(|sample| validate::to_record(sample, now_ms, &limits).ok())
                .count()
        }
        Some(pb::agent_message::Kind::Inventory(update)) => {
            let (record, _trimmed) =
                inventory::to_record("fuzz", 1, now_ms, update, &InventoryLimits::default());
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
    export: ExportHandle,
    /// The hostname of the hello, labelling exported series.
    host: Arc<str>,
    limits: Arc<IngestLimits>,
    /// The agent's series, loaded from the store at its first batch.
    series: Option<SeriesBudget>,
    throttle: Arc<LogThrottle>,
}

/// Replies waiting for the agent to read them: the welcome, then one ack per
/// batch (the agent's window bounds them). Boxed because the channel
/// allocates its slots 32 at a time whatever its capacity, and one per
/// connected agent adds up: 32 pointers instead of 32 messages.
type Outbound = mpsc::Sender<Box<Result<pb::CollectorMessage, Status>>>;
const OUTBOUND_CAPACITY: usize = 32;

impl AgentStream {
    async fn run(
        mut self,
        mut inbound: Streaming<pb::AgentMessage>,
        outbound: Outbound,
        shutdown: CancellationToken,
        end: StreamEnd,
    ) {
        loop {
            // Shutdown and replacement are checked only between messages, so
            // a batch being committed is always finished and acknowledged first.
            let message = tokio::select! {
                message = inbound.message() => message,
                _ = shutdown.cancelled() => return,
                _ = end.ended() => {
                    let status = if end.revoked() {
                        Status::unauthenticated("this agent's certificate was revoked")
                    } else {
                        Status::aborted("a newer stream with this agent id replaced this one")
                    };
                    // try_send: a peer that reads nothing must not keep this task.
                    let _ = outbound.try_send(Box::new(Err(status)));
                    return;
                }
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
            // The handlers' futures are boxed: the task of an idle agent
            // (almost all of them, almost always) then holds only the small
            // state of this loop, not the largest state of a batch commit.
            let reply = match message.kind {
                Some(pb::agent_message::Kind::Batch(batch)) => {
                    Box::pin(self.handle_batch(batch)).await
                }
                Some(pb::agent_message::Kind::Inventory(update)) => {
                    Box::pin(self.handle_inventory(update)).await
                }
                Some(pb::agent_message::Kind::Hello(_)) => {
                    Err(Status::invalid_argument("hello sent twice"))
                }
                // Kinds reserved for later work are accepted and ignored for now.
                Some(_) | None => continue,
            };
            match reply {
                Ok(ack) => {
                    if outbound.send(Box::new(Ok(ack))).await.is_err() {
                        return;
                    }
                }
                Err(status) => {
                    if status.code() == tonic::Code::InvalidArgument {
                        Telemetry::add(&self.telemetry.streams_rejected_protocol, 1);
                    }
                    tracing::warn!(message = "Ending agent stream.", code = ?status.code(), error = %status.message());
                    let _ = outbound.send(Box::new(Err(status))).await;
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
        let mut received = batch.samples;
        let max_samples = self.limits.max_samples_per_batch;
        let over_batch_limit = received.len().saturating_sub(max_samples);
        received.truncate(max_samples);
        let mut samples = Vec::with_capacity(received.len());
        let mut refused = Refused {
            batch_limit: over_batch_limit as u64,
            ..Refused::default()
        };
        let now = steward_core::now_ms();
        let limits = Arc::clone(&self.limits);
        let series = self.series_budget();
        for sample in received {
            match validate::to_record(sample, now, &limits.samples) {
                Ok(record) if series.admit(&record.metric, &record.labels) => samples.push(record),
                Ok(_) => refused.series_limit += 1,
                Err(problem) if problem.is_limit() => refused.labels += 1,
                Err(problem) => {
                    refused.invalid += 1;
                    tracing::debug!(message = "Dropped an invalid sample.", %problem, seq = batch.seq);
                }
            }
        }
        let series_held = series.held();
        self.count_refused(refused, series_held);
        let rule_metrics = self.incidents.rule_metrics();
        let for_rules: Vec<_> = samples
            .iter()
            .filter(|sample| rule_metrics.contains(&sample.metric))
            .map(|sample| (sample.metric.clone(), sample.labels.clone(), sample.value))
            .collect();
        let patch: Vec<(String, f64)> = samples
            .iter()
            .filter(|sample| sample.metric.starts_with("patch."))
            .map(|sample| (sample.metric.clone(), sample.value))
            .collect();
        let exported = self.export.wants_samples().then(|| samples.clone());
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
                // Export, like rules, sees only committed samples.
                if let Some(samples) = exported {
                    self.export.offer(&self.agent_id, &self.host, samples);
                }
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
        Ok(ack_with_refusals(batch.seq, refused, &self.limits))
    }
}

/// Samples of one batch that were not stored, by reason.
#[derive(Debug, Default, Clone, Copy)]
struct Refused {
    batch_limit: u64,
    series_limit: u64,
    labels: u64,
    invalid: u64,
}

impl AgentStream {
    /// The agent's series budget, seeded from the store on first use.
    fn series_budget(&mut self) -> &mut SeriesBudget {
        let (store, agent_id, max) = (
            &self.store,
            &self.agent_id,
            self.limits.max_series_per_agent,
        );
        self.series.get_or_insert_with(|| {
            let held = store.latest(Some(agent_id));
            SeriesBudget::new(
                held.iter()
                    .map(|(key, _)| (key.metric.as_str(), &key.labels)),
                max,
            )
        })
    }

    fn count_refused(&self, refused: Refused, series_held: usize) {
        let telemetry = &self.telemetry;
        Telemetry::add(&telemetry.samples_rejected, refused.invalid);
        Telemetry::add(&telemetry.samples_refused_batch_limit, refused.batch_limit);
        Telemetry::add(
            &telemetry.samples_refused_series_limit,
            refused.series_limit,
        );
        Telemetry::add(&telemetry.samples_refused_labels, refused.labels);
        if refused.batch_limit + refused.series_limit + refused.labels == 0 {
            return;
        }
        if let Some(held_back) = self.throttle.allow("sample-limits", &self.agent_id) {
            tracing::warn!(
                message = "Refused samples over limits; the rest of the batch is stored.",
                over_batch_limit = refused.batch_limit,
                new_series_over_limit = refused.series_limit,
                over_label_limits = refused.labels,
                series_held,
                max_series_per_agent = self.limits.max_series_per_agent,
                max_samples_per_batch = self.limits.max_samples_per_batch,
                held_back,
            );
        }
    }

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
        let limits = &self.limits.inventory;
        let (mut record, mut trimmed) = inventory::to_record(
            &self.agent_id,
            self.epoch,
            steward_core::now_ms(),
            update,
            limits,
        );
        // A diff adds to what is stored: bound the total, not only this message.
        let adds_facts = !record.full && !record.facts_changed.is_empty();
        let adds_packages = !record.packages_replaced && !record.packages_upserted.is_empty();
        if adds_facts || adds_packages {
            let stored = self.store.inventory(&self.agent_id).await.map_err(|error| {
                tracing::error!(message = "Cannot read the stored inventory; the agent will resend the update.", %error, seq);
                Status::unavailable("cannot store the inventory now")
            })?;
            if let Some(stored) = stored {
                if inventory::diff_may_exceed_facts(&record, &stored, limits) {
                    inventory::cap_new_facts(&mut record, &stored.facts, limits, &mut trimmed);
                }
                if inventory::diff_may_exceed_packages(&record, stored.package_count, limits) {
                    let packages = self.store.packages(&self.agent_id).await.map_err(|error| {
                        tracing::error!(message = "Cannot read the stored packages; the agent will resend the update.", %error, seq);
                        Status::unavailable("cannot store the inventory now")
                    })?;
                    inventory::cap_new_packages(&mut record, &packages, limits, &mut trimmed);
                }
            }
        }
        if !trimmed.is_empty() {
            Telemetry::add(&self.telemetry.inventory_items_dropped, trimmed.dropped);
            Telemetry::add(&self.telemetry.agent_strings_truncated, trimmed.truncated);
            if let Some(held_back) = self.throttle.allow("inventory-limits", &self.agent_id) {
                tracing::warn!(
                    message = "Cut an inventory update to its limits.",
                    seq,
                    dropped = trimmed.dropped,
                    truncated = trimmed.truncated,
                    held_back,
                );
            }
        }
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
        kind: Some(pb::collector_message::Kind::Ack(pb::Ack {
            committed_seq,
            ..pb::Ack::default()
        })),
    }
}

/// The ack of a stored batch, saying how many of its samples were refused and why.
fn ack_with_refusals(
    committed_seq: u64,
    refused: Refused,
    limits: &IngestLimits,
) -> pb::CollectorMessage {
    let mut reasons = Vec::new();
    if refused.batch_limit > 0 {
        reasons.push(format!(
            "{} over limits.max_samples_per_batch ({})",
            refused.batch_limit, limits.max_samples_per_batch
        ));
    }
    if refused.series_limit > 0 {
        reasons.push(format!(
            "{} of new series over limits.max_series_per_agent ({})",
            refused.series_limit, limits.max_series_per_agent
        ));
    }
    if refused.labels > 0 {
        reasons.push(format!("{} over the label limits", refused.labels));
    }
    if refused.invalid > 0 {
        reasons.push(format!("{} invalid (name or value)", refused.invalid));
    }
    pb::CollectorMessage {
        kind: Some(pb::collector_message::Kind::Ack(pb::Ack {
            committed_seq,
            refused_samples: refused.batch_limit
                + refused.series_limit
                + refused.labels
                + refused.invalid,
            refused_reason: reasons.join("; "),
        })),
    }
}
