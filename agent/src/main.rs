//! `steward-agent --config agent.toml`
//! `steward-agent enroll --collector https://HOST:PORT --token T --ca-fingerprint sha256:HEX --dir DIR`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "steward-agent", version, about = "Steward host agent")]
struct Args {
    /// Path to agent.toml.
    #[arg(long, short = 'c', default_value = "/etc/steward/agent.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Trade an enrollment token for a client certificate and write a ready agent.toml.
    Enroll {
        /// The collector's gRPC address, https://HOST:PORT.
        #[arg(long)]
        collector: String,
        /// The enrollment token from `steward-collector enroll-token create`.
        #[arg(
            long,
            required_unless_present = "token_file",
            conflicts_with = "token_file"
        )]
        token: Option<String>,
        /// Read the token from this file instead (keeps it out of the process list).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The collector's CA fingerprint from `steward-collector ca-fingerprint`.
        #[arg(long)]
        ca_fingerprint: String,
        /// Where agent.toml, ca.pem, agent.pem and agent.key are written.
        #[arg(long)]
        dir: PathBuf,
        /// The agent's state directory (holds its id).
        #[arg(long, default_value = "/var/lib/steward-agent")]
        state_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    // Before any thread exists, so every thread shares the one arena.
    steward_agent::allocator::configure();
    let args = Args::parse();
    steward_core::process::init_tracing();
    steward_core::tls::install_crypto_provider();
    if let Some(Command::Enroll {
        collector,
        token,
        token_file,
        ca_fingerprint,
        dir,
        state_dir,
    }) = args.command
    {
        let token = match (token, token_file) {
            (Some(token), _) => token,
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) => text.trim().to_string(),
                Err(error) => {
                    eprintln!("steward-agent: cannot read {}: {error}", path.display());
                    return ExitCode::FAILURE;
                }
            },
            (None, None) => {
                eprintln!("steward-agent: enroll needs --token or --token-file");
                return ExitCode::from(2);
            }
        };
        return enroll(steward_agent::enroll::EnrollOptions {
            collector_url: collector,
            token,
            ca_fingerprint,
            dir,
            state_dir,
            hostname: None,
        });
    }
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

fn enroll(options: steward_agent::enroll::EnrollOptions) -> ExitCode {
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
    match runtime.block_on(steward_agent::enroll::enroll(&options)) {
        Ok(enrolled) => {
            println!("enrolled agent {}", enrolled.agent_id);
            for path in enrolled.files {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("steward-agent: enrollment failed: {error}");
            ExitCode::FAILURE
        }
    }
}
