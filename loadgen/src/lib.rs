//! `steward-loadgen`: many simulated agents on loopback.
//!
//! Layout:
//! - [`addr`]: loopback-only targets and 127.0.0.x source spreading.
//! - [`batch`]: pre-serialised batches and host-like values.
//! - [`stats`]: percentiles, the report, the generator's own CPU.
//! - [`http`]: a tiny keep-alive HTTP/1.1 client (VictoriaMetrics import,
//!   incident polling).
//! - this file: the run. Every agent first connects (hello → welcome, or a
//!   TCP connection for VictoriaMetrics); once all have connected or failed,
//!   the sending phase starts for `duration`, and only acknowledgements inside
//!   it count.
//!
//! The generator never retries or resends: an error ends that agent's stream
//! and is counted. It is bounded by `--agents` and `--duration` (both capped).

pub mod addr;
pub mod batch;
pub mod http;
pub mod stats;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use steward_proto::v1 as pb;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::timeout;

use crate::batch::{BREACH_METRIC, BatchTemplate, ValueSource};
use crate::stats::{Latencies, Report};

/// Hard caps: a benchmark tool must not be able to take the machine down.
pub const MAX_AGENTS: usize = 100_000;
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
pub const MAX_SERIES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A Steward collector over gRPC/TLS.
    Steward,
    /// VictoriaMetrics' `/api/v1/import/prometheus` over plain HTTP.
    Victoria,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One batch per `--interval` per agent.
    Paced,
    /// As fast as acknowledgements allow (up to `--window` in flight).
    Max,
}

/// Validated settings of one run.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub address: SocketAddr,
    pub http: Option<SocketAddr>,
    pub ca_pem: Vec<u8>,
    pub agent_token: String,
    pub api_token: Option<String>,
    pub agents: usize,
    pub series: usize,
    pub mode: Mode,
    pub interval: Duration,
    pub window: usize,
    pub duration: Duration,
    /// Send exactly this many batches per agent, stamped `interval` apart
    /// ending now (a fixed data set for storage measurements).
    pub points: Option<u64>,
    pub breach_rate: f64,
    pub inventory: bool,
    /// Send a full inventory update (seq 1) after the hello: one asset per agent.
    pub assets: bool,
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
    pub id_prefix: String,
    pub seed: u64,
}

/// Reads `ca.pem`, the last token of `agent-tokens` and `api-token` from a
/// directory written by `steward-collector init`.
pub fn read_collector_dir(dir: &Path) -> anyhow::Result<(Vec<u8>, String, Option<String>)> {
    let ca = std::fs::read(dir.join("ca.pem"))
        .with_context(|| format!("read {}", dir.join("ca.pem").display()))?;
    let tokens = std::fs::read_to_string(dir.join("agent-tokens"))
        .with_context(|| format!("read {}", dir.join("agent-tokens").display()))?;
    let token = tokens
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && !line.starts_with('#'))
        .context("agent-tokens holds no token")?
        .to_string();
    let api = std::fs::read_to_string(dir.join("api-token"))
        .ok()
        .map(|text| text.trim().to_string());
    Ok((ca, token, api))
}

/// What one agent did.
#[derive(Debug, Default)]
struct AgentOutcome {
    connected: bool,
    connect: Option<Duration>,
    batches_sent: u64,
    batches_acked: u64,
    samples_acked: u64,
    unacked: u64,
    behind: u64,
    errors: Vec<String>,
    /// (series index, wall-clock ms at send) of each series' first breach.
    breaches: Vec<(usize, i64)>,
    ack: Latencies,
}

/// When the sending phase starts and ends (set once every agent has connected).
#[derive(Debug, Clone, Copy)]
struct Phase {
    deadline: Instant,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

pub async fn run(config: Config) -> anyhow::Result<Report> {
    if config.agents == 0 || config.agents > MAX_AGENTS {
        bail!("--agents must be 1..={MAX_AGENTS}");
    }
    if config.duration.is_zero() || config.duration > MAX_DURATION {
        bail!("--duration must be above 0 and at most {MAX_DURATION:?}");
    }
    if config.series == 0 || config.series > MAX_SERIES {
        bail!("--series must be 1..={MAX_SERIES}");
    }
    if !(0.0..=1.0).contains(&config.breach_rate) {
        bail!("--breach-rate must be within 0..=1");
    }
    let config = Arc::new(config);
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&config.ca_pem))
        .domain_name("127.0.0.1");
    let (phase_tx, phase_rx) = watch::channel(None::<Phase>);
    let (connected_tx, mut connected_rx) = mpsc::unbounded_channel::<()>();
    let handshakes = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
    let connect_started = Instant::now();
    let mut tasks = Vec::with_capacity(config.agents);
    for index in 0..config.agents {
        let config = config.clone();
        let tls = tls.clone();
        let phase = phase_rx.clone();
        let connected = connected_tx.clone();
        let handshakes = handshakes.clone();
        tasks.push(tokio::spawn(async move {
            match config.target {
                Target::Steward => {
                    steward_agent(&config, tls, index, handshakes, connected, phase).await
                }
                Target::Victoria => {
                    victoria_agent(&config, index, handshakes, connected, phase).await
                }
            }
        }));
    }
    drop(connected_tx);
    // Every agent reports once, connected or not.
    let mut reported = 0;
    let connect_deadline = tokio::time::sleep(config.connect_timeout);
    tokio::pin!(connect_deadline);
    while reported < config.agents {
        tokio::select! {
            message = connected_rx.recv() => match message {
                Some(()) => reported += 1,
                None => break,
            },
            () = &mut connect_deadline => break,
        }
    }
    let connect_s = connect_started.elapsed().as_secs_f64();
    let cpu_start = stats::own_cpu_seconds();
    let started = Instant::now();
    let deadline = started + config.duration;
    let _ = phase_tx.send(Some(Phase { deadline }));

    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|error| AgentOutcome {
            errors: vec![format!("agent task failed: {error}")],
            ..Default::default()
        }));
    }
    let elapsed = started.elapsed().min(config.duration);
    let elapsed = if config.points.is_some() {
        started.elapsed()
    } else {
        elapsed
    };
    let cpu = stats::own_cpu_seconds() - cpu_start;

    let mut report = Report {
        target: match config.target {
            Target::Steward => "steward",
            Target::Victoria => "victoria",
        },
        mode: match config.mode {
            Mode::Paced => "paced",
            Mode::Max => "max",
        },
        agents: config.agents,
        agents_connected: 0,
        series_per_agent: config.series,
        duration_s: elapsed.as_secs_f64(),
        batches_sent: 0,
        batches_acked: 0,
        samples_acked: 0,
        samples_per_s: 0.0,
        batches_unacked: 0,
        ack: None,
        connect: None,
        connect_s,
        ticks_behind: 0,
        errors: 0,
        first_errors: Vec::new(),
        breaches: 0,
        incidents_seen: 0,
        breach_to_incident: None,
        loadgen_cpu_percent: 100.0 * cpu / elapsed.as_secs_f64().max(1e-3),
    };
    let mut ack = Latencies::default();
    let mut connect = Latencies::default();
    let mut breaches: HashMap<(String, String), i64> = HashMap::new();
    for (index, outcome) in outcomes.into_iter().enumerate() {
        report.agents_connected += usize::from(outcome.connected);
        report.batches_sent += outcome.batches_sent;
        report.batches_acked += outcome.batches_acked;
        report.samples_acked += outcome.samples_acked;
        report.batches_unacked += outcome.unacked;
        report.ticks_behind += outcome.behind;
        report.errors += outcome.errors.len() as u64;
        for error in outcome.errors {
            if report.first_errors.len() < 5 {
                report.first_errors.push(format!("agent {index}: {error}"));
            }
        }
        if let Some(latency) = outcome.connect {
            connect.record(latency);
        }
        ack.merge(outcome.ack);
        for (series, sent_ms) in outcome.breaches {
            breaches.insert((agent_id(&config, index), series.to_string()), sent_ms);
        }
    }
    report.samples_per_s = report.samples_acked as f64 / report.duration_s.max(1e-3);
    report.ack = ack.summary();
    report.connect = connect.summary();
    report.breaches = breaches.len() as u64;
    if let (Some(http), Target::Steward, false) = (config.http, config.target, breaches.is_empty())
    {
        // `opened_at` is the collector's own timestamp, so polling after the
        // run loses no precision.
        let opened = poll_incidents(
            http,
            config.api_token.clone(),
            &breaches,
            Instant::now() + Duration::from_secs(10),
        )
        .await;
        let mut latencies = Latencies::default();
        for (key, sent_ms) in &breaches {
            if let Some(opened_ms) = opened.get(key) {
                latencies.record_ms(opened_ms - sent_ms);
            }
        }
        report.incidents_seen = latencies.len() as u64;
        report.breach_to_incident = latencies.summary();
    }
    Ok(report)
}

fn agent_id(config: &Config, index: usize) -> String {
    format!("{}-{index}", config.id_prefix)
}

/// Waits for the sending phase; `None` if the run was abandoned.
async fn wait_phase(mut phase: watch::Receiver<Option<Phase>>) -> Option<Phase> {
    phase.wait_for(Option::is_some).await.ok().and_then(|p| *p)
}

/// The batch clock: real time when paced or free-running, one `interval`
/// per batch ending now in `--points` mode. Strictly increasing, so no two
/// batches of a series share a timestamp.
struct Clock {
    next_fixed: Option<(i64, i64)>,
    last: i64,
}

impl Clock {
    fn new(config: &Config) -> Self {
        let step = config.interval.as_millis().max(1) as i64;
        Self {
            next_fixed: config
                .points
                .map(|points| (now_ms() - points as i64 * step, step)),
            last: 0,
        }
    }
    fn next(&mut self) -> i64 {
        let ts = match &mut self.next_fixed {
            Some((next, step)) => {
                *next += *step;
                *next
            }
            None => now_ms(),
        };
        self.last = ts.max(self.last + 1);
        self.last
    }
}

/// The per-agent generator state shared by both targets.
struct Generator {
    values: ValueSource,
    clock: Clock,
    first_breaches: Vec<usize>,
    remaining: Option<u64>,
}

impl Generator {
    fn new(config: &Config, index: usize) -> Self {
        Self {
            values: ValueSource::new(
                config.seed ^ (index as u64).wrapping_mul(0x1000_0001),
                config.series,
                config.breach_rate,
            ),
            clock: Clock::new(config),
            first_breaches: Vec::new(),
            remaining: config.points,
        }
    }
    fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }
    /// The next (timestamp, values); records first breaches with the send time.
    fn next(&mut self, breaches: &mut Vec<(usize, i64)>) -> (i64, &[f64]) {
        if let Some(remaining) = &mut self.remaining {
            *remaining = remaining.saturating_sub(1);
        }
        self.first_breaches.clear();
        let ts = self.clock.next();
        let values = self.values.next(&mut self.first_breaches);
        let sent = now_ms();
        breaches.extend(self.first_breaches.iter().map(|&series| (series, sent)));
        (ts, values)
    }
}

/// The request stream carries pre-encoded `AgentMessage`s; responses are
/// decoded normally.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
struct CollectorMessageDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = pb::CollectorMessage;
    type Encoder = RawEncoder;
    type Decoder = CollectorMessageDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> CollectorMessageDecoder {
        CollectorMessageDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for CollectorMessageDecoder {
    type Item = pb::CollectorMessage;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<pb::CollectorMessage>, tonic::Status> {
        prost::Message::decode(buf)
            .map(Some)
            .map_err(|error| tonic::Status::internal(format!("bad collector message: {error}")))
    }
}

type Inbound = tonic::Streaming<pb::CollectorMessage>;

async fn steward_connect(
    config: &Config,
    tls: tonic::transport::ClientTlsConfig,
    index: usize,
    source: Option<IpAddr>,
) -> anyhow::Result<(mpsc::Sender<Vec<u8>>, Inbound)> {
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", config.address))?
        .tls_config(tls)?
        .local_address(source)
        .tcp_nodelay(true)
        .connect_timeout(config.connect_timeout)
        .connect()
        .await
        .context("connect")?;
    let (sender, receiver) = mpsc::channel(config.window + 2);
    sender
        .send(batch::hello(
            &agent_id(config, index),
            &config.agent_token,
            config.seed ^ index as u64 ^ 0x5eed,
            config.inventory,
        ))
        .await
        .context("queue hello")?;
    if config.assets {
        sender
            .send(batch::inventory(&agent_id(config, index), 1, now_ms()))
            .await
            .context("queue inventory")?;
    }
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(64 << 20);
    grpc.ready().await.context("channel not ready")?;
    let mut inbound = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver)),
            tonic::codegen::http::uri::PathAndQuery::from_static("/steward.v1.Ingest/Stream"),
            RawCodec,
        )
        .await
        .context("open stream")?
        .into_inner();
    match inbound.message().await.context("await welcome")? {
        Some(pb::CollectorMessage {
            kind: Some(pb::collector_message::Kind::Welcome(_)),
        }) => Ok((sender, inbound)),
        other => bail!("expected a welcome, got {other:?}"),
    }
}

async fn steward_agent(
    config: &Config,
    tls: tonic::transport::ClientTlsConfig,
    index: usize,
    handshakes: Arc<Semaphore>,
    connected: mpsc::UnboundedSender<()>,
    phase: watch::Receiver<Option<Phase>>,
) -> AgentOutcome {
    let mut outcome = AgentOutcome::default();
    let source = addr::source_for(config.address, config.agents, index);
    let attempt = async {
        let _permit = handshakes.acquire().await;
        let started = Instant::now();
        let result = steward_connect(config, tls, index, source).await;
        (result, started.elapsed())
    };
    let connection = attempt.await;
    let _ = connected.send(());
    let (sender, mut inbound) = match connection {
        (Ok(stream), took) => {
            outcome.connected = true;
            outcome.connect = Some(took);
            stream
        }
        (Err(error), _) => {
            outcome.errors.push(format!("{error:#}"));
            return outcome;
        }
    };
    let Some(Phase { deadline }) = wait_phase(phase).await else {
        return outcome;
    };
    let template = BatchTemplate::new(&agent_id(config, index), config.series);
    let mut generator = Generator::new(config, index);
    let series = config.series as u64;
    // (seq, sent at) of batches awaiting their ack, oldest first.
    let mut inflight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(config.window);
    // The inventory update, if any, went out as seq 1.
    let mut seq = u64::from(config.assets);
    let mut ticker = paced_ticker(config, index);
    let deadline_sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(deadline_sleep);
    let mut send_one = |outcome: &mut AgentOutcome, inflight: &mut VecDeque<(u64, Instant)>| {
        seq += 1;
        let (ts, values) = generator.next(&mut outcome.breaches);
        let bytes = template.encode(seq, ts, values);
        inflight.push_back((seq, Instant::now()));
        outcome.batches_sent += 1;
        bytes
    };
    loop {
        let exhausted = generator_exhausted(config, outcome.batches_sent);
        if exhausted && inflight.is_empty() {
            break;
        }
        if config.mode == Mode::Max {
            while inflight.len() < config.window
                && !generator_exhausted(config, outcome.batches_sent)
            {
                let bytes = send_one(&mut outcome, &mut inflight);
                if timeout(
                    deadline.saturating_duration_since(Instant::now()),
                    sender.send(bytes),
                )
                .await
                .is_err()
                {
                    break;
                }
            }
        }
        tokio::select! {
            () = &mut deadline_sleep => break,
            _ = ticker.tick(), if config.mode == Mode::Paced && !exhausted => {
                if inflight.len() < config.window {
                    let bytes = send_one(&mut outcome, &mut inflight);
                    if sender.send(bytes).await.is_err() {
                        outcome.errors.push("request stream closed".into());
                        break;
                    }
                } else {
                    outcome.behind += 1;
                }
            }
            message = inbound.message() => match message {
                Ok(Some(pb::CollectorMessage { kind: Some(pb::collector_message::Kind::Ack(ack)) })) => {
                    let now = Instant::now();
                    while inflight.front().is_some_and(|(seq, _)| *seq <= ack.committed_seq) {
                        if let Some((_, sent)) = inflight.pop_front() {
                            outcome.ack.record(now - sent);
                            outcome.batches_acked += 1;
                            outcome.samples_acked += series;
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    outcome.errors.push("collector ended the stream".into());
                    break;
                }
                Err(status) => {
                    outcome.errors.push(format!("stream error: {status}"));
                    break;
                }
            },
        }
    }
    outcome.unacked = inflight.len() as u64;
    outcome
}

/// Paced agents start evenly spread over one interval, as a real fleet
/// does, rather than all in the same instant.
fn paced_ticker(config: &Config, index: usize) -> tokio::time::Interval {
    let start = tokio::time::Instant::now() + first_tick_offset(config, index);
    let mut ticker = tokio::time::interval_at(start, config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticker
}

fn first_tick_offset(config: &Config, index: usize) -> Duration {
    config
        .interval
        .mul_f64(index as f64 / config.agents.max(1) as f64)
}

fn generator_exhausted(config: &Config, sent: u64) -> bool {
    config.points.is_some_and(|points| sent >= points)
}

async fn victoria_agent(
    config: &Config,
    index: usize,
    handshakes: Arc<Semaphore>,
    connected: mpsc::UnboundedSender<()>,
    phase: watch::Receiver<Option<Phase>>,
) -> AgentOutcome {
    let mut outcome = AgentOutcome::default();
    let source = addr::source_for(config.address, config.agents, index);
    let connection = {
        let _permit = handshakes.acquire().await;
        let started = Instant::now();
        http::HttpConnection::connect(config.address, source)
            .await
            .map(|connection| (connection, started.elapsed()))
    };
    let _ = connected.send(());
    let mut connection = match connection {
        Ok((connection, took)) => {
            outcome.connected = true;
            outcome.connect = Some(took);
            connection
        }
        Err(error) => {
            outcome.errors.push(format!("{error:#}"));
            return outcome;
        }
    };
    let Some(Phase { deadline }) = wait_phase(phase).await else {
        return outcome;
    };
    let prefixes = http::prometheus_prefixes(&agent_id(config, index), config.series);
    let mut generator = Generator::new(config, index);
    let mut body = Vec::with_capacity(config.series * 64);
    let mut ticker = paced_ticker(config, index);
    // HTTP/1.1 without pipelining: one request in flight per connection.
    while Instant::now() < deadline && !generator.exhausted() {
        if config.mode == Mode::Paced {
            tokio::select! {
                () = tokio::time::sleep_until(deadline.into()) => break,
                _ = ticker.tick() => {}
            }
        }
        let mut breaches = Vec::new();
        let (ts, values) = generator.next(&mut breaches);
        http::prometheus_body(&prefixes, values, ts, &mut body);
        outcome.batches_sent += 1;
        let sent = Instant::now();
        let left = deadline.saturating_duration_since(sent);
        match timeout(
            left,
            connection.request("POST", "/api/v1/import/prometheus", None, &body),
        )
        .await
        {
            Err(_) => {
                outcome.unacked += 1;
                break;
            }
            Ok(Ok((status, _))) if (200..300).contains(&status) => {
                outcome.ack.record(sent.elapsed());
                outcome.batches_acked += 1;
                outcome.samples_acked += config.series as u64;
            }
            Ok(Ok((status, body))) => {
                outcome.errors.push(format!(
                    "import answered {status}: {}",
                    String::from_utf8_lossy(&body)
                ));
                break;
            }
            Ok(Err(error)) => {
                outcome.errors.push(format!("{error:#}"));
                break;
            }
        }
    }
    outcome
}

#[derive(serde::Deserialize)]
struct IncidentRow {
    agent_id: String,
    metric: String,
    #[serde(default)]
    labels: HashMap<String, String>,
    opened_at: String,
}

/// Polls `/api/v1/incidents` until an incident is listed for every expected
/// (agent id, series label) or `until`; returns the earliest `opened_at` (ms)
/// per (agent id, series label) of `loadgen.m0` incidents.
async fn poll_incidents(
    http: SocketAddr,
    token: Option<String>,
    expected: &HashMap<(String, String), i64>,
    until: Instant,
) -> HashMap<(String, String), i64> {
    let mut opened = HashMap::new();
    let mut connection = None;
    while Instant::now() < until && !expected.keys().all(|key| opened.contains_key(key)) {
        if connection.is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if connection.is_none() {
            connection = http::HttpConnection::connect(http, None).await.ok();
        }
        let Some(open) = connection.as_mut() else {
            continue;
        };
        let response = open
            .request("GET", "/api/v1/incidents?limit=5000", token.as_deref(), b"")
            .await;
        let Ok((200, body)) = response else {
            connection = None;
            continue;
        };
        let Ok(rows) = serde_json::from_slice::<Vec<IncidentRow>>(&body) else {
            continue;
        };
        for row in rows {
            if row.metric != BREACH_METRIC {
                continue;
            }
            let Some(series) = row.labels.get("series") else {
                continue;
            };
            let Ok(at) = humantime::parse_rfc3339(&row.opened_at) else {
                continue;
            };
            let at_ms = at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis() as i64);
            opened
                .entry((row.agent_id, series.clone()))
                .and_modify(|known: &mut i64| *known = (*known).min(at_ms))
                .or_insert(at_ms);
        }
    }
    opened
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(points: Option<u64>) -> Config {
        Config {
            target: Target::Steward,
            address: "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!()),
            http: None,
            ca_pem: Vec::new(),
            agent_token: String::new(),
            api_token: None,
            agents: 1,
            series: 4,
            mode: Mode::Max,
            interval: Duration::from_secs(10),
            window: 1,
            duration: Duration::from_secs(1),
            points,
            breach_rate: 0.0,
            inventory: false,
            assets: false,
            connect_concurrency: 1,
            connect_timeout: Duration::from_secs(1),
            id_prefix: "t".into(),
            seed: 1,
        }
    }

    #[test]
    fn fixed_data_set_clock_steps_by_interval_and_ends_near_now() {
        let mut clock = Clock::new(&config(Some(3)));
        let stamps: Vec<i64> = (0..3).map(|_| clock.next()).collect();
        assert_eq!(stamps[1] - stamps[0], 10_000);
        assert_eq!(stamps[2] - stamps[1], 10_000);
        assert!((now_ms() - stamps[2]).abs() < 5_000);
    }

    #[test]
    fn free_running_clock_never_repeats_a_timestamp() {
        let mut clock = Clock::new(&config(None));
        let stamps: Vec<i64> = (0..1000).map(|_| clock.next()).collect();
        assert!(stamps.windows(2).all(|pair| pair[1] > pair[0]));
    }

    #[test]
    fn paced_agents_start_spread_over_one_interval() {
        let mut config = config(None);
        config.agents = 4;
        let offsets: Vec<u128> = (0..4)
            .map(|index| first_tick_offset(&config, index).as_millis())
            .collect();
        assert_eq!(offsets, [0, 2500, 5000, 7500]);
    }

    #[test]
    fn generator_stops_after_the_fixed_number_of_points() {
        let config = config(Some(2));
        let mut generator = Generator::new(&config, 0);
        let mut breaches = Vec::new();
        generator.next(&mut breaches);
        assert!(!generator.exhausted());
        generator.next(&mut breaches);
        assert!(generator.exhausted());
        assert!(generator_exhausted(&config, 2));
        assert!(!generator_exhausted(&config, 1));
    }
}
