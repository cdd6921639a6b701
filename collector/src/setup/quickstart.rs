//! `steward-collector quickstart`: initialise `./steward-data` if needed, then
//! run the collector and a local agent for this host in one process.

use tokio_util::sync::CancellationToken;

use super::init::{InitOptions, init};
use crate::CollectorConfig;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuickstartError {
    #[error(transparent)]
    Init(#[from] super::init::InitError),
    #[error("invalid configuration: {0}")]
    Config(#[from] steward_core::config_file::ConfigError),
    #[error(transparent)]
    Collector(#[from] crate::CollectorError),
    #[error("the local agent failed: {0}")]
    Agent(#[from] steward_agent::AgentError),
}

/// Runs the quickstart. `options.force` is ignored: an existing setup in
/// `options.dir` is reused as it is.
pub async fn quickstart(
    options: InitOptions,
    shutdown: CancellationToken,
) -> Result<(), QuickstartError> {
    let dir = options.dir.clone();
    if !dir.join("collector.toml").exists() {
        let report = init(&InitOptions {
            force: false,
            ..options
        })?;
        println!("Initialised {}:", dir.display());
        for (path, what) in &report.files {
            println!("  {:<40} {what}", path.display());
        }
    }
    let config = CollectorConfig::load(&dir.join("collector.toml"))?;
    let scheme = if config.http_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut agent_config = steward_agent::AgentConfig::load(&dir.join("agent.toml"))?;
    let collector = crate::start(config, shutdown.clone()).await?;
    // The local agent follows the port actually bound (the config may say port 0).
    agent_config.collectors.truncate(1);
    for target in &mut agent_config.collectors {
        target.url = format!("https://127.0.0.1:{}", collector.grpc_addr.port());
    }
    println!();
    println!("Steward is running.");
    let http = collector.http_addr;
    println!("  Console:  {scheme}://{http}/  (log in with the API token below)");
    println!("  API:      {scheme}://{http}/api/v1/agents");
    println!("  Series:   {scheme}://{http}/api/v1/series");
    println!("  Metrics:  {scheme}://{http}/metrics");
    println!("  gRPC:     {} (TLS)", collector.grpc_addr);
    let token_file = dir.join("api-token");
    println!(
        "  API token (admin; every request but /healthz needs one): {}",
        token_file.display()
    );
    println!(
        "  e.g. curl -H \"Authorization: Bearer $(cat {})\" {scheme}://{http}/api/v1/agents",
        token_file.display()
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
