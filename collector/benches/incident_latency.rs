//! Breach-to-incident latency: one agent stream sends a batch in which N
//! series breach a rule at once; we time, per series, from handing the batch
//! to gRPC until the incident's "opened" event (emitted after the incident is
//! committed to SQLite). Real collector (in-process), real TLS, real SQLite.
//!
//! Run: `cargo bench -p steward-collector --bench incident_latency`
//! Env: `SERIES` (default 1000), `ROUNDS` (default 5).

mod common;

use std::ops::Not;
use std::time::{Duration, Instant};

use common::{BenchResult, batch, percentile};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> BenchResult<()> {
    let series = env("SERIES", 1000);
    let rounds = env("ROUNDS", 5);
    let mut bench = common::start(
        "[[rule]]\nname = \"bench\"\nmetric = \"bench.value\"\nop = \">\"\nthreshold = 50\nseverity = \"major\"\n",
    )
    .await?;
    let mut events = bench.collector.incidents.subscribe();
    let mut seq = 0;
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    println!("breach-to-incident latency, {series} series breaching at once, {rounds} rounds");
    for round in 1..=rounds {
        // Below the threshold first, so each round starts with no open incident.
        seq += 1;
        bench.send(batch(seq, series, 0.0)).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let open = || steward_collector::store::IncidentFilter {
            state: Some(steward_collector::domain::IncidentState::Open),
            limit: 1,
            ..Default::default()
        };
        while bench
            .collector
            .store
            .incidents(open())
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
        bench.sender.send(batch(seq, series, 99.0)).await?;
        let mut latencies = Vec::with_capacity(series);
        while latencies.len() < series {
            let event = tokio::time::timeout(Duration::from_secs(60), events.recv()).await??;
            if event.event == steward_collector::domain::IncidentEvent::Opened {
                latencies.push(sent.elapsed());
            }
        }
        tokio_stream::StreamExt::next(&mut bench.inbound)
            .await
            .ok_or("no ack")??;
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
    bench.stop().await
}
