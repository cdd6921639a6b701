//! Compaction of aged samples: once a UTC day is over (before the cutoff the
//! caller gives), the chunks of one series that started on that day are
//! merged into one format-2 row (`columns`), and so are their rollups.
//! Fewer, bigger rows mean fewer index entries and fuller pages, and the
//! column codecs see a whole day at once. A lone chunk of a day still in
//! format 1 is rewritten the same way.
//!
//! Each step runs in one writer transaction and merges a few series-days:
//! a merge deletes its old rows in the transaction that inserts the merged
//! one, so a crash leaves one or the other, never both or neither. It never
//! touches a chunk the head may still hold (seq at or above the head's
//! lowest for that series), so readers' "skip chunks the head has" rule
//! stays true: a merged row takes the highest seq of the rows it replaces.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rusqlite::{Transaction, params};

use super::chunk::{self, Bucket};
use super::head::Head;

pub const DAY_MS: i64 = 86_400_000;

/// Key rows read per step while looking for series-days to merge.
const SCAN_ROWS: i64 = 4_096;
/// Series-days merged per step: keeps a step (one transaction) short.
const MERGES_PER_STEP: usize = 32;
/// Rows read into merges per step (at most ~360 points each while they are
/// head chunks): a step decodes and re-encodes some 20,000 points, tens of
/// milliseconds, however long the days are; at least one series-day merges.
const MERGED_ROWS_PER_STEP: usize = 64;
/// A merged chunk is not made bigger than this (a series at 10 points a
/// second); such a day keeps its chunks as they are.
const MAX_MERGED_POINTS: usize = 1 << 20;

/// What compaction did: rows read and rows written, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactReport {
    pub chunks_merged: usize,
    pub chunks_written: usize,
    pub rollups_merged: usize,
    pub rollups_written: usize,
}

impl CompactReport {
    pub fn add(&mut self, other: CompactReport) {
        self.chunks_merged += other.chunks_merged;
        self.chunks_written += other.chunks_written;
        self.rollups_merged += other.rollups_merged;
        self.rollups_written += other.rollups_written;
    }

    pub fn is_empty(&self) -> bool {
        *self == CompactReport::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    Chunks,
    Rollups,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Chunks => "chunks",
            Table::Rollups => "rollups",
        }
    }
}

/// Where the next step resumes: series, then day start; days starting
/// before `since_ms` are not looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Cursor {
    pub series_id: i64,
    pub from_ms: i64,
    pub since_ms: i64,
}

impl Cursor {
    pub fn start(since_ms: i64) -> Self {
        Cursor {
            series_id: i64::MIN,
            from_ms: i64::MIN,
            since_ms,
        }
    }
}

#[derive(Debug)]
struct SeriesDay {
    series_id: i64,
    day: i64,
    rows: usize,
    max_seq: i64,
    all_columns: bool,
}

fn day_start(day: i64) -> i64 {
    day.saturating_mul(DAY_MS)
}

/// One step: merges up to [`MERGES_PER_STEP`] series-days of `table` that
/// ended before `before_ms`, from `cursor` on. Returns what it did and where
/// the next step starts (`None`: the table has been walked).
pub(super) fn compact_step(
    transaction: &Transaction<'_>,
    head: &Mutex<Head>,
    table: Table,
    before_ms: i64,
    cursor: Cursor,
) -> Result<(CompactReport, Option<Cursor>), rusqlite::Error> {
    let mut groups: Vec<SeriesDay> = Vec::new();
    let mut scanned = 0;
    {
        let mut statement = transaction.prepare_cached(&format!(
            // `start_ms >= ?4` is checked on the index entry, before the
            // row (and its blob, for the format byte) is read.
            "SELECT series_id, start_ms, seq, substr(data, 1, 1) FROM {}
             WHERE (series_id, start_ms) >= (?1, ?2) AND start_ms >= ?4
             ORDER BY series_id, start_ms LIMIT ?3",
            table.name()
        ))?;
        let mut rows = statement.query(params![
            cursor.series_id,
            cursor.from_ms,
            SCAN_ROWS,
            cursor.since_ms
        ])?;
        while let Some(row) = rows.next()? {
            scanned += 1;
            let series_id: i64 = row.get(0)?;
            let day = row.get::<_, i64>(1)?.div_euclid(DAY_MS);
            let seq: i64 = row.get(2)?;
            let columns = chunk::is_columns_format(
                row.get_ref(3)?
                    .as_blob_or_null()?
                    .and_then(|b| b.first().copied()),
            );
            match groups.last_mut() {
                Some(group) if group.series_id == series_id && group.day == day => {
                    group.rows += 1;
                    group.max_seq = group.max_seq.max(seq);
                    group.all_columns &= columns;
                }
                _ => groups.push(SeriesDay {
                    series_id,
                    day,
                    rows: 1,
                    max_seq: seq,
                    all_columns: columns,
                }),
            }
        }
    }
    let mut next = None;
    if scanned == SCAN_ROWS && groups.len() > 1 {
        // The last series-day may go on past the rows read: next time.
        if let Some(last) = groups.pop() {
            next = Some(Cursor {
                series_id: last.series_id,
                from_ms: day_start(last.day),
                since_ms: cursor.since_ms,
            });
        }
    } else if scanned == SCAN_ROWS
        && let Some(only) = groups.last()
    {
        // One series-day filled the scan; the merge reads all of it.
        next = Some(Cursor {
            series_id: only.series_id,
            from_ms: day_start(only.day + 1),
            since_ms: cursor.since_ms,
        });
    }
    let mut report = CompactReport::default();
    let mut merged = 0;
    let mut merged_rows = 0;
    for group in &groups {
        if merged == MERGES_PER_STEP || merged_rows >= MERGED_ROWS_PER_STEP {
            next = Some(Cursor {
                series_id: group.series_id,
                from_ms: day_start(group.day),
                since_ms: cursor.since_ms,
            });
            break;
        }
        let ended = day_start(group.day + 1) <= before_ms;
        if !ended || (group.rows < 2 && group.all_columns) {
            continue;
        }
        let head_min_seq = head
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .min_seq(group.series_id);
        if head_min_seq.is_some_and(|min_seq| group.max_seq >= min_seq) {
            continue;
        }
        let (read, written) = match table {
            Table::Chunks => merge_chunks(transaction, group)?,
            Table::Rollups => merge_rollups(transaction, group)?,
        };
        match table {
            Table::Chunks => {
                report.chunks_merged += read;
                report.chunks_written += written;
            }
            Table::Rollups => {
                report.rollups_merged += read;
                report.rollups_written += written;
            }
        }
        merged += 1;
        merged_rows += group.rows;
    }
    Ok((report, next))
}

/// Rowids of the rows merged, and the merged row's (seq, start, end).
struct Merged {
    rowids: Vec<i64>,
    seq: i64,
    start_ms: i64,
    end_ms: i64,
}

impl Merged {
    fn new() -> Self {
        Merged {
            rowids: Vec::new(),
            seq: i64::MIN,
            start_ms: i64::MAX,
            end_ms: i64::MIN,
        }
    }

    fn add(&mut self, rowid: i64, seq: i64, start_ms: i64, end_ms: i64) {
        self.rowids.push(rowid);
        self.seq = self.seq.max(seq);
        self.start_ms = self.start_ms.min(start_ms);
        self.end_ms = self.end_ms.max(end_ms);
    }

    fn delete(&self, transaction: &Transaction<'_>, table: Table) -> Result<(), rusqlite::Error> {
        let mut delete = transaction
            .prepare_cached(&format!("DELETE FROM {} WHERE rowid = ?1", table.name()))?;
        for rowid in &self.rowids {
            delete.execute([rowid])?;
        }
        Ok(())
    }
}

/// Merges one series-day of chunks; returns (rows read, rows written).
fn merge_chunks(
    transaction: &Transaction<'_>,
    group: &SeriesDay,
) -> Result<(usize, usize), rusqlite::Error> {
    let mut merged = Merged::new();
    let mut points = Vec::new();
    let mut max_log_id = i64::MIN;
    {
        let mut statement = transaction.prepare_cached(
            "SELECT rowid, seq, start_ms, end_ms, max_log_id, data FROM chunks
             WHERE series_id = ?1 AND start_ms >= ?2 AND start_ms < ?3",
        )?;
        let mut rows = statement.query(params![
            group.series_id,
            day_start(group.day),
            day_start(group.day + 1)
        ])?;
        while let Some(row) = rows.next()? {
            merged.add(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            max_log_id = max_log_id.max(row.get(4)?);
            match chunk::decode_chunk_blob(row.get_ref(5)?.as_blob()?) {
                Ok(decoded) => points.extend(decoded),
                Err(error) => {
                    tracing::warn!(
                        message = "Corrupt chunk left as it is by compaction.",
                        series_id = group.series_id,
                        %error
                    );
                    return Ok((0, 0));
                }
            }
            if points.len() > MAX_MERGED_POINTS {
                return Ok((0, 0));
            }
        }
    }
    if merged.rowids.is_empty() || merged.seq != group.max_seq {
        // Rows changed since the scan (in this transaction): next pass.
        return Ok((0, 0));
    }
    // Stable: a point stored twice stays twice, in its order.
    points.sort_by_key(|&(timestamp, _)| timestamp);
    merged.delete(transaction, Table::Chunks)?;
    transaction
        .prepare_cached(
            "INSERT INTO chunks (series_id, seq, start_ms, end_ms, count, max_log_id, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            group.series_id,
            merged.seq,
            merged.start_ms,
            merged.end_ms,
            points.len() as i64,
            max_log_id,
            chunk::chunk_blob_columns(&points)
        ])?;
    Ok((merged.rowids.len(), 1))
}

/// Merges one series-day of rollups; returns (rows read, rows written).
fn merge_rollups(
    transaction: &Transaction<'_>,
    group: &SeriesDay,
) -> Result<(usize, usize), rusqlite::Error> {
    let mut merged = Merged::new();
    let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
    {
        let mut statement = transaction.prepare_cached(
            "SELECT rowid, seq, start_ms, end_ms, data FROM rollups
             WHERE series_id = ?1 AND start_ms >= ?2 AND start_ms < ?3",
        )?;
        let mut rows = statement.query(params![
            group.series_id,
            day_start(group.day),
            day_start(group.day + 1)
        ])?;
        while let Some(row) = rows.next()? {
            merged.add(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            match chunk::decode_rollup_blob(row.get_ref(4)?.as_blob()?) {
                Ok(decoded) => {
                    for bucket in decoded {
                        buckets
                            .entry(bucket.start_ms)
                            .and_modify(|known| known.merge(&bucket))
                            .or_insert(bucket);
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        message = "Corrupt rollup left as it is by compaction.",
                        series_id = group.series_id,
                        %error
                    );
                    return Ok((0, 0));
                }
            }
        }
    }
    if merged.rowids.is_empty() || merged.seq != group.max_seq {
        return Ok((0, 0));
    }
    let buckets: Vec<Bucket> = buckets.into_values().collect();
    merged.delete(transaction, Table::Rollups)?;
    transaction
        .prepare_cached(
            "INSERT INTO rollups (series_id, seq, start_ms, end_ms, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            group.series_id,
            merged.seq,
            merged.start_ms,
            merged.end_ms,
            chunk::rollup_blob_columns(&buckets)
        ])?;
    Ok((merged.rowids.len(), 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::gorilla::ChunkEncoder;

    fn format_1(points: &[(i64, f64)]) -> Vec<u8> {
        let mut encoder = ChunkEncoder::default();
        for &(t, v) in points {
            encoder.push(t, v);
        }
        chunk::chunk_blob(encoder.count(), encoder.bytes())
    }

    /// Guards the read rule: a chunk the head may still hold (written in
    /// this very transaction, not yet marked persisted) is never merged.
    #[test]
    fn chunks_the_head_may_hold_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut connection = crate::store::open_connection(&path).unwrap();
        crate::store::migrations::migrate(&mut connection, &path).unwrap();
        let transaction = connection.transaction().unwrap();
        for (seq, points) in [(0, [(0, 1.0), (100, 2.0)]), (1, [(200, 3.0), (300, 4.0)])] {
            transaction
                .execute(
                    "INSERT INTO chunks (series_id, seq, start_ms, end_ms, count, max_log_id, data)
                     VALUES (1, ?1, ?2, ?3, 2, ?1, ?4)",
                    params![seq, points[0].0, points[1].0, format_1(&points)],
                )
                .unwrap();
        }
        let head = Mutex::new(Head::default());
        {
            let mut head = head.lock().unwrap();
            head.register(1, 1);
            head.append(1, 5, 0, 250, 3.0);
        }
        let (report, next) = compact_step(
            &transaction,
            &head,
            Table::Chunks,
            i64::MAX,
            Cursor::start(i64::MIN),
        )
        .unwrap();
        assert!(report.is_empty(), "seq 1 is in the head: {report:?}");
        assert_eq!(next, None);
        let (report, _) = compact_step(
            &transaction,
            &Mutex::new(Head::default()),
            Table::Chunks,
            DAY_MS - 1,
            Cursor::start(i64::MIN),
        )
        .unwrap();
        assert!(report.is_empty(), "a day not over is left alone");
        let (report, _) = compact_step(
            &transaction,
            &Mutex::new(Head::default()),
            Table::Chunks,
            i64::MAX,
            Cursor::start(i64::MIN),
        )
        .unwrap();
        assert_eq!((report.chunks_merged, report.chunks_written), (2, 1));
        let (seq, count, data): (i64, i64, Vec<u8>) = transaction
            .query_row("SELECT seq, count, data FROM chunks", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .unwrap();
        assert_eq!((seq, count), (1, 4), "the merged row takes the highest seq");
        assert_eq!(
            chunk::decode_chunk_blob(&data).unwrap(),
            vec![(0, 1.0), (100, 2.0), (200, 3.0), (300, 4.0)]
        );
    }
}
