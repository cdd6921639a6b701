//! The fleet section of `/metrics` (`[server] fleet_metrics = true`) for a
//! large fleet: 10,000 agents × 50 series = 500,000 series rendered into
//! Prometheus text (names and labels mapped, labels escaped, families
//! grouped). Only rendering is measured: `Store::latest` is a copy of the
//! in-memory map, and host names come from a cache.
//!
//! `cargo bench -p steward-collector --no-default-features --bench fleet_metrics`
//! (`-- --test` runs it once).

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use steward_collector::api::fleet_metrics::render;
use steward_collector::store::{LatestValue, SeriesKey};

const AGENTS: usize = 10_000;
const BASE_MS: i64 = 1_764_000_000_000;

/// 50 series an agent typically has: CPU total and 8 cores, memory, load,
/// 4 disks × 4 metrics, 3 interfaces × 6 counters, 2 port checks.
fn agent_series(agent: &str, seed: usize) -> Vec<(SeriesKey, LatestValue)> {
    let mut series = Vec::with_capacity(50);
    let mut push = |metric: &str, labels: &[(&str, String)]| {
        series.push((
            SeriesKey {
                agent_id: agent.to_string(),
                metric: metric.to_string(),
                labels: labels
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.clone()))
                    .collect(),
            },
            LatestValue {
                value: (seed * 7 + series.len()) as f64 * 0.37,
                timestamp_ms: BASE_MS + seed as i64,
            },
        ));
    };
    push("cpu.usage_percent", &[("cpu", "total".into())]);
    for core in 0..8 {
        push("cpu.usage_percent", &[("cpu", core.to_string())]);
    }
    for metric in [
        "mem.used_percent",
        "mem.used_bytes",
        "load.1m",
        "load.5m",
        "load.15m",
    ] {
        push(metric, &[]);
    }
    for mount in ["/", "/var", "/home", "/srv"] {
        for metric in [
            "disk.used_percent",
            "disk.used_bytes",
            "disk.free_bytes",
            "disk.inodes_used_percent",
        ] {
            push(
                metric,
                &[
                    ("mount", mount.into()),
                    ("device", format!("/dev/sd{}", &mount.len())),
                ],
            );
        }
    }
    for iface in ["eth0", "eth1", "bond0"] {
        for metric in [
            "net.rx_bytes",
            "net.tx_bytes",
            "net.rx_packets",
            "net.tx_packets",
            "net.rx_errors",
            "net.tx_errors",
        ] {
            push(metric, &[("iface", iface.into())]);
        }
    }
    push(
        "port.up",
        &[
            ("target", "127.0.0.1:443".into()),
            ("name", "https \"main\"".into()),
        ],
    );
    push(
        "port.connect_ms",
        &[
            ("target", "127.0.0.1:443".into()),
            ("name", "https \"main\"".into()),
        ],
    );
    series
}

fn fleet_metrics(c: &mut Criterion) {
    let mut latest = Vec::with_capacity(AGENTS * 50);
    let mut hosts = HashMap::with_capacity(AGENTS);
    for index in 0..AGENTS {
        let agent = format!(
            "{:08x}-0000-4000-8000-{index:012x}",
            index * 2654435761 % (1 << 32)
        );
        hosts.insert(agent.clone(), format!("host-{index:05}.example.net"));
        latest.extend(agent_series(&agent, index));
    }
    latest.sort_by(|a, b| a.0.cmp(&b.0));
    let reserved = HashSet::new();
    let mut body = String::new();
    render(&latest, &hosts, &reserved, &mut body);
    eprintln!(
        "fleet_metrics: {} series, body {:.1} MB",
        latest.len(),
        body.len() as f64 / 1e6
    );
    drop(body);
    let mut group = c.benchmark_group("fleet_metrics");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(latest.len() as u64));
    group.bench_function("render/500k_series", |bench| {
        bench.iter(|| {
            let mut body = String::new();
            render(black_box(&latest), &hosts, &reserved, &mut body);
            black_box(body.len())
        })
    });
    group.finish();
}

criterion_group!(benches, fleet_metrics);
criterion_main!(benches);
