//! steward-collector: the central service agents stream to.
//!
//! Layout (data flows top to bottom):
//! - [`access`]: API token scopes, format and hashing (pure).
//! - [`domain`]: the shared vocabulary (severity, incident states and events, views).
//! - [`ingest`]: gRPC service; authenticates agents, validates, acknowledges after commit.
//! - [`store`]: SQLite (WAL) with one batching writer thread; latest value per series in memory.
//! - [`rules`]: pure threshold/absence evaluation (no I/O, no clock).
//! - [`incidents`]: the task that owns the rule engine and changes incident state; SLAs.
//! - [`assets`]: asset records (CMDB) kept current from inventory; pure logic plus one task.
//! - [`notify`]: alert delivery logic (payloads, routing, on-call, escalation).
//! - [`export`]: committed samples to Prometheus remote_write and OTLP endpoints.
//! - [`registry`]: which agents are connected now.
//! - [`api`]: HTTP API on top of the store and registry.
//! - [`telemetry`]: the collector's own counters for `/metrics`.
//! - [`prometheus_names`]: how a series is named for Prometheus-compatible tools.
//! - [`supervisor`]: runs every long-running task by name; one that fails
//!   shuts the collector down (and `/healthz` says which and why).
//! - [`setup`]: `init` and `quickstart`.
//! - [`config`]: `collector.toml`, parsed then validated.

pub mod access;
pub mod api;
pub mod assets;
pub mod config;
pub mod domain;
pub mod enrollment;
pub mod export;
pub mod incidents;
pub mod ingest;
pub mod notify;
pub mod prometheus_names;
pub mod ratelimit;
pub mod registry;
pub mod rules;
pub mod setup;
pub mod store;
pub mod supervisor;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use config::CollectorConfig;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectorError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("TLS setup failed: {0}")]
    Tls(tonic::transport::Error),
    #[error("cannot load the CA for enrollment: {0}")]
    Authority(#[from] enrollment::AuthorityError),
    #[error("gRPC server failed: {0}")]
    Grpc(tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("HTTPS setup failed: {0}")]
    Https(#[from] api::https::HttpsError),
    #[error(transparent)]
    Export(#[from] export::ExportError),
    /// A supervised task failed after start; the rest were shut down.
    #[error("{}", join_failures(.0))]
    TasksFailed(Vec<supervisor::TaskFailure>),
    #[error("{} is in use by a running steward-collector (it holds {}); stop it first", .database.display(), .lock.display())]
    StoreInUse {
        database: std::path::PathBuf,
        lock: std::path::PathBuf,
    },
    #[error("cannot lock {}: {source}", .lock.display())]
    StoreLock {
        lock: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Holds `<database>.lock` (an advisory lock the kernel drops when the
/// process ends, kill -9 included) for as long as the returned file lives:
/// the running collector and `steward-collector compact` take it, so an
/// offline compaction never writes chunks a running collector also holds in
/// its head (they would be stored twice), and two collectors never share
/// one SQLite file. `None` on PostgreSQL, or when the database's folder does
/// not exist yet (opening the store reports that).
pub fn lock_sqlite_store(
    config: &CollectorConfig,
) -> Result<Option<std::fs::File>, CollectorError> {
    if config.postgres.is_some() {
        return Ok(None);
    }
    let database = &config.sqlite_path;
    if database
        .parent()
        .is_some_and(|folder| !folder.as_os_str().is_empty() && !folder.is_dir())
    {
        return Ok(None);
    }
    let mut lock = database.clone().into_os_string();
    lock.push(".lock");
    let lock = std::path::PathBuf::from(lock);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| CollectorError::StoreLock {
            lock: lock.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(CollectorError::StoreInUse {
            database: database.clone(),
            lock,
        }),
        Err(std::fs::TryLockError::Error(source)) => {
            Err(CollectorError::StoreLock { lock, source })
        }
    }
}

fn join_failures(failures: &[supervisor::TaskFailure]) -> String {
    let failures: Vec<String> = failures.iter().map(ToString::to_string).collect();
    failures.join("; ")
}

/// How long `/healthz` keeps answering 503 after a task failure (counted
/// from when the HTTP server sees the shutdown), so monitoring can read why
/// the collector is about to exit.
pub const FAILURE_GRACE: Duration = Duration::from_secs(3);

/// How long tasks get to stop after shutdown is requested; a task still
/// running then is abandoned and the store is flushed anyway. Under
/// systemd's `TimeoutStopSec=30`.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// A started collector. Dropping it does not stop it; cancel the shutdown token.
pub struct RunningCollector {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub store: Arc<store::Store>,
    /// Acknowledge/resolve and subscribe to incident events in-process.
    pub incidents: incidents::IncidentHandle,
    shutdown: CancellationToken,
    /// Holds every long-running task of this collector.
    supervisor: supervisor::Supervisor,
}

impl std::fmt::Debug for RunningCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningCollector")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

/// Opens the store, binds both listeners and starts serving.
///
/// Every long-running task is supervised: if one fails, `shutdown` is
/// cancelled (the whole collector stops) and [`RunningCollector::wait`]
/// returns [`CollectorError::TasksFailed`].
pub async fn start(
    config: CollectorConfig,
    shutdown: CancellationToken,
) -> Result<RunningCollector, CollectorError> {
    // Before anything starts: a bad HTTPS identity must fail the start.
    let https = config
        .http_tls
        .as_ref()
        .map(|identity| api::https::server_config(&identity.cert_pem, &identity.key_pem))
        .transpose()?;
    let supervisor = supervisor::Supervisor::new(shutdown.clone());
    let store = Arc::new(match &config.postgres {
        Some(settings) => store::Store::open_postgres(settings, &config.instance).await?,
        None => store::Store::open(&config.sqlite_path)?,
    });
    // Two collectors under one name would both evaluate every agent.
    store
        .claim_instance(incidents::COLLECTOR_DEAD_AFTER)
        .await?;
    supervisor.spawn(
        "store-writer",
        watch_store_writer(Arc::clone(&store), shutdown.clone()),
    );
    let registry = Arc::new(registry::AgentRegistry::default());
    let telemetry = Arc::new(telemetry::Telemetry::default());

    let clock = steward_core::Clock::System;
    let suppression = assets::service::load_suppression(&store).await?;
    let (incidents, incidents_task) = incidents::start(
        Arc::clone(&store),
        config.rules.clone(),
        config.sla.clone(),
        config.service.clone(),
        suppression.clone(),
        clock,
        shutdown.clone(),
    )
    .await?;
    // Often enough that `stale_after` is honoured to within a quarter of itself.
    let sweep_every =
        (config.assets.stale_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let (assets, assets_task) = assets::service::start(
        Arc::clone(&store),
        config.assets.clone(),
        sweep_every,
        incidents.clone(),
        suppression,
        clock,
        shutdown.clone(),
    )
    .await?;
    supervisor.watch("incidents", incidents_task);
    supervisor.watch("assets", assets_task);
    let (notify_routing, notify_delivery) = notify::service::NotifyService {
        store: Arc::clone(&store),
        config: Arc::clone(&config.notify),
        base_url: config.base_url.clone(),
        telemetry: Arc::clone(&telemetry),
        clock,
    }
    .into_loops(incidents.clone(), shutdown.clone());
    supervisor.spawn("notify", notify_routing);
    supervisor.spawn("notify-delivery", notify_delivery);
    let (export, export_tasks) = export::service::start(&config.export, Arc::clone(&telemetry))?;
    for task in export_tasks {
        supervisor.spawn(task.task_name(), task.run(shutdown.clone()));
    }
    let grpc_listener = bind(config.grpc_listen).await?;
    let http_listener = bind(config.http_listen).await?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|source| CollectorError::Listen {
            address: config.grpc_listen,
            source,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| CollectorError::Listen {
            address: config.http_listen,
            source,
        })?;

    let ingest = ingest::IngestService {
        store: Arc::clone(&store),
        registry: Arc::clone(&registry),
        telemetry: Arc::clone(&telemetry),
        auth: ingest::AgentAuthenticator::new(&config.agent_tokens),
        limits: config.limits.ingest.clone(),
        incidents: incidents.clone(),
        assets: assets.clone(),
        export,
        shutdown: shutdown.clone(),
        authority: certificate_authority(&config)?,
        enroll_limiter: Arc::new(ratelimit::SourceRateLimiter::new(
            config.enrollment.rate_burst,
            config.enrollment.rate_every,
        )),
    };
    let grpc_limits = &config.limits.ingest.grpc;
    let mut server = Server::builder()
        .max_concurrent_streams(grpc_limits.max_streams_per_connection)
        .initial_stream_window_size(ingest::STREAM_WINDOW_BYTES)
        .initial_connection_window_size(ingest::CONNECTION_WINDOW_BYTES)
        .http2_keepalive_interval(Some(grpc_limits.keepalive_interval))
        .http2_keepalive_timeout(Some(grpc_limits.keepalive_timeout));
    if let Some(tls) = &config.tls {
        let mut tls_config = ServerTlsConfig::new()
            .identity(Identity::from_pem(served_chain(tls), &tls.key_pem))
            .timeout(grpc_limits.handshake_timeout);
        if let Some(ca) = &tls.ca_pem {
            // Requested, not required: enrolling agents and shared-token
            // agents have no certificate yet.
            tls_config = tls_config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        server = server.tls_config(tls_config).map_err(CollectorError::Tls)?;
    } else {
        tracing::warn!(
            message = "TLS is disabled; agent tokens travel in clear (loopback development only)."
        );
    }
    let parts = ingest.into_parts();
    let grpc = server
        .add_service(parts.ingest)
        .add_optional_service(parts.enrollment)
        .serve_with_incoming_shutdown(
            ingest::BoundedIncoming::new(grpc_listener, grpc_limits, Arc::clone(&telemetry)),
            shutdown.clone().cancelled_owned(),
        );
    supervisor.spawn(
        "grpc",
        async move { grpc.await.map_err(CollectorError::Grpc) },
    );
    supervisor.spawn("revocations", {
        let shutdown = shutdown.clone();
        async move {
            parts
                .revocations
                .run(shutdown)
                .await
                .map_err(CollectorError::Store)
        }
    });

    let router = api::router(api::ApiState {
        store: Arc::clone(&store),
        registry,
        telemetry,
        incidents: incidents.clone(),
        assets,
        asset_policy: Arc::new(config.assets.clone()),
        notify: Arc::clone(&config.notify),
        auth: Arc::new(
            api::auth::ApiAuth::new(config.api_tokens.clone(), config.metrics_public)
                .with_console(config.console.clone()),
        ),
        task_failures: supervisor.failures(),
        limits: config.limits.http.clone(),
        fleet_metrics: config
            .fleet_metrics
            .then(|| Arc::new(api::fleet_metrics::FleetMetrics::default())),
    });
    let http_shutdown = {
        let (shutdown, supervisor) = (shutdown.clone(), supervisor.clone());
        async move {
            shutdown.cancelled().await;
            if supervisor.has_failed() {
                // Keep answering /healthz (503, naming the task) a while.
                tokio::time::sleep(FAILURE_GRACE).await;
            }
        }
    };
    supervisor.spawn(
        "http",
        serve_http(http_listener, https, router, http_shutdown),
    );
    supervisor.spawn(
        "prune",
        prune_loop(
            Arc::clone(&store),
            Retention {
                samples: config.retention,
                rollups: config.rollup_retention,
                records: config.record_retention,
                every: config.prune_every,
            },
            incidents.clone(),
            shutdown.clone(),
        ),
    );
    supervisor.spawn(
        "sighup-reload",
        reload_on_sighup(config.path.clone(), incidents.clone(), shutdown.clone()),
    );

    tracing::info!(
        message = "Collector listening.",
        grpc_addr = %grpc_addr,
        http_addr = %http_addr,
        tls = config.tls.is_some(),
        http_tls = config.http_tls.is_some(),
        rules = config.rules.len(),
        database = %match &config.postgres {
            Some(settings) => store::postgres::redact_url(&settings.url),
            None => config.sqlite_path.display().to_string(),
        },
        instance = %config.instance,
    );
    Ok(RunningCollector {
        grpc_addr,
        http_addr,
        store,
        incidents,
        shutdown,
        supervisor,
    })
}

impl RunningCollector {
    /// Waits for shutdown (requested, or caused by a failed task), lets the
    /// tasks drain for up to [`DRAIN_TIMEOUT`], then flushes and closes the
    /// store. Fails with [`CollectorError::TasksFailed`] if any task failed.
    pub async fn wait(self) -> Result<(), CollectorError> {
        self.shutdown.cancelled().await;
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        for task in self.supervisor.join(deadline).await {
            tracing::error!(
                message = "Task did not stop in time; closing the store without it.",
                task = %task,
            );
        }
        self.store.close().await;
        let failures = self.supervisor.failures().list();
        if failures.is_empty() {
            tracing::info!(message = "Collector stopped.");
            Ok(())
        } else {
            tracing::error!(
                message = "Collector stopped after a task failed.",
                failed = %join_failures(&failures),
            );
            Err(CollectorError::TasksFailed(failures))
        }
    }
}

/// Serves the API on `listener`, over TLS when `https` is given; handlers
/// see the client's address as `ConnectInfo<SocketAddr>`.
async fn serve_http(
    listener: tokio::net::TcpListener,
    https: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CollectorError> {
    use axum::serve::ListenerExt;
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    match https {
        None => {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            let listener =
                api::https::TlsListener::new(listener, config).map_err(CollectorError::Http)?;
            // `tap_io` gives the listener axum's ConnectInfo for any `Addr`.
            axum::serve(listener.tap_io(|_| {}), service)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
    .map_err(CollectorError::Http)
}

/// Reports the store's writer thread ending while the collector runs. It
/// cannot return an error; a panic is re-raised here so the supervisor
/// reports it as this task's (`resume_unwind` skips the panic hook: the
/// panic is printed once, by the writer thread).
async fn watch_store_writer(store: Arc<store::Store>, shutdown: CancellationToken) {
    tokio::select! {
        stopped = store.writer_stopped() => {
            if let Err(message) = stopped {
                std::panic::resume_unwind(Box::new(message));
            }
        }
        () = shutdown.cancelled() => {}
    }
}

/// The CA that signs agent certificates, when `[tls]` names its key.
fn certificate_authority(
    config: &CollectorConfig,
) -> Result<Option<Arc<enrollment::CertificateAuthority>>, CollectorError> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let (Some(ca), Some(key)) = (&tls.ca_pem, &tls.ca_key_pem) else {
        return Ok(None);
    };
    let authority = enrollment::CertificateAuthority::load(
        &String::from_utf8_lossy(ca),
        &String::from_utf8_lossy(key),
        config.enrollment.cert_lifetime,
    )?;
    Ok(Some(Arc::new(authority)))
}

/// The served certificate chain: `cert`, then the CA unless `cert` already
/// holds it, so an enrolling agent can check the CA against its pinned
/// fingerprint during the handshake.
fn served_chain(tls: &config::TlsIdentity) -> Vec<u8> {
    let mut chain = tls.cert_pem.clone();
    if let Some(ca) = &tls.ca_pem {
        let ca_text = String::from_utf8_lossy(ca);
        let ca_body = ca_text.trim();
        if !String::from_utf8_lossy(&chain).contains(ca_body) {
            if !chain.ends_with(b"\n") {
                chain.push(b'\n');
            }
            chain.extend_from_slice(ca);
        }
    }
    chain
}

/// Runs the collector until `shutdown` is cancelled.
pub async fn run(
    config: CollectorConfig,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    start(config, shutdown).await?.wait().await
}

/// Connections the kernel may hold for us before we accept them (capped by
/// `net.core.somaxconn`). Larger than tokio's default of 1024 so a burst of
/// connections (thousands of agents reconnecting after a collector restart,
/// or a flood) is not dropped before the collector's own limits see it.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, CollectorError> {
    let listen = || -> std::io::Result<tokio::net::TcpListener> {
        let socket = if address.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: a restarted collector can bind at once.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        socket.bind(address)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|source| CollectorError::Listen { address, source })
}

/// Re-reads the rules and SLA targets on SIGHUP; an invalid file is logged
/// and the running rules stay in force.
async fn reload_on_sighup(
    path: std::path::PathBuf,
    incidents: incidents::IncidentHandle,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(error) => {
                tracing::warn!(message = "Cannot listen for SIGHUP; rules reload is off.", %error);
                shutdown.cancelled().await;
                return Ok(());
            }
        };
        loop {
            tokio::select! {
                received = hangup.recv() => if received.is_none() {
                    // The signal stream ended: reload can no longer work.
                    return Ok(());
                },
                _ = shutdown.cancelled() => return Ok(()),
            }
            match CollectorConfig::load(&path) {
                Ok(config) => {
                    tracing::info!(message = "Reloading rules.", path = %path.display(), rules = config.rules.len());
                    incidents
                        .replace_rules(config.rules, config.sla, config.service)
                        .await;
                }
                Err(error) => {
                    tracing::error!(message = "Reload refused: invalid configuration; keeping the current rules.", %error);
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, incidents);
        shutdown.cancelled().await;
        Ok(())
    }
}

/// `steward-collector compact`, with the collector stopped: writes every
/// chunk the head holds, then merges the chunks of each series-day that
/// ended (with `all`, every day, today included) into one row, as the
/// running collector does an hour after each day ends. Nothing to do on
/// PostgreSQL.
pub async fn compact_store(
    config: &CollectorConfig,
    all: bool,
) -> Result<store::CompactReport, CollectorError> {
    if config.postgres.is_some() {
        return Ok(store::CompactReport::default());
    }
    let _lock = lock_sqlite_store(config)?;
    let store = store::Store::open(&config.sqlite_path)?;
    // Each group writes a bounded number of chunks; the head is empty once
    // every chunk is persisted.
    for _ in 0..10_000 {
        store.close_head_chunks().await?;
        if store.head_encoded_bytes() == 0 {
            break;
        }
    }
    let before_ms = if all {
        i64::MAX
    } else {
        steward_core::now_ms() - COMPACT_AFTER_DAY_ENDS.as_millis() as i64
    };
    let report = store.compact_aged(before_ms).await;
    store.close().await;
    Ok(report?)
}

/// How long after a UTC day ends the prune loop merges its chunks.
const COMPACT_AFTER_DAY_ENDS: Duration = Duration::from_secs(3600);
/// How far back the periodic pass looks for days to merge: yesterday, and a
/// couple of days for a collector that was down or points that came late.
const COMPACT_LOOK_BACK: Duration = Duration::from_secs(3 * 86_400);

/// What the prune loop keeps, and how often it looks.
struct Retention {
    samples: Duration,
    rollups: Duration,
    records: store::RetentionPolicy,
    every: Duration,
}

/// Applies retention every `retention.every`: samples first, then every
/// other kind of record. Agents forgotten by retention are forgotten by the
/// rules engine too, so an invented agent id does not keep an `agent-down`
/// incident open forever.
async fn prune_loop(
    store: Arc<store::Store>,
    retention: Retention,
    incidents: incidents::IncidentHandle,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    let mut ticker = tokio::time::interval(retention.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        let now = steward_core::now_ms();
        let cutoff = now - retention.samples.as_millis() as i64;
        match store.prune(cutoff).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(message = "Pruned data past retention.", removed),
            Err(error) => tracing::warn!(message = "Pruning failed.", %error),
        }
        let cutoff = now - retention.rollups.as_millis() as i64;
        match store.prune_rollups(cutoff).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(message = "Pruned rollups past retention.", removed),
            Err(error) => tracing::warn!(message = "Pruning rollups failed.", %error),
        }
        // Whole UTC days that ended over an hour ago become one chunk row
        // and one rollup row per series (late points of a day merge later,
        // within the look-back).
        let before = now - COMPACT_AFTER_DAY_ENDS.as_millis() as i64;
        let since = (before - COMPACT_LOOK_BACK.as_millis() as i64)
            .div_euclid(store::COMPACTION_DAY_MS)
            * store::COMPACTION_DAY_MS;
        match store.compact_days(since, before).await {
            Ok(report) if report.is_empty() => {}
            Ok(report) => tracing::info!(
                message = "Compacted aged samples.",
                chunks_merged = report.chunks_merged,
                chunks_written = report.chunks_written,
                rollups_merged = report.rollups_merged,
                rollups_written = report.rollups_written,
            ),
            Err(error) => tracing::warn!(message = "Compacting aged samples failed.", %error),
        }
        match store.prune_records(retention.records, now).await {
            Ok(report) if report.is_empty() => {}
            Ok(report) => {
                tracing::info!(
                    message = "Pruned records past retention.",
                    incidents = report.incidents,
                    notifications = report.notifications,
                    inventory_events = report.inventory_events,
                    asset_events = report.asset_events,
                    agents = report.agents.len(),
                );
                if !report.agents.is_empty() {
                    incidents
                        .send(incidents::RulesInput::Forget {
                            agent_ids: report.agents,
                        })
                        .await;
                }
            }
            Err(error) => tracing::warn!(message = "Pruning records failed.", %error),
        }
    }
}
