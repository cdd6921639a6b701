//! Reads of stored samples on PostgreSQL, their retention, and the latest
//! values this collector holds.
//!
//! There is no in-memory head: every committed point is in the shared
//! `sample_log` records (raw) and the `rollups` (5-minute aggregates) the
//! moment its batch commits, so any collector answers for any agent. The
//! meaning of a query is SQLite's (`store::history`): raw points when the
//! step is not above the sample interval, min/avg/max per step otherwise,
//! steps of 5 minutes and more from the rollups.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::GenericClient;

use super::super::chunk::{self, Bucket, ROLLUP_BUCKET_MS};
use super::super::history::{bucket_point, sample_interval};
use super::super::packed_key::{LatestMap, PackedKey};
use super::super::{
    HistoryPoint, HistoryQuery, Labels, LatestValue, MAX_POINTS_PER_SERIES, SeriesHistory,
    SeriesKey, StoreError, history::MAX_SERIES, labels_json,
};
use super::{PgError, PgStore, parse_column};

/// Rows deleted per table per prune step: each step is its own short
/// transaction, as on SQLite.
const PRUNE_STEP: i64 = 10_000;

fn parse_labels(column: &str, text: &str) -> Result<Labels, PgError> {
    parse_column(column, text, |text| serde_json::from_str::<Labels>(text))
}

impl PgStore {
    /// Every stored point of one series, oldest first; a point stored twice
    /// shows twice. For tests and diagnostics.
    pub async fn series_points(&self, key: &SeriesKey) -> Result<Vec<(i64, f64)>, PgError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                "SELECT id FROM series WHERE agent_id = $1 AND metric = $2 AND labels = $3",
                &[&key.agent_id, &key.metric, &labels_json(&key.labels)],
            )
            .await?
        else {
            return Ok(Vec::new());
        };
        let id: i64 = row.get(0);
        let mut points = raw_points(&client, &key.agent_id, &[id], i64::MIN, i64::MAX).await?;
        Ok(points.remove(&id).unwrap_or_default())
    }

    /// Points of the series matching `query` (see [`HistoryQuery`]). Its
    /// error is a [`StoreError`] so a refused query stays
    /// [`StoreError::QueryTooLarge`].
    pub async fn history(&self, query: HistoryQuery) -> Result<Vec<SeriesHistory>, StoreError> {
        if let Some(step_ms) = query.step_ms {
            let steps = query.to_ms.saturating_sub(query.from_ms) / step_ms.max(1) + 1;
            if steps > MAX_POINTS_PER_SERIES as i64 {
                return Err(StoreError::QueryTooLarge(format!(
                    "{steps} steps; at most {MAX_POINTS_PER_SERIES}: use a longer step or a shorter range"
                )));
            }
        }
        let client = self.client().await?;
        let series = matching_series(&client, &query).await?;
        if series.len() > MAX_SERIES {
            return Err(StoreError::QueryTooLarge(format!(
                "{} series match; at most {MAX_SERIES}: name more labels",
                series.len()
            )));
        }
        let ids: Vec<i64> = series.iter().map(|(id, _)| *id).collect();
        match query.step_ms {
            Some(step_ms) if step_ms >= ROLLUP_BUCKET_MS => {
                let mut buckets = rollup_buckets(&client, &ids, query.from_ms, query.to_ms).await?;
                Ok(series
                    .into_iter()
                    .map(|(id, key)| SeriesHistory {
                        key,
                        points: stepped(buckets.remove(&id).unwrap_or_default(), step_ms),
                    })
                    .collect())
            }
            step_ms => {
                let mut raw =
                    raw_points(&client, &query.agent_id, &ids, query.from_ms, query.to_ms).await?;
                series
                    .into_iter()
                    .map(|(id, key)| {
                        let points = raw_answer(raw.remove(&id).unwrap_or_default(), step_ms)?;
                        Ok(SeriesHistory { key, points })
                    })
                    .collect()
            }
        }
    }

    /// Total stored samples and batches, for tests and diagnostics.
    pub async fn counts(&self) -> Result<(u64, u64), PgError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT (SELECT coalesce(sum(sample_count), 0)::BIGINT FROM sample_log),
                        (SELECT count(*) FROM batches)",
                &[],
            )
            .await?;
        let samples: i64 = row.get(0);
        let batches: i64 = row.get(1);
        Ok((samples as u64, batches as u64))
    }

    /// Deletes sample records that end before `before_ms`, batch records
    /// received before it (resends that old cannot arrive), journal entries
    /// already routed, delivery attempts, and series
    /// silent since before it of which nothing is stored any more; in steps,
    /// each its own transaction. Returns, summed over steps, the most rows
    /// any one table lost in a step.
    pub async fn prune(&self, before_ms: i64) -> Result<usize, PgError> {
        let mut total = 0;
        loop {
            let deleted = self.prune_samples_step(before_ms).await?;
            total += deleted;
            if (deleted as i64) < PRUNE_STEP {
                break;
            }
        }
        self.forget_series_pruned_elsewhere(before_ms).await?;
        Ok(total)
    }

    /// Drops from the latest values the series silent since before
    /// `before_ms` that are no longer stored: another collector's prune
    /// may have deleted them, and this collector's own finds nothing then.
    async fn forget_series_pruned_elsewhere(&self, before_ms: i64) -> Result<(), PgError> {
        let silent: Vec<SeriesKey> = self
            .published
            .latest
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|(_, value)| value.timestamp_ms < before_ms)
            .map(|(key, _)| key.unpack())
            .collect();
        if silent.is_empty() {
            return Ok(());
        }
        let agents: Vec<&str> = silent.iter().map(|key| key.agent_id.as_str()).collect();
        let metrics: Vec<&str> = silent.iter().map(|key| key.metric.as_str()).collect();
        let labels: Vec<String> = silent.iter().map(|key| labels_json(&key.labels)).collect();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT u.n FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[])
                     WITH ORDINALITY AS u(agent_id, metric, labels, n)
                 WHERE NOT EXISTS (SELECT 1 FROM series s WHERE s.agent_id = u.agent_id
                                     AND s.metric = u.metric AND s.labels = u.labels)",
                &[&agents, &metrics, &labels],
            )
            .await?;
        let mut latest = self
            .published
            .latest
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for row in rows {
            let ordinal: i64 = row.get(0);
            let Some(key) = usize::try_from(ordinal - 1)
                .ok()
                .and_then(|i| silent.get(i))
            else {
                continue;
            };
            let key = PackedKey::of(key);
            // A series stored again meanwhile (a newer point) stays.
            if latest
                .get(&key)
                .is_some_and(|value| value.timestamp_ms < before_ms)
            {
                latest.remove(&key);
            }
        }
        Ok(())
    }

    async fn prune_samples_step(&self, before_ms: i64) -> Result<usize, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let mut deleted = 0;
        for statement in [
            "DELETE FROM sample_log WHERE id IN
                 (SELECT id FROM sample_log WHERE end_ms < $1 LIMIT $2)",
            "DELETE FROM batches WHERE (agent_id, epoch, seq) IN
                 (SELECT agent_id, epoch, seq FROM batches WHERE received_ms < $1 LIMIT $2)",
            // Journal entries already routed (SQLite: behind the cursor).
            "DELETE FROM incident_events WHERE id IN (SELECT id FROM incident_events
                 WHERE ts_ms < $1 AND routed_ms IS NOT NULL LIMIT $2)",
            "DELETE FROM outbox_attempts WHERE id IN
                 (SELECT id FROM outbox_attempts WHERE ts_ms < $1 LIMIT $2)",
        ] {
            let count = transaction
                .execute(statement, &[&before_ms, &PRUNE_STEP])
                .await?;
            deleted = deleted.max(count as usize);
        }
        // A silent series goes once no record can hold a point of it (a
        // record holding one starts at or before the series' newest point)
        // and no rollup does. The outer `last_ts_ms` test is checked again
        // against a row a concurrent commit has just updated, so a series
        // that has come back is kept.
        let gone = transaction
            .query(
                "DELETE FROM series WHERE id IN
                     (SELECT id FROM series s WHERE last_ts_ms < $1
                        AND NOT EXISTS (SELECT 1 FROM rollups r WHERE r.series_id = s.id)
                        AND NOT EXISTS (SELECT 1 FROM sample_log l
                                        WHERE l.agent_id = s.agent_id AND l.start_ms <= s.last_ts_ms)
                      LIMIT $2)
                   AND last_ts_ms < $1
                 RETURNING agent_id, metric, labels",
                &[&before_ms, &PRUNE_STEP],
            )
            .await?;
        let mut keys = Vec::with_capacity(gone.len());
        for row in &gone {
            let labels = parse_labels("series.labels", row.get(2))?;
            keys.push(PackedKey::new(row.get(0), row.get(1), &labels));
        }
        transaction.commit().await?;
        let mut latest = self
            .published
            .latest
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for key in &keys {
            latest.remove(key);
        }
        Ok(deleted.max(keys.len()))
    }

    /// Deletes rollups that end before `before_ms`, in steps like [`Self::prune`].
    pub async fn prune_rollups(&self, before_ms: i64) -> Result<usize, PgError> {
        let client = self.client().await?;
        let mut total = 0;
        loop {
            let deleted = client
                .execute(
                    "DELETE FROM rollups WHERE (series_id, start_ms) IN
                         (SELECT series_id, start_ms FROM rollups
                          WHERE start_ms < $1 AND end_ms < $1 LIMIT $2)",
                    &[&before_ms, &PRUNE_STEP],
                )
                .await?;
            total += deleted as usize;
            if (deleted as i64) < PRUNE_STEP {
                return Ok(total);
            }
        }
    }

    /// Nothing to do: PostgreSQL keeps no head; points are stored (raw and
    /// rolled up) when their batch commits.
    pub async fn close_head_chunks(&self) -> Result<(), PgError> {
        Ok(())
    }

    /// No head, so no encoded points in memory.
    pub fn head_encoded_bytes(&self) -> usize {
        0
    }

    /// The latest value of one series, if known to this collector (stored
    /// when it opened, or committed through it since).
    pub fn latest_value(&self, key: &SeriesKey) -> Option<LatestValue> {
        self.published
            .latest
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&PackedKey::of(key))
            .copied()
    }

    /// Latest values, optionally for one agent, ordered by series key.
    pub fn latest(&self, agent_id: Option<&str>) -> Vec<(SeriesKey, LatestValue)> {
        super::super::packed_key::latest_sorted(&self.published.latest, agent_id)
    }

    /// Why batches cannot be stored now, if they cannot: the last group
    /// commit failed (say the database is unreachable); cleared by the next
    /// group that commits.
    pub fn write_problem(&self) -> Option<String> {
        self.published.problem()
    }
}

/// Every series' stored latest value, for a collector that opens.
pub(super) async fn load_latest(client: &impl GenericClient) -> Result<LatestMap, PgError> {
    let rows = client
        .query(
            "SELECT agent_id, metric, labels, last_value, last_ts_ms FROM series",
            &[],
        )
        .await?;
    let mut latest = LatestMap::default();
    for row in rows {
        let labels = parse_labels("series.labels", row.get(2))?;
        latest.upsert_newer(
            PackedKey::new(row.get(0), row.get(1), &labels),
            LatestValue {
                value: row.get(3),
                timestamp_ms: row.get(4),
            },
        );
    }
    Ok(latest)
}

/// The agent's series of the query's metric that carry its labels, ordered
/// by their labels' text (byte-wise, as SQLite orders).
async fn matching_series(
    client: &impl GenericClient,
    query: &HistoryQuery,
) -> Result<Vec<(i64, SeriesKey)>, PgError> {
    let rows = client
        .query(
            "SELECT id, labels FROM series WHERE agent_id = $1 AND metric = $2
             ORDER BY labels COLLATE \"C\"",
            &[&query.agent_id, &query.metric],
        )
        .await?;
    let mut series = Vec::new();
    for row in rows {
        let labels = parse_labels("series.labels", row.get(1))?;
        if query
            .labels
            .iter()
            .all(|(name, value)| labels.get(name) == Some(value))
        {
            series.push((
                row.get(0),
                SeriesKey {
                    agent_id: query.agent_id.clone(),
                    metric: query.metric.clone(),
                    labels,
                },
            ));
        }
    }
    Ok(series)
}

/// Points of `series_ids` (all the agent's) with `from_ms <= t <= to_ms`,
/// per series, sorted by time (stable: a point stored twice shows twice).
async fn raw_points(
    client: &impl GenericClient,
    agent_id: &str,
    series_ids: &[i64],
    from_ms: i64,
    to_ms: i64,
) -> Result<HashMap<i64, Vec<(i64, f64)>>, PgError> {
    let rows = client
        .query(
            "SELECT payload FROM sample_log
             WHERE agent_id = $1 AND end_ms >= $2 AND start_ms <= $3 ORDER BY id",
            &[&agent_id, &from_ms, &to_ms],
        )
        .await?;
    let mut points: HashMap<i64, Vec<(i64, f64)>> =
        series_ids.iter().map(|&id| (id, Vec::new())).collect();
    for row in rows {
        let samples = chunk::decode_log_record(row.get(0)).map_err(|error| PgError::Decode {
            column: "sample_log.payload".to_string(),
            message: error.to_string(),
        })?;
        for sample in samples {
            if from_ms <= sample.timestamp_ms
                && sample.timestamp_ms <= to_ms
                && let Some(series) = points.get_mut(&sample.series_id)
            {
                series.push((sample.timestamp_ms, sample.value));
            }
        }
    }
    for series in points.values_mut() {
        series.sort_by_key(|&(t, _)| t);
    }
    Ok(points)
}

/// The 5-minute buckets of `series_ids` overlapping `[from_ms, to_ms]`.
async fn rollup_buckets(
    client: &impl GenericClient,
    series_ids: &[i64],
    from_ms: i64,
    to_ms: i64,
) -> Result<HashMap<i64, BTreeMap<i64, Bucket>>, PgError> {
    let first_bucket = chunk::bucket_start(from_ms, ROLLUP_BUCKET_MS);
    let rows = client
        .query(
            "SELECT series_id, start_ms, min, max, sum, count FROM rollups
             WHERE series_id = ANY($1) AND start_ms >= $2 AND start_ms <= $3",
            &[&series_ids, &first_bucket, &to_ms],
        )
        .await?;
    let mut buckets: HashMap<i64, BTreeMap<i64, Bucket>> = HashMap::new();
    for row in rows {
        let start_ms: i64 = row.get(1);
        let count: i64 = row.get(5);
        buckets.entry(row.get(0)).or_default().insert(
            start_ms,
            Bucket {
                start_ms,
                min: row.get(2),
                max: row.get(3),
                sum: row.get(4),
                count: count as u64,
            },
        );
    }
    Ok(buckets)
}

/// 5-minute buckets folded into steps of `step_ms`.
fn stepped(buckets: BTreeMap<i64, Bucket>, step_ms: i64) -> Vec<HistoryPoint> {
    let mut steps = BTreeMap::new();
    for bucket in buckets.into_values() {
        let start = chunk::bucket_start(bucket.start_ms, step_ms);
        steps
            .entry(start)
            .and_modify(|known: &mut Bucket| known.merge(&bucket))
            .or_insert(Bucket {
                start_ms: start,
                ..bucket
            });
    }
    steps.into_values().map(bucket_point).collect()
}

/// One series' answer from raw points: aggregated when the step is above
/// the sample interval, else the points themselves (at most
/// [`MAX_POINTS_PER_SERIES`]).
fn raw_answer(raw: Vec<(i64, f64)>, step_ms: Option<i64>) -> Result<Vec<HistoryPoint>, StoreError> {
    match step_ms {
        Some(step_ms) if step_ms > sample_interval(&raw) => {
            let mut steps = BTreeMap::new();
            chunk::add_points(&mut steps, &raw, step_ms);
            Ok(steps.into_values().map(bucket_point).collect())
        }
        _ => {
            if raw.len() > MAX_POINTS_PER_SERIES {
                return Err(StoreError::QueryTooLarge(format!(
                    "{} raw points in the range; at most {MAX_POINTS_PER_SERIES}: give a step or a shorter range",
                    raw.len()
                )));
            }
            Ok(raw
                .into_iter()
                .map(|(timestamp_ms, value)| HistoryPoint {
                    timestamp_ms,
                    value,
                    min: value,
                    max: value,
                })
                .collect())
        }
    }
}
