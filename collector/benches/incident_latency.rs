//! Breach-to-incident latency: one agent stream sends a batch in which N
//! series breach a rule at once; we time, per series, from handing the batch
//! to gRPC until the incident's "opened" event (emitted after the incident is
//! committed to SQLite). Real collector (in-process), real TLS, real SQLite.
//!
//! Run: `cargo bench -p steward-collector --bench incident_latency`
//! Env: `SERIES` (default 1000), `ROUNDS` (default 5).

use std::ops::Not;
use std::time::{Duration, Instant};

use steward_collector::setup::init::{InitOptions, init};
use steward_proto::v1 as pb;
use steward_proto::v1::ingest_client::IngestClient;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn batch(seq: u64, series: usize, value: f64) -> pb::AgentMessage {
    let now = steward_agent::now_ms();
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    steward_agent::install_crypto_provider();
    let series = env("SERIES", 1000);
    let rounds = env("ROUNDS", 5);
    let dir = tempfile::tempdir()?;
    let options = InitOptions {
        dir: dir.path().to_path_buf(),
        grpc_listen: "127.0.0.1:0".parse()?,
        http_listen: "127.0.0.1:0".parse()?,
        force: false,
    };
    init(&options)?;
    let config_path = dir.path().join("collector.toml");
    let text =
        std::fs::read_to_string(&config_path)?.replace("include = [\"default-rules.toml\"]\n", "");
    std::fs::write(
        &config_path,
        format!(
            "{text}\n[[rule]]\nname = \"bench\"\nmetric = \"bench.value\"\nop = \">\"\nthreshold = 50\nseverity = \"major\"\n"
        ),
    )?;
    let config = steward_collector::CollectorConfig::load(&config_path)?;
    let token = config.agent_tokens[0].clone();
    let shutdown = CancellationToken::new();
    let collector = steward_collector::start(config, shutdown.clone()).await?;
    let mut events = collector.incidents.subscribe();

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
    let mut client = IngestClient::new(channel).max_encoding_message_size(64 << 20);
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
    let mut inbound = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await?
        .into_inner();
    inbound.next().await.ok_or("no welcome")??;

    let mut seq = 0;
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    println!("breach-to-incident latency, {series} series breaching at once, {rounds} rounds");
    for round in 1..=rounds {
        // Below the threshold first, so each round starts with no open incident.
        seq += 1;
        sender.send(batch(seq, series, 0.0)).await?;
        inbound.next().await.ok_or("no ack")??;
        let deadline = Instant::now() + Duration::from_secs(60);
        while collector
            .store
            .incidents(steward_collector::store::IncidentFilter {
                state: Some("open".into()),
                limit: 1,
                ..Default::default()
            })
            .await?
            .is_empty()
            .not()
        {
            if Instant::now() > deadline {
                return Err("incidents did not resolve".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while events.try_recv().is_ok() {}

        seq += 1;
        let sent = Instant::now();
        sender.send(batch(seq, series, 99.0)).await?;
        let mut latencies = Vec::with_capacity(series);
        while latencies.len() < series {
            let event = tokio::time::timeout(Duration::from_secs(60), events.recv()).await??;
            if event.kind == "opened" {
                latencies.push(sent.elapsed());
            }
        }
        inbound.next().await.ok_or("no ack")??;
        latencies.sort();
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        println!(
            "round {round}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            latencies[latencies.len() - 1].as_secs_f64() * 1e3
        );
        p50s.push(p50);
        p99s.push(p99);
    }
    p50s.sort();
    p99s.sort();
    println!(
        "median over rounds: p50 {:.1} ms, p99 {:.1} ms (target: p99 < 100 ms)",
        percentile(&p50s, 0.5).as_secs_f64() * 1e3,
        percentile(&p99s, 0.5).as_secs_f64() * 1e3
    );
    drop(sender);
    shutdown.cancel();
    collector.wait().await?;
    Ok(())
}
