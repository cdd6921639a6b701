//! Prometheus remote_write 1.0, the pure part: the payload
//! (`prometheus.WriteRequest`, Snappy block format) and what an HTTP answer
//! means. The queue and the backoff are `queue.rs`'s, shared with OTLP.
//!
//! No I/O and no clock reads here: `service.rs` does the sending and the
//! waiting, so everything below is table-testable.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;
use steward_proto::prometheus as pb;

pub use super::queue::{CommittedBatch, QueuedSlice, SampleQueue, Verdict};
use crate::prometheus_names;

/// `Content-Type` of a remote_write body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// The headers every remote_write 1.0 request carries besides its type.
pub const HEADERS: [(&str, &str); 2] = [
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::queue::fixtures::{batch, sample};

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
}
