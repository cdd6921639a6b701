//! Host probes: each file measures one part of the host and returns samples.
//!
//! Probes never touch the network or the buffer; the collection loop calls
//! [`HostProbes::collect`] and hands the result on.

mod cpu;
mod disk;
mod host;
pub mod inventory;
mod memory;
mod network;
pub mod patch;
pub mod ping;
pub mod port;

use sysinfo::{Disks, Networks, System};

/// One measurement, as the agent sees it (the shipper maps it to proto).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
    pub timestamp_ms: i64,
}

impl Sample {
    pub fn new(metric: &'static str, value: f64, timestamp_ms: i64) -> Self {
        Self {
            metric,
            labels: Vec::new(),
            value,
            timestamp_ms,
        }
    }

    pub fn label(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.labels.push((key, value.into()));
        self
    }
}

/// The sysinfo handles reused between rounds; CPU usage is a delta between
/// two refreshes, so the same `System` must live across calls.
pub struct HostProbes {
    system: System,
    disks: Disks,
    networks: Networks,
}

impl HostProbes {
    /// Primes the CPU counters; the first [`collect`](Self::collect) should
    /// come at least `sysinfo::MINIMUM_CPU_UPDATE_INTERVAL` later.
    pub fn new() -> Result<Self, sysinfo::Error> {
        let mut system = System::new()?;
        system.refresh_cpu_usage();
        Ok(Self {
            system,
            disks: Disks::new_with_refreshed_list()?,
            networks: Networks::new_with_refreshed_list()?,
        })
    }

    pub fn collect(&mut self, timestamp_ms: i64) -> Vec<Sample> {
        let mut samples = Vec::with_capacity(64);
        cpu::collect(&mut self.system, timestamp_ms, &mut samples);
        memory::collect(&mut self.system, timestamp_ms, &mut samples);
        disk::collect(&mut self.disks, timestamp_ms, &mut samples);
        network::collect(&mut self.networks, timestamp_ms, &mut samples);
        host::collect(timestamp_ms, &mut samples);
        samples
    }
}

/// `part / whole` as a percentage, 0 when the whole is 0.
pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_handles_empty_totals() {
        assert_eq!(percent(5, 0), 0.0);
        assert_eq!(percent(1, 4), 25.0);
    }

    #[test]
    fn collects_the_documented_host_metrics_on_this_machine() {
        let mut probes = HostProbes::new().unwrap();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let samples = probes.collect(1);
        let has = |metric: &str| samples.iter().any(|sample| sample.metric == metric);
        for metric in [
            "cpu.usage_percent",
            "load.1m",
            "load.5m",
            "load.15m",
            "mem.used_percent",
            "mem.used_bytes",
            "mem.total_bytes",
            "swap.used_percent",
            "disk.used_percent",
            "disk.used_bytes",
            "disk.avail_bytes",
            "disk.total_bytes",
            "disk.inodes_used_percent",
            "net.rx_bytes",
            "host.uptime_seconds",
        ] {
            assert!(has(metric), "missing {metric}");
        }
        let total = samples
            .iter()
            .find(|s| s.metric == "cpu.usage_percent" && s.labels == [("cpu", "total".to_string())])
            .expect("total cpu");
        assert!((0.0..=100.0).contains(&total.value), "{total:?}");
        assert!(samples.iter().all(|sample| sample.value.is_finite()));
    }
}
