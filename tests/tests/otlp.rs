//! End to end: the collector exports committed samples as OTLP/gRPC metrics
//! (`opentelemetry.proto.collector.metrics.v1.MetricsService/Export`) to a
//! real tonic gRPC server in this test, on loopback, that records every
//! request and answers as planned. Debian packages no OpenTelemetry
//! Collector, so this server is the receiver; it decodes with the same
//! vendored protos, which keep the upstream field numbers.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use steward_proto::opentelemetry::proto::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use steward_proto::opentelemetry::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use steward_proto::opentelemetry::proto::common::v1::{KeyValue, any_value};
use steward_proto::opentelemetry::proto::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, metric,
};
use steward_tests::{Collector, DEADLINE, poll};
use tonic::codec::CompressionEncoding;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Accept,
    Unavailable,
    InvalidArgument,
    /// OK with a partial success refusing this many data points.
    RejectPoints(i64),
}

#[derive(Debug, Clone)]
struct Received {
    request: ExportMetricsServiceRequest,
    /// Lower-case names, as they came.
    metadata: BTreeMap<String, String>,
    answer: Answer,
}

impl Received {
    fn data_points(&self) -> usize {
        self.request
            .resource_metrics
            .iter()
            .flat_map(|resource| &resource.scope_metrics)
            .flat_map(|scope| &scope.metrics)
            .map(|metric| points(metric).len())
            .sum()
    }
}

#[derive(Clone)]
struct Recorder {
    received: Arc<Mutex<Vec<Received>>>,
    /// Answers still planned, next last; `Accept` once empty.
    plan: Arc<Mutex<Vec<Answer>>>,
}

#[tonic::async_trait]
impl MetricsService for Recorder {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let metadata = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    value.to_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let answer = self.plan.lock().unwrap().pop().unwrap_or(Answer::Accept);
        self.received.lock().unwrap().push(Received {
            request: request.into_inner(),
            metadata,
            answer,
        });
        match answer {
            Answer::Accept => Ok(Response::new(ExportMetricsServiceResponse::default())),
            Answer::RejectPoints(rejected) => Ok(Response::new(ExportMetricsServiceResponse {
                partial_success: Some(ExportMetricsPartialSuccess {
                    rejected_data_points: rejected,
                    error_message: "some points are too old".into(),
                }),
            })),
            Answer::Unavailable => Err(Status::unavailable("warming up")),
            Answer::InvalidArgument => Err(Status::invalid_argument("malformed")),
        }
    }
}

/// A tonic `MetricsService` on a free loopback port, with its own runtime
/// (dropped, and so stopped, with the receiver).
struct OtlpReceiver {
    address: SocketAddr,
    recorder: Recorder,
    /// Bound but not served yet (see [`OtlpReceiver::serve`]).
    listener: Option<tokio::net::TcpListener>,
    runtime: tokio::runtime::Runtime,
}

impl OtlpReceiver {
    /// Serves plain gRPC (h2c) at once.
    fn start(plan: &[Answer]) -> Self {
        let mut receiver = Self::bind(plan);
        receiver.serve(None);
        receiver
    }

    /// Takes a port; nothing answers on it until [`serve`](Self::serve).
    fn bind(plan: &[Answer]) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let recorder = Recorder {
            received: Arc::default(),
            plan: Arc::new(Mutex::new(plan.iter().rev().copied().collect())),
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        Self {
            address: listener.local_addr().unwrap(),
            recorder,
            listener: Some(listener),
            runtime,
        }
    }

    /// Starts answering, over TLS with `identity` if given.
    fn serve(&mut self, identity: Option<Identity>) {
        let listener = self.listener.take().expect("served once");
        let service = MetricsServiceServer::new(self.recorder.clone())
            .accept_compressed(CompressionEncoding::Gzip);
        let _entered = self.runtime.enter();
        let mut builder = tonic::transport::Server::builder();
        if let Some(identity) = identity {
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(identity))
                .unwrap();
        }
        self.runtime.spawn(
            builder
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
    }

    fn requests(&self) -> Vec<Received> {
        self.recorder.received.lock().unwrap().clone()
    }

    fn plan_used_up(&self) -> bool {
        self.recorder.plan.lock().unwrap().is_empty()
    }
}

fn otlp_config(receiver: &OtlpReceiver, extra: &str) -> String {
    format!(
        "\n[[export.otlp]]\nname = \"test\"\nendpoint = \"http://{}\"\nbatch_wait = \"100ms\"\nmin_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n{extra}",
        receiver.address
    )
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|pair| {
            let value = match pair.value.as_ref().and_then(|value| value.value.as_ref()) {
                Some(any_value::Value::StringValue(text)) => text.clone(),
                other => format!("{other:?}"),
            };
            (pair.key.clone(), value)
        })
        .collect()
}

fn points(metric: &Metric) -> &[NumberDataPoint] {
    match &metric.data {
        Some(metric::Data::Gauge(gauge)) => &gauge.data_points,
        Some(metric::Data::Sum(sum)) => &sum.data_points,
        None => &[],
    }
}

/// Finds `name` among the metrics of the resource with `host.name` = `host`.
fn find_metric(
    requests: &[Received],
    host: &str,
    name: &str,
) -> Option<(BTreeMap<String, String>, Metric)> {
    requests.iter().find_map(|received| {
        received
            .request
            .resource_metrics
            .iter()
            .find_map(|resource| {
                let resource_attributes = attributes(&resource.resource.as_ref()?.attributes);
                if resource_attributes.get("host.name").map(String::as_str) != Some(host) {
                    return None;
                }
                let metric = resource
                    .scope_metrics
                    .iter()
                    .flat_map(|scope| &scope.metrics)
                    .find(|metric| metric.name == name)?;
                Some((resource_attributes, metric.clone()))
            })
    })
}

#[test]
fn committed_samples_arrive_over_otlp_and_an_unavailable_receiver_is_retried() {
    // UNAVAILABLE is retryable in the OTLP specification: the same request
    // is sent again, and every committed sample arrives once.
    let receiver = OtlpReceiver::start(&[Answer::Unavailable, Answer::Unavailable]);
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("otlp-api-key");
    std::fs::write(&key_file, "k3y\n").unwrap();
    let collector = Collector::start_with(|text| {
        text.push_str(&otlp_config(
            &receiver,
            &format!(
                "headers = {{ x-tenant = \"ops\" }}\nheader_files = {{ api-key = \"{}\" }}\ncompression = \"gzip\"\n",
                steward_tests::path_str(&key_file)
            ),
        ));
    });
    let mut agent = collector.start_agent("web", |text| text.push_str("hostname = \"otlp-1\"\n"));
    let id = collector.connected_agent_id("otlp-1");

    let (resource, cpu) = poll(DEADLINE, "steward.cpu.usage_percent to arrive", || {
        find_metric(&receiver.requests(), "otlp-1", "steward.cpu.usage_percent")
    });
    assert_eq!(resource["service.instance.id"], id);
    let Some(metric::Data::Gauge(gauge)) = &cpu.data else {
        panic!("a gauge: {cpu:?}");
    };
    let total = gauge
        .data_points
        .iter()
        .find(|point| attributes(&point.attributes).get("cpu").map(String::as_str) == Some("total"))
        .expect("a cpu=total point");
    assert_eq!(
        attributes(&total.attributes).keys().collect::<Vec<_>>(),
        ["cpu"],
        "identity travels as resource attributes only"
    );
    let now_ns = steward_tests::now_ms() as u64 * 1_000_000;
    assert!(
        (now_ns - 120_000_000_000..=now_ns + 5_000_000_000).contains(&total.time_unix_nano),
        "{total:?}"
    );
    let (_, rx) = poll(DEADLINE, "steward.net.rx_bytes to arrive", || {
        find_metric(&receiver.requests(), "otlp-1", "steward.net.rx_bytes")
    });
    let Some(metric::Data::Sum(sum)) = &rx.data else {
        panic!("a counter is a sum: {rx:?}");
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );

    poll(DEADLINE, "an accepted request after the failures", || {
        let accepted = receiver
            .requests()
            .iter()
            .filter(|received| received.answer == Answer::Accept)
            .count();
        (receiver.plan_used_up() && accepted >= 2).then_some(())
    });
    agent.kill9();
    agent.wait_exit(DEADLINE);
    let ingested = collector.wait_export_caught_up("otlp");

    let requests = receiver.requests();
    let answers: Vec<Answer> = requests.iter().map(|received| received.answer).collect();
    assert_eq!(
        answers[..3],
        [Answer::Unavailable, Answer::Unavailable, Answer::Accept],
        "{answers:?}"
    );
    for failed in &requests[..2] {
        assert_eq!(
            failed.request, requests[2].request,
            "a retry resends the request"
        );
    }
    for received in &requests {
        assert_eq!(
            received.metadata.get("api-key").map(String::as_str),
            Some("k3y")
        );
        assert_eq!(
            received.metadata.get("x-tenant").map(String::as_str),
            Some("ops")
        );
        assert_eq!(
            received.metadata.get("grpc-encoding").map(String::as_str),
            Some("gzip")
        );
    }
    let delivered: usize = requests
        .iter()
        .filter(|received| received.answer == Answer::Accept)
        .map(Received::data_points)
        .sum();
    assert_eq!(
        delivered as u64, ingested,
        "every stored sample is delivered once"
    );
    assert!(collector.counter("steward_otlp_retries_total") >= 2);
    assert!(collector.counter("steward_otlp_requests_failed_total") >= 2);
    assert_eq!(collector.counter("steward_otlp_samples_refused_total"), 0);
    assert_eq!(
        collector.counter("steward_otlp_samples_dropped_queue_full_total"),
        0
    );
    assert_eq!(
        collector.counter("steward_remote_write_samples_sent_total"),
        0
    );
}

#[test]
fn partial_successes_and_refusals_are_counted_and_not_retried() {
    // A partial success refuses its rejected points for good (the rest is
    // sent); INVALID_ARGUMENT refuses the whole request; neither is resent.
    let receiver = OtlpReceiver::start(&[Answer::RejectPoints(3), Answer::InvalidArgument]);
    let collector = Collector::start_with(|text| text.push_str(&otlp_config(&receiver, "")));
    let _agent = collector.start_agent("web", |text| text.push_str("hostname = \"otlp-2\"\n"));
    poll(DEADLINE, "a request accepted after the refusals", || {
        let requests = receiver.requests();
        (requests.len() >= 3 && requests[2].answer == Answer::Accept).then_some(())
    });
    let requests = receiver.requests();
    assert_ne!(requests[0].request, requests[1].request, "not retried");
    assert_ne!(requests[1].request, requests[2].request, "not retried");
    let first = requests[0].data_points() as u64;
    let refused = 3 + requests[1].data_points() as u64;
    assert!(first > 3, "{first} points in the first request");
    poll(DEADLINE, "the refusals to be counted", || {
        (collector.counter("steward_otlp_samples_refused_total") >= refused).then_some(())
    });
    assert_eq!(
        collector.counter("steward_otlp_samples_refused_total"),
        refused
    );
    assert!(collector.counter("steward_otlp_samples_sent_total") >= first - 3);
    assert_eq!(collector.counter("steward_otlp_retries_total"), 0);
}

#[test]
fn an_https_receiver_is_verified_against_the_configured_ca() {
    // Two endpoints on one TLS receiver (the certificate `init` made for the
    // collector, for localhost): the one with `tls_ca_file` delivers, the
    // one trusting only the system's CAs never completes a handshake.
    let mut receiver = OtlpReceiver::bind(&[]);
    let endpoint = |name: &str, extra: &str| {
        format!(
            "\n[[export.otlp]]\nname = \"{name}\"\nendpoint = \"https://localhost:{}\"\nheaders = {{ x-endpoint = \"{name}\" }}\nbatch_wait = \"100ms\"\nmin_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n{extra}",
            receiver.address.port()
        )
    };
    let collector = Collector::start_with(|text| {
        text.push_str(&endpoint("trusted", "tls_ca_file = \"ca.pem\"\n"));
        text.push_str(&endpoint("untrusted", ""));
    });
    receiver.serve(Some(Identity::from_pem(
        std::fs::read(collector.path("server.pem")).unwrap(),
        std::fs::read(collector.path("server.key")).unwrap(),
    )));
    let _agent = collector.start_agent("web", |text| text.push_str("hostname = \"otlp-3\"\n"));
    poll(DEADLINE, "samples over TLS, and failed attempts", || {
        let delivered = receiver.requests().len();
        let failed = collector.counter("steward_otlp_requests_failed_total");
        (delivered >= 2 && failed >= 2).then_some(())
    });
    for received in receiver.requests() {
        assert_eq!(
            received.metadata.get("x-endpoint").map(String::as_str),
            Some("trusted")
        );
    }
    assert!(collector.counter("steward_otlp_retries_total") >= 2);
}
