//! Fault test 5, hostile load: thousands of malformed, oversized,
//! unauthenticated and slow-loris stream attempts plus a cardinality bomb
//! from one agent, while a real steward-agent keeps shipping every second.
//! Its samples must keep arriving within seconds, every attempt must be
//! refused and counted, and the log must not flood. Prints the figures
//! (attempts, healthy-agent lag, collector RSS before and after).
//!
//! Short by default (about 2,000 attempts, a 20k-series bomb);
//! `STEWARD_LONG_FAULT_TESTS=1` runs about 10,000 attempts and a 200k-series
//! bomb. Loopback only; every wait has a deadline.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::net::SocketAddr;
use steward_proto::v1 as pb;
use steward_proto::v1::ingest_client::IngestClient;

use steward_tests::{Collector, DEADLINE, http_request, long_fault_tests, memory_kib, poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Defaults of `[limits]` this test relies on (see deploy/collector-full.toml).
const MAX_SERIES_PER_AGENT: u64 = 10_000;
const MAX_SAMPLES_PER_BATCH: u64 = 10_000;
const MAX_PENDING_HELLOS: usize = 256;
/// How long a silent TCP client waits to be closed (`handshake_timeout` is 5 s).
const SILENT_PATIENCE: Duration = Duration::from_secs(20);
/// HTTP/2 streams per connection (`max_streams_per_connection`).
const STREAMS_PER_CONNECTION: usize = 8;

/// How many attempts of each kind.
#[derive(Debug, Clone, Copy)]
struct Scale {
    bad_token: usize,
    not_hello: usize,
    closed_before_hello: usize,
    bad_agent_id: usize,
    oversized: usize,
    garbage_tcp: usize,
    silent_tcp: usize,
    /// Streams that never say hello, fewer than `max_pending_hellos`, sent
    /// beside the rest.
    silent_streams: usize,
    /// Then streams that never say hello, more than `max_pending_hellos`.
    hello_flood: usize,
    bomb_series: u64,
}

impl Scale {
    fn short() -> Self {
        Self {
            bad_token: 500,
            not_hello: 300,
            closed_before_hello: 200,
            bad_agent_id: 200,
            oversized: 100,
            garbage_tcp: 300,
            silent_tcp: 200,
            silent_streams: 150,
            hello_flood: 350,
            bomb_series: 20_000,
        }
    }

    fn long() -> Self {
        Self {
            bad_token: 2_500,
            not_hello: 1_500,
            closed_before_hello: 1_000,
            bad_agent_id: 1_000,
            oversized: 500,
            garbage_tcp: 1_500,
            silent_tcp: 1_000,
            silent_streams: 200,
            hello_flood: 1_300,
            bomb_series: 200_000,
        }
    }

    fn attempts(&self) -> usize {
        self.bad_token
            + self.not_hello
            + self.closed_before_hello
            + self.bad_agent_id
            + self.oversized
            + self.garbage_tcp
            + self.silent_tcp
            + self.silent_streams
            + self.hello_flood
    }
}

fn hello(token: &str, agent_id: &str) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(pb::Hello {
            agent_id: agent_id.into(),
            agent_version: "hostile-test".into(),
            hostname: agent_id.into(),
            token: token.into(),
            epoch: 7,
            inventory: None,
        })),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn sample(series: u64, timestamp_ms: i64) -> pb::Sample {
    pb::Sample {
        metric: "bomb.series".into(),
        labels: vec![pb::Label {
            key: "n".into(),
            value: series.to_string(),
        }],
        value: series as f64,
        timestamp_ms,
    }
}

fn batch(seq: u64, samples: Vec<pb::Sample>) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Batch(pb::SampleBatch {
            seq,
            samples,
        })),
    }
}

/// What one attempt of `kind` sends.
fn hostile_messages(kind: &str, index: usize, token: &str) -> Vec<pb::AgentMessage> {
    match kind {
        "bad-token" => vec![hello(&format!("not-a-token-{index:08}"), "intruder")],
        "not-hello" => vec![batch(1, vec![sample(1, now_ms())])],
        "closed-before-hello" => Vec::new(),
        "bad-agent-id" => vec![hello(token, "bad\u{1b}[2Jid")],
        "oversized" => {
            let mut message = hello(token, "oversized");
            if let Some(pb::agent_message::Kind::Hello(hello)) = message.kind.as_mut() {
                // Past max_message_bytes (4 MiB).
                hello.hostname = "x".repeat((4 << 20) + 1);
            }
            vec![message]
        }
        other => unreachable!("no attempt kind {other}"),
    }
}

/// A fixed pseudo-random order (xorshift), so runs are comparable.
fn shuffle<T>(items: &mut [T]) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for index in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(index, (state % (index as u64 + 1)) as usize);
    }
}

/// One stream attempt that must be refused; returns the refusal's code.
async fn refused_attempt(channel: Channel, messages: Vec<pb::AgentMessage>) -> tonic::Code {
    let mut client = IngestClient::new(channel).max_encoding_message_size(64 << 20);
    let outcome = tokio::time::timeout(DEADLINE, async {
        match client.stream(tokio_stream::iter(messages)).await {
            Err(status) => status.code(),
            // Accepted: the refusal (if any) comes on the stream.
            Ok(response) => match response.into_inner().next().await {
                Some(Err(status)) => status.code(),
                _ => tonic::Code::Ok,
            },
        }
    })
    .await;
    outcome.unwrap_or(tonic::Code::DeadlineExceeded)
}

/// A stream that opens and never says hello; returns how it ended.
async fn silent_stream(channel: Channel) -> tonic::Code {
    let (_hold, receiver) = mpsc::channel::<pb::AgentMessage>(1);
    let mut client = IngestClient::new(channel);
    match tokio::time::timeout(DEADLINE, client.stream(ReceiverStream::new(receiver))).await {
        Ok(Err(status)) => status.code(),
        Ok(Ok(_)) => tonic::Code::Ok,
        Err(_) => tonic::Code::Unknown,
    }
}

/// How a raw TCP attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RawOutcome {
    /// The collector closed it, after this long.
    Closed(Duration),
    /// The kernel refused the connection (its accept queue was full).
    NotConnected,
    /// Still open at the deadline.
    LeftOpen,
}

/// Connects and reads until the collector closes the connection, for at
/// most `patience`; `written` is sent first (nothing: a slow-loris that
/// never speaks).
async fn raw_connection(
    address: std::net::SocketAddr,
    written: Vec<u8>,
    patience: Duration,
) -> RawOutcome {
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return RawOutcome::NotConnected;
    };
    let connected = Instant::now();
    if !written.is_empty() {
        let _ = stream.write_all(&written).await;
    }
    let mut buffer = [0u8; 4096];
    let closed = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    match tokio::time::timeout(patience, closed).await {
        Ok(()) => RawOutcome::Closed(connected.elapsed()),
        Err(_) => RawOutcome::LeftOpen,
    }
}

/// The timestamps of an agent's latest stored value per series, from the
/// collector's API (the store keeps them in memory as batches commit).
fn latest_timestamps(api: &Api, agent_id: &str) -> Vec<i64> {
    let (status, body) = http_request(
        api.addr,
        "GET",
        &format!("/api/v1/series?agent={agent_id}"),
        Some(&api.token),
        None,
    );
    if status != 200 {
        return Vec::new();
    }
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|series| {
            series.as_array().map(|series| {
                series
                    .iter()
                    .filter_map(|one| one["timestamp_ms"].as_i64())
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Where the API listens and the token to read it with.
#[derive(Clone)]
struct Api {
    addr: SocketAddr,
    token: String,
}

impl Api {
    fn of(collector: &Collector) -> Self {
        Self {
            addr: collector.http_addr,
            token: collector.api_token(),
        }
    }
}

/// Where the healthy agent stands: the newest sample timestamp it has
/// stored, and how many of its batches are stored.
fn healthy_progress(api: &Api, database: &rusqlite::Connection, agent_id: &str) -> (i64, i64) {
    let newest = latest_timestamps(api, agent_id).into_iter().max();
    let batches: i64 = database
        .query_row(
            "SELECT count(*) FROM batches WHERE agent_id = ?1",
            [agent_id],
            |row| row.get(0),
        )
        .unwrap();
    (newest.unwrap_or(0), batches)
}

/// Polls the healthy agent's progress until stopped; returns the lag
/// (now − newest stored sample) seen at every poll, in ms.
fn watch_healthy_agent(
    api: Api,
    database: rusqlite::Connection,
    agent_id: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<i64>> {
    std::thread::spawn(move || {
        let mut lags = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let (newest, _) = healthy_progress(&api, &database, &agent_id);
            lags.push(now_ms() - newest);
            std::thread::sleep(Duration::from_millis(200));
        }
        lags
    })
}

/// An authenticated stream: the way out and the way in, after the welcome.
type Session = (
    mpsc::Sender<pb::AgentMessage>,
    tonic::Streaming<pb::CollectorMessage>,
);

async fn open_session(channel: Channel, token: &str, agent_id: &str) -> Session {
    let (sender, receiver) = mpsc::channel(4);
    sender.send(hello(token, agent_id)).await.unwrap();
    let mut inbound = IngestClient::new(channel)
        .max_encoding_message_size(64 << 20)
        .stream(ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let welcome = inbound.next().await.unwrap().unwrap();
    assert!(matches!(
        welcome.kind,
        Some(pb::collector_message::Kind::Welcome(_))
    ));
    (sender, inbound)
}

/// The bomb: one authenticated agent sending `series` distinct series in
/// batches of 5,000, then an over-long batch, a sample with too many labels
/// and a batch of series it already holds. Returns how long it took.
async fn cardinality_bomb(session: Session, series: u64) -> Duration {
    let started = Instant::now();
    let (sender, mut inbound) = session;
    let mut seq = 0;
    // The acks tell the sender how many samples were refused, and why.
    let mut refusals: Vec<(u64, String)> = Vec::new();
    let mut send = async |samples: Vec<pb::Sample>| {
        seq += 1;
        sender.send(batch(seq, samples)).await.unwrap();
        let ack = tokio::time::timeout(DEADLINE, inbound.next())
            .await
            .expect("every bomb batch is acknowledged in time")
            .unwrap()
            .unwrap();
        let Some(pb::collector_message::Kind::Ack(ack)) = ack.kind else {
            panic!("expected an ack, got {ack:?}");
        };
        assert_eq!(ack.committed_seq, seq);
        refusals.push((ack.refused_samples, ack.refused_reason));
    };
    let timestamp = now_ms();
    let mut next = 0;
    while next < series {
        let end = (next + 5_000).min(series);
        send((next..end).map(|n| sample(n, timestamp)).collect()).await;
        next = end;
    }
    // Past max_samples_per_batch: the first 10,000 (held series) are stored.
    let over = MAX_SAMPLES_PER_BATCH + 2_000;
    send(
        (0..over)
            .map(|n| sample(n % MAX_SERIES_PER_AGENT, timestamp + 1))
            .collect(),
    )
    .await;
    // Too many labels: refused; the held series beside it is stored.
    let mut labelled = sample(1, timestamp + 2);
    labelled.labels = (0..40)
        .map(|index| pb::Label {
            key: format!("k{index}"),
            value: "v".into(),
        })
        .collect();
    send(vec![labelled, sample(1, timestamp + 2)]).await;
    // Held series keep working after the limit is reached.
    send((0..100).map(|n| sample(n, timestamp + 3)).collect()).await;
    let refused: u64 = refusals.iter().map(|(count, _)| count).sum();
    assert_eq!(
        refused,
        series - MAX_SERIES_PER_AGENT + 2_000 + 1,
        "every refused sample is reported in an ack: {refusals:?}"
    );
    let reasons: Vec<&str> = refusals.iter().map(|(_, reason)| reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("limits.max_series_per_agent")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("limits.max_samples_per_batch")),
        "{reasons:?}"
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_load_is_refused_while_a_healthy_agent_keeps_shipping() {
    let scale = if long_fault_tests() {
        Scale::long()
    } else {
        Scale::short()
    };
    let mut collector = Collector::start();
    let _healthy = collector.start_agent("healthy", |text| {
        text.push_str("hostname = \"healthy-host\"\n");
    });
    let database = collector.database();
    let healthy_id: String = poll(DEADLINE, "the healthy agent to connect", || {
        database
            .query_row(
                "SELECT id FROM agents WHERE hostname = 'healthy-host'",
                [],
                |row| row.get(0),
            )
            .ok()
    });
    poll(DEADLINE, "the healthy agent's first samples", || {
        (healthy_progress(&Api::of(&collector), &database, &healthy_id).0 > 0).then_some(())
    });
    let pid = collector.process.pid();
    let (rss_before, _) = memory_kib(pid).unwrap();
    let (_, batches_before) = healthy_progress(&Api::of(&collector), &database, &healthy_id);
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_healthy_agent(
        Api::of(&collector),
        collector.database(),
        healthy_id.clone(),
        Arc::clone(&stop),
    );
    let attack_started = Instant::now();

    let token = collector.agent_token();
    let address = collector.grpc_addr;
    // Enough connections that every silent stream can be open at once.
    let pool_size = scale.hello_flood.max(scale.silent_streams) / (STREAMS_PER_CONNECTION - 2) + 4;
    let mut pool = Vec::with_capacity(pool_size);
    for _ in 0..pool_size {
        pool.push(collector.grpc_channel().await);
    }
    // Connected before the attack, as a real agent would be.
    let bomb_session =
        open_session(collector.grpc_channel().await, &token, "cardinality-bomb").await;
    let bomb = tokio::spawn(cardinality_bomb(bomb_session, scale.bomb_series));

    // Phase 1: slow-loris streams (fewer than max_pending_hellos, so the
    // rest is still refused on its merits) and connections, beside
    // everything malformed, oversized and unauthenticated.
    let mut silent = JoinSet::new();
    for index in 0..scale.silent_streams {
        silent.spawn(silent_stream(pool[index % pool.len()].clone()));
    }
    let mut quiet_tcp = JoinSet::new();
    for _ in 0..scale.silent_tcp {
        quiet_tcp.spawn(raw_connection(address, Vec::new(), SILENT_PATIENCE));
    }

    // The rest, at most 32 at a time over the pool's connections, the
    // kinds interleaved.
    let in_flight = Arc::new(Semaphore::new(32));
    let mut attempts: JoinSet<(&'static str, tonic::Code)> = JoinSet::new();
    let mut plan: Vec<&'static str> = [
        ("bad-token", scale.bad_token),
        ("not-hello", scale.not_hello),
        ("closed-before-hello", scale.closed_before_hello),
        ("bad-agent-id", scale.bad_agent_id),
        ("oversized", scale.oversized),
    ]
    .into_iter()
    .flat_map(|(kind, count)| std::iter::repeat_n(kind, count))
    .collect();
    shuffle(&mut plan);
    for (index, kind) in plan.into_iter().enumerate() {
        let permit = Arc::clone(&in_flight).acquire_owned().await.unwrap();
        let channel = pool[index % pool.len()].clone();
        // Built in the task, so at most 32 oversized messages exist at once.
        let token = token.clone();
        attempts.spawn(async move {
            let code = refused_attempt(channel, hostile_messages(kind, index, &token)).await;
            drop(permit);
            (kind, code)
        });
    }
    let mut garbage = JoinSet::new();
    for index in 0..scale.garbage_tcp {
        let junk: Vec<u8> = (0..512u32)
            .map(|byte| (byte.wrapping_mul(31).wrapping_add(index as u32)) as u8)
            .collect();
        let permit = Arc::clone(&in_flight).acquire_owned().await.unwrap();
        garbage.spawn(async move {
            let closed = raw_connection(address, junk, DEADLINE).await;
            drop(permit);
            closed
        });
    }

    let mut outcomes: BTreeMap<(&str, String), usize> = BTreeMap::new();
    while let Some(result) = attempts.join_next().await {
        let (kind, code) = result.unwrap();
        assert_ne!(code, tonic::Code::Ok, "a {kind} attempt was accepted");
        *outcomes.entry((kind, format!("{code:?}"))).or_default() += 1;
    }
    let mut tally_silent = async |kind: &'static str, mut set: JoinSet<tonic::Code>| {
        while let Some(result) = set.join_next().await {
            let code = result.unwrap();
            assert!(
                matches!(
                    code,
                    tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted
                ),
                "a silent stream ended with {code:?}"
            );
            *outcomes.entry((kind, format!("{code:?}"))).or_default() += 1;
        }
    };
    tally_silent("silent-stream", silent).await;
    // Phase 2: more silent streams than may wait for a hello at once.
    let mut flood = JoinSet::new();
    for index in 0..scale.hello_flood {
        flood.spawn(silent_stream(pool[index % pool.len()].clone()));
    }
    tally_silent("hello-flood", flood).await;
    let mut slowest_close = BTreeMap::new();
    for (kind, mut set) in [("silent-tcp", quiet_tcp), ("garbage-tcp", garbage)] {
        while let Some(outcome) = set.join_next().await {
            let label = match outcome.unwrap() {
                RawOutcome::Closed(after) => {
                    let slowest = slowest_close.entry(kind).or_insert(after);
                    *slowest = after.max(*slowest);
                    "closed"
                }
                RawOutcome::NotConnected => "not-connected",
                // A connection that never speaks and was dropped from a full
                // kernel accept queue looks open to its client forever; that
                // the collector holds none is checked below.
                RawOutcome::LeftOpen if kind == "silent-tcp" => "never-accepted",
                RawOutcome::LeftOpen => panic!("a {kind} connection was left open"),
            };
            *outcomes.entry((kind, label.to_string())).or_default() += 1;
        }
    }
    let bomb_took = bomb.await.unwrap();
    let attack_took = attack_started.elapsed();
    // A few more batches after the attack, then stop watching.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let mut lags = watcher.join().unwrap();
    let (_, batches_after) = healthy_progress(&Api::of(&collector), &database, &healthy_id);
    let (rss_after, rss_peak) = memory_kib(pid).unwrap();

    lags.sort_unstable();
    let percentile = |p: usize| lags[(lags.len() - 1) * p / 100];
    println!(
        "hostile load: {} attempts in {attack_took:.1?} ({scale:?})",
        scale.attempts()
    );
    for ((kind, code), count) in &outcomes {
        println!("  {kind:<20} {code:<18} {count}");
    }
    println!("  slowest close of a raw TCP connection: {slowest_close:?}");
    println!(
        "cardinality bomb: {} series offered, {} stored, in {bomb_took:.1?}",
        scale.bomb_series, MAX_SERIES_PER_AGENT
    );
    println!(
        "healthy agent: {} batches committed during {:.0?}; lag (now - newest stored sample) p50 {} ms, p99 {} ms, max {} ms over {} polls",
        batches_after - batches_before,
        attack_took + Duration::from_secs(3),
        percentile(50),
        percentile(99),
        lags[lags.len() - 1],
        lags.len(),
    );
    println!(
        "collector RSS: before {rss_before} KiB, right after the attack {rss_after} KiB, peak {rss_peak} KiB"
    );

    // The healthy agent never stalled: a sample at most a few seconds old
    // was always stored (it measures every second), and it never had to
    // reconnect.
    let worst = lags[lags.len() - 1];
    assert!(worst < 10_000, "the healthy agent lagged {worst} ms");
    assert!(
        batches_after - batches_before >= (attack_took.as_secs() as i64 / 2).max(1),
        "the healthy agent's batches stalled: {} in {attack_took:?}",
        batches_after - batches_before
    );
    let log = collector.process.log_text();
    let healthy_connects = log
        .lines()
        .filter(|line| line.contains("Agent connected.") && line.contains("healthy-host"))
        .count();
    assert_eq!(
        healthy_connects, 1,
        "the healthy agent connected once and stayed"
    );

    // The bomb: exactly the limit stored; every refusal counted.
    let bomb_series: i64 = database
        .query_row(
            "SELECT count(*) FROM series WHERE agent_id = 'cardinality-bomb'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(bomb_series as u64, MAX_SERIES_PER_AGENT);
    assert_eq!(
        collector.counter("steward_samples_refused_series_limit_total"),
        scale.bomb_series - MAX_SERIES_PER_AGENT
    );
    assert_eq!(
        collector.counter("steward_samples_refused_batch_limit_total"),
        2_000
    );
    assert_eq!(collector.counter("steward_samples_refused_labels_total"), 1);
    let bomb_latest = latest_timestamps(&Api::of(&collector), "cardinality-bomb");
    let bomb_newest = bomb_latest.iter().copied().max().unwrap_or(0);
    let held_samples = bomb_latest
        .iter()
        .filter(|timestamp| **timestamp == bomb_newest)
        .count();
    assert_eq!(held_samples, 100, "held series keep working past the limit");

    // Every refusal is counted, under its own name.
    let outcome = |kind: &str, code: &str| {
        outcomes
            .get(&(kind, code.to_string()))
            .copied()
            .unwrap_or(0) as u64
    };
    let all = |code: &str| -> u64 {
        outcomes
            .iter()
            .filter(|((_, seen), _)| seen == code)
            .map(|(_, count)| *count as u64)
            .sum()
    };
    assert!(
        outcome("hello-flood", "ResourceExhausted") > 0,
        "{outcomes:?}"
    );
    assert!(
        outcome("hello-flood", "DeadlineExceeded") <= MAX_PENDING_HELLOS as u64,
        "more streams waited for a hello than max_pending_hellos: {outcomes:?}"
    );
    assert_eq!(
        collector.counter("steward_streams_refused_pending_hellos_total"),
        all("ResourceExhausted")
    );
    assert_eq!(
        collector.counter("steward_streams_hello_timeout_total"),
        all("DeadlineExceeded")
    );
    assert_eq!(
        collector.counter("steward_agents_rejected_auth_total"),
        outcome("bad-token", "Unauthenticated")
    );
    assert!(outcome("bad-token", "Unauthenticated") > 0, "{outcomes:?}");
    assert!(collector.counter("steward_streams_rejected_protocol_total") > 0);
    assert!(collector.counter("steward_grpc_connections_silent_total") >= scale.silent_tcp as u64);
    assert_eq!(collector.counter("steward_streams_awaiting_hello"), 0);

    // One log line per kind and peer per minute, not one per attempt.
    for line in [
        "Rejected agent: missing or invalid token.",
        "Rejected agent stream: first message was not a hello.",
        "Closed agent stream: no hello in time.",
        "Refused agent stream: too many streams are waiting for their hello.",
        "Refused samples over limits",
    ] {
        let count = log.matches(line).count();
        assert!(count <= 4, "{count} lines of {line:?}: the log floods");
    }
    // The collector holds on to nothing: with the attackers' connections
    // gone only the healthy agent's is open, and a new agent gets in.
    drop(pool);
    poll(
        DEADLINE,
        "only the healthy agent's connection to stay open",
        || (collector.counter("steward_grpc_connections_open") == 1).then_some(()),
    );
    let (_after_sender, _after_inbound) =
        open_session(collector.grpc_channel().await, &token, "after-the-attack").await;
    let (status, _) = collector.get("/healthz");
    assert_eq!(status, 200);
    assert!(collector.process.is_running());
    let (rss_settled, _) = memory_kib(pid).unwrap();
    println!(
        "collector RSS once the attackers' connections closed: {rss_settled} KiB; log: {} lines",
        log.lines().count()
    );
}

/// A second stream for a connected agent id replaces the first: the first
/// ends with ABORTED, the second works, and the agent stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stream_for_an_agent_id_replaces_the_first() {
    let collector = Collector::start();
    let token = collector.agent_token();
    let (_first_sender, mut first) =
        open_session(collector.grpc_channel().await, &token, "twin").await;
    let (second_sender, mut second) =
        open_session(collector.grpc_channel().await, &token, "twin").await;

    let ended = tokio::time::timeout(DEADLINE, first.next())
        .await
        .expect("the first stream ends");
    match ended {
        Some(Err(status)) => assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}"),
        other => panic!("the replaced stream must end with ABORTED: {other:?}"),
    }
    second_sender
        .send(batch(1, vec![sample(1, now_ms())]))
        .await
        .unwrap();
    let ack = tokio::time::timeout(DEADLINE, second.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        ack.kind,
        Some(pb::collector_message::Kind::Ack(pb::Ack {
            committed_seq: 1,
            ..pb::Ack::default()
        }))
    );
    assert_eq!(collector.counter("steward_streams_replaced_total"), 1);
    // The replaced stream ending did not mark the agent disconnected.
    let agent = collector.get_json("/api/v1/agents/twin");
    assert_eq!(agent["connected"], true, "{agent}");
}
