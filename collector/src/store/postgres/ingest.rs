//! Agents and sample batches on PostgreSQL.
//!
//! Many batches are committed in one transaction (one WAL flush), as the
//! SQLite writer groups them. A batch's key `(agent, epoch, seq)` is unique
//! in the database, so whichever collector receives a resend answers
//! `Duplicate`. Each stored batch is one `sample_log` record in the shared
//! log format, so any collector can read an agent's recent raw points, even
//! while the agent streams to another collector; its points are folded into
//! the 5-minute `rollups` in the same transaction.
//!
//! Latest values live in memory, as on SQLite (rules and the API read them
//! synchronously), published after the commit. Their durable copy is the
//! `series` row's `last_value`/`last_ts_ms`: the commit upserts that row
//! anyway to learn the series' id, so keeping it current costs no extra
//! statement or row, and a restarted collector loads the map from it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};

use deadpool_postgres::{Pool, Transaction};
use tokio_postgres::Row;

use super::super::chunk::{self, Bucket, LoggedSample, ROLLUP_BUCKET_MS};
use super::super::packed_key::{LatestMap, PackedKey};
use super::super::{
    AgentHello, AgentRecord, CommitOutcome, LatestValue, LatestValues, SampleBatch, SeriesKey,
    labels_json,
};
use super::{PgError, PgStore};

/// What this collector's readers see of its commits: the latest value of
/// every series, and why the last group could not be committed, if so.
#[derive(Debug, Default)]
pub(super) struct Published {
    pub(super) latest: LatestValues,
    commit_error: Mutex<Option<String>>,
}

impl Published {
    pub(super) fn new(latest: LatestMap) -> Self {
        Self {
            latest: RwLock::new(latest),
            commit_error: Mutex::new(None),
        }
    }

    /// Why batches cannot be stored now: the last group's error, cleared by
    /// the next group that commits.
    pub(super) fn problem(&self) -> Option<String> {
        self.commit_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .map(|error| format!("cannot commit: {error}"))
    }

    fn record_commit(&self, result: Result<(), String>) {
        *self
            .commit_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = result.err();
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

const AGENT_COLUMNS: &str = "id, hostname, version, first_seen_ms, last_seen_ms";

fn agent_row(row: &Row) -> AgentRecord {
    AgentRecord {
        id: row.get(0),
        hostname: row.get(1),
        version: row.get(2),
        first_seen_ms: row.get(3),
        last_seen_ms: row.get(4),
    }
}

impl PgStore {
    pub async fn record_hello(&self, hello: &AgentHello) -> Result<(), PgError> {
        let facts = serde_json::to_string(&hello.facts).unwrap_or_else(|_| "{}".to_string());
        self.client()
            .await?
            .execute(
                "INSERT INTO agents (id, hostname, version, facts, first_seen_ms, last_seen_ms, collector)
                 VALUES ($1, $2, $3, $4, $5, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, version = excluded.version,
                     facts = excluded.facts, last_seen_ms = excluded.last_seen_ms, collector = excluded.collector",
                &[
                    &hello.agent_id,
                    &hello.hostname,
                    &hello.version,
                    &facts,
                    &hello.seen_ms,
                    &self.collector,
                ],
            )
            .await?;
        Ok(())
    }

    /// The collector an agent last said hello to.
    pub async fn agent_collector(&self, agent_id: &str) -> Result<Option<String>, PgError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT collector FROM agents WHERE id = $1", &[&agent_id])
            .await?;
        Ok(row.and_then(|row| row.get(0)))
    }

    // Agents are ordered byte-wise (`COLLATE "C"`), as SQLite orders text, so
    // pages and their keyset cursor do not depend on the database's locale.

    pub async fn agents(&self) -> Result<Vec<AgentRecord>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {AGENT_COLUMNS} FROM agents ORDER BY hostname COLLATE \"C\", id COLLATE \"C\""
                ),
                &[],
            )
            .await?;
        Ok(rows.iter().map(agent_row).collect())
    }

    /// Agents ordered by (hostname, id), after `after` (the last of the
    /// previous page), at most `limit`.
    pub async fn agents_page(
        &self,
        after: Option<(String, String)>,
        limit: u32,
    ) -> Result<Vec<AgentRecord>, PgError> {
        let (hostname, id) = after.unzip();
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {AGENT_COLUMNS} FROM agents
                     WHERE $1::TEXT IS NULL
                        OR (hostname COLLATE \"C\", id COLLATE \"C\") > ($1::TEXT, $2::TEXT)
                     ORDER BY hostname COLLATE \"C\", id COLLATE \"C\" LIMIT $3"
                ),
                &[&hostname, &id, &i64::from(limit)],
            )
            .await?;
        Ok(rows.iter().map(agent_row).collect())
    }

    pub async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, PgError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1"),
                &[&agent_id],
            )
            .await?;
        Ok(row.as_ref().map(agent_row))
    }

    /// Commits one batch; resolves after the commit, so the caller may
    /// acknowledge. Concurrent calls share a transaction (`group`).
    pub async fn commit_batch(&self, batch: SampleBatch) -> Result<CommitOutcome, PgError> {
        self.batches.commit(batch).await
    }

    /// Commits `batches` in one transaction; one outcome per batch, in order.
    pub async fn commit_batches(
        &self,
        batches: &[SampleBatch],
    ) -> Result<Vec<CommitOutcome>, PgError> {
        commit_group(&self.pool, &self.collector, &self.published, batches).await
    }

    /// The highest committed sequence of `agent_id` in `epoch` (0: none).
    pub async fn committed_seq(&self, agent_id: &str, epoch: u64) -> Result<u64, PgError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT coalesce(max(seq), 0) FROM batches WHERE agent_id = $1 AND epoch = $2",
                &[&agent_id, &(epoch as i64)],
            )
            .await?;
        let seq: i64 = row.get(0);
        Ok(seq as u64)
    }

    /// Committed raw points of one series, oldest first, read from the shared
    /// log: what a collector answers for an agent streaming to another one.
    pub async fn raw_points(&self, key: &SeriesKey) -> Result<Vec<(i64, f64)>, PgError> {
        self.series_points(key).await
    }

    /// How many batches and samples the database holds (for tests and checks).
    pub async fn batch_counts(&self) -> Result<(u64, u64), PgError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT count(*), coalesce(sum(sample_count), 0)::BIGINT FROM batches",
                &[],
            )
            .await?;
        let batches: i64 = row.get(0);
        let samples: i64 = row.get(1);
        Ok((batches as u64, samples as u64))
    }
}

/// Commits `batches` in one transaction; one outcome per batch, in order.
/// Retried when PostgreSQL aborts it for a deadlock (two collectors writing
/// one agent's batches in different orders after a failover). Publishes the
/// stored batches' latest values, and the outcome for `write_problem`.
pub(super) async fn commit_group(
    pool: &Pool,
    collector: &str,
    published: &Published,
    batches: &[SampleBatch],
) -> Result<Vec<CommitOutcome>, PgError> {
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        match try_commit_group(pool, collector, batches).await {
            Err(PgError::Db(error))
                if attempt < 4
                    && error.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                tracing::debug!(message = "Batch group deadlocked; retrying.", attempt);
            }
            result => break result,
        }
    };
    match result {
        Ok((outcomes, latest)) => {
            published.record_commit(Ok(()));
            published.publish_latest(latest);
            Ok(outcomes)
        }
        Err(error) => {
            published.record_commit(Err(error.to_string()));
            Err(error)
        }
    }
}

/// The statements of one group's transaction, prepared once per connection.
struct Statements {
    claim: tokio_postgres::Statement,
    series: tokio_postgres::Statement,
    rollups: tokio_postgres::Statement,
    log: tokio_postgres::Statement,
}

impl Statements {
    async fn prepare(transaction: &Transaction<'_>) -> Result<Self, PgError> {
        Ok(Self {
            claim: transaction
                .prepare_cached(
                    "INSERT INTO batches (agent_id, epoch, seq, received_ms, sample_count, collector)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .await?,
            // One statement per batch: its distinct series upserted from
            // arrays, their ids returned with their keys.
            series: transaction
                .prepare_cached(
                    "INSERT INTO series AS s (agent_id, metric, labels, last_value, last_ts_ms)
                     SELECT $1, metric, labels, value, ts
                     FROM unnest($2::TEXT[], $3::TEXT[], $4::FLOAT8[], $5::INT8[]) AS u(metric, labels, value, ts)
                     ON CONFLICT (agent_id, metric, labels) DO UPDATE
                         SET last_value = CASE WHEN excluded.last_ts_ms >= s.last_ts_ms
                                               THEN excluded.last_value ELSE s.last_value END,
                             last_ts_ms = greatest(s.last_ts_ms, excluded.last_ts_ms)
                     RETURNING metric, labels, id",
                )
                .await?,
            rollups: transaction
                .prepare_cached(
                    "INSERT INTO rollups AS r (series_id, start_ms, end_ms, min, max, sum, count)
                     SELECT * FROM unnest($1::INT8[], $2::INT8[], $3::INT8[], $4::FLOAT8[],
                                          $5::FLOAT8[], $6::FLOAT8[], $7::INT8[])
                     ON CONFLICT (series_id, start_ms) DO UPDATE
                         SET end_ms = greatest(r.end_ms, excluded.end_ms),
                             min = least(r.min, excluded.min),
                             max = greatest(r.max, excluded.max),
                             sum = r.sum + excluded.sum,
                             count = r.count + excluded.count",
                )
                .await?,
            log: transaction
                .prepare_cached(
                    "INSERT INTO sample_log (agent_id, received_ms, start_ms, end_ms, sample_count, payload)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .await?,
        })
    }
}

type Committed = (Vec<CommitOutcome>, Vec<(PackedKey, LatestValue)>);

async fn try_commit_group(
    pool: &Pool,
    collector: &str,
    batches: &[SampleBatch],
) -> Result<Committed, PgError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    let statements = Statements::prepare(&transaction).await?;
    // Rows are locked in key order, so two collectors' groups holding the
    // same agents (resends after a failover) queue behind each other rather
    // than deadlock; outcomes go back in the callers' order.
    let mut order: Vec<usize> = (0..batches.len()).collect();
    order.sort_by(|&left, &right| {
        let (l, r) = (&batches[left], &batches[right]);
        (&l.agent_id, l.epoch, l.seq).cmp(&(&r.agent_id, r.epoch, r.seq))
    });
    let mut outcomes = vec![CommitOutcome::Duplicate; batches.len()];
    let mut latest = Vec::new();
    let mut seen: BTreeMap<&str, i64> = BTreeMap::new();
    for index in order {
        let batch = &batches[index];
        let inserted = transaction
            .execute(
                &statements.claim,
                &[
                    &batch.agent_id,
                    &(batch.epoch as i64),
                    &(batch.seq as i64),
                    &batch.received_ms,
                    &(batch.samples.len() as i32),
                    &collector,
                ],
            )
            .await?;
        if inserted == 0 {
            continue;
        }
        latest.extend(store_samples(&transaction, &statements, batch).await?);
        let newest_seen = seen.entry(&batch.agent_id).or_insert(batch.received_ms);
        *newest_seen = (*newest_seen).max(batch.received_ms);
        outcomes[index] = CommitOutcome::Stored {
            samples: batch.samples.len(),
        };
    }
    // As on SQLite, a stored batch shows its agent alive; one statement per
    // group, agents in key order.
    let (agents, seen_ms): (Vec<&str>, Vec<i64>) = seen.into_iter().unzip();
    if !agents.is_empty() {
        transaction
            .execute(
                "UPDATE agents a SET last_seen_ms = greatest(a.last_seen_ms, u.seen_ms)
                 FROM unnest($1::TEXT[], $2::INT8[]) AS u(id, seen_ms) WHERE a.id = u.id",
                &[&agents, &seen_ms],
            )
            .await?;
    }
    transaction.commit().await?;
    Ok((outcomes, latest))
}

/// Upserts a claimed batch's series and rollups and appends its log record;
/// returns the newest value of each of its series.
async fn store_samples(
    transaction: &Transaction<'_>,
    statements: &Statements,
    batch: &SampleBatch,
) -> Result<Vec<(PackedKey, LatestValue)>, PgError> {
    if batch.samples.is_empty() {
        return Ok(Vec::new());
    }
    let labels: Vec<String> = batch
        .samples
        .iter()
        .map(|sample| labels_json(&sample.labels))
        .collect();
    // The newest point of each series in the batch (a series may repeat),
    // with the index of a sample naming it.
    let mut newest: HashMap<(&str, &str), (usize, LatestValue)> = HashMap::new();
    for (index, (sample, labels)) in batch.samples.iter().zip(&labels).enumerate() {
        let value = LatestValue {
            value: sample.value,
            timestamp_ms: sample.timestamp_ms,
        };
        let entry = newest
            .entry((sample.metric.as_str(), labels.as_str()))
            .or_insert((index, value));
        if value.timestamp_ms >= entry.1.timestamp_ms {
            *entry = (index, value);
        }
    }
    let mut metrics = Vec::with_capacity(newest.len());
    let mut label_texts = Vec::with_capacity(newest.len());
    let mut values = Vec::with_capacity(newest.len());
    let mut timestamps = Vec::with_capacity(newest.len());
    for ((metric, labels), (_, value)) in &newest {
        metrics.push(*metric);
        label_texts.push(*labels);
        values.push(value.value);
        timestamps.push(value.timestamp_ms);
    }
    let returned: HashMap<(String, String), i64> = transaction
        .query(
            &statements.series,
            &[
                &batch.agent_id,
                &metrics,
                &label_texts,
                &values,
                &timestamps,
            ],
        )
        .await?
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect();
    let mut ids: HashMap<(&str, &str), i64> = HashMap::with_capacity(newest.len());
    for &(metric, labels) in newest.keys() {
        let id = returned
            .get(&(metric.to_string(), labels.to_string()))
            .ok_or_else(|| PgError::Decode {
                column: "series.id".to_string(),
                message: format!("no id returned for series {metric}"),
            })?;
        ids.insert((metric, labels), *id);
    }
    let mut logged = Vec::with_capacity(batch.samples.len());
    for (sample, labels) in batch.samples.iter().zip(&labels) {
        // Every sample's series is a key of `newest`, so of `ids`.
        let Some(&series_id) = ids.get(&(sample.metric.as_str(), labels.as_str())) else {
            continue;
        };
        logged.push(LoggedSample {
            series_id,
            timestamp_ms: sample.timestamp_ms,
            value: sample.value,
        });
    }
    upsert_rollups(transaction, statements, &logged).await?;
    let start_ms = logged.iter().map(|s| s.timestamp_ms).min().unwrap_or(0);
    let end_ms = logged.iter().map(|s| s.timestamp_ms).max().unwrap_or(0);
    transaction
        .execute(
            &statements.log,
            &[
                &batch.agent_id,
                &batch.received_ms,
                &start_ms,
                &end_ms,
                &(logged.len() as i32),
                &chunk::encode_log_record(&logged),
            ],
        )
        .await?;
    Ok(newest
        .into_values()
        .map(|(index, value)| {
            let sample = &batch.samples[index];
            (
                PackedKey::new(&batch.agent_id, &sample.metric, &sample.labels),
                value,
            )
        })
        .collect())
}

/// Folds a batch's points into the 5-minute rollups: one row per series and
/// bucket, in key order (the lock order).
async fn upsert_rollups(
    transaction: &Transaction<'_>,
    statements: &Statements,
    logged: &[LoggedSample],
) -> Result<(), PgError> {
    let mut buckets: BTreeMap<(i64, i64), (Bucket, i64)> = BTreeMap::new();
    for sample in logged {
        let start_ms = chunk::bucket_start(sample.timestamp_ms, ROLLUP_BUCKET_MS);
        let point = Bucket {
            start_ms,
            min: sample.value,
            max: sample.value,
            sum: sample.value,
            count: 1,
        };
        buckets
            .entry((sample.series_id, start_ms))
            .and_modify(|(bucket, end_ms)| {
                bucket.merge(&point);
                *end_ms = (*end_ms).max(sample.timestamp_ms);
            })
            .or_insert((point, sample.timestamp_ms));
    }
    let mut columns = RollupColumns::default();
    for ((series_id, _), (bucket, end_ms)) in buckets {
        columns.push(series_id, &bucket, end_ms);
    }
    transaction
        .execute(
            &statements.rollups,
            &[
                &columns.series_ids,
                &columns.starts,
                &columns.ends,
                &columns.mins,
                &columns.maxes,
                &columns.sums,
                &columns.counts,
            ],
        )
        .await?;
    Ok(())
}

#[derive(Default)]
struct RollupColumns {
    series_ids: Vec<i64>,
    starts: Vec<i64>,
    ends: Vec<i64>,
    mins: Vec<f64>,
    maxes: Vec<f64>,
    sums: Vec<f64>,
    counts: Vec<i64>,
}

impl RollupColumns {
    fn push(&mut self, series_id: i64, bucket: &Bucket, end_ms: i64) {
        self.series_ids.push(series_id);
        self.starts.push(bucket.start_ms);
        self.ends.push(end_ms);
        self.mins.push(bucket.min);
        self.maxes.push(bucket.max);
        self.sums.push(bucket.sum);
        self.counts.push(bucket.count as i64);
    }
}
