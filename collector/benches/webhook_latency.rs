//! Breach-to-webhook latency: a series breaches a rule, the collector opens
//! an incident, journals it, queues it in the outbox and POSTs it to a
//! webhook receiver on loopback. We time from handing the breaching batch to
//! gRPC until the receiver has read the request. Between rounds the value
//! clears (the incident resolves), so each round opens a fresh incident.
//!
//! Run: `cargo bench -p steward-collector --bench webhook_latency`
//! Env: `ROUNDS` (default 30).

mod common;

use std::time::{Duration, Instant};

use common::{BenchResult, batch, percentile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> BenchResult<()> {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = listener.local_addr()?;
    let (arrivals_tx, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(receiver(listener, arrivals_tx));
    let mut bench = common::start(&format!(
        "[[rule]]\nname = \"bench\"\nmetric = \"bench.value\"\nop = \">\"\nthreshold = 50\nseverity = \"critical\"\n\n[[channel]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://{hook}/hook\"\n"
    ))
    .await?;
    let mut latencies = Vec::with_capacity(rounds);
    let mut seq = 0;
    for _ in 0..rounds {
        seq += 1;
        // No wait needed: rules see samples in order, so the clear resolves
        // the previous incident before this breach opens the next one.
        bench.send(batch(seq, 1, 0.0)).await?;
        seq += 1;
        let sent = Instant::now();
        bench.sender.send(batch(seq, 1, 99.0)).await?;
        let arrived = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
            .await?
            .ok_or("receiver stopped")?;
        latencies.push(arrived - sent);
        tokio_stream::StreamExt::next(&mut bench.inbound)
            .await
            .ok_or("no ack")??;
    }
    latencies.sort();
    println!(
        "breach-to-webhook latency over {rounds} incidents: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
    );
    bench.stop().await
}
