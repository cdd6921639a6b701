//! Format 2 of stored points: the columns of a finished chunk (timestamps,
//! values) or rollup, each encoded in two passes with parameters chosen for
//! the data at hand. A written chunk never grows again, so unlike the head's
//! Gorilla stream (`gorilla.rs`) nothing here needs to be appendable.
//!
//! - **Timestamps**: a nominal interval `I` and a phase, then per point
//!   `t = t0 + phase + k·I + offset`: the grid step `k − k_prev − 1` (0 when
//!   no point is missing) and the offset (the jitter: 0–14 ms takes 4 bits)
//!   are integer columns. Plain deltas when those are shorter (irregular
//!   series, wild clocks).
//! - **Values**: the cheapest of three exact integer views, differenced:
//!   decimal mantissas at one exponent (`m / 10^e` bit for bit: load 0.52,
//!   counters), the order-preserving integer of an f32 (values that are
//!   exactly an f32, like sysinfo's CPU percentages), or of the f64 bits
//!   (anything). Values outside the view (a NaN among decimals) are
//!   exceptions stored raw; they leave the view's running value unchanged.
//! - **Integer columns**: optionally zero runs (Rice-coded lengths: a
//!   constant series costs a few bits per chunk), then each value minus a
//!   floor in `k` bits, the all-ones code escaping to a full varint. The
//!   floor, `k` and the run parameter minimise the column's size.
//!
//! Owns only bits: knows nothing of SQLite or series. Must round-trip every
//! input bit for bit (NaN payloads, -0.0, timestamps out of order), and a
//! corrupt input must be an error, never a panic or an unbounded allocation.

use super::gorilla::{
    BitReader, BitWriter, CorruptChunk, MAX_DECIMALS, POWERS_OF_TEN, mantissa_at, shortest_decimal,
    unzigzag, zigzag,
};

/// A zero-run length whose Rice quotient reaches this is written in full.
const MAX_RICE_QUOTIENT: u64 = 32;
/// Largest Rice parameter tried (keeps `quotient << parameter` in range).
const MAX_RICE_PARAMETER: u32 = 31;

fn bitvar_len(value: u64) -> u64 {
    7 + u64::from(64 - value.leading_zeros())
}

/// A length-prefixed number: 7 bits of width, then that many bits.
fn put_bitvar(bits: &mut BitWriter, value: u64) {
    let width = 64 - value.leading_zeros();
    bits.write(u64::from(width), 7);
    bits.write(value, width);
}

fn get_bitvar(reader: &mut BitReader<'_>) -> Result<u64, CorruptChunk> {
    let width = reader.read(7)? as u32;
    if width > 64 {
        return Err(CorruptChunk("number wider than 64 bits"));
    }
    reader.read(width)
}

/// How a column of integers is packed: `value − floor` in `width` bits.
#[derive(Debug, Clone, Copy)]
struct Packing {
    floor: i64,
    width: u32,
    /// Bits the values take packed this way.
    cost: u64,
}

/// The floor and width that pack `values` smallest. Width 0: every value is
/// the floor; 64: no escapes; otherwise the all-ones code escapes.
fn best_packing(values: &[i64]) -> Packing {
    let Some(&min) = values.iter().min() else {
        return Packing {
            floor: 0,
            width: 0,
            cost: 0,
        };
    };
    let mut floors = vec![min];
    if values.len() >= 100 {
        // A rare outlier below the bulk (a counter reset) is cheaper as an
        // escape than as a wider width for every value.
        let mut sorted = values.to_vec();
        let (_, &mut low, _) = sorted.select_nth_unstable(values.len() / 100);
        if low != min {
            floors.push(low);
        }
    }
    let n = values.len() as u64;
    let mut best = Packing {
        floor: min,
        width: 64,
        cost: 64 * n,
    };
    for floor in floors {
        // Per bit length of `value − floor`: how many, the escape bits they
        // would take, and the same for those that are all ones (the escape
        // code itself at that width).
        let mut count = [0u64; 65];
        let mut escape = [0u64; 65];
        let mut ones_escape = [0u64; 65];
        for &value in values {
            let offset = value.wrapping_sub(floor) as u64;
            let length = (64 - offset.leading_zeros()) as usize;
            let cost = bitvar_len(zigzag(value));
            count[length] += 1;
            escape[length] += cost;
            if length > 0 && length < 64 && offset == (1u64 << length) - 1 {
                ones_escape[length] += cost;
            }
        }
        if count[0] == n {
            return Packing {
                floor,
                width: 0,
                cost: 0,
            };
        }
        // escape bits of every value longer than the width, from the top.
        let mut longer = 0u64;
        let mut costs = [0u64; 64];
        for width in (1..64).rev() {
            longer += escape[width + 1];
            costs[width] = n * width as u64 + longer + ones_escape[width];
        }
        for (width, &cost) in costs.iter().enumerate().skip(1) {
            if cost < best.cost {
                best = Packing {
                    floor,
                    width: width as u32,
                    cost,
                };
            }
        }
    }
    best
}

fn put_packed(bits: &mut BitWriter, value: i64, packing: Packing) {
    let width = packing.width;
    if width == 0 {
        return;
    }
    let offset = value.wrapping_sub(packing.floor) as u64;
    if width == 64 {
        bits.write(offset, 64);
        return;
    }
    let escape = (1u64 << width) - 1;
    if offset < escape {
        bits.write(offset, width);
    } else {
        bits.write(escape, width);
        put_bitvar(bits, zigzag(value));
    }
}

fn get_packed(reader: &mut BitReader<'_>, floor: i64, width: u32) -> Result<i64, CorruptChunk> {
    if width == 0 {
        return Ok(floor);
    }
    let offset = reader.read(width)?;
    if width == 64 || offset < (1u64 << width) - 1 {
        Ok(floor.wrapping_add(offset as i64))
    } else {
        Ok(unzigzag(get_bitvar(reader)?))
    }
}

/// Lengths of the zero runs before each non-zero value, then of the
/// trailing zeros if there are any.
fn zero_runs(values: &[i64]) -> Vec<u64> {
    let mut runs = Vec::new();
    let mut run = 0u64;
    for &value in values {
        if value == 0 {
            run += 1;
        } else {
            runs.push(run);
            run = 0;
        }
    }
    if run > 0 {
        runs.push(run);
    }
    runs
}

fn rice_cost(run: u64, parameter: u32) -> u64 {
    let quotient = run >> parameter;
    if quotient < MAX_RICE_QUOTIENT {
        quotient + 1 + u64::from(parameter)
    } else {
        MAX_RICE_QUOTIENT + bitvar_len(run)
    }
}

fn put_rice(bits: &mut BitWriter, run: u64, parameter: u32) {
    let quotient = run >> parameter;
    if quotient < MAX_RICE_QUOTIENT {
        bits.write((1u64 << quotient) - 1, quotient as u32);
        bits.write(0, 1);
        bits.write(run, parameter);
    } else {
        bits.write((1u64 << MAX_RICE_QUOTIENT) - 1, MAX_RICE_QUOTIENT as u32);
        put_bitvar(bits, run);
    }
}

fn get_rice(reader: &mut BitReader<'_>, parameter: u32) -> Result<u64, CorruptChunk> {
    let mut quotient = 0u64;
    while quotient < MAX_RICE_QUOTIENT && reader.bit()? {
        quotient += 1;
    }
    if quotient == MAX_RICE_QUOTIENT {
        return get_bitvar(reader);
    }
    Ok((quotient << parameter) | reader.read(parameter)?)
}

/// Values per block of an integer column: each block picks its own packing,
/// so a day-long column follows its data (an f32 walk's steps are wider
/// where its exponent is) for ~30 bits of header per block.
const BLOCK: usize = 512;

/// Writes a column of integers (the reader is told how many), in blocks of
/// [`BLOCK`].
pub(super) fn put_ints(bits: &mut BitWriter, values: &[i64]) {
    if values.is_empty() {
        put_block(bits, values);
    }
    for block in values.chunks(BLOCK) {
        put_block(bits, block);
    }
}

/// Reads `count` integers written by [`put_ints`].
pub(super) fn get_ints(reader: &mut BitReader<'_>, count: usize) -> Result<Vec<i64>, CorruptChunk> {
    if count == 0 {
        return get_block(reader, 0);
    }
    let mut values = Vec::with_capacity(count.min(1 << 16));
    while values.len() < count {
        values.extend(get_block(reader, (count - values.len()).min(BLOCK))?);
    }
    Ok(values)
}

fn put_block(bits: &mut BitWriter, values: &[i64]) {
    let plain = best_packing(values);
    let runs = zero_runs(values);
    let non_zero: Vec<i64> = values.iter().copied().filter(|&v| v != 0).collect();
    let sparse = best_packing(&non_zero);
    let (parameter, runs_cost) = (0..=MAX_RICE_PARAMETER)
        .map(|parameter| {
            let cost: u64 = runs.iter().map(|&run| rice_cost(run, parameter)).sum();
            (parameter, cost)
        })
        .min_by_key(|&(_, cost)| cost)
        .unwrap_or((0, 0));
    if runs_cost + sparse.cost + 5 < plain.cost {
        bits.write(1, 1);
        bits.write(u64::from(parameter), 5);
        put_bitvar(bits, zigzag(sparse.floor));
        bits.write(u64::from(sparse.width), 7);
        let mut run = 0u64;
        for &value in values {
            if value == 0 {
                run += 1;
            } else {
                put_rice(bits, run, parameter);
                put_packed(bits, value, sparse);
                run = 0;
            }
        }
        if run > 0 {
            put_rice(bits, run, parameter);
        }
    } else {
        bits.write(0, 1);
        put_bitvar(bits, zigzag(plain.floor));
        bits.write(u64::from(plain.width), 7);
        for &value in values {
            put_packed(bits, value, plain);
        }
    }
}

fn get_block(reader: &mut BitReader<'_>, count: usize) -> Result<Vec<i64>, CorruptChunk> {
    let runs = reader.bit()?;
    let parameter = if runs { reader.read(5)? as u32 } else { 0 };
    let floor = unzigzag(get_bitvar(reader)?);
    let width = reader.read(7)? as u32;
    if width > 64 {
        return Err(CorruptChunk("packing wider than 64 bits"));
    }
    let mut values = Vec::with_capacity(count.min(1 << 16));
    if !runs {
        for _ in 0..count {
            values.push(get_packed(reader, floor, width)?);
        }
        return Ok(values);
    }
    while values.len() < count {
        let run = get_rice(reader, parameter)?;
        if run > (count - values.len()) as u64 {
            return Err(CorruptChunk("zero run past the column's end"));
        }
        values.resize(values.len() + run as usize, 0);
        if values.len() < count {
            values.push(get_packed(reader, floor, width)?);
        }
    }
    Ok(values)
}

/// The nominal intervals worth trying: the median gap, and the span
/// divided by its number of median gaps (the median of jittered gaps can be
/// a millisecond off, which would make every offset drift).
fn interval_candidates(timestamps: &[i64]) -> Vec<i64> {
    let mut gaps: Vec<i64> = timestamps
        .windows(2)
        .map(|pair| pair[1].wrapping_sub(pair[0]))
        .collect();
    let middle = gaps.len() / 2;
    let median = *gaps.select_nth_unstable(middle).1;
    if median <= 0 {
        return Vec::new();
    }
    let mut candidates = vec![median];
    let span = i128::from(timestamps[timestamps.len() - 1]) - i128::from(timestamps[0]);
    let steps = (span + i128::from(median) / 2).div_euclid(i128::from(median));
    if steps > 0 {
        let interval = (span + steps / 2).div_euclid(steps);
        if let Ok(interval) = i64::try_from(interval)
            && interval > 0
            && interval != median
        {
            candidates.push(interval);
        }
    }
    candidates.retain(|&interval| interval < 1 << 62);
    candidates
}

/// `[1][interval][phase][grid steps][offsets]`, if every part fits an i64.
fn grid_column(timestamps: &[i64], interval: i64) -> Option<BitWriter> {
    let first = i128::from(timestamps[0]);
    let width = i128::from(interval);
    let half = width / 2;
    let mut grid = Vec::with_capacity(timestamps.len());
    for &timestamp in timestamps {
        let distance = i128::from(timestamp) - first;
        let step = (distance + half).div_euclid(width);
        grid.push((step, distance - step * width));
    }
    let phase = grid.iter().map(|&(_, rest)| rest).min()?;
    let mut steps = Vec::with_capacity(timestamps.len());
    let mut offsets = Vec::with_capacity(timestamps.len());
    for pair in grid.windows(2) {
        steps.push(i64::try_from(pair[1].0 - pair[0].0 - 1).ok()?);
        offsets.push(i64::try_from(pair[1].1 - phase).ok()?);
    }
    let mut bits = BitWriter::default();
    bits.write(1, 1);
    put_bitvar(&mut bits, interval as u64);
    put_bitvar(&mut bits, zigzag(i64::try_from(phase).ok()?));
    put_ints(&mut bits, &steps);
    put_ints(&mut bits, &offsets);
    Some(bits)
}

/// Writes a timestamp column (the reader is told how many).
pub(super) fn put_timestamps(bits: &mut BitWriter, timestamps: &[i64]) {
    let Some(&first) = timestamps.first() else {
        return;
    };
    put_bitvar(bits, zigzag(first));
    if timestamps.len() == 1 {
        return;
    }
    let mut best = BitWriter::default();
    best.write(0, 1);
    let deltas: Vec<i64> = timestamps
        .windows(2)
        .map(|pair| pair[1].wrapping_sub(pair[0]))
        .collect();
    put_ints(&mut best, &deltas);
    for interval in interval_candidates(timestamps) {
        if let Some(grid) = grid_column(timestamps, interval)
            && grid.len_bits() < best.len_bits()
        {
            best = grid;
        }
    }
    bits.append(&best);
}

/// Reads `count` timestamps written by [`put_timestamps`].
pub(super) fn get_timestamps(
    reader: &mut BitReader<'_>,
    count: usize,
) -> Result<Vec<i64>, CorruptChunk> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let first = unzigzag(get_bitvar(reader)?);
    let mut timestamps = Vec::with_capacity(count.min(1 << 16));
    timestamps.push(first);
    if count == 1 {
        return Ok(timestamps);
    }
    if !reader.bit()? {
        let mut timestamp = first;
        for delta in get_ints(reader, count - 1)? {
            timestamp = timestamp.wrapping_add(delta);
            timestamps.push(timestamp);
        }
        return Ok(timestamps);
    }
    // The encoder checked that the true values fit; wrapping arithmetic
    // gives them back exactly (and garbage, not a panic, when corrupt).
    let interval = get_bitvar(reader)? as i64;
    let phase = unzigzag(get_bitvar(reader)?);
    let steps = get_ints(reader, count - 1)?;
    let offsets = get_ints(reader, count - 1)?;
    let mut step = 0i64;
    for (grid_step, offset) in steps.into_iter().zip(offsets) {
        step = step.wrapping_add(1).wrapping_add(grid_step);
        timestamps.push(
            first
                .wrapping_add(phase)
                .wrapping_add(step.wrapping_mul(interval))
                .wrapping_add(offset),
        );
    }
    Ok(timestamps)
}

/// An integer whose order is the order of the floats it stands for, so
/// neighbouring values are close integers.
fn ordered64(bits: u64) -> i64 {
    if bits >> 63 == 1 {
        (bits ^ (u64::MAX >> 1)) as i64
    } else {
        bits as i64
    }
}

fn unordered64(ordered: i64) -> u64 {
    if ordered < 0 {
        ordered as u64 ^ (u64::MAX >> 1)
    } else {
        ordered as u64
    }
}

fn ordered32(bits: u32) -> i64 {
    i64::from(if bits >> 31 == 1 {
        (bits ^ (u32::MAX >> 1)) as i32
    } else {
        bits as i32
    })
}

fn unordered32(ordered: i64) -> Option<u32> {
    let ordered = i32::try_from(ordered).ok()?;
    Some(if ordered < 0 {
        ordered as u32 ^ (u32::MAX >> 1)
    } else {
        ordered as u32
    })
}

/// The exact integer views of a value column.
#[derive(Debug, Clone, Copy, PartialEq)]
enum View {
    Float64,
    Float32,
    Decimal(usize),
}

impl View {
    fn code(self) -> u64 {
        match self {
            View::Float64 => 0,
            View::Float32 => 1,
            View::Decimal(_) => 2,
        }
    }

    fn of(self, value: f64) -> Option<i64> {
        match self {
            View::Float64 => Some(ordered64(value.to_bits())),
            View::Float32 => {
                let narrow = value as f32;
                (f64::from(narrow).to_bits() == value.to_bits())
                    .then(|| ordered32(narrow.to_bits()))
            }
            View::Decimal(decimals) => mantissa_at(value, decimals),
        }
    }

    fn value(self, view: i64) -> Result<f64, CorruptChunk> {
        Ok(match self {
            View::Float64 => f64::from_bits(unordered64(view)),
            View::Float32 => f64::from(f32::from_bits(
                unordered32(view).ok_or(CorruptChunk("f32 view out of range"))?,
            )),
            View::Decimal(decimals) => view as f64 / POWERS_OF_TEN[decimals],
        })
    }
}

/// `[view][exceptions][differences]` of `values` seen through `view`.
fn view_column(values: &[f64], view: View) -> BitWriter {
    let mut bits = BitWriter::default();
    bits.write(view.code(), 2);
    if let View::Decimal(decimals) = view {
        bits.write(decimals as u64, 4);
    }
    let mut differences = Vec::with_capacity(values.len());
    let mut exceptions = Vec::new();
    let mut previous = 0i64;
    for (index, &value) in values.iter().enumerate() {
        match view.of(value) {
            Some(current) => {
                differences.push(current.wrapping_sub(previous));
                previous = current;
            }
            None => {
                differences.push(0);
                exceptions.push((index, value.to_bits()));
            }
        }
    }
    put_bitvar(&mut bits, exceptions.len() as u64);
    let mut last = 0;
    for (index, raw) in exceptions {
        put_bitvar(&mut bits, (index - last) as u64);
        bits.write(raw, 64);
        last = index;
    }
    put_ints(&mut bits, &differences);
    bits
}

/// Writes a value column (the reader is told how many).
pub(super) fn put_values(bits: &mut BitWriter, values: &[f64]) {
    let mut views = vec![View::Float64];
    let fits = |view: View| values.iter().filter(|&&v| view.of(v).is_some()).count();
    if fits(View::Float32) * 2 >= values.len() {
        views.push(View::Float32);
    }
    // Decimals: the exponent every decimal value needs, and the one 95% do.
    let mut by_decimals = [0usize; MAX_DECIMALS + 1];
    for &value in values {
        if let Some((decimals, _)) = shortest_decimal(value) {
            by_decimals[decimals] += 1;
        }
    }
    let decimal_values: usize = by_decimals.iter().sum();
    if decimal_values * 2 >= values.len() {
        let most = by_decimals
            .iter()
            .rposition(|&count| count > 0)
            .unwrap_or(0);
        views.push(View::Decimal(most));
        let mut covered = 0;
        for (decimals, &count) in by_decimals.iter().enumerate() {
            covered += count;
            if covered * 20 >= decimal_values * 19 {
                if decimals != most {
                    views.push(View::Decimal(decimals));
                }
                break;
            }
        }
    }
    let best = views
        .into_iter()
        .map(|view| view_column(values, view))
        .min_by_key(BitWriter::len_bits);
    if let Some(best) = best {
        bits.append(&best);
    }
}

/// Reads `count` values written by [`put_values`].
pub(super) fn get_values(
    reader: &mut BitReader<'_>,
    count: usize,
) -> Result<Vec<f64>, CorruptChunk> {
    let view = match reader.read(2)? {
        0 => View::Float64,
        1 => View::Float32,
        2 => {
            let decimals = reader.read(4)? as usize;
            if decimals > MAX_DECIMALS {
                return Err(CorruptChunk("too many decimals"));
            }
            View::Decimal(decimals)
        }
        _ => return Err(CorruptChunk("unknown value view")),
    };
    let exception_count = get_bitvar(reader)?;
    if exception_count > count as u64 {
        return Err(CorruptChunk("more exceptions than values"));
    }
    let mut exceptions = Vec::with_capacity(exception_count as usize);
    let mut index = 0u64;
    for _ in 0..exception_count {
        index = index.saturating_add(get_bitvar(reader)?);
        if index >= count as u64 {
            return Err(CorruptChunk("exception past the column's end"));
        }
        exceptions.push((index as usize, reader.read(64)?));
    }
    let differences = get_ints(reader, count)?;
    let mut exceptions = exceptions.into_iter().peekable();
    let mut values = Vec::with_capacity(count);
    let mut current = 0i64;
    for (index, difference) in differences.into_iter().enumerate() {
        if let Some(&(_, raw)) = exceptions.peek().filter(|&&(at, _)| at == index) {
            exceptions.next();
            values.push(f64::from_bits(raw));
            continue;
        }
        current = current.wrapping_add(difference);
        values.push(view.value(current)?);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ints_round_trip(values: &[i64]) -> usize {
        let mut bits = BitWriter::default();
        put_ints(&mut bits, values);
        let size = bits.len_bits();
        let bytes = bits.into_bytes();
        let mut reader = BitReader::new(&bytes);
        assert_eq!(get_ints(&mut reader, values.len()).unwrap(), values);
        size
    }

    fn points_round_trip(timestamps: &[i64], values: &[f64]) -> usize {
        let mut bits = BitWriter::default();
        put_timestamps(&mut bits, timestamps);
        put_values(&mut bits, values);
        let size = bits.len_bits();
        let bytes = bits.into_bytes();
        let mut reader = BitReader::new(&bytes);
        assert_eq!(
            get_timestamps(&mut reader, timestamps.len()).unwrap(),
            timestamps
        );
        let decoded: Vec<u64> = get_values(&mut reader, values.len())
            .unwrap()
            .into_iter()
            .map(f64::to_bits)
            .collect();
        let expected: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(decoded, expected);
        size
    }

    #[test]
    fn integer_columns_pick_cheap_packings() {
        assert_eq!(ints_round_trip(&[]), 1 + 7 + 7);
        // A few bits per block of 512.
        assert!(ints_round_trip(&[0; 8640]) < 17 * 40, "a constant column");
        assert!(ints_round_trip(&[7; 8640]) < 17 * 40, "all the floor");
        let jitter: Vec<i64> = (0..1000).map(|i| (i * 7) % 15).collect();
        assert!(ints_round_trip(&jitter) <= 4 * 1000 + 60, "0..14 in 4 bits");
        let mut with_outlier = jitter.clone();
        with_outlier[500] = -1_000_000_000;
        with_outlier[501] = i64::MAX;
        assert!(ints_round_trip(&with_outlier) <= 4 * 1000 + 250);
        ints_round_trip(&[i64::MIN, i64::MAX, 0, -1, 1, i64::MIN]);
    }

    #[test]
    fn jittered_timestamps_take_four_bits_and_odd_ones_round_trip() {
        let start = 1_764_000_000_000i64;
        let jittered: Vec<i64> = (0..360)
            .map(|i| start + i * 10_000 + (i * 7) % 15)
            .collect();
        let mut bits = BitWriter::default();
        put_timestamps(&mut bits, &jittered);
        assert!(bits.len_bits() <= 4 * 360 + 120, "{}", bits.len_bits());
        for timestamps in [
            vec![],
            vec![5],
            vec![i64::MIN, i64::MAX, 0, i64::MIN],
            vec![10, 10, 10, 9, 11, 10_000, -3],
            // A gap of three missing points, then the same grid again.
            vec![0, 10_001, 20_003, 60_002, 70_000, 80_014],
        ] {
            points_round_trip(&timestamps, &vec![1.0; timestamps.len()]);
        }
    }

    #[test]
    fn value_views_round_trip_odd_values() {
        let odd = [
            f64::NAN,
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::from_bits(0x7ff8_dead_beef_0001),
            f64::from_bits(0xfff0_0000_0000_0001),
            1e300,
            0.1,
            0.30000000000000004,
            12.5,
            f64::from(0.1f32),
            f64::from(f32::NAN),
            9_007_199_254_740_993.0,
        ];
        points_round_trip(&(0..odd.len() as i64).collect::<Vec<_>>(), &odd);
        // Mostly decimals with exceptions; mostly f32 with exceptions.
        let mut decimals: Vec<f64> = (0..200).map(|i| f64::from(i % 17) / 100.0).collect();
        decimals[3] = f64::NAN;
        decimals[150] = -0.0;
        points_round_trip(&(0..200).collect::<Vec<_>>(), &decimals);
        let mut floats: Vec<f64> = (0..200).map(|i| f64::from(i as f32 / 7.0)).collect();
        floats[10] = 0.1;
        floats[11] = f64::NAN;
        points_round_trip(&(0..200).collect::<Vec<_>>(), &floats);
    }

    #[test]
    fn f32_values_are_differenced_as_f32() {
        let mut value = 50.0f32;
        let values: Vec<f64> = (0..360)
            .map(|i| {
                value += ((i * 7919) % 400) as f32 / 100.0 - 2.0;
                f64::from(value)
            })
            .collect();
        let timestamps: Vec<i64> = (0..360).map(|i| i * 10_000).collect();
        let size = points_round_trip(&timestamps, &values);
        assert!(size < 24 * 360, "{size} bits for 360 f32 values");
    }

    proptest! {
        #[test]
        fn any_columns_round_trip(points in proptest::collection::vec((any::<i64>(), any::<u64>()), 0..200)) {
            let timestamps: Vec<i64> = points.iter().map(|p| p.0).collect();
            let values: Vec<f64> = points.iter().map(|p| f64::from_bits(p.1)).collect();
            points_round_trip(&timestamps, &values);
        }

        #[test]
        fn jittered_and_gappy_columns_round_trip(
            start in any::<i64>(),
            steps in proptest::collection::vec((0i64..4, 0i64..15, 0u32..3, -50i64..50), 1..400),
        ) {
            let mut grid = 0i64;
            let mut mantissa = 0i64;
            let mut timestamps = Vec::new();
            let mut values = Vec::new();
            for (skip, jitter, kind, change) in steps {
                grid += 1 + if skip == 3 { 5 } else { 0 };
                timestamps.push(start.wrapping_add(grid * 10_000 + jitter));
                mantissa += change;
                values.push(match kind {
                    0 => mantissa as f64 / 100.0,
                    1 => f64::from(mantissa as f32 / 3.0),
                    _ => mantissa as f64 / 3.0,
                });
            }
            points_round_trip(&timestamps, &values);
        }

        #[test]
        fn corrupt_columns_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), count in 0usize..5000) {
            let mut reader = BitReader::new(&bytes);
            let _ = get_timestamps(&mut reader, count);
            let _ = get_values(&mut reader, count);
        }
    }
}
