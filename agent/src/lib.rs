//! steward-agent: measures its host and streams samples to the collector.
//!
//! Layout:
//! - [`config`]: `agent.toml`, parsed then validated (`steward_core::config_file`
//!   reports errors with file, line and key).
//! - [`identity`]: the persistent agent id.
//! - [`probes`]: one file per measured subsystem; pure measurement, no network.
//! - [`buffer`]: bounded buffer of unacknowledged batches; the hand-off point.
//! - [`shipper`]: the gRPC/TLS client that drains the buffer; reconnects with backoff.
//! - `schedule`: the slower loops (ping/port checks, patch scans, inventory), one task each.
//!
//! [`run`] wires them: a collection task pushes a batch every `interval`, the
//! shipper sends and forgets batches as the collector acknowledges them.

pub mod buffer;
pub mod config;
pub mod identity;
pub mod probes;
mod schedule;
pub mod shipper;

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
    let identity = shipper::AgentIdentity {
        agent_id,
        hostname,
        epoch: rand::random::<u64>() >> 1,
        facts: basic_facts(),
    };
    tracing::info!(
        message = "Agent starting.",
        agent_id = %identity.agent_id,
        hostname = %identity.hostname,
        collector = %config.collector_url,
        interval_s = config.interval.as_secs_f64(),
    );
    let buffer = Arc::new(buffer::BatchBuffer::new(config.max_buffered_batches));
    let probes = probes::HostProbes::new()?;
    let inventory = Arc::new(schedule::InventoryState::default());
    let mut tasks = tokio::task::JoinSet::new();
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
    tasks.spawn(schedule::inventory(
        Arc::clone(&config),
        Arc::clone(&buffer),
        inventory,
        shutdown.clone(),
    ));
    collect_loop(&config, probes, &buffer, &shutdown).await;
    while tasks.join_next().await.is_some() {}
    tracing::info!(message = "Agent stopped.", stats = ?buffer.stats());
    Ok(())
}

/// Measures every `interval` and pushes into the buffer; never awaits the network.
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
            Ok((returned, samples)) => {
                probes = returned;
                let seq = buffer.push(samples);
                tracing::debug!(message = "Collected a batch.", seq);
            }
            Err(error) => {
                tracing::error!(message = "Collection panicked; stopping collection.", %error);
                return;
            }
        }
    }
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
