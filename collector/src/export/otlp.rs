//! OTLP/gRPC metrics export, the pure part: the
//! `ExportMetricsServiceRequest` for queued samples, and what a gRPC answer
//! means (the OTLP specification's retryable codes, `RetryInfo`, partial
//! success). The queue and the backoff are `queue.rs`'s, shared with
//! remote_write; `service.rs` does the sending.
//!
//! The mapping (README "Metric history export"):
//! - one `ResourceMetrics` per agent, with resource attributes `host.name`
//!   (the host name from the agent's hello, when known) and
//!   `service.instance.id` (the agent id), after OpenTelemetry's semantic
//!   conventions; the scope is `steward-collector` and its version;
//! - the metric name is the dotted Steward name under `steward.`
//!   (`cpu.usage_percent` → `steward.cpu.usage_percent`): dotted names are
//!   OpenTelemetry's convention, and its Prometheus translation (dots to
//!   underscores) gives back remote_write's `steward_cpu_usage_percent`;
//! - counters ([`prometheus_names::is_counter`]) are cumulative monotonic
//!   `Sum`s with an unknown start time (0: the agent reports raw counters,
//!   whose reset time it does not know); everything else is a `Gauge`;
//! - data point attributes are the sample's labels with the names
//!   [`prometheus_names::labels`] gives them, without `agent_id` and `host`
//!   (those are resource attributes).

use std::collections::HashMap;
use std::time::Duration;

use steward_proto::opentelemetry::proto::collector::metrics::v1 as service_pb;
use steward_proto::opentelemetry::proto::common::v1 as common_pb;
use steward_proto::opentelemetry::proto::metrics::v1 as metrics_pb;
use steward_proto::opentelemetry::proto::resource::v1 as resource_pb;

use super::queue::{QueuedSlice, Verdict};
use crate::prometheus_names;

/// Resource attribute naming the host (OTel semantic conventions).
pub const HOST_NAME: &str = "host.name";
/// Resource attribute naming the agent (OTel semantic conventions).
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
/// The instrumentation scope of every metric.
pub const SCOPE_NAME: &str = "steward-collector";
/// Prefix of every exported metric name.
pub const METRIC_PREFIX: &str = "steward.";

/// The OTLP metric name for a dotted Steward metric name. OTel instrument
/// names allow `[A-Za-z0-9_.-/]`; anything else becomes `_`.
pub fn metric_name(metric: &str) -> String {
    let mut name = String::with_capacity(METRIC_PREFIX.len() + metric.len());
    name.push_str(METRIC_PREFIX);
    name.extend(metric.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/') {
            c
        } else {
            '_'
        }
    }));
    name
}

fn string_attribute(key: impl Into<String>, value: impl Into<String>) -> common_pb::KeyValue {
    common_pb::KeyValue {
        key: key.into(),
        value: Some(common_pb::AnyValue {
            value: Some(common_pb::any_value::Value::StringValue(value.into())),
        }),
    }
}

/// The request for `slices`: one `ResourceMetrics` per agent, one `Metric`
/// per metric name within it, every sample a data point (in queue order, so
/// oldest first).
pub fn export_request(slices: &[QueuedSlice]) -> service_pb::ExportMetricsServiceRequest {
    // agent id -> index in `resources`; (agent index, metric) -> index in its metrics.
    let mut agents: HashMap<&str, usize> = HashMap::new();
    let mut metrics: HashMap<(usize, &str), usize> = HashMap::new();
    let mut resources: Vec<metrics_pb::ResourceMetrics> = Vec::new();
    for slice in slices {
        let batch = &slice.batch;
        let agent = *agents.entry(batch.agent_id.as_str()).or_insert_with(|| {
            let mut attributes = Vec::with_capacity(2);
            if !batch.host.is_empty() {
                attributes.push(string_attribute(HOST_NAME, &*batch.host));
            }
            attributes.push(string_attribute(SERVICE_INSTANCE_ID, &batch.agent_id));
            resources.push(metrics_pb::ResourceMetrics {
                resource: Some(resource_pb::Resource {
                    attributes,
                    dropped_attributes_count: 0,
                }),
                scope_metrics: vec![metrics_pb::ScopeMetrics {
                    scope: Some(common_pb::InstrumentationScope {
                        name: SCOPE_NAME.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics: Vec::new(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            });
            resources.len() - 1
        });
        let scope = &mut resources[agent].scope_metrics[0];
        for sample in slice.samples() {
            let at = *metrics
                .entry((agent, sample.metric.as_str()))
                .or_insert_with(|| {
                    scope.metrics.push(empty_metric(&sample.metric));
                    scope.metrics.len() - 1
                });
            let attributes = prometheus_names::labels(
                "",
                None,
                sample
                    .labels
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_str())),
            )
            .into_iter()
            .filter(|(name, _)| name != prometheus_names::AGENT_LABEL)
            .map(|(name, value)| string_attribute(name, value))
            .collect();
            let point = metrics_pb::NumberDataPoint {
                attributes,
                start_time_unix_nano: 0,
                time_unix_nano: u64::try_from(sample.timestamp_ms)
                    .unwrap_or(0)
                    .saturating_mul(1_000_000),
                value: Some(metrics_pb::number_data_point::Value::AsDouble(sample.value)),
                flags: 0,
            };
            match &mut scope.metrics[at].data {
                Some(metrics_pb::metric::Data::Gauge(gauge)) => gauge.data_points.push(point),
                Some(metrics_pb::metric::Data::Sum(sum)) => sum.data_points.push(point),
                None => {}
            }
        }
    }
    service_pb::ExportMetricsServiceRequest {
        resource_metrics: resources,
    }
}

fn empty_metric(metric: &str) -> metrics_pb::Metric {
    let data = if prometheus_names::is_counter(metric) {
        metrics_pb::metric::Data::Sum(metrics_pb::Sum {
            data_points: Vec::new(),
            aggregation_temporality: metrics_pb::AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })
    } else {
        metrics_pb::metric::Data::Gauge(metrics_pb::Gauge {
            data_points: Vec::new(),
        })
    };
    metrics_pb::Metric {
        name: metric_name(metric),
        description: String::new(),
        unit: String::new(),
        data: Some(data),
    }
}

/// The verdict for an OK answer holding `samples` data points: a partial
/// success refuses its `rejected_data_points` for good (the specification
/// forbids retrying them); the rest is sent.
pub fn classify_response(response: &service_pb::ExportMetricsServiceResponse) -> Verdict {
    match &response.partial_success {
        Some(partial) if partial.rejected_data_points > 0 => Verdict::PartlyRefused {
            rejected: partial.rejected_data_points as u64,
        },
        _ => Verdict::Sent,
    }
}

/// The verdict for a gRPC error, after the OTLP specification ("Failures"):
/// `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`,
/// `UNAVAILABLE` and `DATA_LOSS` are retried; `RESOURCE_EXHAUSTED` only when
/// the receiver sent `RetryInfo` (it expects to recover); every other code
/// refuses the request for good. `retry_delay` (from `RetryInfo`) is a floor
/// for the next delay.
pub fn classify_status(code: tonic::Code, retry_delay: Option<Duration>) -> Verdict {
    use tonic::Code;
    match code {
        Code::Ok => Verdict::Sent,
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Verdict::Retry {
            at_least: retry_delay,
        },
        Code::ResourceExhausted if retry_delay.is_some() => Verdict::Retry {
            at_least: retry_delay,
        },
        _ => Verdict::Refused,
    }
}

/// `google.rpc.Status`, `google.protobuf.Any`, `google.rpc.RetryInfo` and
/// `google.protobuf.Duration`: only the fields needed to read the delay a
/// receiver asks for from a status' binary details.
mod rpc {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<Duration>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    pub const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";
}

/// The receiver's `RetryInfo.retry_delay`, from a status' details (the
/// `grpc-status-details-bin` trailer, a `google.rpc.Status`); capped at 10
/// minutes so a receiver cannot park the exporter for good.
pub fn retry_delay(details: &[u8]) -> Option<Duration> {
    use prost::Message;
    if details.is_empty() {
        return None;
    }
    let status = rpc::Status::decode(details).ok()?;
    let info = status
        .details
        .iter()
        .find(|any| any.type_url == rpc::RETRY_INFO_TYPE)?;
    let delay = rpc::RetryInfo::decode(info.value.as_slice())
        .ok()?
        .retry_delay?;
    let seconds = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos).ok()?;
    Some(Duration::new(seconds.min(600), nanos.min(999_999_999)).min(Duration::from_secs(600)))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::export::queue::fixtures::{batch, sample};
    use crate::store::SampleRecord;

    fn slice(agent: &str, host: &str, samples: Vec<SampleRecord>) -> QueuedSlice {
        let range = 0..samples.len();
        QueuedSlice {
            batch: batch(agent, host, samples),
            range,
        }
    }

    fn attributes(list: &[common_pb::KeyValue]) -> Vec<(String, String)> {
        list.iter()
            .map(|pair| {
                let value = match pair.value.as_ref().and_then(|value| value.value.as_ref()) {
                    Some(common_pb::any_value::Value::StringValue(text)) => text.clone(),
                    other => format!("{other:?}"),
                };
                (pair.key.clone(), value)
            })
            .collect()
    }

    type Point = (Vec<(String, String)>, u64, Option<f64>);

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.to_string(), value.to_string())
    }

    #[test]
    fn samples_map_to_resources_gauges_and_cumulative_sums() {
        let slices = [
            slice(
                "A",
                "web-1",
                vec![
                    sample("cpu.usage_percent", &[("cpu", "total")], 12.5, 1_000),
                    sample("net.rx_bytes", &[("interface", "eth0")], 4096.0, 1_000),
                    sample(
                        "cpu.usage_percent",
                        &[("cpu", "0"), ("host", "x")],
                        3.0,
                        2_000,
                    ),
                ],
            ),
            slice("B", "", vec![sample("mem.used_bytes", &[], 1e9, 1_500)]),
            slice(
                "A",
                "web-1",
                vec![sample("cpu.usage_percent", &[], 7.0, 3_000)],
            ),
        ];
        // Through the wire encoding, as a receiver sees it.
        let request = export_request(&slices);
        let request =
            service_pb::ExportMetricsServiceRequest::decode(request.encode_to_vec().as_slice())
                .unwrap();
        assert_eq!(request.resource_metrics.len(), 2);

        let a = &request.resource_metrics[0];
        assert_eq!(
            attributes(&a.resource.as_ref().unwrap().attributes),
            [pair("host.name", "web-1"), pair("service.instance.id", "A")]
        );
        let scope = &a.scope_metrics[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "steward-collector");
        let names: Vec<&str> = scope.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["steward.cpu.usage_percent", "steward.net.rx_bytes"]);

        let Some(metrics_pb::metric::Data::Gauge(cpu)) = &scope.metrics[0].data else {
            panic!("cpu is a gauge: {:?}", scope.metrics[0]);
        };
        let points: Vec<Point> = cpu
            .data_points
            .iter()
            .map(|point| {
                let value = match point.value {
                    Some(metrics_pb::number_data_point::Value::AsDouble(value)) => Some(value),
                    _ => None,
                };
                (attributes(&point.attributes), point.time_unix_nano, value)
            })
            .collect();
        assert_eq!(
            points,
            [
                (vec![pair("cpu", "total")], 1_000_000_000, Some(12.5)),
                // A sample label named like an identity label keeps
                // prometheus_names' renaming.
                (
                    vec![pair("cpu", "0"), pair("exported_host", "x")],
                    2_000_000_000,
                    Some(3.0)
                ),
                (vec![], 3_000_000_000, Some(7.0)),
            ]
        );

        let Some(metrics_pb::metric::Data::Sum(rx)) = &scope.metrics[1].data else {
            panic!("a counter is a sum: {:?}", scope.metrics[1]);
        };
        assert!(rx.is_monotonic);
        assert_eq!(
            rx.aggregation_temporality,
            metrics_pb::AggregationTemporality::Cumulative as i32
        );
        assert_eq!(rx.data_points[0].start_time_unix_nano, 0);
        assert_eq!(
            attributes(&rx.data_points[0].attributes),
            [pair("interface", "eth0")]
        );

        // A host name not known yet is left out, never sent empty.
        let b = &request.resource_metrics[1];
        assert_eq!(
            attributes(&b.resource.as_ref().unwrap().attributes),
            [pair("service.instance.id", "B")]
        );
    }

    #[test]
    fn metric_names_are_dotted_under_steward() {
        assert_eq!(
            metric_name("cpu.usage_percent"),
            "steward.cpu.usage_percent"
        );
        assert_eq!(metric_name("ping.rtt ms"), "steward.ping.rtt_ms");
    }

    #[test]
    fn grpc_codes_are_retried_or_refused_as_the_otlp_specification_says() {
        use tonic::Code;
        let wait = Some(Duration::from_secs(3));
        let retry = |at_least| Verdict::Retry { at_least };
        let table = [
            (Code::Unavailable, None, retry(None)),
            (Code::Unavailable, wait, retry(wait)),
            (Code::DeadlineExceeded, None, retry(None)),
            (Code::Aborted, None, retry(None)),
            (Code::Cancelled, None, retry(None)),
            (Code::OutOfRange, None, retry(None)),
            (Code::DataLoss, None, retry(None)),
            (Code::ResourceExhausted, wait, retry(wait)),
            // Without RetryInfo the receiver does not expect to recover.
            (Code::ResourceExhausted, None, Verdict::Refused),
            (Code::InvalidArgument, None, Verdict::Refused),
            (Code::Unauthenticated, None, Verdict::Refused),
            (Code::PermissionDenied, None, Verdict::Refused),
            (Code::Unimplemented, None, Verdict::Refused),
            (Code::Internal, None, Verdict::Refused),
            (Code::Unknown, None, Verdict::Refused),
        ];
        for (code, delay, expected) in table {
            assert_eq!(classify_status(code, delay), expected, "{code:?} {delay:?}");
        }
    }

    #[test]
    fn a_partial_success_refuses_only_its_rejected_points() {
        let answer = |rejected: i64| service_pb::ExportMetricsServiceResponse {
            partial_success: Some(service_pb::ExportMetricsPartialSuccess {
                rejected_data_points: rejected,
                error_message: "warning".into(),
            }),
        };
        assert_eq!(
            classify_response(&answer(3)),
            Verdict::PartlyRefused { rejected: 3 }
        );
        // A message with nothing rejected is a warning, not a refusal.
        assert_eq!(classify_response(&answer(0)), Verdict::Sent);
        assert_eq!(
            classify_response(&service_pb::ExportMetricsServiceResponse::default()),
            Verdict::Sent
        );
    }

    #[test]
    fn retry_info_is_read_from_status_details() {
        let details = |type_url: &str, seconds: i64| {
            rpc::Status {
                details: vec![rpc::Any {
                    type_url: type_url.into(),
                    value: rpc::RetryInfo {
                        retry_delay: Some(rpc::Duration {
                            seconds,
                            nanos: 500_000_000,
                        }),
                    }
                    .encode_to_vec(),
                }],
            }
            .encode_to_vec()
        };
        assert_eq!(
            retry_delay(&details(rpc::RETRY_INFO_TYPE, 2)),
            Some(Duration::from_millis(2_500))
        );
        assert_eq!(
            retry_delay(&details(rpc::RETRY_INFO_TYPE, 86_400)),
            Some(Duration::from_secs(600))
        );
        assert_eq!(retry_delay(&details("type.googleapis.com/other", 2)), None);
        assert_eq!(retry_delay(&details(rpc::RETRY_INFO_TYPE, -1)), None);
        assert_eq!(retry_delay(b""), None);
        assert_eq!(retry_delay(b"\xff\xff"), None);
    }
}
