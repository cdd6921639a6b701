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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, RwLock};

use deadpool_postgres::{Pool, Transaction};
use tokio_postgres::Row;

use super::super::chunk::{self, Bucket, LoggedSample, ROLLUP_BUCKET_MS};
use super::super::packed_key::{LatestMap, PackedKey};
use super::super::{
    AgentHello, AgentRecord, CommitOutcome, LatestValue, LatestValues, SampleBatch, SampleRecord,
    SeriesKey, labels_json,
};
use super::retry::retrying_conflicts;
use super::{PgError, PgStore};

/// What this collector's readers see of its commits: the latest value of
/// every series, and why the last group could not be committed, if so.
#[derive(Debug)]
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
    let result = retrying_conflicts(|| try_commit_group(pool, collector, batches)).await;
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

// A group is written with one statement per table, whatever its number of
// batches: a round trip per batch and table made the committer's
// transaction, not the database, the limit.

/// Claims the group's batch keys, in key order (the lock order).
const CLAIM: &str =
    "INSERT INTO batches (agent_id, epoch, seq, received_ms, sample_count, collector)
     SELECT agent_id, epoch, seq, received_ms, sample_count, $6
     FROM unnest($1::TEXT[], $2::INT8[], $3::INT8[], $4::INT8[], $5::INT4[])
          WITH ORDINALITY AS u(agent_id, epoch, seq, received_ms, sample_count, n)
     ORDER BY n
     ON CONFLICT DO NOTHING
     RETURNING agent_id, epoch, seq";

/// The group's distinct series with their newest points; their ids come back
/// with their keys. The stored value is the newest whichever collector wrote it.
const UPSERT_SERIES: &str =
    "INSERT INTO series AS s (agent_id, metric, labels, last_value, last_ts_ms)
     SELECT agent_id, metric, labels, value, ts
     FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::FLOAT8[], $5::INT8[])
          AS u(agent_id, metric, labels, value, ts)
     ON CONFLICT (agent_id, metric, labels) DO UPDATE
         SET last_value = CASE WHEN excluded.last_ts_ms >= s.last_ts_ms
                               THEN excluded.last_value ELSE s.last_value END,
             last_ts_ms = greatest(s.last_ts_ms, excluded.last_ts_ms)
     RETURNING agent_id, metric, labels, id";

const UPSERT_ROLLUPS: &str =
    "INSERT INTO rollups AS r (series_id, start_ms, end_ms, min, max, sum, count)
     SELECT * FROM unnest($1::INT8[], $2::INT8[], $3::INT8[], $4::FLOAT8[], $5::FLOAT8[],
                          $6::FLOAT8[], $7::INT8[])
     ON CONFLICT (series_id, start_ms) DO UPDATE
         SET end_ms = greatest(r.end_ms, excluded.end_ms),
             min = least(r.min, excluded.min),
             max = greatest(r.max, excluded.max),
             sum = r.sum + excluded.sum,
             count = r.count + excluded.count";

const APPEND_LOG: &str =
    "INSERT INTO sample_log (agent_id, received_ms, start_ms, end_ms, sample_count, payload)
     SELECT * FROM unnest($1::TEXT[], $2::INT8[], $3::INT8[], $4::INT8[], $5::INT4[], $6::BYTEA[])";

/// As on SQLite, a stored batch shows its agent alive.
const TOUCH_AGENTS: &str = "UPDATE agents a SET last_seen_ms = greatest(a.last_seen_ms, u.seen_ms)
     FROM unnest($1::TEXT[], $2::INT8[]) AS u(id, seen_ms) WHERE a.id = u.id";

type Committed = (Vec<CommitOutcome>, Vec<(PackedKey, LatestValue)>);

async fn try_commit_group(
    pool: &Pool,
    collector: &str,
    batches: &[SampleBatch],
) -> Result<Committed, PgError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    // Rows are locked in key order, so two collectors' groups holding the
    // same agents (resends after a failover) queue behind each other rather
    // than deadlock; outcomes go back in the callers' order.
    let mut order: Vec<usize> = (0..batches.len()).collect();
    order.sort_by(|&left, &right| {
        let (l, r) = (&batches[left], &batches[right]);
        (&l.agent_id, l.epoch, l.seq).cmp(&(&r.agent_id, r.epoch, r.seq))
    });
    let stored = claim(&transaction, collector, batches, &order).await?;
    let mut outcomes = vec![CommitOutcome::Duplicate; batches.len()];
    for &index in &stored {
        outcomes[index] = CommitOutcome::Stored {
            samples: batches[index].samples.len(),
        };
    }
    let latest = store_samples(&transaction, batches, &stored).await?;
    touch_agents(&transaction, batches, &stored).await?;
    transaction.commit().await?;
    Ok((outcomes, latest))
}

/// Claims the batches' keys; returns the indices of those stored now, in
/// key order. A key already stored, or twice in the group, is a duplicate
/// (its first copy in the group is stored).
async fn claim(
    transaction: &Transaction<'_>,
    collector: &str,
    batches: &[SampleBatch],
    order: &[usize],
) -> Result<Vec<usize>, PgError> {
    let agents: Vec<&str> = order
        .iter()
        .map(|&i| batches[i].agent_id.as_str())
        .collect();
    let epochs: Vec<i64> = order.iter().map(|&i| batches[i].epoch as i64).collect();
    let seqs: Vec<i64> = order.iter().map(|&i| batches[i].seq as i64).collect();
    let received: Vec<i64> = order.iter().map(|&i| batches[i].received_ms).collect();
    let counts: Vec<i32> = order
        .iter()
        .map(|&i| batches[i].samples.len() as i32)
        .collect();
    let statement = transaction.prepare_cached(CLAIM).await?;
    let rows = transaction
        .query(
            &statement,
            &[&agents, &epochs, &seqs, &received, &counts, &collector],
        )
        .await?;
    let mut claimed: HashSet<(String, i64, i64)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    Ok(order
        .iter()
        .copied()
        .filter(|&i| {
            let batch = &batches[i];
            claimed.remove(&(batch.agent_id.clone(), batch.epoch as i64, batch.seq as i64))
        })
        .collect())
}

/// A series as the statements name it: agent, metric, labels as JSON text.
type SeriesName<'a> = (&'a str, &'a str, &'a str);

/// Upserts the stored batches' series and rollups and appends one log
/// record per batch; returns the newest value of each of their series.
async fn store_samples(
    transaction: &Transaction<'_>,
    batches: &[SampleBatch],
    stored: &[usize],
) -> Result<Vec<(PackedKey, LatestValue)>, PgError> {
    let labels: Vec<Vec<String>> = stored
        .iter()
        .map(|&i| {
            batches[i]
                .samples
                .iter()
                .map(|sample| labels_json(&sample.labels))
                .collect()
        })
        .collect();
    // The newest point of each series in the group (a series may repeat),
    // in key order: the order its row is locked in.
    let mut newest: BTreeMap<SeriesName<'_>, (&SampleRecord, LatestValue)> = BTreeMap::new();
    for (&i, texts) in stored.iter().zip(&labels) {
        let batch = &batches[i];
        for (sample, text) in batch.samples.iter().zip(texts) {
            let value = LatestValue {
                value: sample.value,
                timestamp_ms: sample.timestamp_ms,
            };
            newest
                .entry((&batch.agent_id, &sample.metric, text))
                .and_modify(|held| {
                    if value.timestamp_ms >= held.1.timestamp_ms {
                        *held = (sample, value);
                    }
                })
                .or_insert((sample, value));
        }
    }
    if newest.is_empty() {
        return Ok(Vec::new());
    }
    let ids = upsert_series(transaction, &newest).await?;
    let mut log = LogColumns::default();
    let mut rollups = RollupBuckets::new();
    for (&i, texts) in stored.iter().zip(&labels) {
        let batch = &batches[i];
        let mut logged = Vec::with_capacity(batch.samples.len());
        for (sample, text) in batch.samples.iter().zip(texts) {
            let name = (
                batch.agent_id.as_str(),
                sample.metric.as_str(),
                text.as_str(),
            );
            let series_id = *ids.get(&name).ok_or_else(|| PgError::Decode {
                column: "series.id".to_string(),
                message: format!("no id returned for series {}", sample.metric),
            })?;
            logged.push(LoggedSample {
                series_id,
                timestamp_ms: sample.timestamp_ms,
                value: sample.value,
            });
        }
        fold_into_rollups(&mut rollups, &logged);
        log.push(batch, &logged);
    }
    append_log(transaction, &log).await?;
    upsert_rollups(transaction, rollups).await?;
    Ok(newest
        .into_iter()
        .map(|((agent_id, _, _), (sample, value))| {
            (
                PackedKey::new(agent_id, &sample.metric, &sample.labels),
                value,
            )
        })
        .collect())
}

/// Upserts the group's series with their newest points; returns their ids.
async fn upsert_series<'a>(
    transaction: &Transaction<'_>,
    newest: &BTreeMap<SeriesName<'a>, (&SampleRecord, LatestValue)>,
) -> Result<HashMap<SeriesName<'a>, i64>, PgError> {
    let mut agents = Vec::with_capacity(newest.len());
    let mut metrics = Vec::with_capacity(newest.len());
    let mut label_texts = Vec::with_capacity(newest.len());
    let mut values = Vec::with_capacity(newest.len());
    let mut timestamps = Vec::with_capacity(newest.len());
    for (&(agent_id, metric, labels), (_, value)) in newest {
        agents.push(agent_id);
        metrics.push(metric);
        label_texts.push(labels);
        values.push(value.value);
        timestamps.push(value.timestamp_ms);
    }
    let statement = transaction.prepare_cached(UPSERT_SERIES).await?;
    let returned: HashMap<(String, String, String), i64> = transaction
        .query(
            &statement,
            &[&agents, &metrics, &label_texts, &values, &timestamps],
        )
        .await?
        .iter()
        .map(|row| ((row.get(0), row.get(1), row.get(2)), row.get(3)))
        .collect();
    let mut ids = HashMap::with_capacity(newest.len());
    for &name @ (agent_id, metric, labels) in newest.keys() {
        let owned = (agent_id.to_string(), metric.to_string(), labels.to_string());
        let id = returned.get(&owned).ok_or_else(|| PgError::Decode {
            column: "series.id".to_string(),
            message: format!("no id returned for series {metric}"),
        })?;
        ids.insert(name, *id);
    }
    Ok(ids)
}

/// One log record per stored batch with samples, as columns.
#[derive(Default)]
struct LogColumns<'a> {
    agents: Vec<&'a str>,
    received: Vec<i64>,
    starts: Vec<i64>,
    ends: Vec<i64>,
    counts: Vec<i32>,
    payloads: Vec<Vec<u8>>,
}

impl<'a> LogColumns<'a> {
    fn push(&mut self, batch: &'a SampleBatch, logged: &[LoggedSample]) {
        let (Some(start_ms), Some(end_ms)) = (
            logged.iter().map(|sample| sample.timestamp_ms).min(),
            logged.iter().map(|sample| sample.timestamp_ms).max(),
        ) else {
            return; // an empty batch leaves no record
        };
        self.agents.push(&batch.agent_id);
        self.received.push(batch.received_ms);
        self.starts.push(start_ms);
        self.ends.push(end_ms);
        self.counts.push(logged.len() as i32);
        self.payloads.push(chunk::encode_log_record(logged));
    }
}

async fn append_log(transaction: &Transaction<'_>, log: &LogColumns<'_>) -> Result<(), PgError> {
    if log.agents.is_empty() {
        return Ok(());
    }
    let statement = transaction.prepare_cached(APPEND_LOG).await?;
    transaction
        .execute(
            &statement,
            &[
                &log.agents,
                &log.received,
                &log.starts,
                &log.ends,
                &log.counts,
                &log.payloads,
            ],
        )
        .await?;
    Ok(())
}

/// Rollup buckets of a group by (series id, bucket start), with the newest
/// point of each; key order is the lock order.
type RollupBuckets = BTreeMap<(i64, i64), (Bucket, i64)>;

fn fold_into_rollups(buckets: &mut RollupBuckets, logged: &[LoggedSample]) {
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
}

async fn upsert_rollups(
    transaction: &Transaction<'_>,
    buckets: RollupBuckets,
) -> Result<(), PgError> {
    if buckets.is_empty() {
        return Ok(());
    }
    let mut series_ids = Vec::with_capacity(buckets.len());
    let mut starts = Vec::with_capacity(buckets.len());
    let mut ends = Vec::with_capacity(buckets.len());
    let mut mins = Vec::with_capacity(buckets.len());
    let mut maxes = Vec::with_capacity(buckets.len());
    let mut sums = Vec::with_capacity(buckets.len());
    let mut counts = Vec::with_capacity(buckets.len());
    for ((series_id, start_ms), (bucket, end_ms)) in buckets {
        series_ids.push(series_id);
        starts.push(start_ms);
        ends.push(end_ms);
        mins.push(bucket.min);
        maxes.push(bucket.max);
        sums.push(bucket.sum);
        counts.push(bucket.count as i64);
    }
    let statement = transaction.prepare_cached(UPSERT_ROLLUPS).await?;
    transaction
        .execute(
            &statement,
            &[&series_ids, &starts, &ends, &mins, &maxes, &sums, &counts],
        )
        .await?;
    Ok(())
}

/// Moves each agent with a stored batch's `last_seen_ms` up to its newest
/// batch's receipt, agents in key order.
async fn touch_agents(
    transaction: &Transaction<'_>,
    batches: &[SampleBatch],
    stored: &[usize],
) -> Result<(), PgError> {
    let mut seen: BTreeMap<&str, i64> = BTreeMap::new();
    for &i in stored {
        let batch = &batches[i];
        let newest = seen.entry(&batch.agent_id).or_insert(batch.received_ms);
        *newest = (*newest).max(batch.received_ms);
    }
    if seen.is_empty() {
        return Ok(());
    }
    let (agents, seen_ms): (Vec<&str>, Vec<i64>) = seen.into_iter().unzip();
    let statement = transaction.prepare_cached(TOUCH_AGENTS).await?;
    transaction
        .execute(&statement, &[&agents, &seen_ms])
        .await?;
    Ok(())
}
