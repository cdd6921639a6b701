//! The store: durable SQLite storage plus the in-memory latest value of every series.
//!
//! All writes go through one writer thread that groups concurrent requests
//! into a single transaction; a caller's future resolves only after that
//! transaction has committed, which is what lets `ingest` acknowledge.
//! Reads use a separate connection (WAL lets them run beside the writer).
//! This module knows nothing of proto, tonic or HTTP.

mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

pub type Labels = BTreeMap<String, String>;

/// Identity of a time series: one agent, one metric, one label set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub agent_id: String,
    pub metric: String,
    pub labels: Labels,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SampleRecord {
    pub metric: String,
    pub labels: Labels,
    pub value: f64,
    pub timestamp_ms: i64,
}

/// A batch as received from one agent; `(agent_id, epoch, seq)` is its idempotency key.
#[derive(Debug, Clone)]
pub struct SampleBatch {
    pub agent_id: String,
    pub epoch: u64,
    pub seq: u64,
    pub received_ms: i64,
    pub samples: Vec<SampleRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Stored {
        samples: usize,
    },
    /// Already stored earlier (a resend after a lost acknowledgement).
    Duplicate,
}

#[derive(Debug, Clone)]
pub struct AgentHello {
    pub agent_id: String,
    pub hostname: String,
    pub version: String,
    pub facts: BTreeMap<String, String>,
    pub seen_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatestValue {
    pub value: f64,
    pub timestamp_ms: i64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("write failed: {0}")]
    Failed(String),
    #[error("the store is shutting down")]
    Closed,
}

/// Latest value per series, shared with readers (API, rules).
pub type LatestValues = RwLock<HashMap<SeriesKey, LatestValue>>;

pub struct Store {
    jobs: mpsc::Sender<writer::Job>,
    reader: Arc<Mutex<Connection>>,
    latest: Arc<LatestValues>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store { .. }")
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let open = |path: &Path| -> Result<Connection, rusqlite::Error> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: readers never block the writer. synchronous=FULL: a commit is on
        // disk before we acknowledge it, so it survives power loss, not only kill -9.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        Ok(connection)
    };
    open(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })
}

impl Store {
    /// Opens (creating if needed) the database and starts the writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            let _ = std::fs::create_dir_all(parent);
        }
        let connection = open_connection(path)?;
        connection.execute_batch(include_str!("schema.sql"))?;
        let latest = Arc::new(RwLock::new(load_latest(&connection)?));
        let reader = Arc::new(Mutex::new(open_connection(path)?));
        let (jobs, receiver) = mpsc::channel(1024);
        let writer_thread = writer::spawn(connection, receiver, Arc::clone(&latest))?;
        Ok(Self {
            jobs,
            reader,
            latest,
            writer_thread: Mutex::new(Some(writer_thread)),
        })
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> writer::Job,
    ) -> Result<T, StoreError> {
        let (reply, response) = oneshot::channel();
        self.jobs
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        response.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores a batch; resolves after the transaction holding it has committed.
    pub async fn commit_batch(&self, batch: SampleBatch) -> Result<CommitOutcome, StoreError> {
        self.submit(|reply| writer::Job::Batch { batch, reply })
            .await
    }

    pub async fn record_hello(&self, hello: AgentHello) -> Result<(), StoreError> {
        self.submit(|reply| writer::Job::Hello { hello, reply })
            .await
    }

    /// Deletes samples older than `before_ms`; returns how many.
    pub async fn prune_samples(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.submit(|reply| writer::Job::Prune { before_ms, reply })
            .await
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let connection = reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            query(&connection).map_err(StoreError::from)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Highest committed sequence number for `(agent_id, epoch)`, 0 if none.
    pub async fn committed_seq(&self, agent_id: &str, epoch: u64) -> Result<u64, StoreError> {
        let agent_id = agent_id.to_string();
        self.read(move |connection| {
            connection
                .query_row(
                    "SELECT max(seq) FROM batches WHERE agent_id = ?1 AND epoch = ?2",
                    params![agent_id, epoch as i64],
                    |row| row.get::<_, Option<i64>>(0),
                )
                .map(|seq| seq.unwrap_or(0) as u64)
        })
        .await
    }

    pub async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare(
                "SELECT id, hostname, version, first_seen_ms, last_seen_ms FROM agents ORDER BY hostname, id",
            )?;
            statement
                .query_map([], |row| {
                    Ok(AgentRecord {
                        id: row.get(0)?,
                        hostname: row.get(1)?,
                        version: row.get(2)?,
                        first_seen_ms: row.get(3)?,
                        last_seen_ms: row.get(4)?,
                    })
                })?
                .collect()
        })
        .await
    }

    pub async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let agent_id = agent_id.to_string();
        self.read(move |connection| {
            connection
                .query_row(
                    "SELECT id, hostname, version, first_seen_ms, last_seen_ms FROM agents WHERE id = ?1",
                    [agent_id],
                    |row| {
                        Ok(AgentRecord {
                            id: row.get(0)?,
                            hostname: row.get(1)?,
                            version: row.get(2)?,
                            first_seen_ms: row.get(3)?,
                            last_seen_ms: row.get(4)?,
                        })
                    },
                )
                .optional()
        })
        .await
    }

    /// Total stored samples and batches, for tests and diagnostics.
    pub async fn counts(&self) -> Result<(u64, u64), StoreError> {
        self.read(|connection| {
            let samples: i64 =
                connection.query_row("SELECT count(*) FROM samples", [], |row| row.get(0))?;
            let batches: i64 =
                connection.query_row("SELECT count(*) FROM batches", [], |row| row.get(0))?;
            Ok((samples as u64, batches as u64))
        })
        .await
    }

    /// Latest values, optionally for one agent, ordered by series key.
    pub fn latest(&self, agent_id: Option<&str>) -> Vec<(SeriesKey, LatestValue)> {
        let latest = self
            .latest
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut values: Vec<_> = latest
            .iter()
            .filter(|(key, _)| agent_id.is_none_or(|agent_id| key.agent_id == agent_id))
            .map(|(key, value)| (key.clone(), *value))
            .collect();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        values
    }

    /// Finishes queued writes and stops the writer thread.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.jobs.send(writer::Job::Close { reply }).await.is_ok() {
            let _ = done.await;
        }
        let thread = self
            .writer_thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn load_latest(connection: &Connection) -> Result<HashMap<SeriesKey, LatestValue>, StoreError> {
    let mut statement = connection
        .prepare("SELECT agent_id, metric, labels, last_value, last_ts_ms FROM series")?;
    let rows = statement.query_map([], |row| {
        let labels: String = row.get(2)?;
        Ok((
            SeriesKey {
                agent_id: row.get(0)?,
                metric: row.get(1)?,
                labels: serde_json::from_str(&labels).unwrap_or_default(),
            },
            LatestValue {
                value: row.get(3)?,
                timestamp_ms: row.get(4)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Canonical text of a label set (sorted keys), used as part of the series identity.
pub fn labels_json(labels: &Labels) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_string())
}

#[cfg(test)]
mod tests;
