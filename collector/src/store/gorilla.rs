//! The bit-level codec of a chunk: Gorilla-style (Facebook, VLDB 2015)
//! delta-of-delta timestamps and XOR-ed float values, plus the LEB128
//! varints the log records and rollups use.
//!
//! One departure from Gorilla, because monitoring values are mostly short
//! decimals (load 0.52, 71.25 %, byte counters) whose binary mantissas XOR
//! badly: a value that is `m / 10^e` exactly (bit for bit) at the exponent
//! `e` of the previous value is written as the difference of the integers
//! `m`, in 8–70 bits; anything else falls back to Gorilla's XOR. Both sides
//! derive `e` from decoded values alone, so no exponent is ever stored.
//!
//! Owns only bytes: it knows nothing of SQLite, series or time windows. It
//! must round-trip every `(i64, f64)` sequence bit for bit (NaN payloads,
//! -0.0, timestamps out of order), because what it drops is lost data.

/// Appends bits most significant first.
#[derive(Debug, Clone, Default)]
pub(super) struct BitWriter {
    bytes: Vec<u8>,
    /// Unused low bits of the last byte (0: the next bit starts a new byte).
    free: u32,
}

/// Bytes an open chunk's buffer grows by at least: a 360-point chunk is
/// ~1 KiB, and the head holds one per series, so `Vec`'s doubling (up to
/// half of it unused) would cost more than the points at 500k series.
const GROW_BYTES: usize = 32;

impl BitWriter {
    /// Room for one more byte, growing by an eighth (at least
    /// [`GROW_BYTES`]) rather than doubling: at most ~12% slack, and a
    /// reallocation every ~10 points of a typical series.
    fn grow(&mut self) {
        if self.bytes.len() == self.bytes.capacity() {
            self.bytes
                .reserve_exact(GROW_BYTES.max(self.bytes.len() / 8));
        }
    }

    /// Writes the low `n` bits of `value` (`n` ≤ 64).
    pub(super) fn write(&mut self, value: u64, n: u32) {
        let mut remaining = n;
        while remaining > 0 {
            if self.free == 0 {
                self.grow();
                self.bytes.push(0);
                self.free = 8;
            }
            let take = remaining.min(self.free);
            let shift = remaining - take;
            let bits = ((value >> shift) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= bits << (self.free - take);
            self.free -= take;
            remaining -= take;
        }
    }

    /// Bits written so far.
    pub(super) fn len_bits(&self) -> usize {
        self.bytes.len() * 8 - self.free as usize
    }

    /// Appends every bit `other` holds.
    pub(super) fn append(&mut self, other: &BitWriter) {
        let Some((&last, full)) = other.bytes.split_last() else {
            return;
        };
        for &byte in full {
            self.write(u64::from(byte), 8);
        }
        let used = 8 - other.free;
        self.write(u64::from(last >> other.free), used);
    }

    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

pub(super) struct BitReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    pub(super) fn read(&mut self, n: u32) -> Result<u64, CorruptChunk> {
        if self.position + n as usize > self.bytes.len() * 8 {
            return Err(CorruptChunk("ends early"));
        }
        let mut out = 0u64;
        let mut remaining = n;
        while remaining > 0 {
            let byte = self.bytes[self.position / 8];
            let available = 8 - (self.position % 8) as u32;
            let take = remaining.min(available);
            let bits = (byte >> (available - take)) & (((1u16 << take) - 1) as u8);
            out = (out << take) | u64::from(bits);
            self.position += take as usize;
            remaining -= take;
        }
        Ok(out)
    }

    pub(super) fn bit(&mut self) -> Result<bool, CorruptChunk> {
        self.read(1).map(|bit| bit == 1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt chunk: {0}")]
pub struct CorruptChunk(pub &'static str);

pub(super) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

pub(super) fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Prefix and payload width of each delta-of-delta class (zigzag-encoded),
/// after a 1 bit (a 0 bit alone: delta unchanged). Ones count the class.
const DOD_CLASSES: [(u64, u32, u32); 5] = [
    (0b0, 1, 4),
    (0b10, 2, 7),
    (0b110, 3, 12),
    (0b1110, 4, 32),
    (0b1111, 4, 64),
];

/// The same for the change of a decimal mantissa (zigzag-encoded).
const MANTISSA_CLASSES: [(u64, u32, u32); 5] = [
    (0b0, 1, 5),
    (0b10, 2, 12),
    (0b110, 3, 20),
    (0b1110, 4, 32),
    (0b1111, 4, 64),
];

/// Most decimal digits tried; 10^k is exact in an f64 up to k = 22.
pub(super) const MAX_DECIMALS: usize = 12;

pub(super) const POWERS_OF_TEN: [f64; MAX_DECIMALS + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
];

/// `m` with `m / 10^decimals == value` bit for bit, if there is one below 2^53.
pub(super) fn mantissa_at(value: f64, decimals: usize) -> Option<i64> {
    let scaled = value * POWERS_OF_TEN[decimals];
    if !scaled.is_finite() || scaled.abs() >= 9_007_199_254_740_992.0 {
        return None;
    }
    let mantissa = scaled.round() as i64;
    ((mantissa as f64 / POWERS_OF_TEN[decimals]).to_bits() == value.to_bits()).then_some(mantissa)
}

/// The fewest decimals that represent `value` exactly, and its mantissa.
pub(super) fn shortest_decimal(value: f64) -> Option<(usize, i64)> {
    (0..=MAX_DECIMALS).find_map(|decimals| Some((decimals, mantissa_at(value, decimals)?)))
}

fn write_class(bits: &mut BitWriter, classes: &[(u64, u32, u32); 5], zigzagged: u64) {
    for (prefix, prefix_bits, width) in classes {
        if *width == 64 || zigzagged < (1u64 << width) {
            bits.write(*prefix, *prefix_bits);
            bits.write(zigzagged, *width);
            return;
        }
    }
}

fn read_class(
    reader: &mut BitReader<'_>,
    classes: &[(u64, u32, u32); 5],
) -> Result<u64, CorruptChunk> {
    let mut class = 0;
    while class < classes.len() - 1 && reader.bit()? {
        class += 1;
    }
    reader.read(classes[class].2)
}

/// An open chunk being appended to: the compact form the head keeps in memory.
#[derive(Debug, Clone, Default)]
pub struct ChunkEncoder {
    bits: BitWriter,
    count: u32,
    previous_ts: i64,
    previous_delta: i64,
    previous_value: u64,
    /// The XOR window of the last value written with one; `None` before the first.
    window: Option<(u32, u32)>,
    /// The previous value as decimals and mantissa, if it is a short decimal.
    decimal: Option<(usize, i64)>,
}

impl ChunkEncoder {
    pub fn push(&mut self, timestamp_ms: i64, value: f64) {
        let bits = value.to_bits();
        if self.count == 0 {
            self.bits.write(timestamp_ms as u64, 64);
            self.bits.write(bits, 64);
            self.decimal = shortest_decimal(value);
        } else {
            let delta = timestamp_ms.wrapping_sub(self.previous_ts);
            let dod = zigzag(delta.wrapping_sub(self.previous_delta));
            self.previous_delta = delta;
            if dod == 0 {
                self.bits.write(0, 1);
            } else {
                self.bits.write(1, 1);
                write_class(&mut self.bits, &DOD_CLASSES, dod);
            }
            self.push_value(value);
        }
        self.previous_ts = timestamp_ms;
        self.previous_value = bits;
        self.count += 1;
    }

    /// `0`: same value; `10` + mantissa change: a decimal at the previous
    /// value's exponent; `11` + Gorilla XOR: anything else.
    fn push_value(&mut self, value: f64) {
        let bits = value.to_bits();
        let xor = bits ^ self.previous_value;
        if xor == 0 {
            self.bits.write(0, 1);
            return;
        }
        if let Some((decimals, previous)) = self.decimal
            && let Some(mantissa) = mantissa_at(value, decimals)
        {
            self.bits.write(0b10, 2);
            write_class(
                &mut self.bits,
                &MANTISSA_CLASSES,
                zigzag(mantissa.wrapping_sub(previous)),
            );
            self.decimal = Some((decimals, mantissa));
            return;
        }
        self.bits.write(0b11, 2);
        let leading = xor.leading_zeros().min(31);
        let trailing = xor.trailing_zeros();
        match self.window {
            Some((window_leading, window_trailing))
                if leading >= window_leading && trailing >= window_trailing =>
            {
                self.bits.write(0, 1);
                self.bits.write(
                    xor >> window_trailing,
                    64 - window_leading - window_trailing,
                );
            }
            _ => {
                let significant = 64 - leading - trailing;
                self.bits.write(1, 1);
                self.bits.write(u64::from(leading), 5);
                self.bits.write(u64::from(significant - 1), 6);
                self.bits.write(xor >> trailing, significant);
                self.window = Some((leading, trailing));
            }
        }
        self.decimal = shortest_decimal(value);
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// The encoded bits so far (read with [`decode`] and [`Self::count`]).
    pub fn bytes(&self) -> &[u8] {
        &self.bits.bytes
    }

    /// Heap bytes held, for memory accounting.
    pub fn capacity(&self) -> usize {
        self.bits.bytes.capacity()
    }

    /// The finished bits, trimmed to their length.
    pub fn finish(self) -> Vec<u8> {
        let mut bytes = self.bits.bytes;
        bytes.shrink_to_fit();
        bytes
    }
}

/// Decodes `count` points from bits written by [`ChunkEncoder`].
pub fn decode(bytes: &[u8], count: u32) -> Result<Vec<(i64, f64)>, CorruptChunk> {
    let mut reader = BitReader { bytes, position: 0 };
    let mut points = Vec::with_capacity(count as usize);
    if count == 0 {
        return Ok(points);
    }
    let mut timestamp = reader.read(64)? as i64;
    let mut value = reader.read(64)?;
    points.push((timestamp, f64::from_bits(value)));
    let mut decimal = shortest_decimal(f64::from_bits(value));
    let mut delta = 0i64;
    let mut window = None;
    for _ in 1..count {
        if reader.bit()? {
            delta = delta.wrapping_add(unzigzag(read_class(&mut reader, &DOD_CLASSES)?));
        }
        timestamp = timestamp.wrapping_add(delta);
        if reader.bit()? {
            if !reader.bit()? {
                let (decimals, previous) =
                    decimal.ok_or(CorruptChunk("decimal change without a decimal"))?;
                let mantissa =
                    previous.wrapping_add(unzigzag(read_class(&mut reader, &MANTISSA_CLASSES)?));
                value = (mantissa as f64 / POWERS_OF_TEN[decimals]).to_bits();
                decimal = Some((decimals, mantissa));
            } else {
                if reader.bit()? {
                    let leading = reader.read(5)? as u32;
                    let significant = reader.read(6)? as u32 + 1;
                    if leading + significant > 64 {
                        return Err(CorruptChunk("XOR window wider than 64 bits"));
                    }
                    window = Some((leading, 64 - leading - significant));
                }
                let (leading, trailing) =
                    window.ok_or(CorruptChunk("XOR window reused before it was set"))?;
                value ^= reader.read(64 - leading - trailing)? << trailing;
                decimal = shortest_decimal(f64::from_bits(value));
            }
        }
        points.push((timestamp, f64::from_bits(value)));
    }
    Ok(points)
}

pub fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn put_varint(out: &mut Vec<u8>, value: i64) {
    put_uvarint(out, zigzag(value));
}

/// A float as a varint of its byte-swapped bits: round numbers (0, 1, 100,
/// 12.5) have zero low mantissa bytes and take 1–3 bytes instead of 8.
pub fn put_float(out: &mut Vec<u8>, value: f64) {
    put_uvarint(out, value.to_bits().swap_bytes());
}

/// Reads LEB128 varints from a byte slice.
#[derive(Debug)]
pub struct VarintReader<'a> {
    bytes: &'a [u8],
}

impl<'a> VarintReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub fn uvarint(&mut self) -> Result<u64, CorruptChunk> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .bytes
                .split_first()
                .ok_or(CorruptChunk("varint ends early"))?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(CorruptChunk("varint longer than 64 bits"))
    }

    pub fn varint(&mut self) -> Result<i64, CorruptChunk> {
        self.uvarint().map(unzigzag)
    }

    pub fn float(&mut self) -> Result<f64, CorruptChunk> {
        self.uvarint().map(|bits| f64::from_bits(bits.swap_bytes()))
    }

    pub fn bytes(&mut self, length: usize) -> Result<&'a [u8], CorruptChunk> {
        if length > self.bytes.len() {
            return Err(CorruptChunk("field ends early"));
        }
        let (taken, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(taken)
    }

    /// The bytes not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.bytes
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
        let mut encoder = ChunkEncoder::default();
        for &(timestamp, value) in points {
            encoder.push(timestamp, value);
        }
        let count = encoder.count();
        decode(&encoder.finish(), count).unwrap()
    }

    fn bits(points: &[(i64, f64)]) -> Vec<(i64, u64)> {
        points.iter().map(|&(t, v)| (t, v.to_bits())).collect()
    }

    #[test]
    fn regular_points_round_trip_and_compress() {
        let points: Vec<(i64, f64)> = (0..720)
            .map(|i| (1_700_000_000_000 + i * 10_000, 0.5 + (i % 7) as f64 * 0.01))
            .collect();
        let mut encoder = ChunkEncoder::default();
        for &(t, v) in &points {
            encoder.push(t, v);
        }
        let size = encoder.bytes().len();
        assert_eq!(bits(&decode(encoder.bytes(), 720).unwrap()), bits(&points));
        assert!(size < 720 * 8, "{size} bytes for 720 points");
    }

    #[test]
    fn short_decimals_take_few_bits() {
        // Load averages in hundredths, moving a little each time.
        let points: Vec<(i64, f64)> = (0..720)
            .map(|i| (i * 10_000, f64::from((50 + (i * 7919) % 11) as u32) / 100.0))
            .collect();
        let mut encoder = ChunkEncoder::default();
        for &(t, v) in &points {
            encoder.push(t, v);
        }
        assert_eq!(bits(&decode(encoder.bytes(), 720).unwrap()), bits(&points));
        let size = encoder.bytes().len();
        assert!(size < 720 * 2, "{size} bytes for 720 points");
        assert_eq!(shortest_decimal(0.52), Some((2, 52)));
        assert_eq!(shortest_decimal(-0.0), None, "-0.0 must stay -0.0");
        assert_eq!(shortest_decimal(f64::NAN), None);
        assert_eq!(shortest_decimal(1e300), None);
    }

    #[test]
    fn odd_values_and_timestamps_round_trip() {
        let points = [
            (i64::MIN, f64::NAN),
            (i64::MAX, -0.0),
            (0, f64::INFINITY),
            (-5, f64::MIN_POSITIVE),
            (-5, f64::from_bits(0x7ff8_dead_beef_0001)),
            (3, 1e300),
            (4, 0.1),
            (5, 0.30000000000000004),
            (6, 100.0),
            (7, -0.0),
            (8, 12.5),
            (9, 9_007_199_254_740_993.0),
        ];
        assert_eq!(bits(&round_trip(&points)), bits(&points));
    }

    #[test]
    fn truncated_bits_are_an_error() {
        let mut encoder = ChunkEncoder::default();
        encoder.push(1, 1.0);
        encoder.push(2, 2.0);
        assert!(decode(&encoder.bytes()[..10], 2).is_err());
        assert!(decode(encoder.bytes(), 100).is_err());
    }

    proptest! {
        #[test]
        fn any_points_round_trip(points in proptest::collection::vec((any::<i64>(), any::<u64>()), 0..200)) {
            let points: Vec<(i64, f64)> = points.into_iter().map(|(t, v)| (t, f64::from_bits(v))).collect();
            prop_assert_eq!(bits(&round_trip(&points)), bits(&points));
        }

        #[test]
        fn jittered_series_round_trip(
            start in any::<i32>(),
            steps in proptest::collection::vec((9_990i64..10_010, -3i32..3), 1..300),
        ) {
            let mut t = i64::from(start);
            let mut v = 40.0;
            let points: Vec<(i64, f64)> = steps.into_iter().map(|(dt, dv)| {
                t += dt;
                v += f64::from(dv) * 0.25;
                (t, v)
            }).collect();
            prop_assert_eq!(bits(&round_trip(&points)), bits(&points));
        }

        #[test]
        fn decimal_walks_round_trip(
            steps in proptest::collection::vec((0u32..4, -500i64..500), 1..300),
        ) {
            let mut mantissa = 0i64;
            let points: Vec<(i64, f64)> = steps.into_iter().enumerate().map(|(i, (decimals, change))| {
                mantissa += change;
                (i as i64, mantissa as f64 / POWERS_OF_TEN[decimals as usize])
            }).collect();
            prop_assert_eq!(bits(&round_trip(&points)), bits(&points));
        }

        #[test]
        fn varints_round_trip(values in proptest::collection::vec((any::<i64>(), any::<u64>()), 0..50)) {
            let mut out = Vec::new();
            for &(signed, float_bits) in &values {
                put_varint(&mut out, signed);
                put_uvarint(&mut out, float_bits);
                put_float(&mut out, f64::from_bits(float_bits));
            }
            let mut reader = VarintReader::new(&out);
            for &(signed, float_bits) in &values {
                prop_assert_eq!(reader.varint().unwrap(), signed);
                prop_assert_eq!(reader.uvarint().unwrap(), float_bits);
                prop_assert_eq!(reader.float().unwrap().to_bits(), float_bits);
            }
            prop_assert!(reader.is_empty());
        }
    }
}
