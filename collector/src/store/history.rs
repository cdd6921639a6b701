//! Reads of stored points for history queries: merges persisted chunks (or
//! their rollups), the in-memory head, and rows of the pre-chunk `samples`
//! table into one time-ordered answer per series.
//!
//! Never writes. The head is read first, then SQLite: a chunk persisted in
//! between is in both, and is recognised by its seq (see `HeadSnapshot`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use rusqlite::{Connection, params};

use super::chunk::{self, Bucket, ROLLUP_BUCKET_MS};
use super::gorilla::CorruptChunk;
use super::head::{Head, HeadSnapshot};
use super::{Labels, SeriesKey, StoreError};

/// Most points one series may return; a larger answer is refused, not cut.
pub const MAX_POINTS_PER_SERIES: usize = 11_000;
/// Most series one query may return.
pub const MAX_SERIES: usize = 200;

#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub agent_id: String,
    pub metric: String,
    /// Series must carry every one of these labels (others may be present).
    pub labels: Labels,
    pub from_ms: i64,
    pub to_ms: i64,
    /// `None`: raw points.
    pub step_ms: Option<i64>,
}

/// One point of an answer: at raw resolution `min == max == value`; with a
/// step, the average, minimum and maximum of the step starting at `timestamp_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryPoint {
    pub timestamp_ms: i64,
    pub value: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeriesHistory {
    pub key: SeriesKey,
    pub points: Vec<HistoryPoint>,
}

fn corrupt(error: CorruptChunk) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(error))
}

/// The head's view of a series, and a read transaction begun while the head
/// was locked. Rows committed after it stay invisible, so "skip rows at or
/// above the head's lowest seq" never skips points the snapshot lacks:
/// compaction merges a day into a row carrying its highest seq only once the
/// head has let go of that chunk, which takes this lock. Without the pin, a
/// day merged between the head snapshot and the query would be skipped
/// whole. Inside a caller's transaction the snapshot is already fixed.
fn snapshot<'c>(
    connection: &'c Connection,
    head: &Mutex<Head>,
    series_id: i64,
) -> Result<(HeadSnapshot, Option<rusqlite::Transaction<'c>>), rusqlite::Error> {
    let head = head.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let pinned = if connection.is_autocommit() {
        let transaction = connection.unchecked_transaction()?;
        // The first read fixes the WAL snapshot.
        transaction.query_row(
            "SELECT count(*) FROM (SELECT 1 FROM chunks LIMIT 1)",
            [],
            |_| Ok(()),
        )?;
        Some(transaction)
    } else {
        None
    };
    let snapshot = head.snapshot(series_id).map_err(corrupt)?;
    Ok((snapshot, pinned))
}

/// Every stored point of a series with `from_ms <= t <= to_ms`, sorted by
/// time (stable: a point stored twice shows twice).
pub fn raw_points(
    connection: &Connection,
    head: &Mutex<Head>,
    series_id: i64,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, f64)>, rusqlite::Error> {
    let (snapshot, _pinned) = snapshot(connection, head, series_id)?;
    let mut points = Vec::new();
    let mut statement = connection.prepare_cached(
        "SELECT seq, data FROM chunks WHERE series_id = ?1 AND start_ms <= ?3 AND end_ms >= ?2
         ORDER BY seq",
    )?;
    let mut rows = statement.query(params![series_id, from_ms, to_ms])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        if snapshot.min_seq.is_some_and(|min_seq| seq >= min_seq) {
            continue;
        }
        let decoded = chunk::decode_chunk_blob(row.get_ref(1)?.as_blob()?).map_err(corrupt)?;
        points.extend(
            decoded
                .into_iter()
                .filter(|&(t, _)| from_ms <= t && t <= to_ms),
        );
    }
    let mut legacy = connection.prepare_cached(
        "SELECT ts_ms, value FROM samples WHERE series_id = ?1 AND ts_ms BETWEEN ?2 AND ?3",
    )?;
    for point in legacy.query_map(params![series_id, from_ms, to_ms], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })? {
        points.push(point?);
    }
    points.extend(
        snapshot
            .points
            .into_iter()
            .filter(|&(t, _)| from_ms <= t && t <= to_ms),
    );
    points.sort_by_key(|&(t, _)| t);
    Ok(points)
}

/// 5-minute buckets overlapping `[from_ms, to_ms]`, from stored rollups plus
/// the head and legacy rows.
fn rollup_buckets(
    connection: &Connection,
    head: &Mutex<Head>,
    series_id: i64,
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<i64, Bucket>, rusqlite::Error> {
    let first_bucket = chunk::bucket_start(from_ms, ROLLUP_BUCKET_MS);
    let (snapshot, _pinned) = snapshot(connection, head, series_id)?;
    let mut buckets = BTreeMap::new();
    let mut statement = connection.prepare_cached(
        "SELECT seq, data FROM rollups WHERE series_id = ?1 AND start_ms <= ?3 AND end_ms >= ?2",
    )?;
    let mut rows = statement.query(params![series_id, first_bucket, to_ms])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        if snapshot.min_seq.is_some_and(|min_seq| seq >= min_seq) {
            continue;
        }
        for bucket in chunk::decode_rollup_blob(row.get_ref(1)?.as_blob()?).map_err(corrupt)? {
            if first_bucket <= bucket.start_ms && bucket.start_ms <= to_ms {
                buckets
                    .entry(bucket.start_ms)
                    .and_modify(|known: &mut Bucket| known.merge(&bucket))
                    .or_insert(bucket);
            }
        }
    }
    let mut points: Vec<(i64, f64)> = connection
        .prepare_cached(
            "SELECT ts_ms, value FROM samples WHERE series_id = ?1 AND ts_ms BETWEEN ?2 AND ?3",
        )?
        .query_map(params![series_id, first_bucket, to_ms], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    points.extend(
        snapshot
            .points
            .into_iter()
            .filter(|&(t, _)| first_bucket <= t && t <= to_ms),
    );
    chunk::add_points(&mut buckets, &points, ROLLUP_BUCKET_MS);
    Ok(buckets)
}

fn matching_series(
    connection: &Connection,
    query: &HistoryQuery,
) -> Result<Vec<(i64, SeriesKey)>, rusqlite::Error> {
    let mut statement = connection.prepare_cached(
        "SELECT id, labels FROM series WHERE agent_id = ?1 AND metric = ?2 ORDER BY labels",
    )?;
    let rows = statement.query_map(params![query.agent_id, query.metric], |row| {
        let labels: String = row.get(1)?;
        Ok((row.get::<_, i64>(0)?, labels))
    })?;
    let mut series = Vec::new();
    for row in rows {
        let (id, labels) = row?;
        let labels: Labels = serde_json::from_str(&labels).unwrap_or_default();
        if query
            .labels
            .iter()
            .all(|(name, value)| labels.get(name) == Some(value))
        {
            series.push((
                id,
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

fn too_large(what: String) -> StoreError {
    StoreError::QueryTooLarge(what)
}

/// Answers a history query. Raw points when there is no step or the step is
/// not above the series' sample interval; steps below 5 minutes are
/// aggregated from raw points, longer ones from the 5-minute rollups.
pub fn history(
    connection: &Connection,
    head: &Mutex<Head>,
    query: &HistoryQuery,
) -> Result<Vec<SeriesHistory>, StoreError> {
    if let Some(step_ms) = query.step_ms {
        let steps = query.to_ms.saturating_sub(query.from_ms) / step_ms.max(1) + 1;
        if steps > MAX_POINTS_PER_SERIES as i64 {
            return Err(too_large(format!(
                "{steps} steps; at most {MAX_POINTS_PER_SERIES}: use a longer step or a shorter range"
            )));
        }
    }
    let series = matching_series(connection, query)?;
    if series.len() > MAX_SERIES {
        return Err(too_large(format!(
            "{} series match; at most {MAX_SERIES}: name more labels",
            series.len()
        )));
    }
    let mut answer = Vec::with_capacity(series.len());
    for (series_id, key) in series {
        let points = match query.step_ms {
            Some(step_ms) if step_ms >= ROLLUP_BUCKET_MS => {
                let buckets =
                    rollup_buckets(connection, head, series_id, query.from_ms, query.to_ms)?;
                let mut stepped = BTreeMap::new();
                for bucket in buckets.into_values() {
                    let start = chunk::bucket_start(bucket.start_ms, step_ms);
                    stepped
                        .entry(start)
                        .and_modify(|known: &mut Bucket| known.merge(&bucket))
                        .or_insert(Bucket {
                            start_ms: start,
                            ..bucket
                        });
                }
                stepped.into_values().map(bucket_point).collect()
            }
            step_ms => {
                let raw = raw_points(connection, head, series_id, query.from_ms, query.to_ms)?;
                match step_ms {
                    Some(step_ms) if step_ms > sample_interval(&raw) => {
                        let mut stepped = BTreeMap::new();
                        chunk::add_points(&mut stepped, &raw, step_ms);
                        stepped.into_values().map(bucket_point).collect()
                    }
                    _ => {
                        if raw.len() > MAX_POINTS_PER_SERIES {
                            return Err(too_large(format!(
                                "{} raw points in the range; at most {MAX_POINTS_PER_SERIES}: give a step or a shorter range",
                                raw.len()
                            )));
                        }
                        raw.into_iter()
                            .map(|(timestamp_ms, value)| HistoryPoint {
                                timestamp_ms,
                                value,
                                min: value,
                                max: value,
                            })
                            .collect()
                    }
                }
            }
        };
        answer.push(SeriesHistory { key, points });
    }
    Ok(answer)
}

pub(super) fn bucket_point(bucket: Bucket) -> HistoryPoint {
    HistoryPoint {
        timestamp_ms: bucket.start_ms,
        value: bucket.sum / bucket.count as f64,
        min: bucket.min,
        max: bucket.max,
    }
}

/// The median gap between consecutive points (0 for fewer than two).
pub(super) fn sample_interval(points: &[(i64, f64)]) -> i64 {
    let mut gaps: Vec<i64> = points
        .windows(2)
        .map(|w| w[1].0.saturating_sub(w[0].0))
        .collect();
    if gaps.is_empty() {
        return 0;
    }
    let middle = gaps.len() / 2;
    *gaps.select_nth_unstable(middle).1
}
