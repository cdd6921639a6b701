//! steward-agent: measures its host and streams samples to the collector.
//!
//! Layout:
//! - [`allocator`]: glibc malloc tuning (one arena, fixed thresholds, trims
//!   after the big periodic jobs).
//! - [`config`]: `agent.toml`, parsed then validated (`steward_core::config_file`
//!   reports errors with file, line and key).
//! - [`identity`]: the persistent agent id.
//! - [`enroll`]: `steward-agent enroll` (pinned CA, local key pair, CSR).
//! - [`renewal`]: renews the client certificate at two thirds of its lifetime.
//! - [`cert_files`]: the client key and certificate on disk, replaced as one
//!   pair (commit marker; crash recovery on load).
//! - [`probes`]: one file per measured subsystem; pure measurement, no network.
//! - [`buffer`]: the hand-off point between collection and shipping; its
//!   keeper task fsyncs and bounds the spool.
//! - [`spool`]: unacknowledged batches in checksummed segment files under
//!   `state_dir/spool/`; survives restarts together with its sequence numbers.
//! - [`codec`]: batches to wire messages and back (also the spool's payload format).
//! - [`shipper`]: the gRPC/TLS client that drains the spool; reconnects with backoff.
//! - `schedule`: the slower loops (ping/port checks, patch scans, inventory), one task each.
//!
//! [`run`] wires them: a collection task pushes a batch every `interval`, the
//! shipper sends and forgets batches as the collector acknowledges them.

pub mod allocator;
pub mod buffer;
pub mod cert_files;
pub mod codec;
pub mod config;
pub mod enroll;
pub mod identity;
pub mod probes;
pub mod renewal;
mod schedule;
pub mod shipper;
pub mod spool;

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use config::AgentConfig;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error("cannot use state directory {path}: {source}")]
    StateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read host information: {0}")]
    Probes(#[from] sysinfo::Error),
    #[error("cannot open the spool: {0}")]
    Spool(#[from] spool::SpoolError),
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let config = Arc::new(config);
    let agent_id = identity::load_or_create_agent_id(&config.state_dir).map_err(|source| {
        AgentError::StateDir {
            path: config.state_dir.clone(),
            source,
        }
    })?;
    let hostname = config
        .hostname
        .clone()
        .unwrap_or_else(steward_core::process::hostname);
    for key in &config.retired_keys {
        tracing::warn!(
            message = "Ignoring a retired configuration key; the buffer is on disk now, bounded by [spool] max_bytes.",
            key
        );
    }
    // Epochs stay below 2^63: the collector stores them as SQLite integers.
    let new_epoch = rand::random::<u64>() >> 1;
    let (buffer, recovery) = buffer::BatchBuffer::open(
        &config.state_dir.join("spool"),
        config.spool.max_bytes,
        new_epoch,
    )?;
    let buffer = Arc::new(buffer);
    let identity = shipper::AgentIdentity {
        agent_id,
        hostname,
        epoch: buffer.epoch(),
        facts: basic_facts(),
    };
    tracing::info!(
        message = "Agent starting.",
        agent_id = %identity.agent_id,
        hostname = %identity.hostname,
        collectors = %config
            .collectors
            .iter()
            .map(|collector| collector.url.as_str())
            .collect::<Vec<_>>()
            .join(","),
        interval_s = config.interval.as_secs_f64(),
    );
    tracing::info!(
        message = "Spool opened.",
        epoch = identity.epoch,
        continued_epoch = recovery.continued_epoch,
        recovered_batches = recovery.records,
        recovered_bytes = recovery.bytes,
        damaged_bytes = recovery.damaged_bytes,
        max_bytes = config.spool.max_bytes,
    );
    let probes = probes::HostProbes::new()?;
    let inventory = Arc::new(schedule::InventoryState::default());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(Arc::clone(&buffer).keep(shutdown.clone()));
    tasks.spawn(shipper::run(
        Arc::clone(&config),
        identity,
        Arc::clone(&buffer),
        Arc::clone(&inventory),
        shutdown.clone(),
    ));
    // Each schedule has its own task, so a slow patch scan or an unreachable
    // ping target never delays host metrics.
    tasks.spawn(schedule::checks(
        Arc::clone(&config),
        Arc::clone(&buffer),
        shutdown.clone(),
    ));
    tasks.spawn(schedule::patch(
        Arc::clone(&config),
        Arc::clone(&buffer),
        Arc::clone(&inventory),
        shutdown.clone(),
    ));
    tasks.spawn(renewal::run(Arc::clone(&config), shutdown.clone()));
    tasks.spawn(schedule::inventory(
        Arc::clone(&config),
        Arc::clone(&buffer),
        inventory,
        shutdown.clone(),
    ));
    collect_loop(&config, probes, &buffer, &shutdown).await;
    while tasks.join_next().await.is_some() {}
    // Nothing pushes any more: what was not acknowledged waits on disk for the next start.
    buffer.close().await;
    tracing::info!(message = "Agent stopped.", stats = ?buffer.stats());
    Ok(())
}

/// Measures every `interval` and pushes into the buffer; never awaits the
/// network or an fsync.
async fn collect_loop(
    config: &AgentConfig,
    mut probes: probes::HostProbes,
    buffer: &buffer::BatchBuffer,
    shutdown: &CancellationToken,
) {
    // CPU usage is a delta: the first round must come a little after priming.
    tokio::select! {
        _ = tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL) => {}
        _ = shutdown.cancelled() => return,
    }
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        // Disk statistics can stall on a hung mount; keep that off the runtime threads.
        let measured = tokio::task::spawn_blocking(move || {
            let samples = probes.collect(steward_core::now_ms());
            (probes, samples)
        })
        .await;
        match measured {
            Ok((returned, mut samples)) => {
                probes = returned;
                if let Some(timestamp_ms) = samples.first().map(|sample| sample.timestamp_ms) {
                    samples.extend(spool_samples(buffer.stats(), timestamp_ms));
                }
                // Tests compare these lines with what the collector stored
                // (and read `seq` as the last field).
                let count = samples.len();
                let timestamp_ms = samples.first().map_or(0, |sample| sample.timestamp_ms);
                if let Some(seq) = buffer.push(samples) {
                    tracing::debug!(
                        message = "Collected a batch.",
                        samples = count,
                        timestamp_ms,
                        seq
                    );
                }
            }
            Err(error) => {
                tracing::error!(message = "Collection panicked; stopping collection.", %error);
                return;
            }
        }
    }
}

/// The spool's own figures, so drops and backlog show at the collector
/// (counters since this agent process started).
fn spool_samples(stats: buffer::BufferStats, timestamp_ms: i64) -> [probes::Sample; 3] {
    [
        probes::Sample::new("spool.bytes", stats.spool.bytes as f64, timestamp_ms),
        probes::Sample::new(
            "spool.dropped_batches",
            stats.spool.dropped_batches as f64,
            timestamp_ms,
        ),
        probes::Sample::new(
            "spool.write_failures",
            stats.write_failures as f64,
            timestamp_ms,
        ),
    ]
}

fn basic_facts() -> HashMap<String, String> {
    let mut facts = HashMap::new();
    facts.insert(
        "os".into(),
        sysinfo::System::long_os_version().unwrap_or_default(),
    );
    facts.insert(
        "kernel".into(),
        sysinfo::System::kernel_version().unwrap_or_default(),
    );
    facts.insert("arch".into(), sysinfo::System::cpu_arch());
    facts
}
