//! The store: durable SQLite storage plus the in-memory latest value of every series.
//!
//! All writes go through one writer thread that groups concurrent requests
//! into a single transaction; a caller's future resolves only after that
//! transaction has committed, which is what lets `ingest` acknowledge.
//! Reads use a separate connection (WAL lets them run beside the writer).
//! This module knows nothing of proto, tonic or HTTP.
//!
//! Samples are stored as a time-series engine: each committed batch is one
//! compact `sample_log` record (durability), recent points of each series
//! live in the in-memory head (`head`, Gorilla-encoded), closed chunks and
//! their 5-minute rollups are blobs in `chunks` and `rollups`, and log
//! records covered by written chunks are deleted. Startup replays the rest
//! of the log into the head (`writer::replay`). Formats: `chunk`, `gorilla`;
//! reads: `history`.
//!
//! The schema is versioned: [`Store::open`] applies the numbered steps in
//! `migrations` that the file lacks, each in its own transaction with its
//! `PRAGMA user_version` bump, and refuses a database whose version is newer
//! than this build's [`SCHEMA_VERSION`] rather than write to a shape it does
//! not know. Migration 1 is the schema as released before versioning, all
//! `IF NOT EXISTS`, so a database from that release (version 0, every table
//! present) is adopted with its rows once its columns are checked. A schema
//! change is a new migration appended to the list, never an edit of one.

mod api_tokens;
mod assets;
mod changes;
mod chunk;
mod codec;
mod columns;
mod compaction;
mod conditions;
mod facade;
mod gorilla;
mod head;
mod history;
mod identity;
mod incidents;
mod inventory;
mod migrations;
mod outbox;
mod packed_key;
mod parent_hold;
pub mod postgres;
mod problems;
mod readers;
mod retention;
mod timeline;
mod writer;

pub use compaction::{CompactReport, DAY_MS as COMPACTION_DAY_MS};
pub use facade::Store;
pub use history::{HistoryPoint, HistoryQuery, MAX_POINTS_PER_SERIES, SeriesHistory};
pub use identity::{
    AdminDb, EnrollRefusal, EnrollmentTokenRow, IdentityBinding, IdentityEvent, IssuedCertificate,
    NewEnrollmentToken,
};
pub use migrations::SCHEMA_VERSION;

// The chunk codec is public for the hot-path benches (collector/benches/hot_paths.rs).
pub use chunk::{chunk_blob, chunk_blob_columns, decode_chunk_blob};
pub use gorilla::{ChunkEncoder, CorruptChunk};

pub use api_tokens::{ActiveToken, ApiTokenRow, ApiTokenTable, TokenTableError};
pub use assets::{AssetEventRow, AssetLink, AssetRow, AssetWrite};
pub use changes::ChangeUpdate;
pub use incidents::{
    AppliedChange, ChangeRefused, IncidentChange, IncidentFilter, NewIncident, TimelineEntry,
};
pub use outbox::{
    DeliveryAttempt, GroupEscalationMessage, GroupFlush, JournalEntry, MaintenanceWindow,
    NewNotification, Notification, NotificationFilter,
};
pub use problems::{ProblemFilter, ProblemRefused, ProblemUpdate};
pub use retention::{PruneReport, RetentionPolicy};

pub use inventory::{
    DiskRecord, InterfaceRecord, InventoryApplied, InventoryEvent, InventorySnapshot,
    InventoryUpdate,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::domain::{ChangeRecord, ProblemRecord};
pub use crate::domain::{IncidentRecord, Labels};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryOutcome {
    Stored(InventoryApplied),
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
    #[error(
        "database {path} has schema version {found} but this collector knows only up to {supported}: \
         it was written by a newer release; run that release, or restore a backup taken before the upgrade"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "database {path} has no schema version and is not one steward-collector wrote: {detail}"
    )]
    UnknownSchema { path: PathBuf, detail: String },
    #[error("cannot apply schema migration {version} to {path}: {source}")]
    Migration {
        path: PathBuf,
        version: u32,
        source: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("write failed: {0}")]
    Failed(String),
    /// A history query asks for more than one answer may hold.
    #[error("query too large: {0}")]
    QueryTooLarge(String),
    #[error("the store is shutting down")]
    Closed,
    /// The shared PostgreSQL database refused or failed (see [`postgres`]).
    #[error(transparent)]
    Postgres(#[from] postgres::PgError),
}

/// Latest value per series, shared with readers (API, rules).
/// Keys are shared with the writer's series ids.
pub type LatestValues = RwLock<packed_key::LatestMap>;

pub struct SqliteStore {
    jobs: mpsc::Sender<writer::Job>,
    readers: Arc<readers::Readers>,
    latest: Arc<LatestValues>,
    /// Recent points per series; changed only by the writer thread.
    head: Arc<Mutex<head::Head>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    writer_health: Arc<writer::WriterHealth>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore { .. }")
    }
}

/// An `agents` row selected as `id, hostname, version, first_seen_ms, last_seen_ms`.
fn agent_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRecord> {
    Ok(AgentRecord {
        id: row.get(0)?,
        hostname: row.get(1)?,
        version: row.get(2)?,
        first_seen_ms: row.get(3)?,
        last_seen_ms: row.get(4)?,
    })
}

/// A connection of its own for a command run beside (or before) the
/// collector: `init`, the token and identity commands. Creates the database
/// and its directory if needed and migrates it; the busy timeout of
/// [`open_connection`] makes it wait for the running collector's writer.
pub(crate) fn open_for_administration(path: &Path) -> Result<Connection, StoreError> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        let _ = std::fs::create_dir_all(parent);
    }
    let mut connection = open_connection(path)?;
    migrations::migrate(&mut connection, path)?;
    Ok(connection)
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

impl SqliteStore {
    /// Opens (creating if needed) the database and starts the writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            let _ = std::fs::create_dir_all(parent);
        }
        let mut connection = open_connection(path)?;
        migrations::migrate(&mut connection, path)?;
        // Filled by the writer with the series it loads.
        let latest = Arc::new(RwLock::new(packed_key::LatestMap::default()));
        let readers = Arc::new(readers::Readers::open(path)?);
        let (jobs, receiver) = mpsc::channel(1024);
        let head = Arc::new(Mutex::new(head::Head::default()));
        let (writer_thread, writer_health) =
            writer::spawn(connection, receiver, Arc::clone(&latest), Arc::clone(&head))?;
        Ok(Self {
            jobs,
            readers,
            latest,
            head,
            writer_thread: Mutex::new(Some(writer_thread)),
            writer_health,
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
        // Freed here, on the caller's thread, not on the writer's.
        let batch = Arc::new(batch);
        let shared = Arc::clone(&batch);
        let outcome = self
            .submit(|reply| writer::Job::Batch {
                batch: shared,
                reply,
            })
            .await;
        drop(batch);
        outcome
    }

    /// Applies an inventory update; resolves after it has committed.
    pub async fn commit_inventory(
        &self,
        update: InventoryUpdate,
    ) -> Result<InventoryOutcome, StoreError> {
        self.submit(|reply| writer::Job::Inventory { update, reply })
            .await
    }

    pub async fn record_hello(&self, hello: AgentHello) -> Result<(), StoreError> {
        self.submit(|reply| writer::Job::Hello { hello, reply })
            .await
    }

    /// Deletes rows older than `before_ms` in chunks, each its own
    /// transaction so ingest keeps flowing; returns, summed over chunks, the
    /// most rows any one table lost in a chunk.
    pub async fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let deleted = self
                .submit(|reply| writer::Job::Prune { before_ms, reply })
                .await?;
            total += deleted;
            if (deleted as i64) < writer::PRUNE_CHUNK {
                return Ok(total);
            }
        }
    }

    /// Applies `policy` to everything that is not a sample, in small steps
    /// (each its own transaction, so ingest keeps flowing) until nothing is
    /// left to remove; returns what went.
    pub async fn prune_records(
        &self,
        policy: RetentionPolicy,
        now_ms: i64,
    ) -> Result<PruneReport, StoreError> {
        /// Rows per table per step: small enough that a step is short.
        const STEP: usize = 500;
        let mut total = PruneReport::default();
        loop {
            let step = self
                .write(move |transaction| retention::prune_step(transaction, &policy, now_ms, STEP))
                .await?;
            if step.is_empty() {
                return Ok(total);
            }
            total.add(step);
        }
    }

    /// Deletes rollups that end before `before_ms`, in steps like [`Self::prune`].
    pub async fn prune_rollups(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let deleted = self
                .write(move |transaction| writer::prune_rollups(transaction, before_ms))
                .await?;
            total += deleted;
            if (deleted as i64) < writer::PRUNE_CHUNK {
                return Ok(total);
            }
        }
    }

    /// Closes every open head chunk and writes it now (tests, benchmarks,
    /// and aging the head on demand); resolves after commit.
    pub async fn close_head_chunks(&self) -> Result<(), StoreError> {
        self.submit(|reply| writer::Job::CloseHead { reply }).await
    }

    /// Merges the chunks and rollups of every series-day that ended before
    /// `before_ms` into one row each (see `compaction`), in small steps, each
    /// its own transaction so ingest keeps flowing.
    pub async fn compact_aged(&self, before_ms: i64) -> Result<CompactReport, StoreError> {
        self.compact_days(i64::MIN, before_ms).await
    }

    /// [`Self::compact_aged`] for the days that start at or after `since_ms`
    /// only: the periodic pass looks back a few days, so it does not read
    /// every stored blob once an hour (late points older than that stay in
    /// their chunks: readable, just less compact).
    pub async fn compact_days(
        &self,
        since_ms: i64,
        before_ms: i64,
    ) -> Result<CompactReport, StoreError> {
        let mut total = CompactReport::default();
        for table in [compaction::Table::Chunks, compaction::Table::Rollups] {
            let mut cursor = Some(compaction::Cursor::start(since_ms));
            while let Some(from) = cursor {
                let head = Arc::clone(&self.head);
                let (step, next) = self
                    .write(move |transaction| {
                        compaction::compact_step(transaction, &head, table, before_ms, from)
                    })
                    .await?;
                total.add(step);
                cursor = next;
            }
        }
        Ok(total)
    }

    /// Every stored point of one series, oldest first; a point stored twice
    /// shows twice. For tests and diagnostics.
    pub async fn series_points(&self, key: &SeriesKey) -> Result<Vec<(i64, f64)>, StoreError> {
        let key = key.clone();
        let head = Arc::clone(&self.head);
        self.read(move |connection| {
            let id: Option<i64> = connection
                .query_row(
                    "SELECT id FROM series WHERE agent_id = ?1 AND metric = ?2 AND labels = ?3",
                    params![key.agent_id, key.metric, labels_json(&key.labels)],
                    |row| row.get(0),
                )
                .optional()?;
            match id {
                Some(id) => history::raw_points(connection, &head, id, i64::MIN, i64::MAX),
                None => Ok(Vec::new()),
            }
        })
        .await
    }

    /// Points of the series matching `query` (see [`HistoryQuery`]).
    pub async fn history(&self, query: HistoryQuery) -> Result<Vec<SeriesHistory>, StoreError> {
        let readers = Arc::clone(&self.readers);
        let head = Arc::clone(&self.head);
        tokio::task::spawn_blocking(move || {
            let connection = readers.get(readers::Reader::Api);
            history::history(&connection, &head, &query)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Heap bytes the head holds in encoded points (for memory figures).
    pub fn head_encoded_bytes(&self) -> usize {
        self.head
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .encoded_bytes()
    }

    /// Runs `write` in the writer's next transaction; resolves after commit.
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let run: writer::ExecFn = Box::new(move |transaction| {
            write(transaction).map(|output| Box::new(output) as Box<dyn std::any::Any + Send>)
        });
        let output = self
            .submit(|reply| writer::Job::Exec { run, reply })
            .await?;
        output
            .downcast::<T>()
            .map(|output| *output)
            .map_err(|_| StoreError::Failed("write returned an unexpected type".into()))
    }

    /// Applies rule decisions in one transaction (one disk sync for a burst
    /// of a thousand breaches), in order.
    pub async fn apply_incident_changes(
        &self,
        changes: Vec<IncidentChange>,
    ) -> Result<Vec<AppliedChange>, StoreError> {
        self.write(move |transaction| incidents::apply_changes(transaction, &changes))
            .await
    }

    /// Incident changes after the notification cursor, oldest first.
    pub async fn unnotified_journal(&self, limit: u32) -> Result<Vec<JournalEntry>, StoreError> {
        self.read(move |connection| {
            let position = outbox::cursor(connection)?;
            outbox::journal_after(connection, position, limit)
        })
        .await
    }

    /// Queues notifications and advances the journal cursor to `position` atomically.
    pub async fn enqueue_notifications(
        &self,
        notifications: Vec<NewNotification>,
        position: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        self.write(move |transaction| {
            outbox::enqueue(transaction, &notifications, position, now_ms)
        })
        .await
    }

    pub async fn due_notifications(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        self.read(move |connection| outbox::due(connection, now_ms, limit))
            .await
    }

    pub async fn next_notification_due(&self) -> Result<Option<i64>, StoreError> {
        self.read(outbox::next_due).await
    }

    pub async fn record_delivery(&self, attempt: DeliveryAttempt) -> Result<(), StoreError> {
        self.write(move |transaction| outbox::record_attempt(transaction, &attempt))
            .await
    }

    /// Records a change and its maintenance window.
    pub async fn create_change(&self, change: ChangeRecord) -> Result<ChangeRecord, StoreError> {
        self.write(move |transaction| changes::create(transaction, &change))
            .await
    }

    pub async fn update_change(
        &self,
        id: i64,
        update: ChangeUpdate,
    ) -> Result<Option<ChangeRecord>, StoreError> {
        self.write(move |transaction| changes::update(transaction, id, &update))
            .await
    }

    pub async fn change(&self, id: i64) -> Result<Option<ChangeRecord>, StoreError> {
        self.read(move |connection| changes::get(connection, id))
            .await
    }

    /// Changes with the number of incidents each links.
    pub async fn changes(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(ChangeRecord, i64)>, StoreError> {
        self.read(move |connection| changes::list(connection, before_id, limit))
            .await
    }

    pub async fn changes_started_between(
        &self,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        self.read(move |connection| changes::started_between(connection, since_ms, now_ms))
            .await
    }

    /// (id, opened, resolved) of the incidents linked to a change.
    pub async fn change_incidents(
        &self,
        id: i64,
    ) -> Result<Vec<(i64, i64, Option<i64>)>, StoreError> {
        self.read(move |connection| changes::incidents_of(connection, id))
            .await
    }

    pub async fn problem(&self, id: i64) -> Result<Option<ProblemRecord>, StoreError> {
        self.read(move |connection| problems::get(connection, id))
            .await
    }

    /// Problems with the number of incidents each links.
    pub async fn problems(
        &self,
        filter: ProblemFilter,
    ) -> Result<Vec<(ProblemRecord, i64)>, StoreError> {
        self.read(move |connection| problems::list(connection, &filter))
            .await
    }

    pub async fn problem_incidents(&self, id: i64) -> Result<Vec<i64>, StoreError> {
        self.read(move |connection| problems::incidents_of(connection, id))
            .await
    }

    pub async fn update_problem(
        &self,
        id: i64,
        update: ProblemUpdate,
    ) -> Result<Result<ProblemRecord, ProblemRefused>, StoreError> {
        self.write(move |transaction| problems::update(transaction, id, &update))
            .await
    }

    /// Queues a group's message from the rows kept for it (see `outbox::flush_group`).
    pub async fn flush_group(&self, flush: GroupFlush) -> Result<Option<(i64, usize)>, StoreError> {
        self.write(move |transaction| outbox::flush_group(transaction, &flush))
            .await
    }

    pub async fn group_members(&self, message: i64) -> Result<Vec<i64>, StoreError> {
        self.read(move |connection| outbox::group_members(connection, message))
            .await
    }

    /// Queues escalation steps of groups as group messages (see `outbox`).
    pub async fn enqueue_group_escalations(
        &self,
        messages: Vec<GroupEscalationMessage>,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        self.write(move |transaction| {
            outbox::enqueue_group_escalations(transaction, &messages, now_ms)
        })
        .await
    }

    /// Incidents whose opening went (or is kept to go) into a message of
    /// group `group_key`, oldest first.
    pub async fn grouped_incidents(&self, group_key: String) -> Result<Vec<i64>, StoreError> {
        self.read(move |connection| outbox::grouped_incidents(connection, &group_key))
            .await
    }

    pub async fn kept_groups(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(outbox::kept_groups).await
    }

    pub async fn notification_state(
        &self,
        idempotency_key: String,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        self.read(move |connection| outbox::row_state(connection, &idempotency_key))
            .await
    }

    pub async fn create_maintenance(&self, window: MaintenanceWindow) -> Result<i64, StoreError> {
        self.write(move |transaction| outbox::create_window(transaction, &window))
            .await
    }

    pub async fn end_maintenance(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        self.write(move |transaction| outbox::end_window(transaction, id, now_ms))
            .await
    }

    /// Windows that end after `ending_after_ms` (current and future ones).
    pub async fn maintenance_windows(
        &self,
        ending_after_ms: i64,
    ) -> Result<Vec<MaintenanceWindow>, StoreError> {
        self.read(move |connection| outbox::windows(connection, ending_after_ms))
            .await
    }

    pub async fn held_notifications(&self) -> Result<Vec<Notification>, StoreError> {
        self.read(outbox::held).await
    }

    pub async fn release_notification(
        &self,
        id: i64,
        state: &'static str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(move |transaction| outbox::release(transaction, id, state, now_ms))
            .await
    }

    pub async fn notifications(
        &self,
        filter: NotificationFilter,
    ) -> Result<Vec<Notification>, StoreError> {
        self.read(move |connection| outbox::list(connection, &filter))
            .await
    }

    /// Writes asset records, links and history in one transaction.
    pub async fn write_assets(&self, writes: Vec<AssetWrite>) -> Result<(), StoreError> {
        self.write(move |transaction| assets::write(transaction, &writes))
            .await
    }

    pub async fn assets(&self) -> Result<Vec<AssetRow>, StoreError> {
        self.read(assets::all).await
    }

    pub async fn asset(&self, id: &str) -> Result<Option<AssetRow>, StoreError> {
        let id = id.to_string();
        self.read(move |connection| assets::get(connection, &id))
            .await
    }

    /// The asset an agent belongs to, if any.
    pub async fn asset_link(&self, agent_id: &str) -> Result<Option<AssetLink>, StoreError> {
        let agent_id = agent_id.to_string();
        self.read(move |connection| assets::link(connection, &agent_id))
            .await
    }

    pub async fn asset_links(&self) -> Result<Vec<AssetLink>, StoreError> {
        self.read(assets::links).await
    }

    /// Newest first.
    /// An asset's history with row ids, newest first, below `before_id` when given.
    pub async fn asset_events(
        &self,
        id: &str,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, AssetEventRow)>, StoreError> {
        let id = id.to_string();
        self.read(move |connection| assets::events(connection, &id, before_id, limit))
            .await
    }

    pub async fn acknowledge_incident(
        &self,
        id: i64,
        by: String,
        note: Option<String>,
        now_ms: i64,
    ) -> Result<Result<IncidentRecord, ChangeRefused>, StoreError> {
        self.write(move |transaction| {
            incidents::acknowledge(transaction, id, &by, note.as_deref(), now_ms)
        })
        .await
    }

    pub async fn resolve_incident(
        &self,
        id: i64,
        by: String,
        reason: String,
        value: Option<f64>,
        now_ms: i64,
    ) -> Result<Result<IncidentRecord, ChangeRefused>, StoreError> {
        self.write(move |transaction| {
            incidents::resolve(transaction, id, &by, &reason, value, now_ms)
        })
        .await
    }

    pub async fn add_incident_note(
        &self,
        id: i64,
        by: String,
        text: String,
        now_ms: i64,
    ) -> Result<Result<IncidentRecord, ChangeRefused>, StoreError> {
        self.write(move |transaction| incidents::add_note(transaction, id, &by, &text, now_ms))
            .await
    }

    pub async fn mark_sla_breaches(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(IncidentRecord, &'static str)>, StoreError> {
        self.write(move |transaction| incidents::mark_sla_breaches(transaction, now_ms))
            .await
    }

    /// Ends dependency holds that ran out: those incidents page now (see
    /// `parent_hold`); returns the ones released unacknowledged.
    pub async fn expire_parent_holds(
        &self,
        now_ms: i64,
    ) -> Result<Vec<IncidentRecord>, StoreError> {
        // Looked for first with a read, so the common case (nothing held)
        // costs the writer nothing every tick.
        let any_due = self
            .read(move |connection| parent_hold::any_due(connection, now_ms))
            .await?;
        if !any_due {
            return Ok(Vec::new());
        }
        self.write(move |transaction| {
            let mut released = Vec::new();
            for id in parent_hold::expire(transaction, now_ms)? {
                released.extend(incidents::get_in(transaction, id)?);
            }
            Ok(released)
        })
        .await
    }

    pub async fn incident(&self, id: i64) -> Result<Option<IncidentRecord>, StoreError> {
        self.read(move |connection| incidents::get_in(connection, id))
            .await
    }

    pub async fn incidents(
        &self,
        filter: IncidentFilter,
    ) -> Result<Vec<IncidentRecord>, StoreError> {
        self.read(move |connection| incidents::list(connection, &filter))
            .await
    }

    pub async fn unresolved_incidents(&self) -> Result<Vec<IncidentRecord>, StoreError> {
        self.read(incidents::unresolved_all).await
    }

    pub async fn incident_timeline(&self, id: i64) -> Result<Vec<TimelineEntry>, StoreError> {
        self.read(move |connection| incidents::timeline(connection, id))
            .await
    }

    pub async fn incidents_opened_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<IncidentRecord>, StoreError> {
        self.read(move |connection| incidents::opened_since(connection, since_ms))
            .await
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.read_as(readers::Reader::Api, query).await
    }

    /// Runs `query` on a read-only connection of `reader`'s kind.
    async fn read_as<T: Send + 'static>(
        &self,
        reader: readers::Reader,
        query: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let connection = readers.get(reader);
            query(&connection).map_err(StoreError::from)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// The unrevoked API token with this hash, read now (no cache), so a
    /// token revoked by `steward-collector token revoke` fails its next request.
    pub async fn active_api_token(
        &self,
        hash: crate::access::TokenHash,
    ) -> Result<Option<ActiveToken>, StoreError> {
        self.read(move |connection| api_tokens::find_active(connection, &hash))
            .await
    }

    /// Every API token, revoked ones included, oldest first (never a hash).
    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>, StoreError> {
        self.read(api_tokens::list).await
    }

    /// Adds an API token; `Ok(false)` if an unrevoked token has `name`.
    pub async fn create_api_token(
        &self,
        name: String,
        scope: crate::access::Scope,
        hash: crate::access::TokenHash,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |transaction| api_tokens::insert(transaction, &name, scope, &hash, now_ms))
            .await
    }

    /// Revokes the unrevoked API token named `name`; false if there is none.
    pub async fn revoke_api_token(&self, name: String, now_ms: i64) -> Result<bool, StoreError> {
        self.write(move |transaction| api_tokens::revoke(transaction, &name, now_ms))
            .await
    }

    /// Records when API token `id` was last used.
    pub async fn touch_api_token(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        self.write(move |transaction| api_tokens::touch(transaction, id, now_ms))
            .await
    }

    /// Highest committed sequence number for `(agent_id, epoch)`, 0 if none.
    /// On the hello path: reads on the ingest connection.
    pub async fn committed_seq(&self, agent_id: &str, epoch: u64) -> Result<u64, StoreError> {
        let agent_id = agent_id.to_string();
        self.read_as(readers::Reader::Ingest, move |connection| {
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
                .query_map([], agent_row)?
                .collect()
        })
        .await
    }

    /// Agents ordered by (hostname, id), after `after` (the last of the
    /// previous page), at most `limit`.
    pub async fn agents_page(
        &self,
        after: Option<(String, String)>,
        limit: u32,
    ) -> Result<Vec<AgentRecord>, StoreError> {
        self.read(move |connection| {
            let (hostname, id) = after.unzip();
            let mut statement = connection.prepare(
                "SELECT id, hostname, version, first_seen_ms, last_seen_ms FROM agents
                 WHERE ?1 IS NULL OR (hostname, id) > (?1, ?2)
                 ORDER BY hostname, id LIMIT ?3",
            )?;
            statement
                .query_map(params![hostname, id, limit], agent_row)?
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
                    agent_row,
                )
                .optional()
        })
        .await
    }

    pub async fn inventory(&self, agent_id: &str) -> Result<Option<InventorySnapshot>, StoreError> {
        let agent_id = agent_id.to_string();
        self.read(move |connection| inventory::snapshot(connection, &agent_id))
            .await
    }

    pub async fn packages(&self, agent_id: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let agent_id = agent_id.to_string();
        self.read(move |connection| inventory::packages(connection, &agent_id))
            .await
    }

    /// Newest first.
    /// Inventory changes of `agent_ids`, newest first, below `before_id` when
    /// given; `packages_only` keeps package changes.
    pub async fn inventory_events(
        &self,
        agent_ids: Vec<String>,
        packages_only: bool,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<InventoryEvent>, StoreError> {
        self.read(move |connection| {
            inventory::events(connection, &agent_ids, packages_only, before_id, limit)
        })
        .await
    }

    /// Fingerprint of the stored package list (0: none), sent in the welcome.
    /// On the hello path: reads on the ingest connection.
    pub async fn packages_fingerprint(&self, agent_id: &str) -> Result<u64, StoreError> {
        let agent_id = agent_id.to_string();
        self.read_as(readers::Reader::Ingest, move |connection| {
            inventory::fingerprint(connection, &agent_id)
        })
        .await
    }

    /// Total stored samples (head, chunks and pre-chunk rows) and batches,
    /// for tests and diagnostics. Reads every chunk's row: not for hot paths.
    pub async fn counts(&self) -> Result<(u64, u64), StoreError> {
        let head = Arc::clone(&self.head);
        self.read(move |connection| {
            let in_head = head
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .point_counts();
            let mut samples: u64 = in_head.values().map(|&(_, points)| points).sum();
            let mut statement = connection.prepare("SELECT series_id, seq, count FROM chunks")?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let (series_id, seq, count): (i64, i64, i64) =
                    (row.get(0)?, row.get(1)?, row.get(2)?);
                // A chunk the head still holds (written meanwhile) counts once.
                if in_head
                    .get(&series_id)
                    .is_none_or(|&(min_seq, _)| seq < min_seq)
                {
                    samples += count as u64;
                }
            }
            let legacy: i64 =
                connection.query_row("SELECT count(*) FROM samples", [], |row| row.get(0))?;
            let batches: i64 =
                connection.query_row("SELECT count(*) FROM batches", [], |row| row.get(0))?;
            Ok((samples + legacy as u64, batches as u64))
        })
        .await
    }

    /// The latest value of one series, if known.
    pub fn latest_value(&self, key: &SeriesKey) -> Option<LatestValue> {
        self.latest
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&packed_key::PackedKey::of(key))
            .copied()
    }

    /// Latest values, optionally for one agent, ordered by series key.
    pub fn latest(&self, agent_id: Option<&str>) -> Vec<(SeriesKey, LatestValue)> {
        packed_key::latest_sorted(&self.latest, agent_id)
    }

    /// Why writes cannot be stored now, if they cannot: the writer thread
    /// has stopped, or the last group of writes could not be committed
    /// (disk full, I/O error); cleared by the next group that commits.
    pub fn write_problem(&self) -> Option<String> {
        self.writer_health.problem()
    }

    /// Resolves when the writer thread ends: `Err` with its panic message if
    /// it panicked.
    pub async fn writer_stopped(&self) -> Result<(), String> {
        self.writer_health.stopped().await
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

/// Canonical text of a label set (sorted keys), used as part of the series identity.
pub fn labels_json(labels: &Labels) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_string())
}

#[cfg(test)]
mod tests;
