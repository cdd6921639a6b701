//! What every exporter shares, pure: the bounded queue of committed samples
//! (oldest dropped first), what an attempt's answer means, and the retry
//! delays. The wire formats live in `remote_write.rs` and `otlp.rs`; the
//! sending loop in `service.rs`.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::store::SampleRecord;

/// The samples of one committed batch, as the exporter queues them. Shared
/// (`Arc`) by the queues of every configured endpoint.
#[derive(Debug)]
pub struct CommittedBatch {
    pub agent_id: String,
    /// The host name the agent reported in its hello; empty: unknown.
    pub host: Arc<str>,
    pub samples: Vec<SampleRecord>,
}

/// Part of a queued batch taken for one request.
#[derive(Debug, Clone)]
pub struct QueuedSlice {
    pub batch: Arc<CommittedBatch>,
    pub range: Range<usize>,
}

impl QueuedSlice {
    pub fn samples(&self) -> &[SampleRecord] {
        &self.batch.samples[self.range.clone()]
    }
}

/// Committed samples waiting to be sent, at most `capacity` of them.
///
/// When a batch does not fit, the *oldest* queued samples are dropped to make
/// room: after an outage the receiver gets the most recent history (what
/// dashboards show, and what Prometheus still accepts: it refuses samples
/// older than its head block), and the gap lies in the past. A batch larger
/// than the whole queue is dropped itself.
#[derive(Debug)]
pub struct SampleQueue {
    entries: VecDeque<Arc<CommittedBatch>>,
    /// Samples of the front entry already taken.
    front_taken: usize,
    /// Samples queued (not yet taken), the bound applies to this.
    queued: usize,
    capacity: usize,
}

impl SampleQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            front_taken: 0,
            queued: 0,
            capacity,
        }
    }

    /// Samples waiting.
    pub fn len(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queues `batch`; returns how many samples were dropped for it (older
    /// ones, or the batch itself when it alone exceeds the capacity).
    pub fn push(&mut self, batch: Arc<CommittedBatch>) -> usize {
        let size = batch.samples.len();
        if size == 0 {
            return 0;
        }
        if size > self.capacity {
            return size;
        }
        let mut dropped = 0;
        while self.queued + size > self.capacity {
            let Some(oldest) = self.entries.pop_front() else {
                break;
            };
            let left = oldest.samples.len() - self.front_taken;
            self.front_taken = 0;
            self.queued -= left;
            dropped += left;
        }
        self.queued += size;
        self.entries.push_back(batch);
        dropped
    }

    /// Takes up to `max` samples from the front, oldest first.
    pub fn take(&mut self, max: usize) -> Vec<QueuedSlice> {
        let mut taken = Vec::new();
        let mut count = 0;
        while count < max {
            let Some(front) = self.entries.front() else {
                break;
            };
            let start = self.front_taken;
            let end = front.samples.len().min(start.saturating_add(max - count));
            taken.push(QueuedSlice {
                batch: Arc::clone(front),
                range: start..end,
            });
            count += end - start;
            if end == front.samples.len() {
                self.entries.pop_front();
                self.front_taken = 0;
            } else {
                self.front_taken = end;
            }
        }
        self.queued -= count;
        taken
    }
}

/// Samples in `slices`.
pub fn sample_count(slices: &[QueuedSlice]) -> usize {
    slices.iter().map(|slice| slice.range.len()).sum()
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    /// Accepted except `rejected` samples, which the receiver will never
    /// take (OTLP's partial success): those are counted as refused.
    PartlyRefused {
        rejected: u64,
    },
    /// Try the same request again, not before `at_least` if the receiver said so.
    Retry {
        at_least: Option<Duration>,
    },
    /// The receiver will never accept this request: drop it (as Prometheus
    /// does on a 4xx other than 429), counted.
    Refused,
}

/// Exponential backoff between `min` and `max`, doubled after each failure
/// and reset by a success; each delay is jittered down by up to half so many
/// collectors do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The delay before the next attempt; `jitter` is uniform in `[0, 1)`.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(1.0 - jitter.clamp(0.0, 1.0) / 2.0)
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Samples and batches for the exporters' tests.
#[cfg(test)]
pub mod fixtures {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::CommittedBatch;
    use crate::store::SampleRecord;

    pub fn sample(metric: &str, labels: &[(&str, &str)], value: f64, at: i64) -> SampleRecord {
        SampleRecord {
            metric: metric.into(),
            labels: labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect::<BTreeMap<_, _>>(),
            value,
            timestamp_ms: at,
        }
    }

    pub fn batch(agent: &str, host: &str, samples: Vec<SampleRecord>) -> Arc<CommittedBatch> {
        Arc::new(CommittedBatch {
            agent_id: agent.into(),
            host: host.into(),
            samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{batch, sample};
    use super::*;

    fn sized(size: usize) -> Arc<CommittedBatch> {
        batch(
            "a",
            "h",
            (0..size)
                .map(|at| sample("cpu.usage_percent", &[], 1.0, at as i64))
                .collect(),
        )
    }

    #[test]
    fn a_full_queue_drops_the_oldest_samples_and_counts_them() {
        let mut queue = SampleQueue::new(10);
        assert_eq!(queue.push(sized(4)), 0);
        assert_eq!(queue.push(sized(4)), 0);
        // 4 + 4 + 4 > 10: the first batch goes.
        assert_eq!(queue.push(sized(4)), 4);
        assert_eq!(queue.len(), 8);
        // Half of the front batch taken; overflow then drops only its rest.
        let taken = queue.take(2);
        assert_eq!(sample_count(&taken), 2);
        assert_eq!(queue.len(), 6);
        assert_eq!(queue.push(sized(5)), 2);
        assert_eq!(queue.len(), 9);
        // Larger than the whole queue: the batch itself is dropped.
        assert_eq!(queue.push(sized(11)), 11);
        assert_eq!(queue.len(), 9);
        assert_eq!(queue.push(sized(0)), 0);
    }

    #[test]
    fn take_splits_batches_and_keeps_their_order() {
        let mut queue = SampleQueue::new(100);
        queue.push(sized(3));
        queue.push(sized(5));
        let first = queue.take(4);
        let ranges: Vec<Range<usize>> = first.iter().map(|slice| slice.range.clone()).collect();
        assert_eq!(ranges, [0..3, 0..1]);
        let rest = queue.take(100);
        let ranges: Vec<Range<usize>> = rest.iter().map(|slice| slice.range.clone()).collect();
        assert_eq!(ranges, vec![1..5usize]);
        assert!(queue.is_empty());
        assert!(queue.take(10).is_empty());
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u128> = (0..5)
            .map(|_| backoff.next_delay(0.0).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(backoff.next_delay(0.999_999).as_millis(), 250);
        backoff.reset();
        assert_eq!(backoff.next_delay(0.5).as_millis(), 75);
    }
}
