//! The spool's on-disk framing: a segment file is a magic header followed by
//! records, each checksummed on its own so a torn or corrupt one is detected
//! and everything before it is still trusted.
//!
//! ```text
//! segment = "STWSPL01" record*
//! record  = len:u32 crc:u32 epoch:u64 seq:u64 kind:u8 payload:[u8; len]
//! ```
//!
//! Integers are little-endian. `len` is the payload length; `crc` is CRC-32
//! (IEEE) over `epoch`, `seq`, `kind` and the payload, so a flipped bit
//! anywhere after the length is caught, and a flipped length either fails the
//! bound check or makes the checksum cover the wrong bytes. This module knows
//! nothing of what a payload means.

use std::io::{self, Read};

/// First bytes of every segment file; the digits are the format version.
pub const SEGMENT_MAGIC: &[u8; 8] = b"STWSPL01";

/// Bytes before the payload: len, crc, epoch, seq, kind.
pub const HEADER_LEN: usize = 4 + 4 + 8 + 8 + 1;

/// Larger than any batch the shipper may send (16 MiB), so a length beyond it
/// can only be damage, and a damaged length never makes recovery allocate
/// gigabytes.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// What a record's payload holds; decides what the drop policy may discard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Samples = 1,
    Inventory = 2,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Samples),
            2 => Some(Self::Inventory),
            _ => None,
        }
    }
}

/// One spooled batch as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub epoch: u64,
    pub seq: u64,
    pub kind: RecordKind,
    pub payload: Vec<u8>,
}

impl Record {
    /// Bytes this record takes in its segment file.
    pub fn framed_len(&self) -> u64 {
        (HEADER_LEN + self.payload.len()) as u64
    }
}

/// Why reading stopped before a clean end of the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("the record is cut short")]
    Truncated,
    #[error("the record claims an impossible length of {0} bytes")]
    BadLength(u32),
    #[error("the record's checksum does not match")]
    BadChecksum,
    #[error("the record has an unknown kind {0}")]
    BadKind(u8),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Damaged(Damage),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The bytes of one record, ready for a single `write`.
pub fn encode(epoch: u64, seq: u64, kind: RecordKind, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    // The caller bounds payloads by MAX_PAYLOAD, far below u32::MAX.
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&epoch.to_le_bytes());
    frame.extend_from_slice(&seq.to_le_bytes());
    frame.push(kind as u8);
    frame.extend_from_slice(payload);
    let crc = crc32fast::hash(&frame[8..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    frame
}

/// Reads the next record. `Ok(None)` is a clean end (nothing more at all);
/// a partial or inconsistent record is [`ReadError::Damaged`].
pub fn read_record(reader: &mut impl Read) -> Result<Option<Record>, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    match read_full(reader, &mut header)? {
        0 => return Ok(None),
        HEADER_LEN => {}
        _ => return Err(ReadError::Damaged(Damage::Truncated)),
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    if len as usize > MAX_PAYLOAD {
        return Err(ReadError::Damaged(Damage::BadLength(len)));
    }
    let mut payload = vec![0; len as usize];
    if read_full(reader, &mut payload)? != payload.len() {
        return Err(ReadError::Damaged(Damage::Truncated));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[8..]);
    hasher.update(&payload);
    let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if hasher.finalize() != stored {
        return Err(ReadError::Damaged(Damage::BadChecksum));
    }
    let kind =
        RecordKind::from_byte(header[24]).ok_or(ReadError::Damaged(Damage::BadKind(header[24])))?;
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    Ok(Some(Record {
        epoch: word(8),
        seq: word(16),
        kind,
        payload,
    }))
}

/// Like `read_exact`, but says how much it got before the end instead of failing.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> (Vec<Record>, Option<Damage>) {
        let mut reader = bytes;
        let mut records = Vec::new();
        loop {
            match read_record(&mut reader) {
                Ok(Some(record)) => records.push(record),
                Ok(None) => return (records, None),
                Err(ReadError::Damaged(damage)) => return (records, Some(damage)),
                Err(ReadError::Io(error)) => panic!("{error}"),
            }
        }
    }

    #[test]
    fn records_round_trip() {
        let mut bytes = encode(7, 1, RecordKind::Samples, b"abc");
        bytes.extend(encode(7, 2, RecordKind::Inventory, b""));
        let (records, damage) = read_all(&bytes);
        assert_eq!(damage, None);
        assert_eq!(
            records,
            vec![
                Record {
                    epoch: 7,
                    seq: 1,
                    kind: RecordKind::Samples,
                    payload: b"abc".to_vec()
                },
                Record {
                    epoch: 7,
                    seq: 2,
                    kind: RecordKind::Inventory,
                    payload: Vec::new()
                },
            ]
        );
        assert_eq!(records[0].framed_len(), (HEADER_LEN + 3) as u64);
    }

    #[test]
    fn damage_is_detected_and_earlier_records_survive() {
        let first = encode(1, 1, RecordKind::Samples, b"first");
        let second = encode(1, 2, RecordKind::Samples, b"second");
        let whole: Vec<u8> = [first.clone(), second.clone()].concat();
        let flip = |at: usize| {
            let mut bytes = whole.clone();
            bytes[at] ^= 0x40;
            bytes
        };
        let cases: Vec<(&str, Vec<u8>, Damage)> = vec![
            (
                "cut in the header",
                whole[..first.len() + 10].to_vec(),
                Damage::Truncated,
            ),
            (
                "cut in the payload",
                whole[..whole.len() - 1].to_vec(),
                Damage::Truncated,
            ),
            (
                "flipped payload byte",
                flip(whole.len() - 2),
                Damage::BadChecksum,
            ),
            (
                "flipped seq byte",
                flip(first.len() + 16),
                Damage::BadChecksum,
            ),
            (
                "flipped length",
                flip(first.len() + 3),
                Damage::BadLength(0x4000_0000 + 6),
            ),
        ];
        for (what, bytes, expected) in cases {
            let (records, damage) = read_all(&bytes);
            assert_eq!(damage, Some(expected), "{what}");
            assert_eq!(records.len(), 1, "{what}: the first record is kept");
            assert_eq!(records[0].payload, b"first", "{what}");
        }
    }

    #[test]
    fn an_unknown_kind_is_damage() {
        let mut bytes = encode(1, 1, RecordKind::Samples, b"x");
        bytes[24] = 9;
        let crc = crc32fast::hash(&bytes[8..]);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(read_all(&bytes).1, Some(Damage::BadKind(9)));
    }
}
