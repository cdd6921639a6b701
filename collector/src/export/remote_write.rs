//! Prometheus remote_write 1.0, the pure part: the bounded queue of
//! committed samples, the payload (`prometheus.WriteRequest`, Snappy block
//! format), what an answer means, and the retry delays.
//!
//! No I/O and no clock reads here: `service.rs` does the sending and the
//! waiting, so everything below is table-testable.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use steward_proto::prometheus as pb;

use crate::prometheus_names;
use crate::store::SampleRecord;

/// `Content-Type` of a remote_write body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// The headers every remote_write 1.0 request carries besides its type.
pub const HEADERS: [(&str, &str); 2] = [
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

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
    fn samples(&self) -> &[SampleRecord] {
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

/// The `WriteRequest` for `slices`: one time series per label set, labels
/// sorted by name (`__name__` among them), samples in timestamp order with one
/// sample per timestamp (the first), as Prometheus requires: it refuses a
/// whole request holding one out-of-order sample.
pub fn write_request(slices: &[QueuedSlice]) -> pb::WriteRequest {
    let mut index: HashMap<Vec<(String, String)>, usize> = HashMap::new();
    let mut timeseries: Vec<pb::TimeSeries> = Vec::new();
    for slice in slices {
        let batch = &slice.batch;
        let host = (!batch.host.is_empty()).then_some(&*batch.host);
        for sample in slice.samples() {
            let mut labels = prometheus_names::labels(
                &batch.agent_id,
                host,
                sample
                    .labels
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_str())),
            );
            labels.push((
                "__name__".to_string(),
                prometheus_names::metric_name(&sample.metric),
            ));
            labels.sort();
            let point = pb::Sample {
                value: sample.value,
                timestamp: sample.timestamp_ms,
            };
            match index.get(&labels) {
                Some(&at) => timeseries[at].samples.push(point),
                None => {
                    index.insert(labels.clone(), timeseries.len());
                    timeseries.push(pb::TimeSeries {
                        labels: labels
                            .into_iter()
                            .map(|(name, value)| pb::Label { name, value })
                            .collect(),
                        samples: vec![point],
                    });
                }
            }
        }
    }
    for series in &mut timeseries {
        series.samples.sort_by_key(|sample| sample.timestamp);
        series.samples.dedup_by_key(|sample| sample.timestamp);
    }
    pb::WriteRequest { timeseries }
}

/// The HTTP body: the protobuf encoding, Snappy-compressed in the block
/// format (not the framed one), as remote_write 1.0 specifies.
pub fn encode(request: &pb::WriteRequest) -> Vec<u8> {
    let raw = request.encode_to_vec();
    // Compressing a buffer in memory fails only past snap's ~4 GiB input
    // limit, far above any request (max_samples_per_send is bounded).
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    /// Try the same request again, not before `at_least` if the receiver said so.
    Retry {
        at_least: Option<Duration>,
    },
    /// The receiver will never accept this request: drop it (as Prometheus
    /// does on a 4xx other than 429), counted.
    Refused,
}

/// The verdict for an HTTP answer: 2xx sent; 429 and 5xx retried (honouring
/// `Retry-After`); any other status (4xx, and 1xx/3xx, which a POST should
/// never get) refused.
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> Verdict {
    match status {
        200..=299 => Verdict::Sent,
        429 | 500..=599 => Verdict::Retry {
            at_least: retry_after,
        },
        _ => Verdict::Refused,
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn sample(metric: &str, labels: &[(&str, &str)], value: f64, at: i64) -> SampleRecord {
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

    fn batch(agent: &str, host: &str, samples: Vec<SampleRecord>) -> Arc<CommittedBatch> {
        Arc::new(CommittedBatch {
            agent_id: agent.into(),
            host: host.into(),
            samples,
        })
    }

    fn sized(size: usize) -> Arc<CommittedBatch> {
        batch(
            "a",
            "h",
            (0..size)
                .map(|at| sample("cpu.usage_percent", &[], 1.0, at as i64))
                .collect(),
        )
    }

    type Labelled = Vec<(String, String)>;
    type Points = Vec<(f64, i64)>;

    fn decode(body: &[u8]) -> pb::WriteRequest {
        let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
        pb::WriteRequest::decode(raw.as_slice()).unwrap()
    }

    #[test]
    fn a_request_round_trips_through_snappy_and_protobuf() {
        let slices = [QueuedSlice {
            batch: batch(
                "A",
                "web-1",
                vec![
                    sample("cpu.usage_percent", &[("cpu", "total")], 12.5, 2_000),
                    sample("cpu.usage_percent", &[("cpu", "total")], 10.0, 1_000),
                    sample("cpu.usage_percent", &[("cpu", "0")], 3.0, 1_000),
                    sample("mem.used_bytes", &[], 1e9, 1_000),
                ],
            ),
            range: 0..4,
        }];
        let decoded = decode(&encode(&write_request(&slices)));
        let series: Vec<(Labelled, Points)> = decoded
            .timeseries
            .iter()
            .map(|series| {
                (
                    series
                        .labels
                        .iter()
                        .map(|label| (label.name.clone(), label.value.clone()))
                        .collect(),
                    series
                        .samples
                        .iter()
                        .map(|point| (point.value, point.timestamp))
                        .collect(),
                )
            })
            .collect();
        let labels = |name: &str, cpu: Option<&str>| {
            let mut labels = vec![
                ("__name__".to_string(), name.to_string()),
                ("agent_id".into(), "A".into()),
            ];
            if let Some(cpu) = cpu {
                labels.push(("cpu".into(), cpu.into()));
            }
            labels.push(("host".into(), "web-1".into()));
            labels
        };
        assert_eq!(
            series,
            vec![
                (
                    labels("steward_cpu_usage_percent", Some("total")),
                    // Sorted by time although received the other way round.
                    vec![(10.0, 1_000), (12.5, 2_000)]
                ),
                (
                    labels("steward_cpu_usage_percent", Some("0")),
                    vec![(3.0, 1_000)]
                ),
                (labels("steward_mem_used_bytes", None), vec![(1e9, 1_000)]),
            ]
        );
    }

    #[test]
    fn labels_sort_by_name_even_before_dunder_name_and_host_may_be_unknown() {
        let slices = [QueuedSlice {
            batch: batch(
                "A",
                "",
                vec![sample("disk.used", &[("Mount", "/")], 1.0, 5)],
            ),
            range: 0..1,
        }];
        let request = write_request(&slices);
        let names: Vec<&str> = request.timeseries[0]
            .labels
            .iter()
            .map(|label| label.name.as_str())
            .collect();
        assert_eq!(names, ["Mount", "__name__", "agent_id"]);
    }

    #[test]
    fn one_sample_per_timestamp_is_sent() {
        let slices = [QueuedSlice {
            batch: batch(
                "A",
                "h",
                vec![sample("x", &[], 1.0, 5), sample("x", &[], 2.0, 5)],
            ),
            range: 0..2,
        }];
        let request = write_request(&slices);
        assert_eq!(
            request.timeseries[0].samples,
            vec![pb::Sample {
                value: 1.0,
                timestamp: 5
            }]
        );
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
    fn answers_are_sent_retried_or_refused() {
        let wait = Some(Duration::from_secs(7));
        let table = [
            (200, None, Verdict::Sent),
            (204, None, Verdict::Sent),
            (429, wait, Verdict::Retry { at_least: wait }),
            (500, None, Verdict::Retry { at_least: None }),
            (503, wait, Verdict::Retry { at_least: wait }),
            (400, None, Verdict::Refused),
            (401, None, Verdict::Refused),
            (404, None, Verdict::Refused),
            (413, None, Verdict::Refused),
            (301, None, Verdict::Refused),
        ];
        for (status, retry_after, expected) in table {
            assert_eq!(classify_status(status, retry_after), expected, "{status}");
        }
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
