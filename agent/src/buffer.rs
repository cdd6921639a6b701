//! The bounded in-memory buffer of batches the collector has not yet acknowledged.
//!
//! Invariant: a batch leaves the buffer only when the collector acknowledged
//! a sequence number at or above it, or when the buffer is full and it is the
//! oldest sample batch (counted in `dropped_batches` and logged; inventory
//! changes are never dropped). Collection only ever
//! pushes here, so it never waits for the network.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::probes::Sample;
use crate::probes::inventory::InventoryDiff;

#[derive(Debug)]
pub struct Batch {
    /// Strictly increasing from 1 within this agent process (its epoch).
    pub seq: u64,
    pub payload: Payload,
}

/// What a batch carries. Both kinds share one sequence space and one
/// acknowledgement, so neither is lost while the agent holds it.
#[derive(Debug)]
pub enum Payload {
    Samples(Vec<Sample>),
    Inventory(Box<InventoryChange>),
}

/// An inventory change: a full snapshot (expressed as a diff from nothing,
/// replacing everything) or a diff from the previous one.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryChange {
    pub full: bool,
    pub diff: InventoryDiff,
    /// Fingerprint of the package list after this change.
    pub packages_fingerprint: u64,
    pub timestamp_ms: i64,
}

#[derive(Debug)]
pub struct BatchBuffer {
    inner: Mutex<Inner>,
    /// Carries the newest pushed sequence number, waking the shipper.
    newest: watch::Sender<u64>,
}

#[derive(Debug)]
struct Inner {
    batches: VecDeque<Arc<Batch>>,
    next_seq: u64,
    capacity: usize,
    acknowledged_seq: u64,
    dropped_batches: u64,
}

/// Counts for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferStats {
    pub buffered: usize,
    pub pushed_seq: u64,
    pub acknowledged_seq: u64,
    pub dropped_batches: u64,
}

impl BatchBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                batches: VecDeque::new(),
                next_seq: 1,
                capacity: capacity.max(1),
                acknowledged_seq: 0,
                dropped_batches: 0,
            }),
            newest: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind, still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a batch of samples and returns its sequence number.
    pub fn push(&self, samples: Vec<Sample>) -> u64 {
        self.push_payload(Payload::Samples(samples))
    }

    pub fn push_inventory(&self, change: InventoryChange) -> u64 {
        self.push_payload(Payload::Inventory(Box::new(change)))
    }

    fn push_payload(&self, payload: Payload) -> u64 {
        let seq = {
            let mut inner = self.lock();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            if inner.batches.len() >= inner.capacity {
                // Drop the oldest samples, never an inventory change: later
                // inventory diffs build on it, and it is small and rare.
                let victim = inner
                    .batches
                    .iter()
                    .position(|batch| matches!(batch.payload, Payload::Samples(_)))
                    .unwrap_or(0);
                inner.batches.remove(victim);
                inner.dropped_batches += 1;
                tracing::warn!(
                    message = "Buffer full; dropped the oldest unacknowledged sample batch.",
                    capacity = inner.capacity,
                    dropped_total = inner.dropped_batches
                );
            }
            inner.batches.push_back(Arc::new(Batch { seq, payload }));
            seq
        };
        self.newest.send_replace(seq);
        seq
    }

    /// Forgets every batch at or below `seq`.
    pub fn acknowledge(&self, seq: u64) {
        let mut inner = self.lock();
        inner.acknowledged_seq = inner.acknowledged_seq.max(seq);
        while inner.batches.front().is_some_and(|batch| batch.seq <= seq) {
            inner.batches.pop_front();
        }
    }

    /// The oldest buffered batch after `seq`, if any.
    pub fn next_after(&self, seq: u64) -> Option<Arc<Batch>> {
        self.lock()
            .batches
            .iter()
            .find(|batch| batch.seq > seq)
            .cloned()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    pub fn stats(&self) -> BufferStats {
        let inner = self.lock();
        BufferStats {
            buffered: inner.batches.len(),
            pushed_seq: inner.next_seq - 1,
            acknowledged_seq: inner.acknowledged_seq,
            dropped_batches: inner.dropped_batches,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_increase_and_acks_release_batches() {
        let buffer = BatchBuffer::new(10);
        assert_eq!(buffer.push(vec![]), 1);
        assert_eq!(buffer.push(vec![]), 2);
        assert_eq!(buffer.push(vec![]), 3);
        assert_eq!(buffer.next_after(0).unwrap().seq, 1);
        buffer.acknowledge(2);
        assert_eq!(buffer.next_after(0).unwrap().seq, 3);
        assert_eq!(buffer.stats().buffered, 1);
        assert_eq!(buffer.stats().acknowledged_seq, 2);
        assert!(buffer.next_after(3).is_none());
    }

    #[test]
    fn full_buffer_drops_the_oldest_and_counts_it() {
        let buffer = BatchBuffer::new(2);
        for _ in 0..5 {
            buffer.push(vec![]);
        }
        let stats = buffer.stats();
        assert_eq!(stats.buffered, 2);
        assert_eq!(stats.dropped_batches, 3);
        assert_eq!(buffer.next_after(0).unwrap().seq, 4);
    }

    #[test]
    fn a_full_buffer_keeps_inventory_changes() {
        let buffer = BatchBuffer::new(2);
        let inventory = buffer.push_inventory(InventoryChange {
            full: true,
            diff: Default::default(),
            packages_fingerprint: 1,
            timestamp_ms: 1,
        });
        for _ in 0..3 {
            buffer.push(vec![]);
        }
        assert_eq!(
            buffer.next_after(0).unwrap().seq,
            inventory,
            "the snapshot survives"
        );
        assert_eq!(buffer.stats().buffered, 2);
        assert_eq!(buffer.stats().dropped_batches, 2);
    }

    #[test]
    fn push_wakes_subscribers() {
        let buffer = BatchBuffer::new(2);
        let mut newest = buffer.subscribe();
        buffer.push(vec![]);
        assert!(newest.has_changed().unwrap());
        assert_eq!(*newest.borrow_and_update(), 1);
    }
}
