//! The single writer thread: groups queued jobs into one transaction, commits,
//! and only then answers each caller.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, ErrorCode, Transaction, params};
use tokio::sync::{mpsc, oneshot, watch};

use super::inventory::{self, InventoryUpdate};
use super::{
    AgentHello, CommitOutcome, InventoryOutcome, LatestValue, LatestValues, SampleBatch, SeriesKey,
    StoreError, labels_json,
};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) type ExecFn =
    Box<dyn FnOnce(&Transaction<'_>) -> Result<Box<dyn Any + Send>, rusqlite::Error> + Send>;

pub(super) enum Job {
    Batch {
        batch: SampleBatch,
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
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// Most jobs folded into one transaction; bounds commit latency under load.
const MAX_JOBS_PER_TRANSACTION: usize = 256;

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
) -> Result<(std::thread::JoinHandle<()>, Arc<WriterHealth>), StoreError> {
    let series_ids = load_series_ids(&connection)?;
    let health = Arc::new(WriterHealth::new());
    let writer = Writer {
        connection,
        series_ids,
        latest,
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
    /// Cache of `series.id` by key; only grows within a process.
    series_ids: HashMap<SeriesKey, i64>,
    latest: Arc<LatestValues>,
    health: Arc<WriterHealth>,
}

/// What a committed job changes in memory once its transaction is durable.
enum Applied {
    Batch(CommitOutcome, Vec<(SeriesKey, LatestValue)>),
    Hello,
    Inventory(InventoryOutcome),
    /// Rows deleted, and the series that went with them.
    Prune(usize, Vec<SeriesKey>),
    Exec(Box<dyn Any + Send>),
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
        let mut new_series = NewSeries::default();
        for job in group {
            match job {
                Job::Close { reply } => close = Some(reply),
                mut job => {
                    let result = apply(&transaction, &self.series_ids, &mut new_series, &mut job);
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
        self.series_ids.extend(new_series.ids);
        for (job, result) in pending {
            match (job, result) {
                (Job::Batch { reply, .. }, Ok(Applied::Batch(outcome, latest))) => {
                    self.publish_latest(latest);
                    let _ = reply.send(Ok(outcome));
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

    /// Drops pruned series from the id cache and the latest values.
    fn forget_series(&mut self, gone: &[SeriesKey]) {
        if gone.is_empty() {
            return;
        }
        let mut latest = self
            .latest
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for key in gone {
            self.series_ids.remove(key);
            latest.remove(key);
        }
    }

    fn publish_latest(&self, values: Vec<(SeriesKey, LatestValue)>) {
        let mut latest = self
            .latest
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (key, value) in values {
            let entry = latest.entry(key).or_insert(value);
            if value.timestamp_ms >= entry.timestamp_ms {
                *entry = value;
            }
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
        Job::Close { reply } => drop(reply.send(())),
    }
}

/// Series rows created by the group's transaction so far, by key: found in
/// O(1) like the committed ones in `Writer::series_ids`, which they join
/// once the group commits. Scanning a list here made a batch of n new
/// series cost O(n²) (about 55 s for 40k) on the only writer thread.
#[derive(Default)]
struct NewSeries {
    ids: HashMap<SeriesKey, i64>,
    /// Keys in the order they were added, so a failed job's can be removed.
    order: Vec<SeriesKey>,
}

impl NewSeries {
    fn get(&self, key: &SeriesKey) -> Option<i64> {
        self.ids.get(key).copied()
    }

    fn insert(&mut self, key: SeriesKey, id: i64) {
        if self.ids.insert(key.clone(), id).is_none() {
            self.order.push(key);
        }
    }

    /// Forgets every key added after the first `mark`.
    fn truncate(&mut self, mark: usize) {
        for key in self.order.drain(mark..) {
            self.ids.remove(&key);
        }
    }

    fn len(&self) -> usize {
        self.order.len()
    }
}

/// Applies one job inside a savepoint, so a failing job does not undo the others.
fn apply(
    transaction: &Transaction<'_>,
    series_ids: &HashMap<SeriesKey, i64>,
    new_series: &mut NewSeries,
    job: &mut Job,
) -> Result<Applied, rusqlite::Error> {
    transaction.execute_batch("SAVEPOINT job")?;
    let mark = new_series.len();
    let result = match job {
        Job::Batch { batch, .. } => store_batch(transaction, series_ids, new_series, batch)
            .map(|(outcome, latest)| Applied::Batch(outcome, latest)),
        Job::Hello { hello, .. } => store_hello(transaction, hello).map(|()| Applied::Hello),
        Job::Inventory { update, .. } => {
            store_inventory(transaction, update).map(Applied::Inventory)
        }
        Job::Prune { before_ms, .. } => {
            prune(transaction, *before_ms).map(|(count, gone)| Applied::Prune(count, gone))
        }
        Job::Exec { run, .. } => {
            // The closure runs once; a placeholder is left behind in the job.
            let run = std::mem::replace(run, Box::new(|_| Err(rusqlite::Error::InvalidQuery)));
            run(transaction).map(Applied::Exec)
        }
        Job::Close { .. } => Ok(Applied::Hello),
    };
    match &result {
        Ok(_) => transaction.execute_batch("RELEASE job")?,
        Err(_) => {
            // Series rows created by this job are rolled back; forget their ids too.
            new_series.truncate(mark);
            transaction.execute_batch("ROLLBACK TO job; RELEASE job")?
        }
    }
    result
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
    series_ids: &HashMap<SeriesKey, i64>,
    new_series: &mut NewSeries,
    batch: &SampleBatch,
) -> Result<(CommitOutcome, Vec<(SeriesKey, LatestValue)>), rusqlite::Error> {
    if !claim_seq(
        transaction,
        &batch.agent_id,
        batch.epoch,
        batch.seq,
        batch.received_ms,
        batch.samples.len(),
    )? {
        return Ok((CommitOutcome::Duplicate, Vec::new()));
    }
    let mut insert_sample = transaction
        .prepare_cached("INSERT INTO samples (series_id, ts_ms, value) VALUES (?1, ?2, ?3)")?;
    let mut upsert_series = transaction.prepare_cached(
        "INSERT INTO series (agent_id, metric, labels, last_value, last_ts_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (agent_id, metric, labels) DO UPDATE SET
           last_value = CASE WHEN excluded.last_ts_ms >= last_ts_ms THEN excluded.last_value ELSE last_value END,
           last_ts_ms = max(last_ts_ms, excluded.last_ts_ms)
         RETURNING id",
    )?;
    let mut latest: HashMap<SeriesKey, LatestValue> = HashMap::new();
    for sample in &batch.samples {
        let key = SeriesKey {
            agent_id: batch.agent_id.clone(),
            metric: sample.metric.clone(),
            labels: sample.labels.clone(),
        };
        let value = LatestValue {
            value: sample.value,
            timestamp_ms: sample.timestamp_ms,
        };
        let known = series_ids
            .get(&key)
            .copied()
            .or_else(|| new_series.get(&key));
        let series_id = match known {
            Some(id) => id,
            None => {
                let id: i64 = upsert_series.query_row(
                    params![
                        key.agent_id,
                        key.metric,
                        labels_json(&key.labels),
                        value.value,
                        value.timestamp_ms
                    ],
                    |row| row.get(0),
                )?;
                new_series.insert(key.clone(), id);
                id
            }
        };
        insert_sample.execute(params![series_id, sample.timestamp_ms, sample.value])?;
        match latest.get_mut(&key) {
            Some(existing) if existing.timestamp_ms > value.timestamp_ms => {}
            Some(existing) => *existing = value,
            None => {
                latest.insert(key, value);
            }
        }
    }
    // Mirror the newest value per series once per batch, not once per sample.
    let mut update_series = transaction.prepare_cached(
        "UPDATE series SET last_value = ?2, last_ts_ms = ?3 WHERE id = ?1 AND last_ts_ms <= ?3",
    )?;
    for (key, value) in &latest {
        let id = series_ids.get(key).copied().or_else(|| new_series.get(key));
        if let Some(id) = id {
            update_series.execute(params![id, value.value, value.timestamp_ms])?;
        }
    }
    transaction.execute(
        "UPDATE agents SET last_seen_ms = max(last_seen_ms, ?2) WHERE id = ?1",
        params![batch.agent_id, batch.received_ms],
    )?;
    Ok((
        CommitOutcome::Stored {
            samples: batch.samples.len(),
        },
        latest.into_iter().collect(),
    ))
}

/// Rows deleted per table per prune job: small enough that acknowledgements
/// grouped into the same transaction are not held up for long.
pub(super) const PRUNE_CHUNK: i64 = 10_000;

/// Deletes one chunk of expired rows from each growing table: samples,
/// batch records (resends that old cannot arrive), journal entries already
/// routed, and delivery attempts. Incident, asset and inventory history is kept.
fn prune(
    transaction: &Transaction<'_>,
    before_ms: i64,
) -> Result<(usize, Vec<SeriesKey>), rusqlite::Error> {
    let statements = [
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
    // unmounted disk) go too, so churning label sets do not grow forever.
    let mut gone_series = transaction.prepare(
        "DELETE FROM series WHERE id IN (SELECT id FROM series WHERE last_ts_ms < ?1 LIMIT ?2)
         RETURNING agent_id, metric, labels",
    )?;
    let gone: Vec<SeriesKey> = gone_series
        .query_map(params![before_ms, PRUNE_CHUNK], |row| {
            let labels: String = row.get(2)?;
            Ok(SeriesKey {
                agent_id: row.get(0)?,
                metric: row.get(1)?,
                labels: serde_json::from_str(&labels).unwrap_or_default(),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok((deleted.max(gone.len()), gone))
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

fn load_series_ids(connection: &Connection) -> Result<HashMap<SeriesKey, i64>, StoreError> {
    let mut statement = connection.prepare("SELECT id, agent_id, metric, labels FROM series")?;
    let rows = statement.query_map([], |row| {
        let labels: String = row.get(3)?;
        Ok((
            SeriesKey {
                agent_id: row.get(1)?,
                metric: row.get(2)?,
                labels: serde_json::from_str(&labels).unwrap_or_default(),
            },
            row.get(0)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{AgentHello, CommitOutcome, Labels, SampleBatch, SampleRecord, Store};

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

    #[test]
    fn new_series_of_a_failed_job_are_forgotten_and_the_rest_kept() {
        let key = |metric: &str| super::SeriesKey {
            agent_id: "a1".into(),
            metric: metric.into(),
            labels: Labels::new(),
        };
        let mut new_series = super::NewSeries::default();
        new_series.insert(key("kept"), 1);
        let mark = new_series.len();
        new_series.insert(key("rolled.back"), 2);
        new_series.insert(key("kept"), 1);
        new_series.truncate(mark);
        assert_eq!(new_series.get(&key("kept")), Some(1));
        assert_eq!(new_series.get(&key("rolled.back")), None);
        assert_eq!(new_series.len(), 1);
    }

    /// Regression: new series were found by scanning a list, quadratic in
    /// the new series of one batch (about 55 s for 40k); one agent's big
    /// batch held up every other agent's acknowledgements that long.
    #[tokio::test]
    async fn fifty_thousand_new_series_in_one_batch_are_stored() {
        const SERIES: usize = 50_000;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let started = std::time::Instant::now();
        let outcome = store.commit_batch(batch(1, SERIES)).await.unwrap();
        let first = started.elapsed();
        assert_eq!(outcome, CommitOutcome::Stored { samples: SERIES });
        // The same series again: every one is now found in the cache.
        let started = std::time::Instant::now();
        store.commit_batch(batch(2, SERIES)).await.unwrap();
        println!(
            "{SERIES} new series in one batch: {first:?}; the same series again: {:?}",
            started.elapsed()
        );
        assert_eq!(store.latest(Some("a1")).len(), SERIES);
        assert_eq!(
            store.counts().await.unwrap(),
            (2 * SERIES as u64, 2),
            "(samples, batches)"
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
