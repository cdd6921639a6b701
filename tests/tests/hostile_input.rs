//! Malformed, oversized and unauthenticated input is refused without harming
//! the collector: a raw gRPC client over real TLS talks to the real binary.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Duration;

use steward_proto::v1 as pb;
use steward_proto::v1::ingest_client::IngestClient;
use steward_tests::{Collector, DEADLINE, poll};
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

async fn client(collector: &Collector) -> IngestClient<tonic::transport::Channel> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = std::fs::read(collector.path("ca.pem")).unwrap();
    let channel =
        Endpoint::from_shared(format!("https://127.0.0.1:{}", collector.grpc_addr.port()))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .domain_name("127.0.0.1"),
            )
            .unwrap()
            .connect()
            .await
            .unwrap();
    IngestClient::new(channel).max_encoding_message_size(64 << 20)
}

fn token(collector: &Collector) -> String {
    let tokens = std::fs::read_to_string(collector.path("agent-tokens")).unwrap();
    tokens.lines().last().unwrap().to_string()
}

fn hello(token: String) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(pb::Hello {
            agent_id: "raw-client".into(),
            agent_version: "test".into(),
            hostname: "raw".into(),
            token,
            epoch: 42,
            inventory: None,
        })),
    }
}

fn batch(seq: u64, samples: Vec<pb::Sample>) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Batch(pb::SampleBatch {
            seq,
            samples,
        })),
    }
}

fn sample(metric: &str, value: f64) -> pb::Sample {
    pb::Sample {
        metric: metric.into(),
        labels: vec![],
        value,
        timestamp_ms: 1_700_000_000_000,
    }
}

/// Waits for the ack of `seq`; returns it (with what it says was refused).
async fn assert_acked(inbound: &mut tonic::Streaming<pb::CollectorMessage>, seq: u64) -> pb::Ack {
    let message = inbound.next().await.unwrap().unwrap();
    let Some(pb::collector_message::Kind::Ack(ack)) = message.kind else {
        panic!("expected an ack, got {message:?}");
    };
    assert_eq!(ack.committed_seq, seq);
    ack
}

fn assert_still_serving(collector: &Collector) {
    let (status, body) = collector.get("/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_without_hello_or_with_bad_token_is_refused() {
    let collector = Collector::start();
    let mut client = client(&collector).await;

    let refused = client
        .stream(tokio_stream::iter(vec![batch(1, vec![sample("a.b", 1.0)])]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    let refused = client
        .stream(tokio_stream::iter(vec![hello(
            "not-a-valid-token-at-all".into(),
        )]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");

    assert_eq!(collector.counter("steward_agents_rejected_auth_total"), 1);
    assert_eq!(
        collector.counter("steward_streams_rejected_protocol_total"),
        1
    );
    assert_still_serving(&collector);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_samples_are_dropped_and_counted_while_the_batch_is_stored() {
    let collector = Collector::start();
    let mut client = client(&collector).await;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender.send(hello(token(&collector))).await.unwrap();
    let mut inbound = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let welcome = inbound.next().await.unwrap().unwrap();
    assert!(matches!(
        welcome.kind,
        Some(pb::collector_message::Kind::Welcome(_))
    ));
    sender
        .send(batch(
            1,
            vec![
                sample("good.metric", 1.0),
                sample("Bad Name", 1.0),
                sample("nan.metric", f64::NAN),
            ],
        ))
        .await
        .unwrap();
    let ack = assert_acked(&mut inbound, 1).await;
    assert_eq!(ack.refused_samples, 2, "the ack says what was dropped");
    assert_eq!(ack.refused_reason, "2 invalid (name or value)");
    assert_eq!(collector.counter("steward_samples_rejected_total"), 2);
    let series = collector.get_json("/api/v1/series?agent=raw-client");
    let metrics: Vec<&str> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"].as_str().unwrap())
        .collect();
    assert_eq!(metrics, ["good.metric"]);

    // A resend of batch 1 is acknowledged again but not stored twice.
    sender
        .send(batch(1, vec![sample("good.metric", 2.0)]))
        .await
        .unwrap();
    assert_acked(&mut inbound, 1).await;
    assert_eq!(collector.counter("steward_batches_duplicate_total"), 1);
    let history = collector.get_json(&format!(
        "/api/v1/series/query?agent=raw-client&metric=good.metric&from=0&to={}",
        i64::MAX
    ));
    let points = history["series"][0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 1, "stored once: {history}");
    assert_eq!(points[0]["v"], 1.0);
    let (status, body) = collector.get(
        "/api/v1/series/query?agent=raw-client&metric=good.metric&from=0&to=999999999999&step=1ms",
    );
    assert_eq!(
        status, 400,
        "an unbounded number of steps is refused: {body}"
    );
    assert!(body.contains("query too large"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_ends_only_that_stream() {
    let collector =
        Collector::start_with(|text| text.push_str("\n[limits]\nmax_message_bytes = 65536\n"));
    let mut client = client(&collector).await;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender.send(hello(token(&collector))).await.unwrap();
    let mut inbound = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    inbound.next().await.unwrap().unwrap();
    let huge = (0..5_000)
        .map(|index| sample(&format!("metric.number_{index}"), 1.0))
        .collect();
    sender.send(batch(1, huge)).await.unwrap();
    let ended = tokio::time::timeout(DEADLINE, inbound.next())
        .await
        .expect("the stream ends");
    match ended {
        Some(Ok(message)) => panic!("an oversized batch must not be acknowledged: {message:?}"),
        Some(Err(status)) => assert_ne!(status.code(), tonic::Code::Ok),
        None => {}
    }
    poll(DEADLINE, "the broken stream to be counted", || {
        (collector.counter("steward_streams_broken_total") >= 1).then_some(())
    });
    assert_still_serving(&collector);
    let stored: i64 = collector
        .database()
        .query_row("SELECT count(*) FROM batches", [], |row| row.get(0))
        .unwrap();
    assert_eq!(stored, 0);
}

#[test]
fn garbage_on_the_grpc_port_does_not_crash_the_collector() {
    let mut collector = Collector::start();
    for payload in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..],
        &[0u8; 4096][..],
    ] {
        let mut stream = std::net::TcpStream::connect(collector.grpc_addr).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = stream.write_all(payload);
    }
    assert_still_serving(&collector);
    assert!(collector.process.is_running());
}
