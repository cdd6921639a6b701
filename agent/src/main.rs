//! `steward-agent --config agent.toml`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "steward-agent", version, about = "Steward host agent")]
struct Args {
    /// Path to agent.toml.
    #[arg(long, short = 'c', default_value = "/etc/steward/agent.toml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    steward_core::process::init_tracing();
    steward_core::tls::install_crypto_provider();
    let config = match steward_agent::AgentConfig::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("steward-agent: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("steward-agent: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                steward_core::process::shutdown_signal().await;
                tracing::info!(message = "Shutdown requested.");
                shutdown.cancel();
            }
        });
        match steward_agent::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("steward-agent: {error:#}");
                ExitCode::FAILURE
            }
        }
    })
}
