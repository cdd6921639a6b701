//! Breach-to-webhook latency: a series breaches a rule, the collector opens
//! an incident, journals it, queues it in the outbox and POSTs it to a
//! webhook receiver on loopback. We time from handing the breaching batch to
//! gRPC until the receiver has read the request. Between rounds the value
//! clears (the incident resolves), so each round opens a fresh incident.
//!
//! Run: `cargo bench -p steward-collector --bench webhook_latency`
//! Env: `ROUNDS` (default 30).

use std::time::{Duration, Instant};

use steward_collector::setup::init::{InitOptions, init};
use steward_proto::v1 as pb;
use steward_proto::v1::ingest_client::IngestClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

fn batch(seq: u64, value: f64) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Batch(pb::SampleBatch {
            seq,
            samples: vec![pb::Sample {
                metric: "bench.value".into(),
                labels: vec![],
                value,
                timestamp_ms: steward_agent::now_ms(),
            }],
        })),
    }
}

/// Accepts webhook POSTs; sends the instant each `opened` event was fully read.
async fn receiver(
    listener: tokio::net::TcpListener,
    arrivals: tokio::sync::mpsc::UnboundedSender<Instant>,
) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let Ok(read) = stream.read(&mut chunk).await else {
                    return;
                };
                if read == 0 {
                    return;
                }
                buffer.extend_from_slice(&chunk[..read]);
                let text = String::from_utf8_lossy(&buffer);
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buffer.len() >= head_end + 4 + length {
                        if text.contains("\"event\":\"opened\"") {
                            let _ = arrivals.send(Instant::now());
                        }
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                        return;
                    }
                }
            }
        });
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    steward_agent::install_crypto_provider();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = listener.local_addr()?;
    let (arrivals_tx, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(receiver(listener, arrivals_tx));

    let dir = tempfile::tempdir()?;
    init(&InitOptions {
        dir: dir.path().to_path_buf(),
        grpc_listen: "127.0.0.1:0".parse()?,
        http_listen: "127.0.0.1:0".parse()?,
        force: false,
    })?;
    let path = dir.path().join("collector.toml");
    let text = std::fs::read_to_string(&path)?.replace("include = [\"default-rules.toml\"]\n", "");
    std::fs::write(
        &path,
        format!(
            "{text}\n[[rule]]\nname = \"bench\"\nmetric = \"bench.value\"\nop = \">\"\nthreshold = 50\nseverity = \"critical\"\n\n[[channel]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://{hook}/hook\"\n"
        ),
    )?;
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
    let (sender, receiver_rx) = tokio::sync::mpsc::channel(4);
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
        .stream(tokio_stream::wrappers::ReceiverStream::new(receiver_rx))
        .await?
        .into_inner();
    inbound.next().await.ok_or("no welcome")??;

    let mut latencies = Vec::with_capacity(rounds);
    let mut seq = 0;
    for _ in 0..rounds {
        seq += 1;
        sender.send(batch(seq, 0.0)).await?;
        inbound.next().await.ok_or("no ack")??;
        // No wait needed: rules see samples in order, so the clear resolves
        // the previous incident before this breach opens the next one.
        seq += 1;
        let sent = Instant::now();
        sender.send(batch(seq, 99.0)).await?;
        let arrived = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
            .await?
            .ok_or("receiver stopped")?;
        latencies.push(arrived - sent);
        inbound.next().await.ok_or("no ack")??;
    }
    latencies.sort();
    println!(
        "breach-to-webhook latency over {rounds} incidents: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
    );
    drop(sender);
    shutdown.cancel();
    collector.wait().await?;
    Ok(())
}
