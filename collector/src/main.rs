//! `steward-collector [--config FILE] | init DIR | quickstart [--dir DIR] | token …
//!  | enroll-token create|list|revoke | ca-fingerprint | agent revoke ID | hash-password
//!  | compact [--all]`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use steward_collector::setup::init::{InitOptions, init};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc: under ingest load a third of the
/// collector's CPU went to glibc's malloc and free (per-sample strings and
/// label maps allocated on one thread and freed on another; `perf` on 10
/// streams × 1,000 samples, BENCHMARKS.md), and mimalloc's per-thread free
/// lists make those cheap. SQLite and other C code keep glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "steward-collector",
    version,
    about = "Steward central collector"
)]
struct Args {
    /// Path to collector.toml (running the collector, and the token and identity commands).
    #[arg(
        long,
        short = 'c',
        global = true,
        default_value = "/etc/steward/collector.toml"
    )]
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
    /// Enrollment tokens: one-time (or N-use) secrets agents trade for a certificate.
    EnrollToken {
        #[command(subcommand)]
        action: EnrollTokenAction,
    },
    /// Print the CA certificate's fingerprint (`sha256:HEX`) for `steward-agent enroll`.
    CaFingerprint,
    /// Enrolled agents.
    Agent {
        #[command(subcommand)]
        action: AgentAction,
    },
    /// Create, list or revoke API tokens (works while the collector runs).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Merge each series' sample chunks into one row per ended UTC day (the
    /// running collector does this an hour after each day ends). Run it
    /// while the collector is stopped.
    Compact {
        /// Every day, today included (benchmarks, before a backup).
        #[arg(long)]
        all: bool,
    },
    /// Read a password from stdin (first line) and print its argon2id hash,
    /// for `password_hash` in `[[console.users]]`. Never takes it as an argument.
    HashPassword,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token and print it (once) on stdout.
    Create {
        #[arg(long)]
        name: String,
        /// read, write (read + changes) or admin (write + administration).
        #[arg(long, value_parser = parse_scope)]
        scope: steward_collector::access::Scope,
    },
    /// List tokens (names, scopes, dates; never the tokens).
    List,
    /// Revoke the token with this name; refused from the next request on.
    Revoke {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum EnrollTokenAction {
    /// Create a token and print it (alone, on stdout). It is shown only this once.
    Create {
        /// How long the token may be used.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// KEY=VALUE, added to the asset of every agent it enrolls as tag `key:value` (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Let the token enroll agent ids that already streamed with the shared agent token
        /// (migrating such agents to certificates): it takes over their identity and asset.
        #[arg(long)]
        adopt_existing: bool,
    },
    /// List tokens (ids, expiry, uses left, tags; never the secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum AgentAction {
    /// Revoke an agent's certificate: its stream ends within seconds and it cannot reconnect.
    Revoke {
        id: String,
        /// Who revokes (recorded in the asset history); defaults to $USER.
        #[arg(long)]
        by: Option<String>,
    },
}

fn parse_scope(text: &str) -> Result<steward_collector::access::Scope, String> {
    steward_collector::access::Scope::from_name(text)
        .ok_or_else(|| format!("unknown scope {text:?}; expected read, write or admin"))
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
        Some(Command::Token { action }) => {
            use steward_collector::setup::token_cli::{self, TokenCommand};
            let command = match action {
                TokenAction::Create { name, scope } => TokenCommand::Create { name, scope },
                TokenAction::List => TokenCommand::List,
                TokenAction::Revoke { name } => TokenCommand::Revoke { name },
            };
            match token_cli::run(&args.config, command) {
                Ok(output) => {
                    print!("{}", output.stdout);
                    eprint!("{}", output.stderr);
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("steward-collector: {error}");
                    ExitCode::FAILURE
                }
            }
        }
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
        Some(Command::EnrollToken { action }) => identity_command(&args.config, |config| {
            use steward_collector::setup::admin;
            match action {
                EnrollTokenAction::Create {
                    ttl,
                    uses,
                    tags,
                    adopt_existing,
                } => {
                    let created = admin::create_token(
                        config,
                        &admin::TokenOptions {
                            ttl,
                            uses,
                            tags,
                            adopt_existing,
                        },
                    )?;
                    println!("{}", created.secret.reveal());
                    eprintln!(
                        "steward-collector: enrollment token {} created: {} use(s), expires {}{}",
                        created.secret.id,
                        uses,
                        steward_core::text::rfc3339_ms(created.expires_ms),
                        if created.tags.is_empty() {
                            String::new()
                        } else {
                            format!(", tags {}", created.tags.join(","))
                        }
                    );
                }
                EnrollTokenAction::List => print!("{}", admin::list_tokens(config)?),
                EnrollTokenAction::Revoke { id } => {
                    admin::revoke_token(config, &id)?;
                    eprintln!("steward-collector: enrollment token {id} revoked");
                }
            }
            Ok(())
        }),
        Some(Command::HashPassword) => hash_password(),
        Some(Command::Compact { all }) => {
            let config = match steward_collector::CollectorConfig::load(&args.config) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("steward-collector: invalid configuration: {error}");
                    return ExitCode::from(2);
                }
            };
            block_on(|_shutdown| async move {
                let report = steward_collector::compact_store(&config, all).await?;
                eprintln!(
                    "steward-collector: compacted {} chunk rows into {} and {} rollup rows into {}",
                    report.chunks_merged,
                    report.chunks_written,
                    report.rollups_merged,
                    report.rollups_written
                );
                Ok(())
            })
        }
        Some(Command::CaFingerprint) => identity_command(&args.config, |config| {
            println!(
                "{}",
                steward_collector::setup::admin::ca_fingerprint(config)?
            );
            Ok(())
        }),
        Some(Command::Agent {
            action: AgentAction::Revoke { id, by },
        }) => identity_command(&args.config, |config| {
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".to_string());
            steward_collector::setup::admin::revoke_agent(config, &id, &by)?;
            eprintln!("steward-collector: agent {id} revoked by {by}");
            Ok(())
        }),
        None => {
            let config = match steward_collector::CollectorConfig::load(&args.config) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("steward-collector: invalid configuration: {error}");
                    return ExitCode::from(2);
                }
            };
            // Held until the process ends.
            let _lock = match steward_collector::lock_sqlite_store(&config) {
                Ok(lock) => lock,
                Err(error) => {
                    eprintln!("steward-collector: {error}");
                    return ExitCode::FAILURE;
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

/// `hash-password`: the first line of stdin (without its line ending) hashed.
fn hash_password() -> ExitCode {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("steward-collector: type the password, then Enter (it is echoed):");
    }
    let mut line = String::new();
    if let Err(error) = stdin.lock().read_line(&mut line) {
        eprintln!("steward-collector: cannot read the password from stdin: {error}");
        return ExitCode::FAILURE;
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    match steward_collector::api::session::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("steward-collector: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an identity command against the configuration at `path`.
fn identity_command(
    path: &std::path::Path,
    command: impl FnOnce(
        &steward_collector::CollectorConfig,
    ) -> Result<(), steward_collector::setup::admin::AdminError>,
) -> ExitCode {
    let config = match steward_collector::CollectorConfig::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("steward-collector: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    match command(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("steward-collector: {error}");
            ExitCode::FAILURE
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
    allocator::start_trimming();
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

/// glibc keeps freed heap memory for reuse and returns it to the kernel only
/// from the top of each arena. Rust's allocations go to mimalloc (above),
/// but SQLite's page cache and statements and other C code still use glibc's
/// malloc; before mimalloc, with 10,000 agents connected, 1,355 MB were mapped
/// by malloc of which 458 MB in use, and `malloc_trim` took RSS from 1,225 to
/// 594 MB (BENCHMARKS.md). A background thread hands glibc's free pages back
/// periodically; it costs nothing when there are none.
#[allow(unsafe_code)]
mod allocator {
    use std::time::Duration;

    /// Often enough that a burst's memory is back within a minute, rarely
    /// enough that the walk over the free lists (milliseconds, one arena
    /// locked at a time) costs nothing measurable.
    const TRIM_EVERY: Duration = Duration::from_secs(30);

    pub fn start_trimming() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let spawned = std::thread::Builder::new()
                .name("malloc-trim".into())
                .spawn(|| {
                    loop {
                        std::thread::sleep(TRIM_EVERY);
                        // SAFETY: malloc_trim takes the arena locks itself
                        // and releases only free pages.
                        unsafe {
                            libc::malloc_trim(0);
                        }
                    }
                });
            if let Err(error) = spawned {
                tracing::warn!(message = "Cannot start the memory trimming thread.", %error);
            }
        }
    }
}
