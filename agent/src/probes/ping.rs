//! ICMP echo ("ping") probe: reachability, round-trip time and loss of the
//! hosts configured as `[[ping]]` tables in `agent.toml`.
//!
//! Owns the ICMP sockets, opened once by [`Pinger::new`], and one measuring
//! round per target. It must never report a host as down because the agent
//! itself may not send ICMP: then nothing is sent, `ping.up` is omitted (it is
//! unknown, not 0) and `ping.permitted = 0` is reported in its place.
//!
//! Metrics, each labelled `target` (the configured string) and, when
//! configured, `name`:
//! - `ping.up`: 1 if any echo was answered this round, else 0.
//! - `ping.loss_percent`: share of the round's `count` echoes left unanswered;
//!   100 when the name did not resolve.
//! - `ping.rtt_ms`, `ping.rtt_min_ms`, `ping.rtt_max_ms`: mean, fastest and
//!   slowest reply; only when at least one reply came. 0 is a real value
//!   (loopback answers below the clock's resolution), not a missing one.
//! - `ping.permitted`: only ever 0, and only instead of all of the above, when
//!   no ICMP socket could be opened for the target's address family.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};
use tokio::task::JoinSet;

use super::Sample;
use steward_core::config_file;

/// Most echoes one target may send per round; keeps a typo from turning a
/// round into a flood and keeps sequence numbers of one round distinct.
pub const MAX_COUNT: u32 = 100;

/// Payload of every echo: the 56 bytes `ping(8)` sends by default, so the
/// packets look ordinary to firewalls and IDS rules.
const PAYLOAD: [u8; 56] = [0; 56];

/// Grace on top of a target's own worst case before the round gives up on it,
/// covering task scheduling; the per-echo timeouts fire well before this.
const DEADLINE_SLACK: Duration = Duration::from_millis(250);

/// One `[[ping]]` table in `agent.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingTarget {
    /// Host name or IP address. Names are resolved again every round so a
    /// changed DNS record is followed without a restart.
    pub target: String,
    /// Human name, reported as the `name` label.
    #[serde(default)]
    pub name: Option<String>,
    /// Echoes per round.
    #[serde(default = "default_count")]
    pub count: u32,
    /// How long to wait for each reply, and for the name to resolve.
    #[serde(
        default = "default_timeout",
        deserialize_with = "config_file::duration"
    )]
    pub timeout: Duration,
    /// Gap between successive echoes of one round.
    #[serde(
        default = "default_interval",
        deserialize_with = "config_file::duration"
    )]
    pub interval: Duration,
}

fn default_count() -> u32 {
    3
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_interval() -> Duration {
    Duration::from_millis(200)
}

/// A `[[ping]]` table that parsed but cannot be used. `key` is the field
/// inside the table, so the config loader can point at `ping.<key>`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct InvalidPingTarget {
    pub key: &'static str,
    pub message: String,
}

impl PingTarget {
    /// A target with the documented defaults, as an empty table would give.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            name: None,
            count: default_count(),
            timeout: default_timeout(),
            interval: default_interval(),
        }
    }

    pub fn validate(&self) -> Result<(), InvalidPingTarget> {
        let invalid = |key, message: String| Err(InvalidPingTarget { key, message });
        if self.target.trim().is_empty() {
            return invalid("target", "must name a host or an IP address".into());
        }
        if !(1..=MAX_COUNT).contains(&self.count) {
            return invalid("count", format!("must be between 1 and {MAX_COUNT}"));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return invalid("timeout", "must be more than 0s and at most 60s".into());
        }
        if self.interval > Duration::from_secs(10) {
            return invalid("interval", "must be at most 10s".into());
        }
        Ok(())
    }

    /// Worst-case wall time of one round for this target: resolving the name
    /// (bounded by `timeout`), then `count` echoes `interval` apart, the last
    /// one waiting `timeout` for its reply. With the defaults: 2.4 s.
    pub fn round_budget(&self) -> Duration {
        self.timeout + self.interval * (self.echoes() - 1) + self.timeout
    }

    /// Echoes actually sent per round: `count`, kept in range even if the
    /// target skipped [`validate`](Self::validate).
    fn echoes(&self) -> u32 {
        self.count.clamp(1, MAX_COUNT)
    }

    fn labelled(&self, sample: Sample) -> Sample {
        let sample = sample.label("target", self.target.clone());
        match &self.name {
            Some(name) => sample.label("name", name.clone()),
            None => sample,
        }
    }
}

/// Which kind of ICMP socket one address family uses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IcmpAccess {
    /// `SOCK_RAW`: root or `CAP_NET_RAW`.
    Raw,
    /// `SOCK_DGRAM` ICMP: unprivileged, allowed by `net.ipv4.ping_group_range`.
    Datagram,
    /// Neither could be opened; the OS error says why. Targets of this family
    /// report `ping.permitted = 0` instead of `ping.up`.
    Unavailable(String),
}

impl IcmpAccess {
    pub fn is_available(&self) -> bool {
        !matches!(self, IcmpAccess::Unavailable(_))
    }
}

/// Why a round did not get every echo answered, beyond plain lost replies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PingError {
    #[error("cannot resolve {name}: {source}")]
    Resolve { name: String, source: io::Error },
    #[error("resolving {name} took longer than {timeout:?}")]
    ResolveTimedOut { name: String, timeout: Duration },
    #[error("{name} resolved to no address")]
    NoAddress { name: String },
    #[error(
        "{name} resolves only to {family} addresses, and this agent may not send {family} ICMP"
    )]
    FamilyNotPermitted { name: String, family: &'static str },
    #[error("ICMP is not permitted for this agent")]
    NotPermitted,
    #[error("cannot send echo: {0}")]
    Echo(#[source] SurgeError),
    #[error("the round took longer than its deadline of {0:?}")]
    DeadlineExceeded(Duration),
    #[error("echo task failed: {0}")]
    Task(String),
}

/// What one round measured for one target.
#[derive(Debug)]
pub struct PingOutcome {
    pub target: PingTarget,
    /// The address pinged this round, when the name resolved.
    pub address: Option<IpAddr>,
    /// `false` when no ICMP socket exists for the target's address family:
    /// nothing was sent and reachability is unknown, not down.
    pub permitted: bool,
    /// Echoes the round was meant to send; loss is measured against it.
    pub expected: u32,
    /// Round-trip times of the replies, in arrival order. A zero duration is
    /// a reply faster than the clock can tell apart, not a missing one.
    pub rtts: Vec<Duration>,
    /// The latest reason beyond plain timeouts that echoes went unanswered.
    pub error: Option<PingError>,
}

impl PingOutcome {
    fn unanswered(target: &PingTarget, address: Option<IpAddr>, error: PingError) -> Self {
        Self {
            target: target.clone(),
            address,
            permitted: true,
            expected: target.echoes(),
            rtts: Vec::new(),
            error: Some(error),
        }
    }

    fn not_permitted(target: &PingTarget, error: PingError) -> Self {
        Self {
            permitted: false,
            ..Self::unanswered(target, None, error)
        }
    }

    pub fn received(&self) -> u32 {
        u32::try_from(self.rtts.len()).unwrap_or(u32::MAX)
    }

    pub fn loss_percent(&self) -> f64 {
        let expected = self.expected.max(1);
        let lost = expected.saturating_sub(self.received());
        f64::from(lost) * 100.0 / f64::from(expected)
    }

    /// The samples this outcome reports; see the module documentation.
    pub fn samples(&self, timestamp_ms: i64) -> Vec<Sample> {
        let target = &self.target;
        if !self.permitted {
            return vec![target.labelled(Sample::new("ping.permitted", 0.0, timestamp_ms))];
        }
        let mut samples = Vec::with_capacity(5);
        let up = if self.rtts.is_empty() { 0.0 } else { 1.0 };
        samples.push(target.labelled(Sample::new("ping.up", up, timestamp_ms)));
        samples.push(target.labelled(Sample::new(
            "ping.loss_percent",
            self.loss_percent(),
            timestamp_ms,
        )));
        let millis = |rtt: &Duration| rtt.as_secs_f64() * 1000.0;
        if let (Some(min), Some(max)) = (self.rtts.iter().min(), self.rtts.iter().max()) {
            let mean = self.rtts.iter().map(millis).sum::<f64>() / self.rtts.len() as f64;
            for (metric, value) in [
                ("ping.rtt_ms", mean),
                ("ping.rtt_min_ms", millis(min)),
                ("ping.rtt_max_ms", millis(max)),
            ] {
                samples.push(target.labelled(Sample::new(metric, value, timestamp_ms)));
            }
        }
        samples
    }
}

/// The ICMP sockets of both address families, shared by every echo in flight.
#[derive(Clone)]
struct Clients {
    v4: Option<Client>,
    v6: Option<Client>,
}

/// Pings targets over ICMP sockets opened once at start-up.
///
/// Create it only when at least one `[[ping]]` target is configured: it
/// opens the sockets and warns right away if ICMP is not permitted.
pub struct Pinger {
    clients: Clients,
    v4: IcmpAccess,
    v6: IcmpAccess,
    /// Next echo sequence number. Each round of each target takes a fresh
    /// block, so concurrent rounds to the same address never wait for the same
    /// (address, identifier, sequence) reply: datagram sockets let the kernel
    /// pick the identifier, so it cannot tell them apart.
    next_sequence: AtomicU16,
    /// Last reported error per target, so a failure is logged when it starts
    /// or changes and not again every round.
    last_errors: Mutex<HashMap<(String, Option<String>), String>>,
}

impl std::fmt::Debug for Pinger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinger")
            .field("v4", &self.v4)
            .field("v6", &self.v6)
            .finish_non_exhaustive()
    }
}

impl Pinger {
    /// Opens an ICMPv4 and an ICMPv6 socket, raw when permitted, otherwise
    /// unprivileged datagram, and logs once what it got. Async because the
    /// sockets' receive tasks are spawned on the current Tokio runtime.
    pub async fn new() -> Self {
        let (v4_client, v4) = open(ICMP::V4);
        let (v6_client, v6) = open(ICMP::V6);
        let pinger = Self::from_parts(
            Clients {
                v4: v4_client,
                v6: v6_client,
            },
            v4,
            v6,
        );
        pinger.log_access();
        pinger
    }

    fn from_parts(clients: Clients, v4: IcmpAccess, v6: IcmpAccess) -> Self {
        Self {
            clients,
            v4,
            v6,
            next_sequence: AtomicU16::new(rand::random()),
            last_errors: Mutex::new(HashMap::new()),
        }
    }

    fn log_access(&self) {
        match (&self.v4, &self.v6) {
            (IcmpAccess::Unavailable(v4_error), IcmpAccess::Unavailable(v6_error)) => {
                tracing::warn!(
                    message = "ICMP is not permitted; ping targets will report ping.permitted=0 instead of ping.up. Run as root, grant CAP_NET_RAW, or include the agent's group in net.ipv4.ping_group_range.",
                    v4_error = %v4_error,
                    v6_error = %v6_error,
                );
            }
            (v4, v6) => {
                tracing::info!(message = "ICMP sockets opened.", v4 = ?v4, v6 = ?v6);
            }
        }
    }

    pub fn access_v4(&self) -> &IcmpAccess {
        &self.v4
    }

    pub fn access_v6(&self) -> &IcmpAccess {
        &self.v6
    }

    /// Measures every target concurrently; the round takes about as long as
    /// the slowest target's [`PingTarget::round_budget`], never more.
    /// Samples come in the order of `targets`.
    pub async fn probe_all(&self, targets: &[PingTarget], timestamp_ms: i64) -> Vec<Sample> {
        let mut rounds = JoinSet::new();
        for (index, target) in targets.iter().enumerate() {
            let round = self.round(target);
            rounds.spawn(async move { (index, round.await) });
        }
        let mut outcomes: Vec<Option<PingOutcome>> = targets.iter().map(|_| None).collect();
        while let Some(joined) = rounds.join_next().await {
            match joined {
                Ok((index, outcome)) => {
                    if let Some(slot) = outcomes.get_mut(index) {
                        *slot = Some(outcome);
                    }
                }
                Err(error) => {
                    tracing::error!(message = "Ping round task failed.", %error);
                }
            }
        }
        let mut samples = Vec::with_capacity(targets.len() * 5);
        for outcome in outcomes.into_iter().flatten() {
            self.log_change(&outcome);
            samples.extend(outcome.samples(timestamp_ms));
        }
        samples
    }

    /// Measures one target; [`probe_all`](Self::probe_all) is the usual entry.
    pub async fn probe(&self, target: &PingTarget) -> PingOutcome {
        self.round(target).await
    }

    /// Prepares one round as a `'static` future, so rounds can run as tasks.
    fn round(&self, target: &PingTarget) -> impl Future<Output = PingOutcome> + Send + 'static {
        let count = target.echoes();
        // `count` is at most MAX_COUNT, far below u16::MAX.
        let block = u16::try_from(count).unwrap_or(u16::MAX);
        let first_sequence = self.next_sequence.fetch_add(block, Ordering::Relaxed);
        let clients = self.clients.clone();
        let target = target.clone();
        async move {
            let deadline = target.round_budget() + DEADLINE_SLACK;
            match tokio::time::timeout(deadline, measure(&clients, &target, first_sequence)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    PingOutcome::unanswered(&target, None, PingError::DeadlineExceeded(deadline))
                }
            }
        }
    }

    /// Logs a target's error when it appears or changes, and its recovery.
    fn log_change(&self, outcome: &PingOutcome) {
        let key = (outcome.target.target.clone(), outcome.target.name.clone());
        let current = outcome.error.as_ref().map(ToString::to_string);
        let mut last_errors = self
            .last_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = match &current {
            Some(error) => last_errors.insert(key, error.clone()),
            None => last_errors.remove(&key),
        };
        match (previous, current) {
            (previous, Some(error)) if previous.as_ref() != Some(&error) => {
                tracing::warn!(
                    message = "Ping target failing.",
                    target = %outcome.target.target,
                    %error,
                    loss_percent = outcome.loss_percent(),
                );
            }
            (Some(_), None) => {
                tracing::info!(message = "Ping target recovered.", target = %outcome.target.target);
            }
            _ => {}
        }
    }
}

/// Opens one family's ICMP socket, preferring raw (surge-ping falls back to
/// datagram by itself when raw is refused).
fn open(kind: ICMP) -> (Option<Client>, IcmpAccess) {
    let config = Config::builder()
        .kind(kind)
        .sock_type_hint(socket2::Type::RAW)
        .build();
    match Client::new(&config) {
        Ok(client) => {
            let access = if client.get_socket().get_type() == socket2::Type::RAW {
                IcmpAccess::Raw
            } else {
                IcmpAccess::Datagram
            };
            (Some(client), access)
        }
        // surge-ping's own message spans lines; keep the log on one.
        Err(error) => (
            None,
            IcmpAccess::Unavailable(error.to_string().replace('\n', " ")),
        ),
    }
}

async fn measure(clients: &Clients, target: &PingTarget, first_sequence: u16) -> PingOutcome {
    if clients.v4.is_none() && clients.v6.is_none() {
        return PingOutcome::not_permitted(target, PingError::NotPermitted);
    }
    let address = match resolve(clients, target).await {
        Ok(address) => address,
        Err(error @ PingError::FamilyNotPermitted { .. }) => {
            return PingOutcome::not_permitted(target, error);
        }
        Err(error) => return PingOutcome::unanswered(target, None, error),
    };
    let client = match address.ip() {
        IpAddr::V4(_) => clients.v4.clone(),
        IpAddr::V6(_) => clients.v6.clone(),
    };
    let Some(client) = client else {
        // `resolve` only returns addresses of a family with a socket.
        return PingOutcome::not_permitted(target, PingError::NotPermitted);
    };
    let scope_id = match address {
        SocketAddr::V6(v6) => v6.scope_id(),
        SocketAddr::V4(_) => 0,
    };
    // Raw sockets see every ICMP reply on the host; a fresh identifier per
    // round keeps this round's replies apart from other pingers' on the host.
    let identifier = PingIdentifier(rand::random());
    let mut echoes = JoinSet::new();
    for echo in 0..target.echoes() {
        let client = client.clone();
        let timeout = target.timeout;
        let delay = target.interval * echo;
        let sequence = PingSequence(first_sequence.wrapping_add(echo as u16));
        echoes.spawn(async move {
            tokio::time::sleep(delay).await;
            let mut pinger = client.pinger(address.ip(), identifier).await;
            pinger.scope_id(scope_id).timeout(timeout);
            pinger.ping(sequence, &PAYLOAD).await
        });
    }
    let mut outcome = PingOutcome {
        target: target.clone(),
        address: Some(address.ip()),
        permitted: true,
        expected: target.echoes(),
        rtts: Vec::with_capacity(target.echoes() as usize),
        error: None,
    };
    while let Some(joined) = echoes.join_next().await {
        match joined {
            Ok(Ok((_reply, rtt))) => outcome.rtts.push(rtt),
            // A lost echo is the measurement itself, not an error.
            Ok(Err(SurgeError::Timeout { .. })) => {}
            Ok(Err(error)) => outcome.error = Some(PingError::Echo(error)),
            Err(error) => outcome.error = Some(PingError::Task(error.to_string())),
        }
    }
    outcome
}

/// The address to ping this round: an IP literal as is, otherwise the first
/// resolved address of a family this agent can ping (system preference order).
async fn resolve(clients: &Clients, target: &PingTarget) -> Result<SocketAddr, PingError> {
    let name = target.target.trim();
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, 0)],
        Err(_) => {
            match tokio::time::timeout(target.timeout, tokio::net::lookup_host((name, 0))).await {
                Ok(Ok(found)) => found.collect(),
                Ok(Err(source)) => {
                    return Err(PingError::Resolve {
                        name: name.to_string(),
                        source,
                    });
                }
                Err(_) => {
                    return Err(PingError::ResolveTimedOut {
                        name: name.to_string(),
                        timeout: target.timeout,
                    });
                }
            }
        }
    };
    let pingable = |address: &&SocketAddr| match address.ip() {
        IpAddr::V4(_) => clients.v4.is_some(),
        IpAddr::V6(_) => clients.v6.is_some(),
    };
    if let Some(address) = addresses.iter().find(pingable) {
        return Ok(*address);
    }
    match addresses.first() {
        None => Err(PingError::NoAddress {
            name: name.to_string(),
        }),
        Some(address) => Err(PingError::FamilyNotPermitted {
            name: name.to_string(),
            family: if address.is_ipv4() { "IPv4" } else { "IPv6" },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(target: &str) -> PingTarget {
        PingTarget {
            interval: Duration::from_millis(20),
            ..PingTarget::new(target)
        }
    }

    fn value(samples: &[Sample], metric: &str) -> Option<f64> {
        samples
            .iter()
            .find(|sample| sample.metric == metric)
            .map(|sample| sample.value)
    }

    /// Asserts a full answered round, or, when this machine forbids ICMP for
    /// the family, the documented "unknown" report instead of a pass.
    fn assert_answered_or_unknown(access: &IcmpAccess, outcome: &PingOutcome) {
        let samples = outcome.samples(7);
        if access.is_available() {
            assert!(outcome.permitted, "{outcome:?}");
            assert_eq!(outcome.received(), outcome.expected, "{outcome:?}");
            assert!(outcome.error.is_none(), "{outcome:?}");
            assert_eq!(value(&samples, "ping.up"), Some(1.0));
            assert_eq!(value(&samples, "ping.loss_percent"), Some(0.0));
            let min = value(&samples, "ping.rtt_min_ms").expect("min rtt");
            let mean = value(&samples, "ping.rtt_ms").expect("mean rtt");
            let max = value(&samples, "ping.rtt_max_ms").expect("max rtt");
            assert!(0.0 <= min && min <= mean && mean <= max, "{samples:?}");
            assert!(max < 1000.0, "{samples:?}");
            assert!(value(&samples, "ping.permitted").is_none());
        } else {
            assert!(!outcome.permitted, "{outcome:?}");
            assert_eq!(value(&samples, "ping.permitted"), Some(0.0));
            assert!(value(&samples, "ping.up").is_none(), "{samples:?}");
        }
        assert!(samples.iter().all(|sample| sample.timestamp_ms == 7));
        assert!(
            samples
                .iter()
                .all(|sample| sample.labels[0] == ("target", outcome.target.target.clone()))
        );
    }

    #[tokio::test]
    async fn pings_ipv4_loopback_or_reports_unknown() {
        let pinger = Pinger::new().await;
        let outcome = pinger.probe(&quick("127.0.0.1")).await;
        eprintln!("{pinger:?}: {outcome:?}");
        if outcome.permitted {
            assert_eq!(outcome.address, Some("127.0.0.1".parse().unwrap()));
        }
        assert_answered_or_unknown(pinger.access_v4(), &outcome);
    }

    #[tokio::test]
    async fn pings_ipv6_loopback_or_reports_unknown() {
        let pinger = Pinger::new().await;
        let outcome = pinger.probe(&quick("::1")).await;
        assert_answered_or_unknown(pinger.access_v6(), &outcome);
    }

    #[tokio::test]
    async fn resolves_names_each_round() {
        let pinger = Pinger::new().await;
        let outcome = pinger.probe(&quick("localhost")).await;
        let access = match outcome.address {
            Some(IpAddr::V6(_)) => pinger.access_v6(),
            _ => pinger.access_v4(),
        };
        assert_answered_or_unknown(access, &outcome);
    }

    #[tokio::test]
    async fn unresolvable_name_is_full_loss_with_a_reason() {
        let pinger = Pinger::new().await;
        let outcome = pinger.probe(&quick("nonexistent.invalid")).await;
        let samples = outcome.samples(1);
        if pinger.access_v4().is_available() || pinger.access_v6().is_available() {
            assert_eq!(value(&samples, "ping.up"), Some(0.0));
            assert_eq!(value(&samples, "ping.loss_percent"), Some(100.0));
            assert!(value(&samples, "ping.rtt_ms").is_none(), "{samples:?}");
            let error = outcome.error.expect("a reason").to_string();
            assert!(error.contains("nonexistent.invalid"), "{error}");
        } else {
            assert_eq!(value(&samples, "ping.permitted"), Some(0.0));
        }
    }

    #[tokio::test]
    async fn without_icmp_permission_reachability_is_unknown_not_down() {
        let denied = || IcmpAccess::Unavailable("Operation not permitted".into());
        let pinger = Pinger::from_parts(Clients { v4: None, v6: None }, denied(), denied());
        let target = PingTarget {
            name: Some("loopback".into()),
            ..quick("127.0.0.1")
        };
        let samples = pinger.probe_all(&[target], 5).await;
        assert_eq!(
            samples,
            [Sample::new("ping.permitted", 0.0, 5)
                .label("target", "127.0.0.1")
                .label("name", "loopback")]
        );
    }

    #[tokio::test]
    async fn probes_targets_concurrently_within_the_round_budget() {
        let pinger = Pinger::new().await;
        let slow = |target: &str| PingTarget {
            count: 3,
            interval: Duration::from_millis(300),
            ..PingTarget::new(target)
        };
        let targets = [
            slow("127.0.0.1"),
            slow("127.0.0.2"),
            slow("nonexistent.invalid"),
        ];
        let started = std::time::Instant::now();
        let samples = pinger.probe_all(&targets, 9).await;
        let elapsed = started.elapsed();
        // Run one after another the two loopback targets alone take 1.2 s.
        assert!(elapsed < Duration::from_millis(1100), "{elapsed:?}");
        let targets_seen: Vec<&str> = samples
            .iter()
            .filter(|sample| matches!(sample.metric, "ping.up" | "ping.permitted"))
            .map(|sample| sample.labels[0].1.as_str())
            .collect();
        assert_eq!(
            targets_seen,
            ["127.0.0.1", "127.0.0.2", "nonexistent.invalid"]
        );
    }

    #[test]
    fn zero_rtt_is_a_reply_below_clock_resolution() {
        let outcome = PingOutcome {
            target: PingTarget::new("127.0.0.1"),
            address: None,
            permitted: true,
            expected: 3,
            rtts: vec![Duration::ZERO, Duration::ZERO],
            error: None,
        };
        let samples = outcome.samples(1);
        assert_eq!(value(&samples, "ping.up"), Some(1.0));
        assert_eq!(value(&samples, "ping.rtt_ms"), Some(0.0));
        assert_eq!(value(&samples, "ping.rtt_min_ms"), Some(0.0));
        let loss = value(&samples, "ping.loss_percent").unwrap();
        assert!((loss - 100.0 / 3.0).abs() < 1e-9, "{loss}");
    }

    #[test]
    fn rtt_statistics_are_in_milliseconds() {
        let outcome = PingOutcome {
            target: PingTarget::new("127.0.0.1"),
            address: None,
            permitted: true,
            expected: 3,
            rtts: [1_000, 2_000, 6_000].map(Duration::from_micros).to_vec(),
            error: None,
        };
        let samples = outcome.samples(1);
        assert_eq!(value(&samples, "ping.rtt_ms"), Some(3.0));
        assert_eq!(value(&samples, "ping.rtt_min_ms"), Some(1.0));
        assert_eq!(value(&samples, "ping.rtt_max_ms"), Some(6.0));
        assert_eq!(value(&samples, "ping.loss_percent"), Some(0.0));
    }

    #[test]
    fn failures_are_logged_once_per_change() {
        let pinger = Pinger::from_parts(
            Clients { v4: None, v6: None },
            IcmpAccess::Raw,
            IcmpAccess::Raw,
        );
        let outcome = |error: Option<PingError>| PingOutcome {
            error,
            ..PingOutcome::unanswered(&PingTarget::new("a"), None, PingError::NotPermitted)
        };
        let stored = |pinger: &Pinger| {
            pinger
                .last_errors
                .lock()
                .unwrap()
                .get(&("a".to_string(), None))
                .cloned()
        };
        pinger.log_change(&outcome(Some(PingError::NoAddress { name: "a".into() })));
        assert_eq!(stored(&pinger).as_deref(), Some("a resolved to no address"));
        pinger.log_change(&outcome(None));
        assert_eq!(stored(&pinger), None);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        ping: Vec<PingTarget>,
    }

    #[test]
    fn parses_ping_tables_with_defaults() {
        let file: File = toml::from_str(
            "[[ping]]\ntarget = \"gw.example\"\n\n\
             [[ping]]\ntarget = \"10.0.0.1\"\nname = \"router\"\ncount = 5\ntimeout = \"500ms\"\ninterval = \"50ms\"\n",
        )
        .unwrap();
        assert_eq!(file.ping[0], PingTarget::new("gw.example"));
        assert_eq!(file.ping[0].round_budget(), Duration::from_millis(2400));
        let router = &file.ping[1];
        assert_eq!(router.name.as_deref(), Some("router"));
        assert_eq!(router.count, 5);
        assert_eq!(router.timeout, Duration::from_millis(500));
        assert_eq!(router.interval, Duration::from_millis(50));
        assert!(file.ping.iter().all(|target| target.validate().is_ok()));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let unknown = toml::from_str::<File>("[[ping]]\ntarget = \"a\"\ntimout = \"1s\"\n");
        assert!(unknown.unwrap_err().to_string().contains("timout"));
        let bad_duration = toml::from_str::<File>("[[ping]]\ntarget = \"a\"\ntimeout = \"soon\"\n");
        assert!(bad_duration.is_err());
        for (target, key) in [
            (
                PingTarget {
                    count: 0,
                    ..PingTarget::new("a")
                },
                "count",
            ),
            (
                PingTarget {
                    timeout: Duration::ZERO,
                    ..PingTarget::new("a")
                },
                "timeout",
            ),
            (PingTarget::new(" "), "target"),
        ] {
            assert_eq!(target.validate().unwrap_err().key, key);
        }
    }
}
