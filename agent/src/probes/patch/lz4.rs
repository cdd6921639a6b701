//! A streaming reader for the LZ4 frame format, the one apt writes when it
//! keeps its lists compressed (`Acquire::GzipIndexes`, as in Debian's Docker
//! images, where `*_Packages.lz4` is the only copy of the index).
//!
//! Why not a crate: the agent keeps its dependency set small, and the format
//! is short (lz4 `Frame_format.md` and `Block_format.md`). Why streaming: the
//! Debian main index is ~50 MB decompressed; only the current block and the
//! 64 KiB window that later blocks may refer back to are held in memory.
//!
//! Checksums (xxHash32) are skipped, not verified: apt verified the files when
//! it downloaded them, and a damaged file still cannot cause a panic or an
//! out-of-bounds read here — every length and offset is checked and malformed
//! input is an `InvalidData` error.

use std::io::{self, Read};

const FRAME_MAGIC: u32 = 0x184D_2204;
/// Skippable frames use magics 0x184D2A50..=0x184D2A5F and carry no data.
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// How far back a match may reach, and so how much history linked blocks need.
const WINDOW: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames: the next bytes are a magic number or the end of input.
    FrameStart,
    /// Inside a frame, before a block header.
    Blocks,
}

#[derive(Debug, Clone, Copy)]
struct FrameFlags {
    block_checksum: bool,
    content_checksum: bool,
    max_block_size: usize,
}

/// Decompresses LZ4 frames (one or several, concatenated) from `inner`.
#[derive(Debug)]
pub struct Lz4FrameReader<R> {
    inner: R,
    state: State,
    flags: FrameFlags,
    /// Decoded bytes: the history window followed by the current block.
    /// Invariant: `pos <= out.len()`; bytes before `pos` were handed out.
    out: Vec<u8>,
    pos: usize,
    /// Reused buffer for one compressed block.
    block: Vec<u8>,
}

impl<R: Read> Lz4FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            state: State::FrameStart,
            flags: FrameFlags {
                block_checksum: false,
                content_checksum: false,
                max_block_size: 0,
            },
            out: Vec::new(),
            pos: 0,
            block: Vec::new(),
        }
    }

    /// Decodes the next non-empty block into `out`; `false` at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        // Keep only the window later matches may refer to.
        if self.out.len() > WINDOW {
            let excess = self.out.len() - WINDOW;
            self.out.drain(..excess);
        }
        self.pos = self.out.len();
        loop {
            match self.state {
                State::FrameStart => {
                    let Some(magic) = read_u32_or_eof(&mut self.inner)? else {
                        return Ok(false);
                    };
                    if magic == FRAME_MAGIC {
                        self.flags = read_frame_header(&mut self.inner)?;
                        // History never crosses frames.
                        self.out.clear();
                        self.pos = 0;
                        self.state = State::Blocks;
                    } else if magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC {
                        let size = read_u32(&mut self.inner)?;
                        skip(&mut self.inner, u64::from(size))?;
                    } else {
                        return Err(invalid(format!("not an LZ4 frame (magic {magic:#010x})")));
                    }
                }
                State::Blocks => {
                    let header = read_u32(&mut self.inner)?;
                    if header == 0 {
                        if self.flags.content_checksum {
                            skip(&mut self.inner, 4)?;
                        }
                        self.state = State::FrameStart;
                        continue;
                    }
                    let stored = header & 0x8000_0000 != 0;
                    let size = usize::try_from(header & 0x7FFF_FFFF)
                        .map_err(|_| invalid("block size does not fit in memory".into()))?;
                    if size > self.flags.max_block_size {
                        return Err(invalid(format!(
                            "block of {size} bytes exceeds the frame's maximum of {}",
                            self.flags.max_block_size
                        )));
                    }
                    self.block.resize(size, 0);
                    self.inner.read_exact(&mut self.block)?;
                    if self.flags.block_checksum {
                        skip(&mut self.inner, 4)?;
                    }
                    let before = self.out.len();
                    if stored {
                        self.out.extend_from_slice(&self.block);
                    } else {
                        decompress_block(&self.block, &mut self.out, self.flags.max_block_size)?;
                    }
                    if self.out.len() > before {
                        return Ok(true);
                    }
                }
            }
        }
    }
}

impl<R: Read> Read for Lz4FrameReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos == self.out.len() && !self.fill()? {
            return Ok(0);
        }
        let available = &self.out[self.pos..];
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.pos += count;
        Ok(count)
    }
}

fn read_frame_header(inner: &mut impl Read) -> io::Result<FrameFlags> {
    let mut descriptor = [0u8; 2];
    inner.read_exact(&mut descriptor)?;
    let [flg, bd] = descriptor;
    if flg >> 6 != 0b01 {
        return Err(invalid(format!(
            "unsupported LZ4 frame version {}",
            flg >> 6
        )));
    }
    let max_block_size = match (bd >> 4) & 0b111 {
        4 => 64 * 1024,
        5 => 256 * 1024,
        6 => 1024 * 1024,
        7 => 4 * 1024 * 1024,
        other => return Err(invalid(format!("invalid LZ4 block size code {other}"))),
    };
    let content_size = flg & 0b0000_1000 != 0;
    let dictionary_id = flg & 0b0000_0001 != 0;
    if dictionary_id {
        // A preset dictionary would have to come from elsewhere; apt never
        // writes one.
        return Err(invalid(
            "LZ4 frames with a dictionary are not supported".into(),
        ));
    }
    // Optional content size, then the header checksum byte.
    skip(inner, if content_size { 8 } else { 0 } + 1)?;
    Ok(FrameFlags {
        block_checksum: flg & 0b0001_0000 != 0,
        content_checksum: flg & 0b0000_0100 != 0,
        max_block_size,
    })
}

/// Decodes one compressed block (a run of sequences) onto the end of `out`,
/// whose existing tail is the history matches may copy from.
fn decompress_block(src: &[u8], out: &mut Vec<u8>, max_block_size: usize) -> io::Result<()> {
    let start = out.len();
    let mut i = 0;
    loop {
        let token = *src
            .get(i)
            .ok_or_else(|| invalid("truncated LZ4 sequence".into()))?;
        i += 1;
        let literals = extended_length(src, &mut i, usize::from(token >> 4))?;
        let end = i
            .checked_add(literals)
            .filter(|&end| end <= src.len())
            .ok_or_else(|| invalid("LZ4 literals run past the block".into()))?;
        out.extend_from_slice(&src[i..end]);
        i = end;
        if i == src.len() {
            // The last sequence has literals only.
            break;
        }
        let offset = match src.get(i..i + 2) {
            Some(&[low, high]) => usize::from(u16::from_le_bytes([low, high])),
            _ => return Err(invalid("truncated LZ4 match offset".into())),
        };
        i += 2;
        if offset == 0 || offset > out.len() {
            return Err(invalid(format!(
                "LZ4 match offset {offset} points before the data"
            )));
        }
        let length = extended_length(src, &mut i, usize::from(token & 0x0F))? + 4;
        if out.len() - start + length > max_block_size {
            return Err(invalid("LZ4 block decodes past its maximum size".into()));
        }
        let from = out.len() - offset;
        if offset >= length {
            out.extend_from_within(from..from + length);
        } else {
            // Overlapping copy (a repeated pattern): byte by byte, so each
            // byte can read the ones this match just wrote.
            for k in 0..length {
                let byte = out[from + k];
                out.push(byte);
            }
        }
    }
    if out.len() - start > max_block_size {
        return Err(invalid("LZ4 block decodes past its maximum size".into()));
    }
    Ok(())
}

/// A 4-bit length; 15 means "add the following bytes until one is not 255".
fn extended_length(src: &[u8], i: &mut usize, nibble: usize) -> io::Result<usize> {
    let mut length = nibble;
    if nibble == 15 {
        loop {
            let byte = *src
                .get(*i)
                .ok_or_else(|| invalid("truncated LZ4 length".into()))?;
            *i += 1;
            length += usize::from(byte);
            if byte != 255 {
                break;
            }
        }
    }
    Ok(length)
}

fn read_u32(inner: &mut impl Read) -> io::Result<u32> {
    let mut bytes = [0u8; 4];
    inner.read_exact(&mut bytes)?;
    Ok(u32::from_le_bytes(bytes))
}

/// Like [`read_u32`], but a clean end of input before the first byte is `None`
/// (the end of the last frame) rather than an error.
fn read_u32_or_eof(inner: &mut impl Read) -> io::Result<Option<u32>> {
    let mut bytes = [0u8; 4];
    let mut filled = 0;
    while filled < bytes.len() {
        match inner.read(&mut bytes[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(Some(u32::from_le_bytes(bytes)))
}

fn skip(inner: &mut impl Read, count: u64) -> io::Result<()> {
    let skipped = io::copy(&mut inner.take(count), &mut io::sink())?;
    if skipped == count {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::patch::fixture;

    fn decode(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Lz4FrameReader::new(bytes).read_to_end(&mut out)?;
        Ok(out)
    }

    /// The fixture was written by `lz4 -B4 -BD` (64 KiB linked blocks, content
    /// checksum): later blocks copy from earlier ones, across the window.
    #[test]
    fn decodes_linked_blocks_written_by_the_lz4_tool() {
        let plain = std::fs::read(fixture("lz4/Packages-sample")).unwrap();
        let compressed = std::fs::read(fixture("lz4/Packages-sample.B4D.lz4")).unwrap();
        assert!(
            plain.len() > 2 * WINDOW,
            "the sample must span several blocks"
        );
        assert_eq!(decode(&compressed).unwrap(), plain);
    }

    /// Block checksums, a content size and a second frame after the first:
    /// `lz4 -BX --content-size` output, concatenated with a skippable frame.
    #[test]
    fn decodes_checksummed_concatenated_and_skippable_frames() {
        let first = std::fs::read(fixture("lz4/hello.BX-content-size.lz4")).unwrap();
        let second = std::fs::read(fixture("lz4/Packages-sample.B4D.lz4")).unwrap();
        let mut stream = first.clone();
        stream.extend_from_slice(&[0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 9, 9, 9]);
        stream.extend_from_slice(&second);
        let decoded = decode(&stream).unwrap();
        let plain = std::fs::read(fixture("lz4/Packages-sample")).unwrap();
        let hello = b"hello hello hello hello hello lz4\n";
        assert_eq!(&decoded[..hello.len()], hello);
        assert_eq!(&decoded[hello.len()..], plain);
    }

    #[test]
    fn stored_blocks_and_empty_input() {
        // Frame: FLG (version 01, independent blocks), BD (64 KiB), HC, one
        // uncompressed block "abc", end mark.
        let frame = [
            0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82, 3, 0, 0, 0x80, b'a', b'b', b'c', 0, 0, 0, 0,
        ];
        assert_eq!(decode(&frame).unwrap(), b"abc");
        assert_eq!(decode(&[]).unwrap(), b"");
    }

    #[test]
    fn rejects_other_formats_with_an_error() {
        let gzip = [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0];
        let error = decode(&gzip).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    /// Damaged input must give an error (or garbage), never a panic or a
    /// huge allocation: flip each byte of a real frame, and truncate it.
    #[test]
    fn damaged_input_never_panics() {
        let compressed = std::fs::read(fixture("lz4/hello.BX-content-size.lz4")).unwrap();
        for index in 0..compressed.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut damaged = compressed.clone();
                damaged[index] ^= flip;
                let _ = decode(&damaged);
            }
            let _ = decode(&compressed[..index]);
        }
        let big = std::fs::read(fixture("lz4/Packages-sample.B4D.lz4")).unwrap();
        for index in (0..big.len()).step_by(1009) {
            let mut damaged = big.clone();
            damaged[index] ^= 0x5A;
            let _ = decode(&damaged);
        }
    }
}
