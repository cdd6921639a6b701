//! PostgreSQL: the state several collectors share (issue #15, "Scaling out").
//!
//! Collectors share nothing but this database, so every guarantee that was a
//! property of the one SQLite writer becomes a constraint or a row lock here:
//! - a batch's idempotency key `(agent, epoch, seq)` is the primary key of
//!   `batches`, so a batch resent to another collector after a failover is a
//!   [`CommitOutcome::Duplicate`](super::CommitOutcome), not stored twice;
//! - at most one unresolved incident per dedup key is a partial unique index;
//!   an opener inserts with `ON CONFLICT DO NOTHING` and reads the winner;
//! - outbox rows are claimed with `FOR UPDATE SKIP LOCKED` and a lease
//!   (`claimed_by`, `claimed_until_ms`): a dead collector's claims expire and
//!   are taken over, and a delivery is recorded only by the claim's holder;
//! - SLA breaches are marked by an `UPDATE … WHERE not yet breached RETURNING`,
//!   which one collector wins.
//!
//! Schema changes are numbered SQL files applied at start-up under a
//! PostgreSQL advisory lock (`migrations`), so two collectors starting
//! together do not race. Connections come from a pool (deadpool) and speak
//! TLS through rustls when the URL's `sslmode` asks for it.
//!
//! The collector's [`Store`](super::Store) dispatches here when
//! `[storage] postgres` is set (README "Scaling out"); `cluster` records
//! which collector is alive and which agent streams where.

mod api_tokens;
mod assets;
mod changes;
mod cluster;
mod group;
mod history;
mod identity;
mod incident_rows;
mod incidents;
mod ingest;
mod inventory;
mod maintenance;
mod migrations;
mod outbox;
mod parent_hold;
mod problems;
mod retention;
mod retry;
#[cfg(any(test, feature = "test-support"))]
pub mod testdb;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use cluster::AgentOwner;
pub use migrations::PG_SCHEMA_VERSION;

/// Where the shared database is and how to reach it.
#[derive(Clone)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/db?sslmode=require` (libpq URL or key=value form).
    pub url: String,
    /// Most connections this collector holds open.
    pub pool_size: usize,
    /// PEM file of the CA that signed the server's certificate; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Where a PostgreSQL URL points, for logs and errors: user, hosts, ports
/// and database as parsed, never the password (nor any other part of the
/// text, which a hand-written redaction could miss: quoting, spaces).
pub fn redact_url(url: &str) -> String {
    let Ok(config) = tokio_postgres::Config::from_str(url) else {
        return "(a PostgreSQL URL that does not parse)".to_string();
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let name = match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(index).or(config.get_ports().first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    let user = config
        .get_user()
        .map(|user| format!("{user}@"))
        .unwrap_or_default();
    let password = if config.get_password().is_some() {
        " (password set)"
    } else {
        ""
    };
    format!(
        "postgres://{user}{}/{}{password}",
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    #[error("invalid PostgreSQL URL {url}: {message}")]
    Url { url: String, message: String },
    #[error("PostgreSQL TLS roots: {0}")]
    Tls(#[from] steward_core::tls::TrustRootsError),
    #[error("cannot connect to PostgreSQL at {url}: {message}")]
    Connect { url: String, message: String },
    #[error(
        "the PostgreSQL database has schema version {found} but this collector knows only up to \
         {supported}: it was written by a newer release; run that release"
    )]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("cannot apply PostgreSQL schema migration {version}: {source}")]
    Migration {
        version: u32,
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The transaction a batch was grouped into failed; nothing of it is stored.
    #[error("batch not stored: {0}")]
    GroupFailed(String),
    #[error("PostgreSQL pool: {0}")]
    Pool(String),
    /// A value in the database this build does not know (never defaulted).
    #[error("unreadable value in column {column}: {message}")]
    Decode { column: String, message: String },
    /// A write refused because another collector's committed one contradicts
    /// it (e.g. linking an agent another collector already linked elsewhere);
    /// nothing of it is stored.
    #[error("write refused: {0}")]
    Conflict(String),
    /// Another live collector uses this collector's `instance` name.
    #[error(
        "another collector named {name:?} is alive on this database (its heartbeat is fresh): \
         give each collector its own [storage] instance"
    )]
    InstanceTaken { name: String },
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => Self::Db(error),
            other => Self::Pool(other.to_string()),
        }
    }
}

/// The shared database of one or more collectors, through a connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// This collector's name in claims (`claimed_by`) and batch rows.
    collector: String,
    batches: group::BatchQueue,
    /// This process among collectors of the same name (`cluster`): random per start.
    session: String,
    /// Latest values and the commit problem of this collector's batches.
    published: std::sync::Arc<ingest::Published>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("collector", &self.collector)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, and brings the schema up to [`PG_SCHEMA_VERSION`] (under the
    /// advisory lock); refuses a database with a newer schema.
    pub async fn open(settings: &PgSettings, collector: &str) -> Result<Self, PgError> {
        let redacted = redact_url(&settings.url);
        let config =
            tokio_postgres::Config::from_str(&settings.url).map_err(|error| PgError::Url {
                url: redacted.clone(),
                message: error.to_string(),
            })?;
        // Without TLS no roots are needed (a host without a system trust store
        // can still use `sslmode=disable` on a private network or loopback).
        let roots = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
            std::sync::Arc::new(rustls::RootCertStore::empty())
        } else {
            steward_core::tls::trust_roots(settings.ca_file.as_deref())?
        };
        let tls = rustls::ClientConfig::builder_with_provider(Into::into(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| PgError::Pool(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let manager = Manager::from_config(
            config,
            MakeRustlsConnect::new(tls),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .build()
            .map_err(|error| PgError::Pool(error.to_string()))?;
        let mut client = pool.get().await.map_err(|error| PgError::Connect {
            url: redacted.clone(),
            message: error.to_string(),
        })?;
        migrations::migrate(&mut client).await?;
        let latest = history::load_latest(&client).await?;
        drop(client);
        let published = std::sync::Arc::new(ingest::Published::new(latest));
        let batches = group::BatchQueue::start(
            pool.clone(),
            collector.to_string(),
            std::sync::Arc::clone(&published),
        );
        Ok(Self {
            pool,
            collector: collector.to_string(),
            batches,
            session: steward_core::ids::new_uuid_v4(),
            published,
        })
    }

    /// Never resolves: unlike SQLite's, this backend has no writer thread
    /// that could stop (a failing database shows in `write_problem`).
    pub async fn writer_stopped(&self) -> Result<(), String> {
        std::future::pending().await
    }

    /// Closes the pool's idle connections.
    pub async fn close(&self) {
        self.pool.close();
    }

    /// This collector's name in claims.
    pub fn collector(&self) -> &str {
        &self.collector
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, PgError> {
        Ok(self.pool.get().await?)
    }
}

/// A text column parsed into a domain value; an unknown value is an error.
fn parse_column<T, E: std::fmt::Display>(
    column: &str,
    text: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, PgError> {
    parse(text).map_err(|error| PgError::Decode {
        column: column.to_string(),
        message: error.to_string(),
    })
}
