//! The durable spool: every batch the collector has not yet acknowledged, in
//! append-only segment files under `state_dir/spool/`.
//!
//! Owns the segment files, the sequence numbers and the epoch they belong to,
//! how much of it is known to be on disk (the durable watermark), and the size
//! bound with its drop policy. Payloads are opaque bytes with a
//! [`RecordKind`]; this module never decodes them and never touches the
//! network. Every method does blocking file I/O: [`append`](Spool::append) is
//! one `write` into the page cache (cheap enough for the collection path),
//! everything slower (fsync, dropping, reading) is for the buffer's keeper
//! task and the shipper to call off the collection path.
//!
//! Invariants:
//! - Segments are named by a sequence number (`{name:020}.seg`); every record
//!   in a segment has a seq at or above its name and below the next segment's
//!   name, and seqs increase through the spool. So reading the segments in
//!   name order replays in seq order, and a rewritten segment keeps its name.
//! - A record is handed to a reader only once it is fsynced
//!   ([`durable`](SpoolStats::durable)). The collector therefore never learns
//!   a seq the spool could lose in a power cut, and a restarted agent that
//!   continues the epoch never reuses a seq the collector already holds.
//! - Only the last segment (the active one) is appended to; the others are
//!   sealed and change only by being deleted (all acknowledged) or rewritten
//!   without their sample records (drop policy).

pub mod record;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use record::{Damage, Record, RecordKind};
use record::{MAX_PAYLOAD, ReadError, SEGMENT_MAGIC};

const SEGMENT_SUFFIX: &str = ".seg";
const TEMPORARY_SUFFIX: &str = ".seg.tmp";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    #[error("cannot use spool directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write spool segment {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read spool segment {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot fsync the spool: {0}")]
    Sync(std::io::Error),
    #[error("a batch of {0} bytes is larger than a spool record may be")]
    TooLarge(usize),
}

/// How large the spool and its segments may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bound on all segment files together; enforced by [`Spool::enforce_limit`].
    pub max_bytes: u64,
    /// A segment is sealed once it reaches this size. Dropping works a whole
    /// segment at a time, so this is also the drop granularity.
    pub segment_bytes: u64,
}

impl Limits {
    /// Sixteen segments per bound (so one drop frees about 6%), at most 8 MiB each.
    pub fn for_max_bytes(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            segment_bytes: (max_bytes / 16).clamp(1024, 8 << 20),
        }
    }
}

/// What [`Spool::open`] found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records kept from earlier runs (sent or not: the collector's welcome says which).
    pub records: u64,
    pub bytes: u64,
    /// Bytes cut off torn or corrupt tails.
    pub damaged_bytes: u64,
    /// True when the epoch was taken from the spool rather than newly chosen.
    pub continued_epoch: bool,
}

/// Counts for logs, stats lines and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    pub epoch: u64,
    /// Highest seq handed out so far (0: none).
    pub appended: u64,
    /// Highest seq known to be fsynced.
    pub durable: u64,
    /// Highest seq the collector acknowledged in this process.
    pub acknowledged: u64,
    pub segments: usize,
    pub bytes: u64,
    /// Unacknowledged sample batches discarded to stay within `max_bytes`.
    pub dropped_batches: u64,
    pub dropped_bytes: u64,
}

/// The result of one [`Spool::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// The spool is now larger than `max_bytes`: time to call `enforce_limit`.
    pub over_limit: bool,
}

/// One segment file as the index knows it.
#[derive(Debug, Clone)]
struct Segment {
    /// The file name's number; see the module invariants.
    name: u64,
    /// Changes when the file is rewritten, so a reader knows its offsets are stale.
    generation: u64,
    /// Bytes of complete records (plus the magic). A reader never reads past
    /// it, so it never sees a record still being written.
    len: u64,
    /// Highest seq in the file, 0 while it holds none.
    last_seq: u64,
    samples: u64,
    inventory: u64,
}

/// Where the shipper's last read stopped, so the next one continues there
/// instead of scanning the segment again.
#[derive(Debug)]
struct Cursor {
    name: u64,
    generation: u64,
    file: File,
    offset: u64,
    /// Seq of the record just before `offset` (0 at the start).
    last_seq: u64,
}

#[derive(Debug)]
struct State {
    epoch: u64,
    next_seq: u64,
    acknowledged: u64,
    durable: u64,
    /// Oldest first; the last one is the active segment.
    segments: VecDeque<Segment>,
    /// Handle to the active segment, opened for appending.
    active: Arc<File>,
    /// The active segment has writes not yet fsynced.
    active_dirty: bool,
    /// A failed write could not be cut back: append to a fresh segment.
    active_broken: bool,
    /// Sealed segments whose last writes are not yet fsynced.
    unsynced: Vec<Arc<File>>,
    /// A segment was created, so the directory entry needs an fsync too.
    dir_dirty: bool,
    bytes: u64,
    next_generation: u64,
    cursor: Option<Cursor>,
    dropped_batches: u64,
    dropped_bytes: u64,
    /// Logged once per episode, so a spool full of inventory does not flood the log.
    warned_inventory_only: bool,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    limits: Limits,
    state: Mutex<State>,
}

fn segment_path(dir: &Path, name: u64) -> PathBuf {
    dir.join(format!("{name:020}{SEGMENT_SUFFIX}"))
}

fn temporary_path(dir: &Path, name: u64) -> PathBuf {
    dir.join(format!("{name:020}{TEMPORARY_SUFFIX}"))
}

/// Makes created, renamed and deleted entries survive a power cut.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    // Windows cannot open a directory as a file; NTFS journals its metadata.
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// A new segment holding only the magic, opened for appending.
fn create_segment(path: &Path) -> std::io::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    file.write_all(SEGMENT_MAGIC)?;
    drop(file);
    OpenOptions::new().append(true).open(path)
}

/// What one segment held when the spool was opened.
struct Scanned {
    segment: Segment,
    /// Epoch of the newest record, if any.
    epoch: Option<u64>,
    damaged_bytes: u64,
}

/// Reads a segment through, cuts off a torn or corrupt tail (and any record
/// whose seq does not exceed `after`, which can only be damage), and counts
/// what is left.
fn scan_segment(path: &Path, name: u64, after: u64) -> Result<Scanned, SpoolError> {
    let read_error = |source| SpoolError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(read_error)?;
    let file_len = file.metadata().map_err(read_error)?.len();
    let mut reader = BufReader::new(&file);
    let mut magic = [0u8; 8];
    let mut segment = Segment {
        name,
        generation: 0,
        len: 0,
        last_seq: 0,
        samples: 0,
        inventory: 0,
    };
    let mut epoch = None;
    let mut damage = None;
    if std::io::Read::read_exact(&mut reader, &mut magic).is_err() || &magic != SEGMENT_MAGIC {
        damage = Some("the segment header is missing or wrong".to_string());
    } else {
        segment.len = SEGMENT_MAGIC.len() as u64;
        let mut previous = after;
        loop {
            match record::read_record(&mut reader) {
                Ok(Some(record)) if record.seq > previous && record.seq >= name => {
                    previous = record.seq;
                    segment.len += record.framed_len();
                    segment.last_seq = record.seq;
                    epoch = Some(record.epoch);
                    match record.kind {
                        RecordKind::Samples => segment.samples += 1,
                        RecordKind::Inventory => segment.inventory += 1,
                    }
                }
                Ok(Some(record)) => {
                    damage = Some(format!("record seq {} is out of order", record.seq));
                    break;
                }
                Ok(None) => break,
                Err(ReadError::Damaged(found)) => {
                    damage = Some(found.to_string());
                    break;
                }
                Err(ReadError::Io(source)) => return Err(read_error(source)),
            }
        }
    }
    let damaged_bytes = file_len - segment.len.min(file_len);
    if let Some(reason) = damage
        && damaged_bytes > 0
    {
        tracing::warn!(
            message = "Spool segment has a torn or corrupt tail; cutting it off and keeping the records before it.",
            path = %path.display(),
            reason,
            kept_bytes = segment.len,
            cut_bytes = damaged_bytes,
        );
        file.set_len(segment.len)
            .map_err(|source| SpoolError::Write {
                path: path.to_path_buf(),
                source,
            })?;
    }
    Ok(Scanned {
        segment,
        epoch,
        damaged_bytes,
    })
}

impl Spool {
    /// Opens (creating) the spool in `dir` and recovers what earlier runs left:
    /// torn tails are cut, the epoch of the newest record is continued with
    /// the next seq, or `new_epoch` starts at seq 1 when nothing is left.
    pub fn open(
        dir: &Path,
        limits: Limits,
        new_epoch: u64,
    ) -> Result<(Self, Recovery), SpoolError> {
        let dir_error = |source| SpoolError::Directory {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(dir_error)?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(dir_error)? {
            let entry = entry.map_err(dir_error)?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if file_name.ends_with(TEMPORARY_SUFFIX) {
                // A rewrite that never got renamed: the original is still in place.
                let _ = std::fs::remove_file(entry.path());
            } else if let Some(name) = file_name
                .strip_suffix(SEGMENT_SUFFIX)
                .and_then(|stem| stem.parse::<u64>().ok())
            {
                names.push(name);
            }
        }
        names.sort_unstable();

        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let mut epoch = None;
        let mut last_seq = 0;
        for name in names {
            let path = segment_path(dir, name);
            let scanned = scan_segment(&path, name, last_seq)?;
            recovery.damaged_bytes += scanned.damaged_bytes;
            if scanned.segment.last_seq == 0 {
                std::fs::remove_file(&path).map_err(|source| SpoolError::Write {
                    path: path.clone(),
                    source,
                })?;
                continue;
            }
            // What the page cache held when the last run died may not be on
            // disk yet; it is sent only once it is.
            File::open(&path)
                .and_then(|file| file.sync_all())
                .map_err(SpoolError::Sync)?;
            last_seq = scanned.segment.last_seq;
            epoch = scanned.epoch.or(epoch);
            recovery.records += scanned.segment.samples + scanned.segment.inventory;
            recovery.bytes += scanned.segment.len;
            segments.push_back(scanned.segment);
        }
        recovery.continued_epoch = epoch.is_some();
        let next_seq = last_seq + 1;
        let active_path = segment_path(dir, next_seq);
        let active = create_segment(&active_path).map_err(|source| SpoolError::Write {
            path: active_path,
            source,
        })?;
        sync_dir(dir).map_err(SpoolError::Sync)?;
        segments.push_back(Segment {
            name: next_seq,
            generation: 0,
            len: SEGMENT_MAGIC.len() as u64,
            last_seq: 0,
            samples: 0,
            inventory: 0,
        });
        for (generation, segment) in segments.iter_mut().enumerate() {
            segment.generation = generation as u64;
        }
        let state = State {
            epoch: epoch.unwrap_or(new_epoch),
            next_seq,
            acknowledged: 0,
            durable: last_seq,
            bytes: segments.iter().map(|segment| segment.len).sum(),
            next_generation: segments.len() as u64,
            segments,
            active: Arc::new(active),
            active_dirty: false,
            active_broken: false,
            unsynced: Vec::new(),
            dir_dirty: false,
            cursor: None,
            dropped_batches: 0,
            dropped_bytes: 0,
            warned_inventory_only: false,
        };
        let spool = Self {
            dir: dir.to_path_buf(),
            limits,
            state: Mutex::new(state),
        };
        Ok((spool, recovery))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below leaves the index consistent before it can fail,
        // so the data behind a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn stats(&self) -> SpoolStats {
        let state = self.lock();
        SpoolStats {
            epoch: state.epoch,
            appended: state.next_seq - 1,
            durable: state.durable,
            acknowledged: state.acknowledged,
            segments: state.segments.len(),
            bytes: state.bytes,
            dropped_batches: state.dropped_batches,
            dropped_bytes: state.dropped_bytes,
        }
    }

    /// Appends one record with the next seq: a single `write` to the active
    /// segment, not fsynced (see [`sync`](Self::sync)). A record that cannot
    /// be written takes no seq.
    pub fn append(&self, kind: RecordKind, payload: &[u8]) -> Result<Appended, SpoolError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(SpoolError::TooLarge(payload.len()));
        }
        let mut state = self.lock();
        let needs_new_segment = state.active_broken
            || state.segments.back().is_some_and(|active| {
                active.last_seq != 0 && active.len >= self.limits.segment_bytes
            });
        if needs_new_segment {
            self.rotate(&mut state)?;
        }
        let seq = state.next_seq;
        let frame = record::encode(state.epoch, seq, kind, payload);
        let active_len = state.segments.back().map_or(0, |active| active.len);
        if let Err(source) = (&*state.active).write_all(&frame) {
            // Cut off whatever part landed, or later records would sit
            // behind a torn one that recovery stops at.
            if state.active.set_len(active_len).is_err() {
                state.active_broken = true;
            }
            let name = state.segments.back().map_or(0, |active| active.name);
            return Err(SpoolError::Write {
                path: segment_path(&self.dir, name),
                source,
            });
        }
        state.next_seq += 1;
        state.active_dirty = true;
        state.bytes += frame.len() as u64;
        if let Some(active) = state.segments.back_mut() {
            active.len += frame.len() as u64;
            active.last_seq = seq;
            match kind {
                RecordKind::Samples => active.samples += 1,
                RecordKind::Inventory => active.inventory += 1,
            }
        }
        Ok(Appended {
            seq,
            over_limit: state.bytes > self.limits.max_bytes,
        })
    }

    /// Seals the active segment and starts a new one named by the next seq.
    fn rotate(&self, state: &mut State) -> Result<(), SpoolError> {
        let name = state.next_seq;
        // An active segment still named by this seq holds no record; replace it.
        if state
            .segments
            .back()
            .is_some_and(|active| active.name == name)
            && let Some(empty) = state.segments.pop_back()
        {
            state.bytes -= empty.len;
        }
        let path = segment_path(&self.dir, name);
        let file = create_segment(&path).map_err(|source| SpoolError::Write { path, source })?;
        let sealed = std::mem::replace(&mut state.active, Arc::new(file));
        if std::mem::take(&mut state.active_dirty) {
            state.unsynced.push(sealed);
        }
        state.active_dirty = true;
        state.active_broken = false;
        state.dir_dirty = true;
        let generation = state.next_generation;
        state.next_generation += 1;
        state.segments.push_back(Segment {
            name,
            generation,
            len: SEGMENT_MAGIC.len() as u64,
            last_seq: 0,
            samples: 0,
            inventory: 0,
        });
        state.bytes += SEGMENT_MAGIC.len() as u64;
        Ok(())
    }

    /// Fsyncs everything appended so far (grouped: one call covers every
    /// record before it) and returns the new durable watermark.
    pub fn sync(&self) -> Result<u64, SpoolError> {
        let (files, dir_dirty, upto) = {
            let mut state = self.lock();
            let mut files = std::mem::take(&mut state.unsynced);
            if std::mem::take(&mut state.active_dirty) {
                files.push(Arc::clone(&state.active));
            }
            (
                files,
                std::mem::take(&mut state.dir_dirty),
                state.next_seq - 1,
            )
        };
        let synced = files
            .iter()
            .try_for_each(|file| file.sync_data())
            .and_then(|()| {
                if dir_dirty {
                    sync_dir(&self.dir)
                } else {
                    Ok(())
                }
            });
        let mut state = self.lock();
        if let Err(error) = synced {
            // Try again next time; until then nothing newer is sent.
            state.unsynced.extend(files);
            state.active_dirty = true;
            state.dir_dirty |= dir_dirty;
            return Err(SpoolError::Sync(error));
        }
        state.durable = state.durable.max(upto);
        Ok(state.durable)
    }

    /// The collector holds everything up to `seq`: deletes every sealed
    /// segment that holds nothing newer.
    pub fn acknowledge(&self, seq: u64) {
        let mut state = self.lock();
        state.acknowledged = state.acknowledged.max(seq);
        while state.segments.len() > 1
            && state
                .segments
                .front()
                .is_some_and(|oldest| oldest.last_seq <= state.acknowledged)
        {
            let Some(oldest) = state.segments.pop_front() else {
                break;
            };
            state.bytes -= oldest.len;
            let path = segment_path(&self.dir, oldest.name);
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                // Harmless: a restart skips its records by the welcome's committed seq.
                tracing::warn!(message = "Cannot delete an acknowledged spool segment.", path = %path.display(), %error);
            }
        }
    }

    /// The collector says it already holds `seq` (and everything before it):
    /// make sure new records are numbered above it, or it would treat them
    /// as resends and drop them. Happens only when the state directory was
    /// restored from an older copy.
    pub fn skip_past(&self, seq: u64) {
        let mut state = self.lock();
        if seq >= state.next_seq {
            tracing::warn!(
                message = "Collector holds sequence numbers this spool never wrote (state directory restored from a copy?); continuing above them.",
                committed_seq = seq,
                next_seq = state.next_seq,
            );
            state.next_seq = seq + 1;
        }
    }

    /// Up to `max_records` durable records with a seq above `after`, oldest
    /// first, and at most about `max_bytes` of payload (at least one record).
    /// This is the replay window: memory holds no more than this at a time.
    pub fn read_after(
        &self,
        after: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, SpoolError> {
        let (plan, durable, epoch, mut cursor) = {
            let mut state = self.lock();
            let plan: Vec<Segment> = state
                .segments
                .iter()
                .filter(|segment| segment.last_seq > after)
                .cloned()
                .collect();
            (plan, state.durable, state.epoch, state.cursor.take())
        };
        let mut records = Vec::new();
        let mut bytes = 0;
        'segments: for segment in plan {
            let path = segment_path(&self.dir, segment.name);
            let mut position = match cursor.take() {
                Some(position)
                    if position.name == segment.name
                        && position.generation == segment.generation
                        && position.last_seq <= after =>
                {
                    position
                }
                _ => match File::open(&path) {
                    Ok(file) => Cursor {
                        name: segment.name,
                        generation: segment.generation,
                        file,
                        offset: SEGMENT_MAGIC.len() as u64,
                        last_seq: 0,
                    },
                    // Acknowledged or dropped since the plan was made.
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => return Err(SpoolError::Read { path, source }),
                },
            };
            let read_error = |source| SpoolError::Read {
                path: path.clone(),
                source,
            };
            position
                .file
                .seek(SeekFrom::Start(position.offset))
                .map_err(read_error)?;
            let mut reader = BufReader::new(&position.file);
            while position.offset < segment.len {
                let record = match record::read_record(&mut reader) {
                    Ok(Some(record)) => record,
                    Ok(None) => break,
                    Err(ReadError::Damaged(damage)) => {
                        // Recovery cut every damaged tail; this is new damage
                        // (the disk), so the rest of this segment is lost.
                        tracing::error!(
                            message = "Spool segment damaged after it was written; skipping the rest of it.",
                            path = %path.display(),
                            %damage,
                        );
                        break;
                    }
                    Err(ReadError::Io(source)) => return Err(read_error(source)),
                };
                if record.seq > durable {
                    drop(reader);
                    cursor = Some(position);
                    break 'segments;
                }
                position.offset += record.framed_len();
                position.last_seq = record.seq;
                // Records of another epoch cannot travel in this epoch's stream.
                if record.seq <= after || record.epoch != epoch {
                    continue;
                }
                bytes += record.payload.len();
                records.push(record);
                if records.len() >= max_records || bytes >= max_bytes {
                    drop(reader);
                    cursor = Some(position);
                    break 'segments;
                }
            }
            drop(reader);
            cursor = Some(position);
        }
        self.lock().cursor = cursor;
        Ok(records)
    }

    /// Keeps the spool within `max_bytes`: while it is larger, the oldest
    /// sealed segment that holds sample batches is rewritten without them
    /// (inventory records stay, in place and in order) or deleted when
    /// nothing else is in it. Returns how many unacknowledged batches went.
    pub fn enforce_limit(&self) -> Result<u64, SpoolError> {
        let mut dropped = 0;
        loop {
            let victim = {
                let mut state = self.lock();
                if state.bytes <= self.limits.max_bytes {
                    state.warned_inventory_only = false;
                    return Ok(dropped);
                }
                let sealed = state.segments.len().saturating_sub(1);
                let victim = state
                    .segments
                    .iter()
                    .take(sealed)
                    .find(|segment| segment.samples > 0)
                    .cloned();
                if victim.is_none() && !std::mem::replace(&mut state.warned_inventory_only, true) {
                    tracing::warn!(
                        message = "Spool is over its limit but holds only inventory changes and the active segment; keeping them.",
                        bytes = state.bytes,
                        max_bytes = self.limits.max_bytes,
                    );
                }
                victim
            };
            let Some(victim) = victim else {
                return Ok(dropped);
            };
            dropped += self.drop_samples(&victim)?;
        }
    }

    /// Removes a segment whose file is gone from the index (if still there).
    fn forget(&self, gone: &Segment) {
        let mut state = self.lock();
        if let Some(index) = state
            .segments
            .iter()
            .position(|segment| segment.name == gone.name && segment.generation == gone.generation)
            && let Some(segment) = state.segments.remove(index)
        {
            state.bytes -= segment.len;
        }
    }

    /// Rewrites one sealed segment without its sample records.
    fn drop_samples(&self, victim: &Segment) -> Result<u64, SpoolError> {
        let path = segment_path(&self.dir, victim.name);
        let temporary = temporary_path(&self.dir, victim.name);
        let acknowledged = self.lock().acknowledged;
        let write_error = |source| SpoolError::Write {
            path: temporary.clone(),
            source,
        };
        // Stream the records through one at a time, so a drop costs one
        // record of memory, not a segment.
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // Acknowledged meanwhile, or removed behind our back: either
                // way it must leave the index, or it would be picked again.
                self.forget(victim);
                return Ok(0);
            }
            Err(source) => return Err(SpoolError::Read { path, source }),
        };
        let mut reader = BufReader::new(file);
        reader
            .seek(SeekFrom::Start(SEGMENT_MAGIC.len() as u64))
            .map_err(|source| SpoolError::Read {
                path: path.clone(),
                source,
            })?;
        let mut kept: Option<(File, Segment)> = None;
        let mut dropped = 0;
        let mut offset = SEGMENT_MAGIC.len() as u64;
        while offset < victim.len {
            let record = match record::read_record(&mut reader) {
                Ok(Some(record)) => record,
                Ok(None) | Err(ReadError::Damaged(_)) => break,
                Err(ReadError::Io(source)) => return Err(SpoolError::Read { path, source }),
            };
            offset += record.framed_len();
            if record.seq <= acknowledged {
                continue;
            }
            match record.kind {
                RecordKind::Samples => dropped += 1,
                RecordKind::Inventory => {
                    if kept.is_none() {
                        let mut file = File::create(&temporary).map_err(write_error)?;
                        file.write_all(SEGMENT_MAGIC).map_err(write_error)?;
                        kept = Some((
                            file,
                            Segment {
                                len: SEGMENT_MAGIC.len() as u64,
                                samples: 0,
                                inventory: 0,
                                ..victim.clone()
                            },
                        ));
                    }
                    if let Some((file, segment)) = kept.as_mut() {
                        let frame =
                            record::encode(record.epoch, record.seq, record.kind, &record.payload);
                        file.write_all(&frame).map_err(write_error)?;
                        segment.len += frame.len() as u64;
                        segment.last_seq = record.seq;
                        segment.inventory += 1;
                    }
                }
            }
        }
        let kept = match kept {
            Some((file, segment)) => {
                file.sync_all().map_err(SpoolError::Sync)?;
                Some(segment)
            }
            None => None,
        };

        let mut state = self.lock();
        let Some(index) = state.segments.iter().position(|segment| {
            segment.name == victim.name && segment.generation == victim.generation
        }) else {
            // Acknowledged (and deleted) while we were reading it.
            drop(state);
            let _ = std::fs::remove_file(&temporary);
            return Ok(0);
        };
        let freed;
        match kept {
            Some(mut segment) => {
                std::fs::rename(&temporary, &path).map_err(|source| SpoolError::Write {
                    path: path.clone(),
                    source,
                })?;
                segment.generation = state.next_generation;
                state.next_generation += 1;
                freed = state.segments[index].len - segment.len;
                state.segments[index] = segment;
            }
            None => {
                std::fs::remove_file(&path).map_err(|source| SpoolError::Write {
                    path: path.clone(),
                    source,
                })?;
                freed = state.segments[index].len;
                state.segments.remove(index);
            }
        }
        state.bytes -= freed;
        state.dropped_batches += dropped;
        state.dropped_bytes += freed;
        tracing::warn!(
            message = "Spool full; dropped the oldest unsent sample batches.",
            dropped_batches = dropped,
            dropped_total = state.dropped_batches,
            freed_bytes = freed,
            spool_bytes = state.bytes,
            max_bytes = self.limits.max_bytes,
        );
        drop(state);
        sync_dir(&self.dir).map_err(SpoolError::Sync)?;
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests;
