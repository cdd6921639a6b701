//! The head: the newest points of every series, in memory, Gorilla-encoded,
//! until their chunk closes and is written to the `chunks` table.
//!
//! Only the writer thread changes the head, and only with points whose log
//! record has committed: the head never holds a point the log lacks, so
//! losing it (kill -9) loses nothing; startup replays the log into it.
//! Readers (queries, counts) take a snapshot under the same lock.
//!
//! Each open or closed-but-unwritten chunk pins the oldest log record with
//! a point in it; log records older than every pin are covered by persisted
//! chunks and may be deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use hashbrown::HashMap;

use super::chunk;
use super::gorilla::{self, ChunkEncoder, CorruptChunk};

/// A chunk closes when it holds this many points (at 10 s: one hour)…
pub const MAX_CHUNK_POINTS: u32 = 360;
/// …or when it was opened this long ago (by received time), so a slow or
/// silent series neither pins the log nor keeps points only in memory for long.
pub const MAX_CHUNK_AGE_MS: i64 = 2 * 3600 * 1000;

/// The open chunks' encoded points may hold this many heap bytes in all.
/// Past it, chunks close early (see [`Head::close_full`]), so the head's
/// memory stays flat however many series there are: without it, 500k
/// series at 10 s grow by ~3 bytes per point each to ~500 MiB an hour. Up to
/// ~100k series (at ~3 bytes per point) it never binds; above, chunks get
/// shorter (at 500k series ~65 points, 11 minutes), costing some bytes per
/// sample on disk (per-chunk row, index and rollup overhead).
pub const HEAD_BUDGET_BYTES: usize = 96 << 20;
/// An open chunk is never closed early below this many points, so a burst
/// of new series cannot turn every chunk into a handful of points.
pub const MIN_EARLY_CLOSE_POINTS: u32 = 30;

/// Most closed chunks written in one group transaction: when thousands of
/// series close together (they started together, or the age sweep), the
/// writes are spread over several groups instead of stalling one.
pub const MAX_CHUNKS_PER_GROUP: usize = 1_000;

/// A chunk that closed and waits to be written (or is being written).
#[derive(Debug)]
pub struct ClosedChunk {
    pub series_id: i64,
    pub seq: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub count: u32,
    /// Pin: the oldest log record with a point here.
    pub first_log_id: i64,
    pub max_log_id: i64,
    /// The point with the highest timestamp, for `series.last_*`.
    pub last: (i64, f64),
    /// Gorilla bits (see [`chunk::chunk_blob`] for the stored form).
    pub bits: Vec<u8>,
}

impl ClosedChunk {
    pub fn points(&self) -> Result<Vec<(i64, f64)>, CorruptChunk> {
        gorilla::decode(&self.bits, self.count)
    }
}

#[derive(Debug)]
struct OpenChunk {
    seq: i64,
    encoder: ChunkEncoder,
    first_log_id: i64,
    max_log_id: i64,
    opened_ms: i64,
    start_ms: i64,
    end_ms: i64,
    last: (i64, f64),
}

#[derive(Debug, Default)]
struct SeriesHead {
    /// The seq the next chunk to open gets; chunks below it are closed.
    next_seq: i64,
    open: Option<Box<OpenChunk>>,
    /// Closed, oldest first, not yet known to be persisted.
    closed: Vec<Arc<ClosedChunk>>,
}

/// What a reader sees of one series in the head.
#[derive(Debug, Default)]
pub struct HeadSnapshot {
    /// Chunks with this seq or higher are in `points`; persisted copies of
    /// them must be skipped. `None`: the head holds nothing of the series.
    pub min_seq: Option<i64>,
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug)]
pub struct Head {
    series: HashMap<i64, SeriesHead>,
    /// Open chunks and the heap bytes their encoders hold.
    open: OpenTotals,
    budget_bytes: usize,
    /// Multiset of pinned log ids (oldest log record per open/unwritten chunk).
    pins: BTreeMap<i64, u32>,
    /// Closed chunks to write, oldest first.
    unwritten: Vec<Arc<ClosedChunk>>,
}

impl Default for Head {
    fn default() -> Self {
        Self::with_budget(HEAD_BUDGET_BYTES)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct OpenTotals {
    chunks: usize,
    bytes: usize,
}

impl Head {
    /// A head whose open chunks close early past `budget_bytes` (see
    /// [`HEAD_BUDGET_BYTES`]).
    pub fn with_budget(budget_bytes: usize) -> Self {
        Self {
            series: HashMap::new(),
            open: OpenTotals::default(),
            budget_bytes,
            pins: BTreeMap::new(),
            unwritten: Vec::new(),
        }
    }

    /// Makes a series known with the seq its next chunk gets.
    pub fn register(&mut self, series_id: i64, next_seq: i64) {
        self.series.entry(series_id).or_default().next_seq = next_seq;
    }

    /// Adds one committed point. Call [`Self::close_full`] after the whole log
    /// record: a chunk must close on a record boundary, or startup could not
    /// tell which of a record's points it already holds.
    pub fn append(
        &mut self,
        series_id: i64,
        log_id: i64,
        received_ms: i64,
        timestamp_ms: i64,
        value: f64,
    ) {
        let series = self.series.entry(series_id).or_default();
        if series.open.is_none() {
            *self.pins.entry(log_id).or_default() += 1;
            series.open = Some(Box::new(OpenChunk {
                seq: series.next_seq,
                encoder: ChunkEncoder::default(),
                first_log_id: log_id,
                max_log_id: log_id,
                opened_ms: received_ms,
                start_ms: timestamp_ms,
                end_ms: timestamp_ms,
                last: (timestamp_ms, value),
            }));
            series.next_seq += 1;
            self.open.chunks += 1;
        }
        let Some(open) = series.open.as_mut() else {
            return; // set just above
        };
        let before = open.encoder.capacity();
        open.encoder.push(timestamp_ms, value);
        self.open.bytes += open.encoder.capacity() - before;
        open.max_log_id = open.max_log_id.max(log_id);
        open.start_ms = open.start_ms.min(timestamp_ms);
        open.end_ms = open.end_ms.max(timestamp_ms);
        if timestamp_ms >= open.last.0 {
            open.last = (timestamp_ms, value);
        }
    }

    /// Closes the open chunk of each series in `series_ids` that is full,
    /// or, while the open chunks hold more than the budget, that holds at
    /// least its fair share of it (and [`MIN_EARLY_CLOSE_POINTS`]): series
    /// close as they are next written to until the head is back under its
    /// budget, the biggest chunks first, and slow series keep theirs.
    pub fn close_full(&mut self, series_ids: impl IntoIterator<Item = i64>) {
        for series_id in series_ids {
            let Some(series) = self.series.get_mut(&series_id) else {
                continue;
            };
            let over_budget = self.open.bytes > self.budget_bytes;
            let fair_share = self.budget_bytes / self.open.chunks.max(1);
            if series.open.as_ref().is_some_and(|open| {
                let count = open.encoder.count();
                count >= MAX_CHUNK_POINTS
                    || (over_budget
                        && count >= MIN_EARLY_CLOSE_POINTS
                        && open.encoder.capacity() >= fair_share)
            }) {
                close(series_id, series, &mut self.unwritten, &mut self.open);
            }
        }
    }

    /// Closes every open chunk opened before `opened_before_ms`; O(series),
    /// so the writer calls it about once a minute.
    pub fn close_older_than(&mut self, opened_before_ms: i64) {
        for (&series_id, series) in &mut self.series {
            if series
                .open
                .as_ref()
                .is_some_and(|open| open.opened_ms < opened_before_ms)
            {
                close(series_id, series, &mut self.unwritten, &mut self.open);
            }
        }
    }

    /// Closes every open chunk (tests and benchmarks: age the head now).
    pub fn close_all(&mut self) {
        self.close_older_than(i64::MAX);
    }

    /// The closed chunks to write in the next transaction, oldest first.
    pub fn unwritten(&self) -> Vec<Arc<ClosedChunk>> {
        self.unwritten
            .iter()
            .take(MAX_CHUNKS_PER_GROUP)
            .cloned()
            .collect()
    }

    /// Called after the transaction that wrote `chunks` (a prefix of
    /// [`Self::unwritten`] when it was taken) committed.
    pub fn persisted(&mut self, chunks: &[Arc<ClosedChunk>]) {
        let prefix = chunks.len() <= self.unwritten.len()
            && chunks
                .iter()
                .zip(&self.unwritten)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if prefix {
            self.unwritten.drain(..chunks.len());
        } else {
            // Only if `forget` removed some of them meanwhile.
            self.unwritten
                .retain(|chunk| !chunks.iter().any(|written| Arc::ptr_eq(chunk, written)));
        }
        for written in chunks {
            if let Some(series) = self.series.get_mut(&written.series_id) {
                let before = series.closed.len();
                series.closed.retain(|chunk| !Arc::ptr_eq(chunk, written));
                if series.closed.len() < before {
                    unpin(&mut self.pins, written.first_log_id);
                }
            }
        }
    }

    /// Log records below this id have every point in a persisted chunk.
    pub fn covered_below(&self, next_log_id: i64) -> i64 {
        self.pins
            .first_key_value()
            .map_or(next_log_id, |(&log_id, _)| log_id)
    }

    /// Drops a series (retention removed it).
    pub fn forget(&mut self, series_id: i64) {
        if let Some(series) = self.series.remove(&series_id) {
            if let Some(open) = series.open {
                self.open.chunks -= 1;
                self.open.bytes -= open.encoder.capacity();
                unpin(&mut self.pins, open.first_log_id);
            }
            for chunk in series.closed {
                unpin(&mut self.pins, chunk.first_log_id);
                self.unwritten.retain(|other| !Arc::ptr_eq(other, &chunk));
            }
        }
    }

    pub fn snapshot(&self, series_id: i64) -> Result<HeadSnapshot, CorruptChunk> {
        let Some(series) = self.series.get(&series_id) else {
            return Ok(HeadSnapshot::default());
        };
        let mut snapshot = HeadSnapshot::default();
        for chunk in &series.closed {
            snapshot.min_seq = Some(snapshot.min_seq.map_or(chunk.seq, |s| s.min(chunk.seq)));
            snapshot.points.extend(chunk.points()?);
        }
        if let Some(open) = &series.open {
            snapshot.min_seq = Some(snapshot.min_seq.map_or(open.seq, |s| s.min(open.seq)));
            snapshot
                .points
                .extend(gorilla::decode(open.encoder.bytes(), open.encoder.count())?);
        }
        Ok(snapshot)
    }

    /// The lowest seq of a chunk of the series the head holds (open or not
    /// known to be persisted); persisted chunks below it are not in the head.
    pub fn min_seq(&self, series_id: i64) -> Option<i64> {
        let series = self.series.get(&series_id)?;
        series
            .closed
            .iter()
            .map(|chunk| chunk.seq)
            .chain(series.open.as_ref().map(|open| open.seq))
            .min()
    }

    /// Per series: the lowest seq in the head and how many points it holds.
    pub fn point_counts(&self) -> HashMap<i64, (i64, u64)> {
        let mut counts = HashMap::new();
        for (&series_id, series) in &self.series {
            let mut min_seq = None::<i64>;
            let mut points = 0u64;
            for chunk in &series.closed {
                min_seq = Some(min_seq.map_or(chunk.seq, |s| s.min(chunk.seq)));
                points += u64::from(chunk.count);
            }
            if let Some(open) = &series.open {
                min_seq = Some(min_seq.map_or(open.seq, |s| s.min(open.seq)));
                points += u64::from(open.encoder.count());
            }
            if let Some(min_seq) = min_seq {
                counts.insert(series_id, (min_seq, points));
            }
        }
        counts
    }

    /// Heap bytes held by encoded points (not counting map overhead).
    pub fn encoded_bytes(&self) -> usize {
        self.series
            .values()
            .map(|series| {
                series
                    .open
                    .as_ref()
                    .map_or(0, |open| open.encoder.capacity())
                    + series
                        .closed
                        .iter()
                        .map(|chunk| chunk.bits.capacity())
                        .sum::<usize>()
            })
            .sum()
    }
}

fn close(
    series_id: i64,
    series: &mut SeriesHead,
    unwritten: &mut Vec<Arc<ClosedChunk>>,
    totals: &mut OpenTotals,
) {
    let Some(open) = series.open.take() else {
        return;
    };
    totals.chunks -= 1;
    totals.bytes -= open.encoder.capacity();
    let count = open.encoder.count();
    let chunk = Arc::new(ClosedChunk {
        series_id,
        seq: open.seq,
        start_ms: open.start_ms,
        end_ms: open.end_ms,
        count,
        first_log_id: open.first_log_id,
        max_log_id: open.max_log_id,
        last: open.last,
        bits: open.encoder.finish(),
    });
    series.closed.push(Arc::clone(&chunk));
    unwritten.push(chunk);
}

fn unpin(pins: &mut BTreeMap<i64, u32>, log_id: i64) {
    if let Some(count) = pins.get_mut(&log_id) {
        *count -= 1;
        if *count == 0 {
            pins.remove(&log_id);
        }
    }
}

/// The stored form of a closed chunk.
pub fn blob(chunk: &ClosedChunk) -> Vec<u8> {
    chunk::chunk_blob(chunk.count, &chunk.bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_close_when_full_and_pins_follow_them() {
        let mut head = Head::default();
        head.register(1, 4);
        for index in 0..MAX_CHUNK_POINTS as i64 + 1 {
            head.append(1, 10 + index, 0, index * 10, index as f64);
            head.close_full([1]);
        }
        let unwritten = head.unwritten();
        assert_eq!(unwritten.len(), 1);
        assert_eq!(unwritten[0].seq, 4);
        assert_eq!(unwritten[0].count, MAX_CHUNK_POINTS);
        assert_eq!(head.covered_below(1_000), 10, "the closed chunk still pins");
        let snapshot = head.snapshot(1).unwrap();
        assert_eq!(snapshot.min_seq, Some(4));
        assert_eq!(snapshot.points.len(), MAX_CHUNK_POINTS as usize + 1);

        head.persisted(&unwritten);
        assert!(head.unwritten().is_empty());
        assert_eq!(
            head.covered_below(1_000),
            10 + MAX_CHUNK_POINTS as i64,
            "only the open chunk pins now"
        );
        assert_eq!(head.snapshot(1).unwrap().min_seq, Some(5));
        head.forget(1);
        assert_eq!(head.covered_below(1_000), 1_000);
    }

    fn open_capacity(head: &Head) -> usize {
        head.series
            .values()
            .filter_map(|series| series.open.as_ref())
            .map(|open| open.encoder.capacity())
            .sum()
    }

    #[test]
    fn past_the_budget_the_biggest_chunks_close_early_and_memory_stays_flat() {
        const BUDGET: usize = 64 << 10;
        let mut head = Head::with_budget(BUDGET);
        // Series 0 is slow: one point per 20 rounds.
        let mut peak = 0;
        for round in 0..300i64 {
            let log_id = round + 1;
            let series: Vec<i64> = (0..200).filter(|&id| id != 0 || round % 20 == 0).collect();
            for &id in &series {
                // A noisy value: several bytes per point.
                let value = (round * 7919 + id * 104_729) as f64 / 997.0;
                head.append(id, log_id, round * 10_000, round * 10_000, value);
            }
            head.close_full(series.iter().copied());
            assert_eq!(head.open.bytes, open_capacity(&head), "tracked bytes drift");
            peak = peak.max(head.open.bytes);
            let written = head.unwritten();
            head.persisted(&written);
        }
        assert!(
            peak <= BUDGET + BUDGET / 4,
            "open chunks held {peak} bytes against a budget of {BUDGET}"
        );
        let snapshot = head.snapshot(0).unwrap();
        assert_eq!(
            snapshot.min_seq,
            Some(0),
            "the slow series keeps its first chunk"
        );
        assert_eq!(snapshot.points.len(), 15);
        assert!(
            head.series[&1].next_seq > 1,
            "busy series closed chunks before {MAX_CHUNK_POINTS} points"
        );
        head.forget(1);
        assert_eq!(head.open.bytes, open_capacity(&head));
        head.close_all();
        assert_eq!((head.open.chunks, head.open.bytes), (0, 0));
    }

    #[test]
    fn under_the_budget_chunks_close_only_when_full() {
        let mut head = Head::default();
        for index in 0..MAX_CHUNK_POINTS as i64 - 1 {
            for id in 0..100 {
                head.append(id, index + 1, 0, index * 10, (index * id) as f64 / 3.0);
            }
            head.close_full(0..100);
        }
        assert!(head.unwritten().is_empty());
    }

    #[test]
    fn old_open_chunks_close_by_age() {
        let mut head = Head::default();
        head.append(1, 1, 1_000, 5, 1.0);
        head.append(2, 2, 5_000, 5, 1.0);
        head.close_older_than(2_000);
        assert_eq!(head.unwritten().len(), 1);
        assert_eq!(head.unwritten()[0].series_id, 1);
        assert_eq!(head.point_counts()[&2], (0, 1));
    }
}
