//! `steward-loadgen`: see the crate docs in `lib.rs` and `--help`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use steward_loadgen::{Config, Mode, Target, addr};

/// Simulated agents on loopback: real gRPC/TLS streams to a Steward
/// collector (hello, optional inventory, batches, acks), or the same samples
/// to VictoriaMetrics' Prometheus import API. Series `j` of agent `i` is
/// `loadgen.m{j % 16}{host=<prefix>-<i>, series=j}`; with `--breach-rate`,
/// `loadgen.m0` series sometimes carry 95..99.9 (normally 0..50), so a rule
/// `loadgen.m0 > 90` opens incidents.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[arg(long, value_enum, default_value = "steward")]
    target: Target,
    /// gRPC address of the collector (or VictoriaMetrics' HTTP address). Loopback only.
    #[arg(long)]
    addr: String,
    /// Collector directory from `steward-collector init` (ca.pem, agent-tokens, api-token).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Collector HTTP API address, to time breach-to-incident from `/api/v1/incidents`.
    #[arg(long)]
    http: Option<String>,
    /// Agent token (default: the last one in DIR/agent-tokens).
    #[arg(long)]
    token: Option<String>,
    /// CA certificate (default: DIR/ca.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Simulated agents, one stream (connection) each.
    #[arg(long, default_value_t = 1)]
    agents: usize,
    /// Series per agent, i.e. samples per batch.
    #[arg(long, default_value_t = 100)]
    series: usize,
    #[arg(long, value_enum, default_value = "max")]
    mode: Mode,
    /// Batch interval in paced mode; spacing of timestamps with `--points`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Batches in flight per agent before waiting for an ack.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Length of the sending phase (after all agents have connected).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Send exactly this many batches per agent, stamped `--interval` apart up to now.
    #[arg(long)]
    points: Option<u64>,
    /// Probability that a `loadgen.m0` sample breaches (0..=1).
    #[arg(long, default_value_t = 0.0)]
    breach_rate: f64,
    /// Send a small inventory in each hello.
    #[arg(long)]
    inventory: bool,
    /// Also send a full inventory update after the hello (seq 1), which the
    /// collector files as an asset, as it does a real agent's first inventory.
    #[arg(long)]
    assets: bool,
    /// Connection handshakes at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Agent ids are `<prefix>-<index>`.
    #[arg(long, default_value = "loadgen")]
    id_prefix: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Print the report as flat `key=value` lines (for shell scripts).
    #[arg(long, conflicts_with = "json")]
    kv: bool,
}

fn config(args: Args) -> anyhow::Result<Config> {
    let address = addr::loopback_target(&args.addr)?;
    let http = args
        .http
        .as_deref()
        .map(addr::loopback_target)
        .transpose()?;
    let (mut ca_pem, mut agent_token, mut api_token) = (Vec::new(), String::new(), None);
    if let Some(dir) = &args.dir {
        (ca_pem, agent_token, api_token) = steward_loadgen::read_collector_dir(dir)?;
    }
    if let Some(ca) = &args.ca {
        ca_pem = std::fs::read(ca).with_context(|| format!("read {}", ca.display()))?;
    }
    if let Some(token) = args.token {
        agent_token = token;
    }
    if args.target == Target::Steward && (ca_pem.is_empty() || agent_token.is_empty()) {
        anyhow::bail!("--target steward needs --dir (or --ca and --token)");
    }
    Ok(Config {
        target: args.target,
        address,
        http,
        ca_pem,
        agent_token,
        api_token,
        agents: args.agents,
        series: args.series,
        mode: args.mode,
        interval: args.interval,
        window: args.window.max(1),
        duration: args.duration,
        points: args.points,
        breach_rate: args.breach_rate,
        inventory: args.inventory,
        assets: args.assets,
        connect_concurrency: args.connect_concurrency,
        connect_timeout: args.connect_timeout,
        id_prefix: args.id_prefix,
        seed: args.seed,
    })
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let (json, kv) = (args.json, args.kv);
    let result = config(args).and_then(|config| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("start the tokio runtime")?
            .block_on(steward_loadgen::run(config))
    });
    match result {
        Ok(report) => {
            if kv {
                print!("{}", report.key_values());
                for error in &report.first_errors {
                    eprintln!("error: {error}");
                }
            } else if json {
                match serde_json::to_string(&report) {
                    Ok(text) => println!("{text}"),
                    Err(error) => eprintln!("error: {error}"),
                }
            } else {
                print!("{}", report.table());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
