//! Agents and sample batches on PostgreSQL.
//!
//! Many batches are committed in one transaction (one WAL flush), as the
//! SQLite writer groups them. A batch's key `(agent, epoch, seq)` is unique
//! in the database, so whichever collector receives a resend answers
//! `Duplicate`. Each stored batch is one `sample_log` record in the shared
//! log format, so any collector can read an agent's recent raw points, even
//! while the agent streams to another collector (whose in-memory head this
//! collector does not see).

use super::super::chunk::{self, LoggedSample};
use super::super::{AgentHello, CommitOutcome, SampleBatch, SeriesKey, labels_json};
use std::collections::HashMap;

use deadpool_postgres::Pool;

use super::{PgError, PgStore};

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
        commit_group(&self.pool, &self.collector, batches).await
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
        let client = self.client().await?;
        let Some(series) = client
            .query_opt(
                "SELECT id FROM series WHERE agent_id = $1 AND metric = $2 AND labels = $3",
                &[&key.agent_id, &key.metric, &labels_json(&key.labels)],
            )
            .await?
        else {
            return Ok(Vec::new());
        };
        let series_id: i64 = series.get(0);
        let rows = client
            .query(
                "SELECT payload FROM sample_log WHERE agent_id = $1 ORDER BY id",
                &[&key.agent_id],
            )
            .await?;
        let mut points = Vec::new();
        for row in rows {
            let payload: &[u8] = row.get(0);
            let samples = chunk::decode_log_record(payload).map_err(|error| PgError::Decode {
                column: "sample_log.payload".to_string(),
                message: error.to_string(),
            })?;
            points.extend(
                samples
                    .iter()
                    .filter(|sample| sample.series_id == series_id)
                    .map(|sample| (sample.timestamp_ms, sample.value)),
            );
        }
        points.sort_by_key(|(timestamp, _)| *timestamp);
        Ok(points)
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
/// one agent's batches in different orders after a failover).
pub(super) async fn commit_group(
    pool: &Pool,
    collector: &str,
    batches: &[SampleBatch],
) -> Result<Vec<CommitOutcome>, PgError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_commit_group(pool, collector, batches).await {
            Err(PgError::Db(error))
                if attempt < 4
                    && error.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                tracing::debug!(message = "Batch group deadlocked; retrying.", attempt);
            }
            result => return result,
        }
    }
}

async fn try_commit_group(
    pool: &Pool,
    collector: &str,
    batches: &[SampleBatch],
) -> Result<Vec<CommitOutcome>, PgError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    let claim = transaction
        .prepare_cached(
            "INSERT INTO batches (agent_id, epoch, seq, received_ms, sample_count, collector)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .await?;
    // One statement per batch: its distinct series upserted from arrays,
    // their ids returned with their keys.
    let series = transaction
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
        .await?;
    let log = transaction
        .prepare_cached(
            "INSERT INTO sample_log (agent_id, received_ms, payload) VALUES ($1, $2, $3)",
        )
        .await?;
    // Rows are locked in key order, so two collectors' groups holding the
    // same agents (resends after a failover) queue behind each other rather
    // than deadlock; outcomes go back in the callers' order.
    let mut order: Vec<usize> = (0..batches.len()).collect();
    order.sort_by(|&left, &right| {
        let (l, r) = (&batches[left], &batches[right]);
        (&l.agent_id, l.epoch, l.seq).cmp(&(&r.agent_id, r.epoch, r.seq))
    });
    let mut outcomes = vec![CommitOutcome::Duplicate; batches.len()];
    for index in order {
        let batch = &batches[index];
        let inserted = transaction
            .execute(
                &claim,
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
            outcomes[index] = CommitOutcome::Duplicate;
            continue;
        }
        // The newest point of each series in the batch (a series may repeat).
        let mut newest: HashMap<(&str, String), (f64, i64)> = HashMap::new();
        let labels: Vec<String> = batch
            .samples
            .iter()
            .map(|sample| labels_json(&sample.labels))
            .collect();
        for (sample, labels) in batch.samples.iter().zip(&labels) {
            let entry = newest
                .entry((sample.metric.as_str(), labels.clone()))
                .or_insert((sample.value, sample.timestamp_ms));
            if sample.timestamp_ms >= entry.1 {
                *entry = (sample.value, sample.timestamp_ms);
            }
        }
        let mut metrics = Vec::with_capacity(newest.len());
        let mut label_texts = Vec::with_capacity(newest.len());
        let mut values = Vec::with_capacity(newest.len());
        let mut timestamps = Vec::with_capacity(newest.len());
        for ((metric, labels), (value, timestamp)) in &newest {
            metrics.push(*metric);
            label_texts.push(labels.as_str());
            values.push(*value);
            timestamps.push(*timestamp);
        }
        let ids: HashMap<(String, String), i64> = transaction
            .query(
                &series,
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
        let mut logged = Vec::with_capacity(batch.samples.len());
        for (sample, labels) in batch.samples.iter().zip(labels) {
            let series_id =
                *ids.get(&(sample.metric.clone(), labels))
                    .ok_or_else(|| PgError::Decode {
                        column: "series.id".to_string(),
                        message: format!("no id returned for series {}", sample.metric),
                    })?;
            logged.push(LoggedSample {
                series_id,
                timestamp_ms: sample.timestamp_ms,
                value: sample.value,
            });
        }
        transaction
            .execute(
                &log,
                &[
                    &batch.agent_id,
                    &batch.received_ms,
                    &chunk::encode_log_record(&logged),
                ],
            )
            .await?;
        outcomes[index] = CommitOutcome::Stored {
            samples: batch.samples.len(),
        };
    }
    transaction.commit().await?;
    Ok(outcomes)
}
