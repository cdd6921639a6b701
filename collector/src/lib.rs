//! steward-collector: the central service agents stream to.
//!
//! Layout (data flows top to bottom):
//! - [`ingest`]: gRPC service; authenticates agents, validates, acknowledges after commit.
//! - [`store`]: SQLite (WAL) with one batching writer thread; latest value per series in memory.
//! - [`rules`]: pure threshold/absence evaluation (no I/O, no clock).
//! - [`incidents`]: the task that owns the rule engine and changes incident state; SLAs.
//! - [`assets`]: asset records (CMDB) kept current from inventory; pure logic plus one task.
//! - [`notify`]: alert delivery logic (payloads, routing, on-call, escalation).
//! - [`registry`]: which agents are connected now.
//! - [`api`]: HTTP API on top of the store and registry.
//! - [`telemetry`]: the collector's own counters for `/metrics`.
//! - [`supervisor`]: runs every long-running task by name; one that fails
//!   shuts the collector down (and `/healthz` says which and why).
//! - [`setup`]: `init` and `quickstart`.
//! - [`config`]: `collector.toml`, parsed then validated.

pub mod api;
pub mod assets;
pub mod config;
pub mod incidents;
pub mod ingest;
pub mod notify;
pub mod registry;
pub mod rules;
pub mod setup;
pub mod store;
pub mod supervisor;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Identity, Server, ServerTlsConfig};

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
    #[error("gRPC server failed: {0}")]
    Grpc(tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// A started collector. Dropping it does not stop it; cancel the shutdown token.
pub struct RunningCollector {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub store: Arc<store::Store>,
    /// Acknowledge/resolve and subscribe to incident events in-process.
    pub incidents: incidents::IncidentHandle,
    tasks: JoinSet<Result<(), CollectorError>>,
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
pub async fn start(
    config: CollectorConfig,
    shutdown: CancellationToken,
) -> Result<RunningCollector, CollectorError> {
    let store = Arc::new(store::Store::open(&config.sqlite_path)?);
    let registry = Arc::new(registry::AgentRegistry::default());
    let telemetry = Arc::new(telemetry::Telemetry::default());

    let suppression = Arc::new(assets::service::AlertSuppression::load(&store).await?);
    let (incidents, incidents_task) = incidents::start(
        Arc::clone(&store),
        config.rules.clone(),
        config.sla.clone(),
        Arc::clone(&suppression),
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
        shutdown.clone(),
    )
    .await?;
    let notify_task = tokio::spawn(
        notify::service::NotifyService {
            store: Arc::clone(&store),
            config: Arc::clone(&config.notify),
            base_url: config.base_url.clone(),
            telemetry: Arc::clone(&telemetry),
        }
        .run(incidents.clone(), shutdown.clone()),
    );
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
        max_agents: config.max_agents,
        incidents: incidents.clone(),
        assets: assets.clone(),
        shutdown: shutdown.clone(),
    };
    let mut server = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(tls) = &config.tls {
        server = server
            .tls_config(
                ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem)),
            )
            .map_err(CollectorError::Tls)?;
    } else {
        tracing::warn!(
            message = "TLS is disabled; agent tokens travel in clear (loopback development only)."
        );
    }
    let mut tasks = JoinSet::new();
    let grpc = server
        .add_service(ingest.into_server(config.max_message_bytes))
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(grpc_listener),
            shutdown.clone().cancelled_owned(),
        );
    tasks.spawn(async move { grpc.await.map_err(CollectorError::Grpc) });

    let router = api::router(api::ApiState {
        store: Arc::clone(&store),
        registry,
        telemetry,
        incidents: incidents.clone(),
        assets,
        asset_policy: Arc::new(config.assets.clone()),
        notify: Arc::clone(&config.notify),
        api_tokens: Arc::new(config.api_tokens.clone()),
    });
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        axum::serve(http_listener, router)
            .with_graceful_shutdown(http_shutdown.cancelled_owned())
            .await
            .map_err(CollectorError::Http)
    });
    tasks.spawn(prune_loop(
        Arc::clone(&store),
        config.retention,
        shutdown.clone(),
    ));
    tasks.spawn(reload_on_sighup(
        config.path.clone(),
        incidents.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(async move {
        let _ = incidents_task.await;
        let _ = assets_task.await;
        let _ = notify_task.await;
        Ok(())
    });

    tracing::info!(
        message = "Collector listening.",
        grpc_addr = %grpc_addr,
        http_addr = %http_addr,
        tls = config.tls.is_some(),
        rules = config.rules.len(),
        database = %config.sqlite_path.display(),
    );
    Ok(RunningCollector {
        grpc_addr,
        http_addr,
        store,
        incidents,
        tasks,
    })
}

impl RunningCollector {
    /// Waits for shutdown (or a server failure), then flushes and closes the store.
    pub async fn wait(mut self) -> Result<(), CollectorError> {
        let mut result = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            if let Ok(Err(error)) = joined {
                tracing::error!(message = "A collector server stopped with an error.", %error);
                self.tasks.abort_all();
                result = Err(error);
            }
        }
        self.store.close().await;
        tracing::info!(message = "Collector stopped.");
        result
    }
}

/// Runs the collector until `shutdown` is cancelled.
pub async fn run(
    config: CollectorConfig,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    start(config, shutdown).await?.wait().await
}

async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, CollectorError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| CollectorError::Listen { address, source })
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
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            return Ok(());
        };
        loop {
            tokio::select! {
                _ = hangup.recv() => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
            match CollectorConfig::load(&path) {
                Ok(config) => {
                    tracing::info!(message = "Reloading rules.", path = %path.display(), rules = config.rules.len());
                    incidents.replace_rules(config.rules, config.sla).await;
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

async fn prune_loop(
    store: Arc<store::Store>,
    retention: Duration,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        let cutoff = steward_core::now_ms() - retention.as_millis() as i64;
        match store.prune(cutoff).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(message = "Pruned data past retention.", removed),
            Err(error) => tracing::warn!(message = "Pruning failed.", %error),
        }
    }
}
