//! `steward-collector [--config FILE] | init DIR | quickstart [--dir DIR]`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use steward_collector::setup::init::{InitOptions, init};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "steward-collector",
    version,
    about = "Steward central collector"
)]
struct Args {
    /// Path to collector.toml (when running the collector).
    #[arg(long, short = 'c', default_value = "/etc/steward/collector.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Write a working setup (dev CA, certificates, tokens, configs) into DIR.
    Init {
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7443")]
        grpc_listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:7080")]
        http_listen: SocketAddr,
        /// Overwrite an existing setup in DIR.
        #[arg(long)]
        force: bool,
        /// Put the database in this directory instead of DIR
        /// (the package: /var/lib/steward).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// A DNS name or IP address agents use to reach the collector, added
        /// to its certificate (repeatable; localhost and the host name always are).
        #[arg(long = "server-name", value_name = "NAME")]
        server_names: Vec<String>,
    },
    /// Initialise DIR if empty, then run the collector and a local agent.
    #[cfg(feature = "embedded-agent")]
    Quickstart {
        #[arg(long, default_value = "steward-data")]
        dir: PathBuf,
        /// Used only when DIR is initialised by this run.
        #[arg(long, default_value = "127.0.0.1:7443")]
        grpc_listen: SocketAddr,
        /// Used only when DIR is initialised by this run.
        #[arg(long, default_value = "127.0.0.1:7080")]
        http_listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    steward_core::process::init_tracing();
    steward_core::tls::install_crypto_provider();
    match args.command {
        Some(Command::Init {
            dir,
            grpc_listen,
            http_listen,
            force,
            state_dir,
            server_names,
        }) => match init(&InitOptions {
            dir,
            grpc_listen,
            http_listen,
            force,
            state_dir,
            server_names,
        }) {
            Ok(report) => {
                for (path, what) in report.files {
                    println!("wrote {:<40} {what}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("steward-collector: init failed: {error}");
                ExitCode::FAILURE
            }
        },
        #[cfg(feature = "embedded-agent")]
        Some(Command::Quickstart {
            dir,
            grpc_listen,
            http_listen,
        }) => block_on(|shutdown| async move {
            let options = InitOptions {
                dir,
                grpc_listen,
                http_listen,
                force: false,
                state_dir: None,
                server_names: Vec::new(),
            };
            steward_collector::setup::quickstart::quickstart(options, shutdown)
                .await
                .map_err(anyhow::Error::from)
        }),
        None => {
            let config = match steward_collector::CollectorConfig::load(&args.config) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("steward-collector: invalid configuration: {error}");
                    return ExitCode::from(2);
                }
            };
            block_on(|shutdown| async move {
                steward_collector::run(config, shutdown)
                    .await
                    .map_err(anyhow::Error::from)
            })
        }
    }
}

/// Exit status of a failed run. 3: a supervised task failed after start
/// (the collector shut itself down; a service manager should restart it);
/// 1: anything else (start-up failures). 2 is an invalid configuration.
fn exit_code(error: &anyhow::Error) -> ExitCode {
    use steward_collector::CollectorError;
    let task_failed = error.chain().any(|cause| {
        #[cfg(feature = "embedded-agent")]
        if let Some(steward_collector::setup::quickstart::QuickstartError::Collector(
            CollectorError::TasksFailed(_),
        )) = cause.downcast_ref()
        {
            return true;
        }
        matches!(
            cause.downcast_ref::<CollectorError>(),
            Some(CollectorError::TasksFailed(_))
        )
    });
    if task_failed {
        ExitCode::from(TASK_FAILED)
    } else {
        ExitCode::FAILURE
    }
}

const TASK_FAILED: u8 = 3;

/// Runs `job` on a multi-threaded runtime with SIGINT/SIGTERM wired to its shutdown token.
fn block_on<F, Fut>(job: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("steward-collector: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                steward_core::process::shutdown_signal().await;
                tracing::info!(message = "Shutdown requested; finishing in-flight batches.");
                shutdown.cancel();
            }
        });
        match job(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("steward-collector: {error:#}");
                exit_code(&error)
            }
        }
    })
}
