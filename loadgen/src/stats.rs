//! Latency percentiles and the run report (human table or JSON).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// Latencies in microseconds; sorted once when summarised. A sorted vector
/// is exact and small enough here (one entry per batch, not per sample).
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        self.0
            .push(latency.as_micros().min(u128::from(u32::MAX)) as u32);
    }
    pub fn record_ms(&mut self, ms: i64) {
        self.0
            .push((ms.max(0) as u64 * 1000).min(u64::from(u32::MAX)) as u32);
    }
    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn summary(mut self) -> Option<Summary> {
        self.0.sort_unstable();
        let ms = |p: f64| percentile(&self.0, p).map(|us| f64::from(us) / 1000.0);
        Some(Summary {
            count: self.0.len(),
            p50_ms: ms(0.5)?,
            p99_ms: ms(0.99)?,
            max_ms: ms(1.0)?,
        })
    }
}

/// Nearest-rank quantile `p` (0..=1) of an ascending slice.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: &'static str,
    pub mode: &'static str,
    pub agents: usize,
    pub agents_connected: usize,
    pub series_per_agent: usize,
    /// Seconds of the sending phase (after every agent has connected).
    pub duration_s: f64,
    pub batches_sent: u64,
    pub batches_acked: u64,
    pub samples_acked: u64,
    pub samples_per_s: f64,
    /// Batches sent but not acknowledged when the run ended.
    pub batches_unacked: u64,
    pub ack: Option<Summary>,
    /// Hello to Welcome (gRPC) or the first response (HTTP).
    pub connect: Option<Summary>,
    pub connect_s: f64,
    /// Paced mode: ticks skipped because the in-flight window was full.
    pub ticks_behind: u64,
    pub errors: u64,
    pub first_errors: Vec<String>,
    pub breaches: u64,
    pub incidents_seen: u64,
    pub breach_to_incident: Option<Summary>,
    /// The generator's own CPU over the sending phase, % of one core.
    pub loadgen_cpu_percent: f64,
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::new();
        let fmt = |summary: &Option<Summary>| match summary {
            Some(s) => format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})",
                s.p50_ms, s.p99_ms, s.max_ms, s.count
            ),
            None => "-".into(),
        };
        let rows = [
            ("target", format!("{} ({} mode)", self.target, self.mode)),
            (
                "agents",
                format!(
                    "{} connected of {}, {} series each",
                    self.agents_connected, self.agents, self.series_per_agent
                ),
            ),
            (
                "connect",
                format!("{:.1} s total; {}", self.connect_s, fmt(&self.connect)),
            ),
            ("duration", format!("{:.1} s", self.duration_s)),
            (
                "acknowledged",
                format!(
                    "{} samples in {} of {} batches ({} unacked at end)",
                    self.samples_acked, self.batches_acked, self.batches_sent, self.batches_unacked
                ),
            ),
            ("samples/s", format!("{:.0}", self.samples_per_s)),
            ("ack latency", fmt(&self.ack)),
            ("ticks behind", self.ticks_behind.to_string()),
            ("errors", self.errors.to_string()),
            (
                "breach→incident",
                format!(
                    "{} breaching series, {} incidents seen; {}",
                    self.breaches,
                    self.incidents_seen,
                    fmt(&self.breach_to_incident)
                ),
            ),
            (
                "loadgen CPU",
                format!("{:.0}% of one core", self.loadgen_cpu_percent),
            ),
        ];
        let _ = writeln!(out, "| measure | value |\n|---|---|");
        for (key, value) in rows {
            let _ = writeln!(out, "| {key} | {value} |");
        }
        for error in &self.first_errors {
            let _ = writeln!(out, "error: {error}");
        }
        out
    }
}

impl Report {
    /// `key=value` lines, nested summaries flattened (`ack_p99_ms=...`), for
    /// shell scripts without a JSON parser. Missing summaries print nothing.
    pub fn key_values(&self) -> String {
        let mut out = String::new();
        let Ok(serde_json::Value::Object(map)) = serde_json::to_value(self) else {
            return out;
        };
        for (key, value) in map {
            match value {
                serde_json::Value::Object(inner) => {
                    for (inner_key, value) in inner {
                        let _ = writeln!(out, "{key}_{inner_key}={value}");
                    }
                }
                serde_json::Value::Array(_) | serde_json::Value::Null => {}
                serde_json::Value::String(text) => {
                    let _ = writeln!(out, "{key}={text}");
                }
                other => {
                    let _ = writeln!(out, "{key}={other}");
                }
            }
        }
        out
    }
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
/// USER_HZ is 100 on every Linux architecture the project builds for.
pub fn own_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| cpu_seconds_from_stat(&stat))
        .unwrap_or(0.0)
}

fn cpu_seconds_from_stat(stat: &str) -> Option<f64> {
    // Fields after the parenthesised command name, which may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 overall: 12 and 13 after `state`.
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u32> = (1..=100).collect();
        for (p, expected) in [
            (0.0, 1),
            (0.01, 1),
            (0.5, 50),
            (0.99, 99),
            (0.991, 100),
            (1.0, 100),
        ] {
            assert_eq!(percentile(&values, p), Some(expected), "p={p}");
        }
        assert_eq!(percentile(&[7u32], 0.99), Some(7));
        assert_eq!(percentile::<u32>(&[], 0.5), None);
    }

    #[test]
    fn summary_sorts_and_converts_to_milliseconds() {
        let mut latencies = Latencies::default();
        for ms in [30, 10, 20] {
            latencies.record(Duration::from_millis(ms));
        }
        latencies.record_ms(-5);
        let summary = latencies.summary().unwrap();
        assert_eq!(
            summary,
            Summary {
                count: 4,
                p50_ms: 10.0,
                p99_ms: 30.0,
                max_ms: 30.0
            }
        );
        assert_eq!(Latencies::default().summary(), None);
    }

    #[test]
    fn key_values_flatten_summaries() {
        let report = Report {
            target: "steward",
            mode: "max",
            agents: 2,
            agents_connected: 2,
            series_per_agent: 10,
            duration_s: 1.5,
            batches_sent: 3,
            batches_acked: 3,
            samples_acked: 30,
            samples_per_s: 20.0,
            batches_unacked: 0,
            ack: Some(Summary {
                count: 3,
                p50_ms: 1.5,
                p99_ms: 2.0,
                max_ms: 2.0,
            }),
            connect: None,
            connect_s: 0.1,
            ticks_behind: 0,
            errors: 0,
            first_errors: vec!["x".into()],
            breaches: 0,
            incidents_seen: 0,
            breach_to_incident: None,
            loadgen_cpu_percent: 12.5,
        };
        let text = report.key_values();
        for line in [
            "target=steward",
            "samples_per_s=20.0",
            "ack_p99_ms=2.0",
            "ack_count=3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        assert!(!text.contains("connect_p50"));
        assert!(!text.contains("first_errors"));
    }

    #[test]
    fn cpu_seconds_parse_a_command_name_with_spaces() {
        let stat = "42 (tokio runtime) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_seconds_from_stat(stat), Some(3.0));
    }
}
