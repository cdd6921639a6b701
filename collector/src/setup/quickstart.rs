//! `steward-collector quickstart`: initialise `./steward-data` if needed, then
//! run the collector and a local agent for this host in one process.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::init::{InitOptions, init};
use crate::CollectorConfig;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuickstartError {
    #[error(transparent)]
    Init(#[from] super::init::InitError),
    #[error("invalid configuration: {0}")]
    Config(#[from] steward_agent::config_file::ConfigError),
    #[error(transparent)]
    Collector(#[from] crate::CollectorError),
    #[error("the local agent failed: {0}")]
    Agent(#[from] steward_agent::AgentError),
}

pub async fn quickstart(dir: PathBuf, shutdown: CancellationToken) -> Result<(), QuickstartError> {
    if !dir.join("collector.toml").exists() {
        let report = init(&InitOptions {
            dir: dir.clone(),
            grpc_listen: "127.0.0.1:7443".parse().map_err(|_| unreachable_addr())?,
            http_listen: "127.0.0.1:7080".parse().map_err(|_| unreachable_addr())?,
            force: false,
        })?;
        println!("Initialised {}:", dir.display());
        for (path, what) in &report.files {
            println!("  {:<40} {what}", path.display());
        }
    }
    let config = CollectorConfig::load(&dir.join("collector.toml"))?;
    let agent_config = steward_agent::AgentConfig::load(&dir.join("agent.toml"))?;
    let collector = crate::start(config, shutdown.clone()).await?;
    println!();
    println!("Steward is running.");
    println!("  Web/API:  http://{}/api/v1/agents", collector.http_addr);
    println!("  Series:   http://{}/api/v1/series", collector.http_addr);
    println!("  Metrics:  http://{}/metrics", collector.http_addr);
    println!("  gRPC:     {} (TLS)", collector.grpc_addr);
    println!(
        "  API token for writes: {}",
        dir.join("api-token").display()
    );
    println!("Press Ctrl-C to stop.");
    let agent = tokio::spawn(steward_agent::run(agent_config, shutdown.clone()));
    let collected = collector.wait().await;
    shutdown.cancel();
    if let Ok(result) = agent.await {
        result?;
    }
    Ok(collected?)
}

// The literals above are valid socket addresses; this exists only to avoid a panic path.
fn unreachable_addr() -> super::init::InitError {
    super::init::InitError::Write {
        path: PathBuf::from("<listen address>"),
        source: std::io::Error::other("invalid built-in listen address"),
    }
}
