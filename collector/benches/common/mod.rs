//! Shared set-up for the collector benchmarks: a real collector (in-process,
//! TLS, SQLite in a temp dir) and one raw agent stream that has said hello.

use std::time::Duration;

use steward_collector::RunningCollector;
use steward_collector::setup::init::{InitOptions, init};
use steward_proto::v1 as pb;
use steward_proto::v1::ingest_client::IngestClient;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

pub struct Bench {
    /// Keeps the data directory alive for the run.
    pub _dir: tempfile::TempDir,
    pub collector: RunningCollector,
    pub shutdown: CancellationToken,
    pub sender: tokio::sync::mpsc::Sender<pb::AgentMessage>,
    pub inbound: tonic::Streaming<pb::CollectorMessage>,
}

/// Starts a collector whose config is `init`'s without default rules, plus
/// `extra` (rules, channels), and opens an authenticated agent stream.
pub async fn start(extra: &str) -> BenchResult<Bench> {
    steward_core::tls::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    init(&InitOptions {
        dir: dir.path().to_path_buf(),
        grpc_listen: "127.0.0.1:0".parse()?,
        http_listen: "127.0.0.1:0".parse()?,
        force: false,
        state_dir: None,
        server_names: Vec::new(),
    })?;
    let path = dir.path().join("collector.toml");
    let text = std::fs::read_to_string(&path)?.replace("include = [\"default-rules.toml\"]\n", "");
    std::fs::write(&path, format!("{text}\n{extra}"))?;
    let config = steward_collector::CollectorConfig::load(&path)?;
    let token = config.agent_tokens[0].clone();
    let shutdown = CancellationToken::new();
    let collector = steward_collector::start(config, shutdown.clone()).await?;
    let ca = std::fs::read(dir.path().join("ca.pem"))?;
    let channel =
        Endpoint::from_shared(format!("https://127.0.0.1:{}", collector.grpc_addr.port()))?
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .domain_name("127.0.0.1"),
            )?
            .connect()
            .await?;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender
        .send(pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Hello(pb::Hello {
                agent_id: "bench-agent".into(),
                agent_version: "bench".into(),
                hostname: "bench".into(),
                token,
                epoch: 1,
                inventory: None,
            })),
        })
        .await?;
    let mut inbound = IngestClient::new(channel)
        .max_encoding_message_size(64 << 20)
        .stream(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await?
        .into_inner();
    inbound.next().await.ok_or("no welcome")??;
    Ok(Bench {
        _dir: dir,
        collector,
        shutdown,
        sender,
        inbound,
    })
}

impl Bench {
    /// Sends a batch and waits for its acknowledgement.
    pub async fn send(&mut self, batch: pb::AgentMessage) -> BenchResult<()> {
        self.sender.send(batch).await?;
        self.inbound.next().await.ok_or("no ack")??;
        Ok(())
    }

    pub async fn stop(self) -> BenchResult<()> {
        drop(self.sender);
        self.shutdown.cancel();
        self.collector.wait().await?;
        Ok(())
    }
}

/// A batch of `series` samples of `bench.value` (label `series` = index), all `value`.
pub fn batch(seq: u64, series: usize, value: f64) -> pb::AgentMessage {
    let now = steward_core::now_ms();
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Batch(pb::SampleBatch {
            seq,
            samples: (0..series)
                .map(|index| pb::Sample {
                    metric: "bench.value".into(),
                    labels: vec![pb::Label {
                        key: "series".into(),
                        value: index.to_string(),
                    }],
                    value,
                    timestamp_ms: now,
                })
                .collect(),
        })),
    }
}

/// The `p` quantile (0..=1) of sorted durations, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
