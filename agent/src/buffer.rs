//! The hand-off point between collection and shipping: every batch pushed
//! here is written to the durable [`Spool`] and read back by the shipper.
//!
//! Invariant: a batch leaves only when the collector acknowledged a sequence
//! number at or above it, or when the spool is over `max_bytes` and it is
//! among the oldest sample batches (counted in `dropped_batches` and logged;
//! inventory changes are never dropped). Collection only ever pushes here,
//! and a push is an encode plus one buffered write into the page cache: it
//! never waits for the network or an fsync. Fsync, drops and reads run in
//! the keeper task ([`BatchBuffer::keep`]) and the shipper, on the blocking pool.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::codec;
use crate::probes::Sample;
pub use crate::probes::inventory::InventoryChange;
use crate::spool::{Limits, Record, RecordKind, Recovery, Spool, SpoolError, SpoolStats};

/// While no session is live, appended records are fsynced together at most
/// this often, so a power cut loses at most this much of what was measured
/// during an outage. (A process crash loses nothing: writes are in the page cache.)
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The replay window: records read from disk per read, and their payload
/// bytes. The shipper holds no more than this plus its 16-message channel.
const REPLAY_RECORDS: usize = 32;
const REPLAY_BYTES: usize = 1 << 20;

/// How often a stats line is logged while unacknowledged batches wait.
const REPORT_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct BatchBuffer {
    spool: Arc<Spool>,
    /// The highest fsynced seq: the shipper sends nothing newer.
    durable: watch::Sender<u64>,
    /// Wakes the keeper before its next tick: a push while a session is live
    /// (sync now, so it can be sent now) or a push past `max_bytes`.
    wake: Notify,
    /// A shipper session is live.
    connected: AtomicBool,
    /// Batches the spool could not take (disk full, I/O error): lost, so counted.
    write_failures: AtomicU64,
    /// When a write failure was last logged; they are logged once a minute at most.
    failure_logged: Mutex<Option<Instant>>,
}

/// Counts for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferStats {
    pub spool: SpoolStats,
    pub write_failures: u64,
}

impl BatchBuffer {
    /// Opens the spool in `dir` (recovering what a previous run left there);
    /// `new_epoch` is used only when nothing was left.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        new_epoch: u64,
    ) -> Result<(Self, Recovery), SpoolError> {
        let (spool, recovery) = Spool::open(dir, Limits::for_max_bytes(max_bytes), new_epoch)?;
        let durable = spool.stats().durable;
        let buffer = Self {
            spool: Arc::new(spool),
            durable: watch::channel(durable).0,
            wake: Notify::new(),
            connected: AtomicBool::new(false),
            write_failures: AtomicU64::new(0),
            failure_logged: Mutex::new(None),
        };
        Ok((buffer, recovery))
    }

    /// The epoch the spool's sequence numbers belong to.
    pub fn epoch(&self) -> u64 {
        self.spool.epoch()
    }

    /// Appends a batch of samples; its seq, or `None` if it could not be
    /// written (logged and counted).
    pub fn push(&self, samples: Vec<Sample>) -> Option<u64> {
        self.append(RecordKind::Samples, &codec::encode_samples(&samples))
    }

    pub fn push_inventory(&self, change: InventoryChange) -> Option<u64> {
        self.append(RecordKind::Inventory, &codec::encode_inventory(&change))
    }

    fn append(&self, kind: RecordKind, payload: &[u8]) -> Option<u64> {
        match self.spool.append(kind, payload) {
            Ok(appended) => {
                if appended.over_limit || self.connected.load(Ordering::Relaxed) {
                    self.wake.notify_one();
                }
                Some(appended.seq)
            }
            Err(error) => {
                let failures = self.write_failures.fetch_add(1, Ordering::Relaxed) + 1;
                let mut logged = self
                    .failure_logged
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if logged.is_none_or(|at| at.elapsed() >= REPORT_INTERVAL) {
                    *logged = Some(Instant::now());
                    tracing::error!(
                        message = "Cannot write a batch to the spool; it is lost.",
                        %error,
                        write_failures_total = failures,
                    );
                }
                None
            }
        }
    }

    /// Forgets every batch at or below `seq`.
    pub fn acknowledge(&self, seq: u64) {
        self.spool.acknowledge(seq);
    }

    /// See [`Spool::skip_past`].
    pub fn skip_past(&self, seq: u64) {
        self.spool.skip_past(seq);
    }

    /// Up to one replay window of durable batches after `seq`, oldest first.
    pub async fn read_after(&self, seq: u64) -> Result<Vec<Record>, SpoolError> {
        let spool = Arc::clone(&self.spool);
        match tokio::task::spawn_blocking(move || {
            spool.read_after(seq, REPLAY_RECORDS, REPLAY_BYTES)
        })
        .await
        {
            Ok(read) => read,
            Err(error) => {
                tracing::error!(message = "Reading the spool panicked.", %error);
                Ok(Vec::new())
            }
        }
    }

    /// Carries the highest durable seq; changes when more can be sent.
    pub fn subscribe_durable(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// While connected, every push is fsynced at once (coalesced with any
    /// other push during the same fsync) so it can be sent without waiting
    /// for the next grouped sync.
    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        if connected {
            self.wake.notify_one();
        }
    }

    /// Asks the keeper to fsync now rather than at its next tick.
    pub fn request_sync(&self) {
        self.wake.notify_one();
    }

    pub fn stats(&self) -> BufferStats {
        BufferStats {
            spool: self.spool.stats(),
            write_failures: self.write_failures.load(Ordering::Relaxed),
        }
    }

    /// The keeper: fsyncs once a second (or at once when woken), then keeps
    /// the spool within its bound. Runs until `shutdown`; [`close`](Self::close)
    /// does the last fsync once nothing pushes any more.
    pub async fn keep(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(SYNC_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.wake.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            self.maintain().await;
            if reported.elapsed() >= REPORT_INTERVAL {
                reported = Instant::now();
                let stats = self.stats();
                if stats.spool.appended > stats.spool.acknowledged
                    && !self.connected.load(Ordering::Relaxed)
                {
                    tracing::info!(
                        message = "Spool holds unacknowledged batches.",
                        unacknowledged_seqs = stats.spool.appended - stats.spool.acknowledged,
                        bytes = stats.spool.bytes,
                        segments = stats.spool.segments,
                        dropped_batches_total = stats.spool.dropped_batches,
                        write_failures_total = stats.write_failures,
                    );
                }
            }
        }
    }

    async fn maintain(&self) {
        let spool = Arc::clone(&self.spool);
        let maintained = tokio::task::spawn_blocking(move || {
            let durable = spool.sync()?;
            spool.enforce_limit()?;
            Ok::<_, SpoolError>(durable)
        })
        .await;
        match maintained {
            Ok(Ok(durable)) => self.publish_durable(durable),
            Ok(Err(error)) => {
                tracing::warn!(message = "Spool maintenance failed; retrying within a second.", %error);
            }
            Err(error) => tracing::error!(message = "Spool maintenance panicked.", %error),
        }
    }

    fn publish_durable(&self, durable: u64) {
        self.durable.send_if_modified(|current| {
            let newer = durable > *current;
            *current = (*current).max(durable);
            newer
        });
    }

    /// The last fsync at shutdown: everything pushed is on disk for the next start.
    pub async fn close(&self) {
        let spool = Arc::clone(&self.spool);
        match tokio::task::spawn_blocking(move || spool.sync()).await {
            Ok(Ok(durable)) => self.publish_durable(durable),
            Ok(Err(error)) => {
                tracing::error!(message = "Cannot fsync the spool at shutdown.", %error);
            }
            Err(error) => tracing::error!(message = "Spool fsync panicked.", %error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::inventory::InventoryDiff;

    fn open(dir: &Path) -> BatchBuffer {
        BatchBuffer::open(dir, 1 << 20, 5).unwrap().0
    }

    fn inventory() -> InventoryChange {
        InventoryChange {
            full: true,
            diff: Default::default(),
            packages_fingerprint: 1,
            timestamp_ms: 1,
        }
    }

    #[tokio::test]
    async fn pushes_become_readable_once_the_keeper_synced_them() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Arc::new(open(dir.path()));
        assert_eq!(buffer.epoch(), 5);
        assert_eq!(buffer.push(vec![Sample::new("load.1m", 1.0, 1)]), Some(1));
        assert_eq!(buffer.push_inventory(inventory()), Some(2));
        assert!(buffer.read_after(0).await.unwrap().is_empty());
        let mut durable = buffer.subscribe_durable();
        let shutdown = CancellationToken::new();
        let keeper = tokio::spawn(Arc::clone(&buffer).keep(shutdown.clone()));
        buffer.request_sync();
        durable.wait_for(|seq| *seq == 2).await.unwrap();
        let records = buffer.read_after(0).await.unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].kind, RecordKind::Inventory);
        buffer.acknowledge(2);
        assert_eq!(buffer.stats().spool.acknowledged, 2);
        shutdown.cancel();
        keeper.await.unwrap();
    }

    #[tokio::test]
    async fn close_makes_everything_durable_for_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let buffer = open(dir.path());
            for _ in 0..3 {
                buffer.push(vec![]);
            }
            buffer.close().await;
            assert_eq!(buffer.stats().spool.durable, 3);
        }
        let (buffer, recovery) = BatchBuffer::open(dir.path(), 1 << 20, 6).unwrap();
        assert_eq!(recovery.records, 3);
        assert_eq!(buffer.epoch(), 5);
        assert_eq!(buffer.push(vec![]), Some(4));
    }

    /// Regression: with only inventory changes buffered, a full buffer used to
    /// drop one of them anyway (`unwrap_or(0)`).
    #[test]
    fn a_full_spool_of_inventory_drops_none_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let (buffer, _) = BatchBuffer::open(dir.path(), 16 << 10, 5).unwrap();
        for _ in 0..100 {
            buffer.push_inventory(InventoryChange {
                diff: InventoryDiff {
                    packages_upserted: [("bash".to_string(), "5.2".repeat(100))].into(),
                    ..Default::default()
                },
                ..inventory()
            });
        }
        buffer.spool.sync().unwrap();
        buffer.spool.enforce_limit().unwrap();
        let stats = buffer.stats().spool;
        assert_eq!(stats.dropped_batches, 0);
        assert!(stats.bytes > 16 << 10, "kept over the limit: {stats:?}");
        let records = buffer.spool.read_after(0, usize::MAX, usize::MAX).unwrap();
        assert_eq!(records.len(), 100);
    }
}
