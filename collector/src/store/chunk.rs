//! The byte formats of sample storage: a log record (one committed batch),
//! a chunk blob (one series' points), and a rollup blob (5-minute buckets of
//! one chunk). Each starts with a format byte so a later release can change
//! it; an unknown format or a short blob is an error, never zero points.

use std::collections::BTreeMap;

use super::columns;
use super::gorilla::{self, BitReader, BitWriter, ChunkEncoder, CorruptChunk, VarintReader};

const LOG_FORMAT: u8 = 1;
/// Format 1: the head's Gorilla stream as it was; 2: [`columns`], written
/// by compaction. Both are read.
const CHUNK_FORMAT: u8 = 1;
const CHUNK_FORMAT_COLUMNS: u8 = 2;
const ROLLUP_FORMAT: u8 = 1;
const ROLLUP_FORMAT_COLUMNS: u8 = 2;

/// Most points a format-2 blob may claim: a day at one point a second is
/// 86,400; a corrupt count must not size an allocation. Compaction keeps
/// its merged chunks below this.
pub const MAX_BLOB_POINTS: u64 = 1 << 21;

/// Width of a rollup bucket.
pub const ROLLUP_BUCKET_MS: i64 = 5 * 60 * 1000;

/// One sample as the log stores it: the series by id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoggedSample {
    pub series_id: i64,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// `[format][count][series id uvarint, timestamp delta varint, value]*`:
/// timestamps as the difference from the previous sample's (batches hold
/// one measurement time for many series, so most deltas are 0, one byte),
/// values as byte-swapped varints (round numbers are short).
pub fn encode_log_record(samples: &[LoggedSample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + samples.len() * 8);
    out.push(LOG_FORMAT);
    gorilla::put_uvarint(&mut out, samples.len() as u64);
    let mut previous_ts = 0i64;
    for sample in samples {
        gorilla::put_uvarint(&mut out, sample.series_id as u64);
        gorilla::put_varint(&mut out, sample.timestamp_ms.wrapping_sub(previous_ts));
        gorilla::put_float(&mut out, sample.value);
        previous_ts = sample.timestamp_ms;
    }
    out
}

pub fn decode_log_record(bytes: &[u8]) -> Result<Vec<LoggedSample>, CorruptChunk> {
    let (&format, rest) = bytes
        .split_first()
        .ok_or(CorruptChunk("empty log record"))?;
    if format != LOG_FORMAT {
        return Err(CorruptChunk("unknown log record format"));
    }
    let mut reader = VarintReader::new(rest);
    let count = reader.uvarint()?;
    // Each sample takes at least 3 bytes; a count beyond that is corrupt,
    // and must not size an allocation.
    if count > rest.len() as u64 {
        return Err(CorruptChunk("log record count exceeds its length"));
    }
    let mut samples = Vec::with_capacity(count as usize);
    let mut previous_ts = 0i64;
    for _ in 0..count {
        let series_id = reader.uvarint()? as i64;
        let timestamp_ms = previous_ts.wrapping_add(reader.varint()?);
        let value = reader.float()?;
        previous_ts = timestamp_ms;
        samples.push(LoggedSample {
            series_id,
            timestamp_ms,
            value,
        });
    }
    Ok(samples)
}

/// `[format][count][Gorilla bits]`.
pub fn chunk_blob(count: u32, bits: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bits.len() + 4);
    out.push(CHUNK_FORMAT);
    gorilla::put_uvarint(&mut out, u64::from(count));
    out.extend_from_slice(bits);
    out
}

/// `[2][count][timestamp column][value column]` (see [`columns`]): points
/// in any order, each kept bit for bit.
pub fn chunk_blob_columns(points: &[(i64, f64)]) -> Vec<u8> {
    let timestamps: Vec<i64> = points.iter().map(|&(t, _)| t).collect();
    let values: Vec<f64> = points.iter().map(|&(_, v)| v).collect();
    let mut bits = BitWriter::default();
    columns::put_timestamps(&mut bits, &timestamps);
    columns::put_values(&mut bits, &values);
    let bits = bits.into_bytes();
    let mut out = Vec::with_capacity(bits.len() + 4);
    out.push(CHUNK_FORMAT_COLUMNS);
    gorilla::put_uvarint(&mut out, points.len() as u64);
    out.extend_from_slice(&bits);
    out
}

/// The format byte of a chunk or rollup blob, if it has one.
#[cfg(test)]
pub fn blob_format(blob: &[u8]) -> Option<u8> {
    blob.first().copied()
}

/// True when `format` is the newest chunk or rollup format (compaction
/// rewrites older ones).
pub fn is_columns_format(format: Option<u8>) -> bool {
    format == Some(CHUNK_FORMAT_COLUMNS)
}

fn columns_count(reader: &mut VarintReader<'_>) -> Result<usize, CorruptChunk> {
    let count = reader.uvarint()?;
    if count > MAX_BLOB_POINTS {
        return Err(CorruptChunk("format 2 count too large"));
    }
    Ok(count as usize)
}

pub fn decode_chunk_blob(blob: &[u8]) -> Result<Vec<(i64, f64)>, CorruptChunk> {
    let (&format, rest) = blob.split_first().ok_or(CorruptChunk("empty chunk"))?;
    if format == CHUNK_FORMAT_COLUMNS {
        let mut reader = VarintReader::new(rest);
        let count = columns_count(&mut reader)?;
        let mut bits = BitReader::new(reader.rest());
        let timestamps = columns::get_timestamps(&mut bits, count)?;
        let values = columns::get_values(&mut bits, count)?;
        return Ok(timestamps.into_iter().zip(values).collect());
    }
    if format != CHUNK_FORMAT {
        return Err(CorruptChunk("unknown chunk format"));
    }
    let mut reader = VarintReader::new(rest);
    let count = reader.uvarint()?;
    let count = u32::try_from(count).map_err(|_| CorruptChunk("chunk count too large"))?;
    let bits = reader.rest();
    // Every point after the first takes at least 2 bits.
    if u64::from(count) > 2 + bits.len() as u64 * 4 {
        return Err(CorruptChunk("chunk count exceeds its length"));
    }
    gorilla::decode(bits, count)
}

/// Aggregate of the points of one series in one time bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start_ms: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
}

impl Bucket {
    fn of(start_ms: i64, value: f64) -> Self {
        Self {
            start_ms,
            min: value,
            max: value,
            sum: value,
            count: 1,
        }
    }

    /// Folds another partial aggregate of the same bucket in (a bucket can
    /// straddle two chunks).
    pub fn merge(&mut self, other: &Bucket) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// The bucket of width `width_ms` a timestamp falls in.
pub fn bucket_start(timestamp_ms: i64, width_ms: i64) -> i64 {
    timestamp_ms.div_euclid(width_ms).saturating_mul(width_ms)
}

/// Adds points into buckets of `width_ms`, keyed by bucket start.
pub fn add_points(buckets: &mut BTreeMap<i64, Bucket>, points: &[(i64, f64)], width_ms: i64) {
    for &(timestamp, value) in points {
        let start = bucket_start(timestamp, width_ms);
        buckets
            .entry(start)
            .and_modify(|bucket| bucket.merge(&Bucket::of(start, value)))
            .or_insert_with(|| Bucket::of(start, value));
    }
}

/// `[format][bucket count][counts as uvarints]` then three length-prefixed
/// Gorilla streams of (bucket start, min), (…, max), (…, sum): neighbouring
/// buckets of a quiet series differ little, so XOR keeps them small.
pub fn rollup_blob(buckets: &[Bucket]) -> Vec<u8> {
    let mut out = vec![ROLLUP_FORMAT];
    gorilla::put_uvarint(&mut out, buckets.len() as u64);
    for bucket in buckets {
        gorilla::put_uvarint(&mut out, bucket.count);
    }
    for field in [
        (|b: &Bucket| b.min) as fn(&Bucket) -> f64,
        |b| b.max,
        |b| b.sum,
    ] {
        let mut encoder = ChunkEncoder::default();
        for bucket in buckets {
            encoder.push(bucket.start_ms, field(bucket));
        }
        let bits = encoder.finish();
        gorilla::put_uvarint(&mut out, bits.len() as u64);
        out.extend_from_slice(&bits);
    }
    out
}

/// `[2][bucket count][start column][count column][min, max, sum value
/// columns]` (see [`columns`]): the format compaction writes.
pub fn rollup_blob_columns(buckets: &[Bucket]) -> Vec<u8> {
    let mut bits = BitWriter::default();
    let starts: Vec<i64> = buckets.iter().map(|b| b.start_ms).collect();
    columns::put_timestamps(&mut bits, &starts);
    let counts: Vec<i64> = buckets.iter().map(|b| b.count as i64).collect();
    columns::put_ints(&mut bits, &counts);
    for field in [
        (|b: &Bucket| b.min) as fn(&Bucket) -> f64,
        |b| b.max,
        |b| b.sum,
    ] {
        let values: Vec<f64> = buckets.iter().map(field).collect();
        columns::put_values(&mut bits, &values);
    }
    let bits = bits.into_bytes();
    let mut out = Vec::with_capacity(bits.len() + 4);
    out.push(ROLLUP_FORMAT_COLUMNS);
    gorilla::put_uvarint(&mut out, buckets.len() as u64);
    out.extend_from_slice(&bits);
    out
}

pub fn decode_rollup_blob(blob: &[u8]) -> Result<Vec<Bucket>, CorruptChunk> {
    let (&format, rest) = blob.split_first().ok_or(CorruptChunk("empty rollup"))?;
    if format == ROLLUP_FORMAT_COLUMNS {
        let mut reader = VarintReader::new(rest);
        let length = columns_count(&mut reader)?;
        let mut bits = BitReader::new(reader.rest());
        let starts = columns::get_timestamps(&mut bits, length)?;
        let counts = columns::get_ints(&mut bits, length)?;
        let min = columns::get_values(&mut bits, length)?;
        let max = columns::get_values(&mut bits, length)?;
        let sum = columns::get_values(&mut bits, length)?;
        return Ok((0..length)
            .map(|index| Bucket {
                start_ms: starts[index],
                min: min[index],
                max: max[index],
                sum: sum[index],
                count: counts[index] as u64,
            })
            .collect());
    }
    if format != ROLLUP_FORMAT {
        return Err(CorruptChunk("unknown rollup format"));
    }
    let mut reader = VarintReader::new(rest);
    let length = reader.uvarint()?;
    if length > rest.len() as u64 {
        return Err(CorruptChunk("rollup count exceeds its length"));
    }
    let counts: Vec<u64> = (0..length)
        .map(|_| reader.uvarint())
        .collect::<Result<_, _>>()?;
    let mut fields = Vec::with_capacity(3);
    for _ in 0..3 {
        let bits_length = reader.uvarint()?;
        let bits = reader.bytes(
            usize::try_from(bits_length).map_err(|_| CorruptChunk("rollup field too long"))?,
        )?;
        fields.push(gorilla::decode(bits, length as u32)?);
    }
    Ok((0..length as usize)
        .map(|index| Bucket {
            start_ms: fields[0][index].0,
            min: fields[0][index].1,
            max: fields[1][index].1,
            sum: fields[2][index].1,
            count: counts[index],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_chunk_blob_round_trips_and_refuses_other_formats() {
        let mut encoder = ChunkEncoder::default();
        encoder.push(10, 1.5);
        encoder.push(20, 2.5);
        let blob = chunk_blob(2, encoder.bytes());
        assert_eq!(
            decode_chunk_blob(&blob).unwrap(),
            vec![(10, 1.5), (20, 2.5)]
        );
        let mut other = blob.clone();
        other[0] = 9;
        assert!(decode_chunk_blob(&other).is_err());
        assert!(decode_chunk_blob(&blob[..blob.len() - 3]).is_err());
        assert!(decode_chunk_blob(&[]).is_err());
    }

    #[test]
    fn format_1_and_2_chunk_blobs_decode_to_the_same_points() {
        let points: Vec<(i64, f64)> = (0..360)
            .map(|i| {
                (
                    1_764_000_000_000 + i * 10_000 + (i * 7) % 15,
                    f64::from((i as f32 * 1.7).sin() * 50.0 + 50.0),
                )
            })
            .chain([(5, f64::NAN), (5, -0.0), (1, f64::NEG_INFINITY)])
            .collect();
        let mut encoder = ChunkEncoder::default();
        for &(t, v) in &points {
            encoder.push(t, v);
        }
        let v1 = chunk_blob(encoder.count(), encoder.bytes());
        let v2 = chunk_blob_columns(&points);
        let bits = |points: Vec<(i64, f64)>| -> Vec<(i64, u64)> {
            points.into_iter().map(|(t, v)| (t, v.to_bits())).collect()
        };
        assert_eq!(bits(decode_chunk_blob(&v1).unwrap()), bits(points.clone()));
        assert_eq!(bits(decode_chunk_blob(&v2).unwrap()), bits(points));
        assert!(v2.len() < v1.len(), "{} vs {} bytes", v2.len(), v1.len());
        assert_eq!(blob_format(&v1), Some(1));
        assert!(is_columns_format(blob_format(&v2)));
        assert!(decode_chunk_blob(&v2[..v2.len() / 2]).is_err());
        let mut huge = vec![2];
        gorilla::put_uvarint(&mut huge, MAX_BLOB_POINTS + 1);
        assert!(decode_chunk_blob(&huge).is_err());
    }

    #[test]
    fn rollups_merge_partial_buckets() {
        let mut buckets = BTreeMap::new();
        add_points(&mut buckets, &[(0, 1.0), (299_999, 3.0)], ROLLUP_BUCKET_MS);
        add_points(&mut buckets, &[(300_000, 10.0), (1, 2.0)], ROLLUP_BUCKET_MS);
        let all: Vec<Bucket> = buckets.into_values().collect();
        assert_eq!(
            all,
            vec![
                Bucket {
                    start_ms: 0,
                    min: 1.0,
                    max: 3.0,
                    sum: 6.0,
                    count: 3
                },
                Bucket {
                    start_ms: 300_000,
                    min: 10.0,
                    max: 10.0,
                    sum: 10.0,
                    count: 1
                },
            ]
        );
        assert_eq!(decode_rollup_blob(&rollup_blob(&all)).unwrap(), all);
        assert_eq!(decode_rollup_blob(&rollup_blob_columns(&all)).unwrap(), all);
        assert_eq!(bucket_start(-1, 300_000), -300_000);
        assert_eq!(bucket_start(i64::MIN, 300_000), i64::MIN, "saturates");
    }

    proptest! {
        #[test]
        fn log_records_round_trip(samples in proptest::collection::vec((0i64..1 << 40, any::<i64>(), any::<u64>()), 0..100)) {
            let samples: Vec<LoggedSample> = samples.into_iter().map(|(series_id, timestamp_ms, value)| LoggedSample {
                series_id, timestamp_ms, value: f64::from_bits(value),
            }).collect();
            let decoded = decode_log_record(&encode_log_record(&samples)).unwrap();
            prop_assert_eq!(decoded.len(), samples.len());
            for (a, b) in decoded.iter().zip(&samples) {
                prop_assert_eq!((a.series_id, a.timestamp_ms, a.value.to_bits()), (b.series_id, b.timestamp_ms, b.value.to_bits()));
            }
        }

        #[test]
        fn corrupt_log_records_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_log_record(&bytes);
            let _ = decode_chunk_blob(&bytes);
            let _ = decode_rollup_blob(&bytes);
        }
    }
}
