//! The single writer thread: groups queued jobs into one transaction, commits,
//! and only then answers each caller.
//!
//! A sample batch costs one `batches` row (dedup) and one `sample_log`
//! record (its samples, compactly encoded) in the group's transaction; the
//! points reach the in-memory head only after that commit. Closed head
//! chunks are written in the next group's transaction, and log records
//! whose points are all in written chunks are deleted then.

use std::any::Any;
use std::sync::{Arc, Mutex};

use hashbrown::HashMap;
use rusqlite::{Connection, ErrorCode, Transaction, params};
use tokio::sync::{mpsc, oneshot, watch};

use super::chunk::{self, LoggedSample};
use super::head::{self, ClosedChunk, Head};
use super::inventory::{self, InventoryUpdate};
use super::packed_key::PackedKey;
use super::{
    AgentHello, CommitOutcome, InventoryOutcome, Labels, LatestValue, LatestValues, SampleBatch,
    SeriesKey, StoreError, labels_json,
};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) type ExecFn =
    Box<dyn FnOnce(&Transaction<'_>) -> Result<Box<dyn Any + Send>, rusqlite::Error> + Send>;

pub(super) enum Job {
    Batch {
        /// Shared with the caller, which frees it: dropping a batch's
        /// samples (a string and a label map each) was a twentieth of this
        /// thread's time, and every cycle here caps ingest.
        batch: Arc<SampleBatch>,
        reply: Reply<CommitOutcome>,
    },
    Hello {
        hello: AgentHello,
        reply: Reply<()>,
    },
    Inventory {
        update: InventoryUpdate,
        reply: Reply<InventoryOutcome>,
    },
    Prune {
        before_ms: i64,
        reply: Reply<usize>,
    },
    /// Any other write, as a closure run inside the group's transaction.
    Exec {
        run: ExecFn,
        reply: Reply<Box<dyn Any + Send>>,
    },
    /// Closes every open head chunk and writes it in this group.
    CloseHead {
        reply: Reply<()>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// Most jobs folded into one transaction; bounds commit latency under load.
const MAX_JOBS_PER_TRANSACTION: usize = 256;

/// How often (by received time) the head is swept for chunks open too long.
const SWEEP_EVERY_MS: i64 = 60_000;

/// Whether the writer thread runs, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WriterState {
    Running,
    /// Stopped by [`Job::Close`]: the store was closed on purpose.
    Closed,
    /// Every sender is gone: the store was dropped without closing.
    Returned,
    Panicked(String),
}

/// What the writer thread reports about itself, for `/healthz` and the
/// collector's supervisor. Written only by the writer thread.
#[derive(Debug)]
pub(super) struct WriterHealth {
    /// The error of the last group that could not be stored (disk full, I/O
    /// error, read-only file); cleared by the next group that commits.
    commit_error: Mutex<Option<String>>,
    state: watch::Sender<WriterState>,
}

impl WriterHealth {
    fn new() -> Self {
        Self {
            commit_error: Mutex::new(None),
            state: watch::Sender::new(WriterState::Running),
        }
    }

    /// Why writes cannot be stored now, if they cannot.
    pub(super) fn problem(&self) -> Option<String> {
        match &*self.state.borrow() {
            WriterState::Running => {}
            WriterState::Closed => return Some("closed for shutdown".into()),
            WriterState::Returned => return Some("stopped unexpectedly".into()),
            WriterState::Panicked(message) => return Some(format!("panicked: {message}")),
        }
        self.commit_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .map(|error| format!("cannot commit: {error}"))
    }

    /// Resolves when the writer thread has ended: `Err` with its panic message
    /// if it panicked.
    pub(super) async fn stopped(&self) -> Result<(), String> {
        let mut state = self.state.subscribe();
        // The sender lives in `self`, so waiting cannot fail while we borrow it.
        let ended = state
            .wait_for(|state| *state != WriterState::Running)
            .await
            .map(|state| state.clone());
        match ended {
            Ok(WriterState::Panicked(message)) => Err(message),
            _ => Ok(()),
        }
    }

    fn record_commit(&self, result: Result<(), String>) {
        let mut commit_error = self
            .commit_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *commit_error = result.err();
    }
}

pub(super) fn spawn(
    connection: Connection,
    jobs: mpsc::Receiver<Job>,
    latest: Arc<LatestValues>,
    head: Arc<Mutex<Head>>,
) -> Result<(std::thread::JoinHandle<()>, Arc<WriterHealth>), StoreError> {
    let series_ids = load_series(&connection, &latest)?;
    let next_log_id = {
        let mut head = head.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        replay(&connection, &mut head, &series_ids, &latest)?
    };
    let health = Arc::new(WriterHealth::new());
    let writer = Writer {
        connection,
        series_ids,
        latest,
        head,
        next_log_id,
        log_deleted_below: 0,
        clock_ms: 0,
        last_sweep_ms: 0,
        health: Arc::clone(&health),
    };
    let reporter = Arc::clone(&health);
    let thread = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.run(jobs)));
            reporter.state.send_replace(match ended {
                Ok(state) => state,
                Err(payload) => {
                    WriterState::Panicked(crate::supervisor::panic_message(payload.as_ref()))
                }
            });
        })
        .map_err(|_| StoreError::Closed)?;
    Ok((thread, health))
}

struct Writer {
    connection: Connection,
    /// `series.id` by key, for every row of `series` (loaded at start).
    /// Keys shared with `latest` (see [`PackedKey`]).
    series_ids: HashMap<PackedKey, i64>,
    latest: Arc<LatestValues>,
    head: Arc<Mutex<Head>>,
    /// The id the next log record gets. Assigned here, never reused (SQLite
    /// would reuse the ids of deleted rows, and `series.persisted_log_id`
    /// compares against them).
    next_log_id: i64,
    /// Log records below this id are already deleted.
    log_deleted_below: i64,
    /// Newest `received_ms` seen: the writer's notion of now, for sweeps.
    clock_ms: i64,
    last_sweep_ms: i64,
    health: Arc<WriterHealth>,
}

/// What storing a batch yields: the outcome, latest values, and the log
/// record to apply to the head after commit (none for a duplicate).
type StoredBatch = (
    CommitOutcome,
    Vec<(PackedKey, LatestValue)>,
    Option<LoggedBatch>,
);

/// A committed log record, to apply to the head.
struct LoggedBatch {
    log_id: i64,
    received_ms: i64,
    samples: Vec<LoggedSample>,
}

/// What a committed job changes in memory once its transaction is durable.
enum Applied {
    Batch(
        CommitOutcome,
        Vec<(PackedKey, LatestValue)>,
        Option<LoggedBatch>,
    ),
    Hello,
    Inventory(InventoryOutcome),
    /// Rows deleted, and the series that went with them.
    Prune(usize, Vec<(SeriesKey, i64)>),
    Exec(Box<dyn Any + Send>),
    CloseHead,
}

impl Writer {
    /// Commits groups until closed; returns how it stopped.
    fn run(mut self, mut jobs: mpsc::Receiver<Job>) -> WriterState {
        while let Some(first) = jobs.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_JOBS_PER_TRANSACTION {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            // A panic in one group (a bug, not bad input) rolls its
            // transaction back and fails its callers; the writer lives on.
            let close = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.commit_group(group)
            })) {
                Ok(close) => close,
                Err(_) => {
                    tracing::error!(
                        message =
                            "Store writer panicked on a group of writes; they were not committed."
                    );
                    self.health
                        .record_commit(Err("a group of writes panicked".into()));
                    None
                }
            };
            if let Some(reply) = close {
                let _ = reply.send(());
                return WriterState::Closed;
            }
        }
        WriterState::Returned
    }

    /// Applies `group` in one transaction and answers every caller. Returns
    /// the close reply if a close was requested (after the rest is committed).
    fn commit_group(&mut self, group: Vec<Job>) -> Option<oneshot::Sender<()>> {
        let mut close = None;
        let mut pending = Vec::with_capacity(group.len());
        let transaction = match self.connection.transaction() {
            Ok(transaction) => transaction,
            Err(error) => {
                tracing::error!(message = "Cannot begin a transaction.", %error);
                self.health.record_commit(Err(error.to_string()));
                for job in group {
                    fail(job, &error);
                }
                return None;
            }
        };
        let lock_head = || {
            self.head
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        if group.iter().any(|job| matches!(job, Job::CloseHead { .. })) {
            lock_head().close_all();
        }
        let chunks = lock_head().unwritten();
        let chunks_written = match write_chunks_in_savepoint(&transaction, &chunks) {
            Ok(()) => chunks,
            Err(error) => {
                // The log still holds these points; the next group retries.
                tracing::error!(message = "Cannot write closed chunks; retrying with the next group.", %error);
                Vec::new()
            }
        };
        let covered_below = lock_head().covered_below(self.next_log_id);
        let mut log_deleted_below = self.log_deleted_below;
        if covered_below > log_deleted_below {
            match transaction.execute("DELETE FROM sample_log WHERE id < ?1", [covered_below]) {
                Ok(_) => log_deleted_below = covered_below,
                Err(error) => {
                    tracing::warn!(message = "Cannot delete covered log records.", %error)
                }
            }
        }
        let mut new_series = HashMap::new();
        for job in group {
            match job {
                Job::Close { reply } => close = Some(reply),
                mut job => {
                    let result = apply(
                        &transaction,
                        &self.series_ids,
                        &mut new_series,
                        &mut self.next_log_id,
                        &self.latest,
                        &mut job,
                    );
                    pending.push((job, result));
                }
            }
        }
        if let Err(error) = transaction.commit() {
            tracing::error!(message = "Commit failed; nothing in this group is acknowledged.", %error);
            self.health.record_commit(Err(error.to_string()));
            for (job, _) in pending {
                fail(job, &error);
            }
            return close;
        }
        self.log_deleted_below = log_deleted_below;
        self.lock_head().persisted(&chunks_written);
        // A job refused for bad input is the caller's problem; one that hit
        // the storage (disk full, I/O) means the store cannot write, even
        // though the transaction (now without it) committed. Only a group
        // that stored something shows the store can write again.
        let storage_error = pending.iter().find_map(|(_, result)| match result {
            Err(error) if is_storage_error(error) => Some(error.to_string()),
            _ => None,
        });
        if let Some(error) = storage_error {
            self.health.record_commit(Err(error));
        } else if pending.iter().any(|(_, result)| result.is_ok()) {
            self.health.record_commit(Ok(()));
        }
        self.series_ids.extend(new_series);
        // Points reach the head (and readers) only now that they are durable.
        let mut logged = Vec::new();
        for (_, result) in &mut pending {
            if let Ok(Applied::Batch(_, _, record)) = result
                && let Some(record) = record.take()
            {
                logged.push(record);
            }
        }
        self.apply_to_head(logged);
        for (job, result) in pending {
            match (job, result) {
                (Job::Batch { reply, batch }, Ok(Applied::Batch(outcome, latest, _))) => {
                    // Before the reply, so the caller's reference is the last.
                    drop(batch);
                    self.publish_latest(latest);
                    let _ = reply.send(Ok(outcome));
                }
                (Job::CloseHead { reply }, Ok(Applied::CloseHead)) => {
                    let _ = reply.send(Ok(()));
                }
                (Job::Hello { reply, .. }, Ok(Applied::Hello)) => {
                    let _ = reply.send(Ok(()));
                }
                (Job::Inventory { reply, .. }, Ok(Applied::Inventory(outcome))) => {
                    let _ = reply.send(Ok(outcome));
                }
                (Job::Prune { reply, .. }, Ok(Applied::Prune(count, gone))) => {
                    self.forget_series(&gone);
                    let _ = reply.send(Ok(count));
                }
                (Job::Exec { reply, .. }, Ok(Applied::Exec(output))) => {
                    let _ = reply.send(Ok(output));
                }
                (job, Err(error)) => fail(job, &error),
                (job, Ok(_)) => fail(job, &rusqlite::Error::InvalidQuery),
            }
        }
        close
    }

    fn lock_head(&self) -> std::sync::MutexGuard<'_, Head> {
        self.head
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends committed log records to the head, closes full chunks, and
    /// about once a minute closes chunks open for too long.
    fn apply_to_head(&mut self, logged: Vec<LoggedBatch>) {
        let mut head = self
            .head
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for record in logged {
            self.clock_ms = self.clock_ms.max(record.received_ms);
            append_record(&mut head, &record);
        }
        if self.clock_ms - self.last_sweep_ms >= SWEEP_EVERY_MS {
            self.last_sweep_ms = self.clock_ms;
            head.close_older_than(self.clock_ms - head::MAX_CHUNK_AGE_MS);
        }
    }

    /// Drops pruned series from the id cache, the head and the latest values.
    fn forget_series(&mut self, gone: &[(SeriesKey, i64)]) {
        if gone.is_empty() {
            return;
        }
        let mut head = self
            .head
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut latest = self
            .latest
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (key, id) in gone {
            let key = PackedKey::of(key);
            self.series_ids.remove(&key);
            latest.remove(&key);
            head.forget(*id);
        }
    }

    fn publish_latest(&self, values: Vec<(PackedKey, LatestValue)>) {
        let mut latest = self
            .latest
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (key, value) in values {
            latest.upsert_newer(key, value);
        }
    }
}

/// Errors that say the database cannot store anything now, whatever is
/// written: as opposed to one job's bad input (a constraint, a bad value).
fn is_storage_error(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::OutOfMemory
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
        )
    )
}

fn fail(job: Job, error: &rusqlite::Error) {
    // rusqlite errors are not Clone; every caller in the group gets the text.
    let error = || StoreError::Failed(error.to_string());
    match job {
        Job::Batch { reply, .. } => drop(reply.send(Err(error()))),
        Job::Hello { reply, .. } => drop(reply.send(Err(error()))),
        Job::Inventory { reply, .. } => drop(reply.send(Err(error()))),
        Job::Exec { reply, .. } => drop(reply.send(Err(error()))),
        Job::Prune { reply, .. } => drop(reply.send(Err(error()))),
        Job::CloseHead { reply } => drop(reply.send(Err(error()))),
        Job::Close { reply } => drop(reply.send(())),
    }
}

/// Applies one job inside a savepoint, so a failing job does not undo the others.
fn apply(
    transaction: &Transaction<'_>,
    series_ids: &HashMap<PackedKey, i64>,
    new_series: &mut HashMap<PackedKey, i64>,
    next_log_id: &mut i64,
    latest: &LatestValues,
    job: &mut Job,
) -> Result<Applied, rusqlite::Error> {
    transaction.execute_batch("SAVEPOINT job")?;
    let mut job_series = HashMap::new();
    let result = match job {
        Job::Batch { batch, .. } => store_batch(
            transaction,
            series_ids,
            new_series,
            &mut job_series,
            next_log_id,
            batch,
        )
        .map(|(outcome, latest, logged)| Applied::Batch(outcome, latest, logged)),
        Job::Hello { hello, .. } => store_hello(transaction, hello).map(|()| Applied::Hello),
        Job::Inventory { update, .. } => {
            store_inventory(transaction, update).map(Applied::Inventory)
        }
        Job::Prune { before_ms, .. } => {
            prune(transaction, *before_ms, latest).map(|(count, gone)| Applied::Prune(count, gone))
        }
        Job::Exec { run, .. } => {
            // The closure runs once; a placeholder is left behind in the job.
            let run = std::mem::replace(run, Box::new(|_| Err(rusqlite::Error::InvalidQuery)));
            run(transaction).map(Applied::Exec)
        }
        Job::CloseHead { .. } => Ok(Applied::CloseHead),
        Job::Close { .. } => Ok(Applied::Hello),
    };
    match &result {
        Ok(_) => {
            transaction.execute_batch("RELEASE job")?;
            new_series.extend(job_series);
        }
        Err(_) => {
            // Series rows created by this job are rolled back with it; their
            // ids (only in `job_series`) are forgotten.
            transaction.execute_batch("ROLLBACK TO job; RELEASE job")?
        }
    }
    result
}

/// Writes closed chunks and their rollups; all or none.
fn write_chunks_in_savepoint(
    transaction: &Transaction<'_>,
    chunks: &[Arc<ClosedChunk>],
) -> Result<(), rusqlite::Error> {
    if chunks.is_empty() {
        return Ok(());
    }
    transaction.execute_batch("SAVEPOINT chunks")?;
    let result = write_chunks(transaction, chunks);
    match &result {
        Ok(()) => transaction.execute_batch("RELEASE chunks")?,
        Err(_) => transaction.execute_batch("ROLLBACK TO chunks; RELEASE chunks")?,
    }
    result
}

fn write_chunks(
    transaction: &Transaction<'_>,
    chunks: &[Arc<ClosedChunk>],
) -> Result<(), rusqlite::Error> {
    let mut insert_chunk = transaction.prepare_cached(
        "INSERT INTO chunks (series_id, seq, start_ms, end_ms, count, max_log_id, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut insert_rollup = transaction.prepare_cached(
        "INSERT INTO rollups (series_id, seq, start_ms, end_ms, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut update_series = transaction.prepare_cached(
        "UPDATE series SET
           next_chunk_seq = max(next_chunk_seq, ?2 + 1),
           persisted_log_id = max(persisted_log_id, ?3),
           last_value = CASE WHEN ?4 >= last_ts_ms THEN ?5 ELSE last_value END,
           last_ts_ms = max(last_ts_ms, ?4)
         WHERE id = ?1",
    )?;
    for chunk in chunks {
        insert_chunk.execute(params![
            chunk.series_id,
            chunk.seq,
            chunk.start_ms,
            chunk.end_ms,
            chunk.count,
            chunk.max_log_id,
            head::blob(chunk)
        ])?;
        let points = chunk
            .points()
            .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
        let mut buckets = std::collections::BTreeMap::new();
        chunk::add_points(&mut buckets, &points, chunk::ROLLUP_BUCKET_MS);
        let buckets: Vec<chunk::Bucket> = buckets.into_values().collect();
        insert_rollup.execute(params![
            chunk.series_id,
            chunk.seq,
            chunk.start_ms,
            chunk.end_ms,
            chunk::rollup_blob(&buckets)
        ])?;
        update_series.execute(params![
            chunk.series_id,
            chunk.seq,
            chunk.max_log_id,
            chunk.last.0,
            chunk.last.1
        ])?;
    }
    Ok(())
}

fn append_record(head: &mut Head, record: &LoggedBatch) {
    for sample in &record.samples {
        head.append(
            sample.series_id,
            record.log_id,
            record.received_ms,
            sample.timestamp_ms,
            sample.value,
        );
    }
    head.close_full(record.samples.iter().map(|sample| sample.series_id));
}

/// Rebuilds the head from the log records not yet covered by persisted
/// chunks and publishes their latest values; returns the next log id.
fn replay(
    connection: &Connection,
    head: &mut Head,
    series_ids: &HashMap<PackedKey, i64>,
    latest: &LatestValues,
) -> Result<i64, StoreError> {
    let mut persisted = HashMap::new();
    let mut next_log_id = 1;
    {
        let mut statement =
            connection.prepare("SELECT id, next_chunk_seq, persisted_log_id FROM series")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let (id, next_seq, persisted_log_id): (i64, i64, i64) =
                (row.get(0)?, row.get(1)?, row.get(2)?);
            head.register(id, next_seq);
            persisted.insert(id, persisted_log_id);
            next_log_id = next_log_id.max(persisted_log_id + 1);
        }
    }
    let mut newest: HashMap<i64, LatestValue> = HashMap::new();
    let mut statement =
        connection.prepare("SELECT id, received_ms, payload FROM sample_log ORDER BY id")?;
    let mut rows = statement.query([])?;
    let mut records = 0u64;
    while let Some(row) = rows.next()? {
        let (log_id, received_ms): (i64, i64) = (row.get(0)?, row.get(1)?);
        next_log_id = next_log_id.max(log_id + 1);
        let payload = row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
        let samples = match chunk::decode_log_record(payload) {
            Ok(samples) => samples,
            Err(error) => {
                tracing::error!(message = "Skipping a corrupt sample log record.", log_id, %error);
                continue;
            }
        };
        // Points already in a persisted chunk, or of a series retention removed, are skipped.
        let samples: Vec<LoggedSample> = samples
            .into_iter()
            .filter(|sample| {
                persisted
                    .get(&sample.series_id)
                    .is_some_and(|&covered| log_id > covered)
            })
            .collect();
        for sample in &samples {
            let value = LatestValue {
                value: sample.value,
                timestamp_ms: sample.timestamp_ms,
            };
            newest
                .entry(sample.series_id)
                .and_modify(|known| {
                    if value.timestamp_ms >= known.timestamp_ms {
                        *known = value;
                    }
                })
                .or_insert(value);
        }
        append_record(
            head,
            &LoggedBatch {
                log_id,
                received_ms,
                samples,
            },
        );
        records += 1;
    }
    if records > 0 {
        tracing::info!(message = "Replayed the sample log into the head.", records);
    }
    let keys: HashMap<i64, &PackedKey> = series_ids.iter().map(|(key, &id)| (id, key)).collect();
    let mut latest = latest
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (id, value) in newest {
        if let Some(&key) = keys.get(&id) {
            latest.upsert_newer(PackedKey::clone(key), value);
        }
    }
    Ok(next_log_id)
}

fn store_hello(transaction: &Transaction<'_>, hello: &AgentHello) -> Result<(), rusqlite::Error> {
    let facts = serde_json::to_string(&hello.facts).unwrap_or_else(|_| "{}".into());
    transaction.execute(
        "INSERT INTO agents (id, hostname, version, facts, first_seen_ms, last_seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT (id) DO UPDATE SET hostname = ?2, version = ?3, facts = ?4, last_seen_ms = ?5",
        params![
            hello.agent_id,
            hello.hostname,
            hello.version,
            facts,
            hello.seen_ms
        ],
    )?;
    Ok(())
}

fn store_batch(
    transaction: &Transaction<'_>,
    series_ids: &HashMap<PackedKey, i64>,
    group_series: &HashMap<PackedKey, i64>,
    job_series: &mut HashMap<PackedKey, i64>,
    next_log_id: &mut i64,
    batch: &SampleBatch,
) -> Result<StoredBatch, rusqlite::Error> {
    if !claim_seq(
        transaction,
        &batch.agent_id,
        batch.epoch,
        batch.seq,
        batch.received_ms,
        batch.samples.len(),
    )? {
        return Ok((CommitOutcome::Duplicate, Vec::new(), None));
    }
    let mut insert_series = transaction.prepare_cached(
        "INSERT INTO series (agent_id, metric, labels, last_value, last_ts_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (agent_id, metric, labels) DO UPDATE SET last_ts_ms = last_ts_ms
         RETURNING id",
    )?;
    let mut latest: HashMap<PackedKey, LatestValue> = HashMap::with_capacity(batch.samples.len());
    let mut logged = Vec::with_capacity(batch.samples.len());
    for sample in &batch.samples {
        let key = PackedKey::new(&batch.agent_id, &sample.metric, &sample.labels);
        let value = LatestValue {
            value: sample.value,
            timestamp_ms: sample.timestamp_ms,
        };
        // The map's own key is reused, so `latest` shares it.
        let known = series_ids
            .get_key_value(&key)
            .or_else(|| group_series.get_key_value(&key))
            .or_else(|| job_series.get_key_value(&key))
            .map(|(key, &id)| (PackedKey::clone(key), id));
        let (key, series_id) = match known {
            Some(known) => known,
            None => {
                let id: i64 = insert_series.query_row(
                    params![
                        batch.agent_id,
                        sample.metric,
                        labels_json(&sample.labels),
                        value.value,
                        value.timestamp_ms
                    ],
                    |row| row.get(0),
                )?;
                job_series.insert(key.clone(), id);
                (key, id)
            }
        };
        logged.push(LoggedSample {
            series_id,
            timestamp_ms: sample.timestamp_ms,
            value: sample.value,
        });
        match latest.get_mut(&key) {
            Some(existing) if existing.timestamp_ms > value.timestamp_ms => {}
            Some(existing) => *existing = value,
            None => {
                latest.insert(key, value);
            }
        }
    }
    let log_id = *next_log_id;
    transaction
        .prepare_cached("INSERT INTO sample_log (id, received_ms, payload) VALUES (?1, ?2, ?3)")?
        .execute(params![
            log_id,
            batch.received_ms,
            chunk::encode_log_record(&logged)
        ])?;
    *next_log_id += 1;
    transaction
        .prepare_cached("UPDATE agents SET last_seen_ms = max(last_seen_ms, ?2) WHERE id = ?1")?
        .execute(params![batch.agent_id, batch.received_ms])?;
    Ok((
        CommitOutcome::Stored {
            samples: batch.samples.len(),
        },
        latest.into_iter().collect(),
        Some(LoggedBatch {
            log_id,
            received_ms: batch.received_ms,
            samples: logged,
        }),
    ))
}

/// Rows deleted per table per prune job: small enough that acknowledgements
/// grouped into the same transaction are not held up for long.
pub(super) const PRUNE_CHUNK: i64 = 10_000;

/// Deletes one chunk of expired rows from each growing table: whole sample
/// chunks that end before the cutoff, rows of the pre-chunk `samples` table,
/// batch records (resends that old cannot arrive), journal entries already
/// routed, and delivery attempts. Incident, asset and inventory history is
/// kept; rollups have their own retention (`prune_rollups`).
fn prune(
    transaction: &Transaction<'_>,
    before_ms: i64,
    latest: &LatestValues,
) -> Result<(usize, Vec<(SeriesKey, i64)>), rusqlite::Error> {
    let statements = [
        "DELETE FROM chunks WHERE rowid IN (SELECT rowid FROM chunks WHERE end_ms < ?1 LIMIT ?2)",
        "DELETE FROM samples WHERE rowid IN (SELECT rowid FROM samples WHERE ts_ms < ?1 LIMIT ?2)",
        "DELETE FROM batches WHERE (agent_id, epoch, seq) IN
             (SELECT agent_id, epoch, seq FROM batches WHERE received_ms < ?1 LIMIT ?2)",
        "DELETE FROM incident_events WHERE id IN (SELECT id FROM incident_events WHERE ts_ms < ?1
             AND id <= (SELECT coalesce(max(position), 0) FROM notify_cursor) LIMIT ?2)",
        "DELETE FROM outbox_attempts WHERE id IN (SELECT id FROM outbox_attempts WHERE ts_ms < ?1 LIMIT ?2)",
    ];
    let mut deleted = 0;
    for statement in statements {
        deleted = deleted.max(transaction.execute(statement, params![before_ms, PRUNE_CHUNK])?);
    }
    // Series silent for the whole retention (a container's interface, an
    // unmounted disk) go too, once nothing of them is stored, so churning
    // label sets do not grow forever. `series.last_*` is written when a
    // chunk is, so the head may know a newer point: such a series stays,
    // and its row is brought up to date instead.
    let candidates: Vec<(i64, SeriesKey)> = transaction
        .prepare(
            "SELECT id, agent_id, metric, labels FROM series s WHERE last_ts_ms < ?1
               AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.series_id = s.id)
               AND NOT EXISTS (SELECT 1 FROM rollups r WHERE r.series_id = s.id)
               AND NOT EXISTS (SELECT 1 FROM samples o WHERE o.series_id = s.id)
             LIMIT ?2",
        )?
        .query_map(params![before_ms, PRUNE_CHUNK], |row| {
            let labels: String = row.get(3)?;
            Ok((
                row.get(0)?,
                SeriesKey {
                    agent_id: row.get(1)?,
                    metric: row.get(2)?,
                    labels: serde_json::from_str(&labels).unwrap_or_default(),
                },
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut gone = Vec::new();
    {
        let latest = latest
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (id, key) in candidates {
            match latest.get(&PackedKey::of(&key)) {
                Some(newer) if newer.timestamp_ms >= before_ms => {
                    transaction.execute(
                        "UPDATE series SET last_value = ?2, last_ts_ms = ?3 WHERE id = ?1",
                        params![id, newer.value, newer.timestamp_ms],
                    )?;
                }
                _ => {
                    transaction.execute("DELETE FROM series WHERE id = ?1", [id])?;
                    gone.push((key, id));
                }
            }
        }
    }
    Ok((deleted.max(gone.len()), gone))
}

/// Deletes one step of rollups that end before `before_ms`.
pub(super) fn prune_rollups(
    transaction: &Transaction<'_>,
    before_ms: i64,
) -> Result<usize, rusqlite::Error> {
    transaction.execute(
        "DELETE FROM rollups WHERE rowid IN (SELECT rowid FROM rollups WHERE end_ms < ?1 LIMIT ?2)",
        params![before_ms, PRUNE_CHUNK],
    )
}

/// Records `(agent_id, epoch, seq)` as stored; false if it already was.
/// Sample batches and inventory updates share this sequence space.
fn claim_seq(
    transaction: &Transaction<'_>,
    agent_id: &str,
    epoch: u64,
    seq: u64,
    received_ms: i64,
    sample_count: usize,
) -> Result<bool, rusqlite::Error> {
    let inserted = transaction.execute(
        "INSERT OR IGNORE INTO batches (agent_id, epoch, seq, received_ms, sample_count)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            agent_id,
            epoch as i64,
            seq as i64,
            received_ms,
            sample_count as i64
        ],
    )?;
    Ok(inserted == 1)
}

fn store_inventory(
    transaction: &Transaction<'_>,
    update: &InventoryUpdate,
) -> Result<InventoryOutcome, rusqlite::Error> {
    if !claim_seq(
        transaction,
        &update.agent_id,
        update.epoch,
        update.seq,
        update.received_ms,
        0,
    )? {
        return Ok(InventoryOutcome::Duplicate);
    }
    inventory::apply(transaction, update).map(InventoryOutcome::Stored)
}

/// Every series' id, and its stored latest value into `latest` under the
/// same key (one copy of the labels per series, not one per map).
fn load_series(
    connection: &Connection,
    latest: &LatestValues,
) -> Result<HashMap<PackedKey, i64>, StoreError> {
    let mut statement = connection
        .prepare("SELECT id, agent_id, metric, labels, last_value, last_ts_ms FROM series")?;
    let mut rows = statement.query([])?;
    let mut series_ids = HashMap::new();
    let mut latest = latest
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    while let Some(row) = rows.next()? {
        let labels: String = row.get(3)?;
        let labels: Labels = serde_json::from_str(&labels).unwrap_or_default();
        let key = PackedKey::new(
            &row.get::<_, String>(1)?,
            &row.get::<_, String>(2)?,
            &labels,
        );
        let value = LatestValue {
            value: row.get(4)?,
            timestamp_ms: row.get(5)?,
        };
        latest.upsert_newer(key.clone(), value);
        series_ids.insert(key, row.get(0)?);
    }
    Ok(series_ids)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{AgentHello, Labels, SampleBatch, SampleRecord, Store};

    fn batch(seq: u64, samples: usize) -> SampleBatch {
        SampleBatch {
            agent_id: "a1".into(),
            epoch: 1,
            seq,
            received_ms: 1_000,
            samples: (0..samples)
                .map(|index| SampleRecord {
                    metric: "disk.used_percent".into(),
                    labels: Labels::from([("mount".to_string(), format!("/srv/volume-{index}"))]),
                    value: 1.0,
                    timestamp_ms: 100,
                })
                .collect(),
        }
    }

    /// Regression: `/healthz` said ok while every write failed with "disk full".
    #[tokio::test]
    async fn a_full_database_is_reported_until_a_commit_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .record_hello(AgentHello {
                agent_id: "a1".into(),
                hostname: "web-1".into(),
                version: "0.1.0".into(),
                facts: BTreeMap::new(),
                seen_ms: 500,
            })
            .await
            .unwrap();
        assert_eq!(store.write_problem(), None);

        // A real SQLITE_FULL: the file may not grow past its current size.
        store
            .sqlite()
            .write(|transaction| {
                let pages: i64 =
                    transaction.query_row("PRAGMA page_count", [], |row| row.get(0))?;
                transaction.pragma_update(None, "max_page_count", pages)
            })
            .await
            .unwrap();
        let refused = store.commit_batch(batch(1, 2_000)).await.unwrap_err();
        assert!(refused.to_string().contains("full"), "{refused}");
        let problem = store.write_problem().expect("a full store is a problem");
        assert!(
            problem.starts_with("cannot commit: ") && problem.contains("full"),
            "{problem}"
        );

        // Space again: the next batch commits and the problem is gone.
        store
            .sqlite()
            .write(|transaction| transaction.pragma_update(None, "max_page_count", 1_000_000))
            .await
            .unwrap();
        store.commit_batch(batch(2, 2_000)).await.unwrap();
        assert_eq!(store.write_problem(), None);

        store.close().await;
        assert_eq!(
            store.write_problem().as_deref(),
            Some("closed for shutdown")
        );
    }

    #[tokio::test]
    async fn a_closed_writer_resolves_writer_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        store.close().await;
        assert_eq!(store.writer_stopped().await, Ok(()));
    }
}
