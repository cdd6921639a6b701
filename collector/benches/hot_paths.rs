//! Criterion micro-benchmarks of the collector's hot paths:
//! - `ingest/decode_append`: a pre-serialised `AgentMessage` batch (prost) is
//!   decoded, validated sample by sample as ingest does, and committed to the
//!   sample log of a temporary SQLite store (one commit per batch);
//! - `chunk/encode`, `chunk/decode`: Gorilla chunks of 120, 360 and 720 points
//!   (20 min, 1 h and 2 h at 10 s), to and from the stored blob;
//! - `rules/evaluate`: a batch of samples against a rule set of thresholds
//!   and an `absent` rule, as ingest calls the engine after each commit;
//! - `export/remote_write`: one full remote_write request (2,000 samples from
//!   batches of many agents) built and Snappy-compressed, as each
//!   `[[export.remote_write]]` endpoint does per request.
//!
//! `cargo bench -p steward-collector --no-default-features --bench hot_paths`
//! (`-- --quick` or `-- --test` for the seconds-long smoke run in
//! bench/run-smoke.sh).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use steward_collector::ingest::{SampleLimits, to_record};
use steward_collector::rules::{
    AbsentRule, Labels, Op, Rule, RuleEngine, RuleKind, Severity, ThresholdRule,
};
use steward_collector::store::{
    ChunkEncoder, SampleBatch, SampleRecord, Store, chunk_blob, decode_chunk_blob,
};
use steward_proto::v1 as pb;

const BASE_MS: i64 = 1_764_000_000_000;
/// Samples per agent batch: what one agent's 10 s round with a few disks,
/// interfaces, pings and port checks sends.
const BATCH_SAMPLES: usize = 60;

/// xorshift64*: deterministic values without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const METRICS: [&str; 6] = [
    "cpu.usage_percent",
    "mem.used_percent",
    "disk.used_percent",
    "net.rx_bytes",
    "load.1m",
    "ping.rtt_ms",
];

/// One agent batch as the agent's shipper puts it on the wire.
fn wire_batch(seq: u64, rng: &mut Rng) -> Vec<u8> {
    let timestamp_ms = BASE_MS + seq as i64 * 10_000;
    let samples = (0..BATCH_SAMPLES)
        .map(|index| pb::Sample {
            metric: METRICS[index % METRICS.len()].to_string(),
            labels: vec![pb::Label {
                key: "device".to_string(),
                value: format!("dev{}", index / METRICS.len()),
            }],
            value: (rng.unit() * 10_000.0).round() / 100.0,
            timestamp_ms,
        })
        .collect();
    let message = pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Batch(pb::SampleBatch {
            seq,
            samples,
        })),
    };
    message.encode_to_vec()
}

/// What ingest does with one received frame before the commit.
fn decode_batch(bytes: &[u8], seq: u64, limits: &SampleLimits) -> SampleBatch {
    let message = pb::AgentMessage::decode(bytes).expect("a valid frame");
    let Some(pb::agent_message::Kind::Batch(batch)) = message.kind else {
        panic!("not a batch");
    };
    let samples = batch
        .samples
        .into_iter()
        .filter_map(|sample| to_record(sample, BASE_MS + 86_400_000, limits).ok())
        .collect();
    SampleBatch {
        agent_id: "bench-agent".to_string(),
        epoch: 1,
        seq,
        received_ms: BASE_MS + seq as i64 * 10_000,
        samples,
    }
}

fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = Store::open(&dir.path().join("steward.db")).expect("store");
    let limits = SampleLimits::default();
    let mut rng = Rng(7);
    let frame = wire_batch(1, &mut rng);
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(BATCH_SAMPLES as u64));
    group.bench_function("decode", |b| {
        b.iter(|| decode_batch(black_box(&frame), 1, &limits));
    });
    // Every iteration is a new seq, so each one is a real commit, not a duplicate.
    let mut seq = 0;
    group.bench_function("decode_append", |b| {
        b.iter(|| {
            seq += 1;
            let batch = decode_batch(black_box(&frame), seq, &limits);
            runtime.block_on(store.commit_batch(batch)).expect("commit")
        });
    });
    group.finish();
}

/// A series as the head sees it: 10 s apart with a few ms of jitter,
/// a CPU-like percentage (noisy f32) or a load average (2 decimals).
fn points(count: usize, noisy: bool) -> Vec<(i64, f64)> {
    let mut rng = Rng(11);
    let mut value = 1.0;
    (0..count)
        .map(|step| {
            let timestamp_ms = BASE_MS + step as i64 * 10_000 + (rng.next() % 15) as i64;
            value = if noisy {
                f64::from((rng.unit() * 100.0) as f32)
            } else {
                ((value + (rng.unit() - 0.5) * 0.1_f64).abs() * 100.0).round() / 100.0
            };
            (timestamp_ms, value)
        })
        .collect()
}

fn encode(points: &[(i64, f64)]) -> Vec<u8> {
    let mut encoder = ChunkEncoder::default();
    for &(timestamp_ms, value) in points {
        encoder.push(timestamp_ms, value);
    }
    let count = encoder.count();
    chunk_blob(count, &encoder.finish())
}

fn chunks(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunk");
    for count in [120, 360, 720] {
        for (kind, noisy) in [("decimal", false), ("noisy", true)] {
            let points = points(count, noisy);
            let blob = encode(&points);
            group.throughput(Throughput::Elements(count as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("encode_{kind}"), count),
                &points,
                |b, points| b.iter(|| encode(black_box(points))),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("decode_{kind}"), count),
                &blob,
                |b, blob| b.iter(|| decode_chunk_blob(black_box(blob)).expect("decodes")),
            );
        }
    }
    group.finish();
}

fn threshold(name: &str, metric: &str, op: Op, level: f64, for_s: u64) -> Rule {
    Rule {
        name: name.to_string(),
        metric: metric.to_string(),
        matchers: Labels::new(),
        severity: Severity::Major,
        summary: "{rule} on {host}: {metric} is {value}".to_string(),
        runbook: None,
        kind: RuleKind::Threshold(ThresholdRule {
            op,
            threshold: level,
            clear: Some(level * 0.9),
            for_duration: Duration::from_secs(for_s),
            keep_firing_for: Duration::ZERO,
            flap: None,
        }),
    }
}

/// Roughly the shipped default rules: two rules on CPU, one each on memory,
/// disk and load, and a host-down `absent` rule.
fn rule_set() -> Vec<Rule> {
    vec![
        threshold("cpu_high", "cpu.usage_percent", Op::Gt, 90.0, 300),
        threshold("cpu_critical", "cpu.usage_percent", Op::Gt, 98.0, 60),
        threshold("mem_high", "mem.used_percent", Op::Gt, 90.0, 300),
        threshold("disk_full", "disk.used_percent", Op::Gt, 90.0, 0),
        threshold("load_high", "load.1m", Op::Gt, 50.0, 600),
        Rule {
            name: "host_down".to_string(),
            metric: "host.uptime_seconds".to_string(),
            matchers: Labels::new(),
            severity: Severity::Critical,
            summary: "{host} silent for {silence}".to_string(),
            runbook: None,
            kind: RuleKind::Absent(AbsentRule {
                after: Some(Duration::from_secs(120)),
                intervals: None,
            }),
        },
    ]
}

fn rules(c: &mut Criterion) {
    let limits = SampleLimits::default();
    let mut rng = Rng(13);
    // 100 agents' batches, so the engine holds (and looks up) 6,000 series.
    let batches: Vec<SampleBatch> = (0..100)
        .map(|agent| {
            let mut batch = decode_batch(&wire_batch(1, &mut rng), 1, &limits);
            batch.agent_id = format!("agent-{agent}");
            batch
        })
        .collect();
    let samples: Vec<(&str, &SampleRecord)> = batches
        .iter()
        .flat_map(|batch| {
            batch
                .samples
                .iter()
                .map(|sample| (&*batch.agent_id, sample))
        })
        .collect();
    let mut group = c.benchmark_group("rules");
    // Two rounds: the first creates every series' state, the second updates it.
    group.throughput(Throughput::Elements(2 * samples.len() as u64));
    group.bench_function("evaluate", |b| {
        b.iter_batched_ref(
            || RuleEngine::new(rule_set()),
            |engine| {
                let mut transitions = 0;
                for round in 0..2 {
                    let now_ms = BASE_MS + round * 10_000;
                    for (agent_id, sample) in &samples {
                        transitions += engine
                            .observe(
                                agent_id,
                                &sample.metric,
                                &sample.labels,
                                sample.value,
                                now_ms,
                            )
                            .len();
                    }
                }
                transitions
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn export(c: &mut Criterion) {
    use std::sync::Arc;
    use steward_collector::export::otlp;
    use steward_collector::export::remote_write::{
        CommittedBatch, SampleQueue, encode, write_request,
    };
    let limits = SampleLimits::default();
    let mut rng = Rng(11);
    let per_request = 2000;
    let mut queue = SampleQueue::new(per_request);
    let mut agent = 0;
    while queue.len() + BATCH_SAMPLES <= per_request {
        agent += 1;
        let batch = decode_batch(&wire_batch(1, &mut rng), 1, &limits);
        queue.push(Arc::new(CommittedBatch {
            agent_id: format!("agent-{agent:04}"),
            host: Arc::from(format!("host-{agent:04}").as_str()),
            samples: batch.samples,
        }));
    }
    let samples = queue.len();
    let slices = queue.take(per_request);
    let mut group = c.benchmark_group("export");
    group.throughput(Throughput::Elements(samples as u64));
    group.bench_function("remote_write", |b| {
        b.iter(|| encode(&write_request(black_box(&slices))).len());
    });
    // Built and encoded as tonic would (gzip, when configured, is tonic's).
    group.bench_function("otlp", |b| {
        b.iter(|| {
            otlp::export_request(black_box(&slices))
                .encode_to_vec()
                .len()
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Short windows: these are regression guards on a shared 2-core machine,
    // not publication figures.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = ingest, chunks, rules, export
}
criterion_main!(benches);
