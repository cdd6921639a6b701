//! The gRPC ingest service in-process: `steward_collector::start` serves on
//! 127.0.0.1:0 (plain HTTP/2, loopback only) over a temporary SQLite file,
//! and the generated client speaks the protocol to it, as in tonic's own
//! integration tests. No binaries, no TLS set-up: each test takes well
//! under a second.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use steward_collector::store::SeriesKey;
use steward_collector::{CollectorConfig, RunningCollector};
use steward_proto::v1 as pb;
use steward_proto::v1::ingest_client::IngestClient;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const TOKEN: &str = "in-process-test-token-0123456789";

/// Generous for a loaded 2-core machine; a passing run takes milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);

/// A collector in a temp dir; `stop` cancels it and waits for a clean exit.
struct TestCollector {
    running: RunningCollector,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl TestCollector {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("collector.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[tls]
enabled = false

[auth]
agent_tokens = ["{TOKEN}"]

[storage]
sqlite = "steward.db"
"#
            ),
        )
        .unwrap();
        let config = CollectorConfig::load(&config).unwrap();
        let shutdown = CancellationToken::new();
        let running = steward_collector::start(config, shutdown.clone())
            .await
            .unwrap();
        Self {
            running,
            shutdown,
            _dir: dir,
        }
    }

    async fn client(&self) -> IngestClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.running.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        IngestClient::new(channel)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.running.wait())
            .await
            .expect("the collector stops when cancelled")
            .unwrap();
    }
}

fn hello(agent_id: &str, hostname: &str) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(pb::Hello {
            agent_id: agent_id.into(),
            agent_version: "test".into(),
            hostname: hostname.into(),
            token: TOKEN.into(),
            epoch: 1,
            inventory: None,
        })),
    }
}

fn batch(seq: u64, metric: &str, labels: &[(&str, &str)], value: f64) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Batch(pb::SampleBatch {
            seq,
            samples: vec![pb::Sample {
                metric: metric.into(),
                labels: labels
                    .iter()
                    .map(|(key, value)| pb::Label {
                        key: (*key).into(),
                        value: (*value).into(),
                    })
                    .collect(),
                value,
                timestamp_ms: steward_core::now_ms(),
            }],
        })),
    }
}

/// Opens a stream, sends the hello, checks the welcome; returns the way in and out.
async fn connect(
    collector: &TestCollector,
    hello: pb::AgentMessage,
) -> (
    mpsc::Sender<pb::AgentMessage>,
    tonic::Streaming<pb::CollectorMessage>,
) {
    let mut client = collector.client().await;
    let (outbound, receiver) = mpsc::channel(4);
    outbound.send(hello).await.unwrap();
    let mut inbound = client
        .stream(ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let welcome = next(&mut inbound).await;
    assert!(
        matches!(
            welcome,
            pb::collector_message::Kind::Welcome(pb::Welcome {
                committed_seq: 0,
                ..
            })
        ),
        "{welcome:?}"
    );
    (outbound, inbound)
}

async fn next(inbound: &mut tonic::Streaming<pb::CollectorMessage>) -> pb::collector_message::Kind {
    tokio::time::timeout(DEADLINE, inbound.next())
        .await
        .expect("the collector answers")
        .expect("the stream is open")
        .unwrap()
        .kind
        .expect("a message kind")
}

#[tokio::test]
async fn a_batch_is_acknowledged_with_its_seq_once_its_sample_is_stored() {
    let collector = TestCollector::start().await;
    let (outbound, mut inbound) = connect(&collector, hello("agent-1", "web-01")).await;

    outbound
        .send(batch(1, "disk.used_percent", &[("mount", "/")], 42.5))
        .await
        .unwrap();
    assert_eq!(
        next(&mut inbound).await,
        pb::collector_message::Kind::Ack(pb::Ack {
            committed_seq: 1,
            ..pb::Ack::default()
        })
    );

    // The ack is sent only after commit, so the store already has it.
    let store = &collector.running.store;
    assert_eq!(store.counts().await.unwrap(), (1, 1));
    assert_eq!(store.committed_seq("agent-1", 1).await.unwrap(), 1);
    let key = SeriesKey {
        agent_id: "agent-1".into(),
        metric: "disk.used_percent".into(),
        labels: BTreeMap::from([("mount".into(), "/".into())]),
    };
    assert_eq!(store.latest_value(&key).unwrap().value, 42.5);
    assert_eq!(
        store.agent("agent-1").await.unwrap().unwrap().hostname,
        "web-01"
    );

    drop((outbound, inbound));
    collector.stop().await;
}

#[tokio::test]
async fn agent_text_is_stored_without_control_characters() {
    let collector = TestCollector::start().await;
    let (outbound, mut inbound) = connect(&collector, hello("agent-2", "web\x1b[2J-02\n")).await;

    outbound
        .send(batch(
            1,
            "disk.used_percent",
            &[("mount", "a\x1b[2Jb\n")],
            1.0,
        ))
        .await
        .unwrap();
    assert_eq!(
        next(&mut inbound).await,
        pb::collector_message::Kind::Ack(pb::Ack {
            committed_seq: 1,
            ..pb::Ack::default()
        })
    );

    let store = &collector.running.store;
    assert_eq!(
        store.agent("agent-2").await.unwrap().unwrap().hostname,
        "web[2J-02 "
    );
    let labels: Vec<_> = store
        .latest(Some("agent-2"))
        .into_iter()
        .map(|(key, _)| key.labels)
        .collect();
    assert_eq!(
        labels,
        [BTreeMap::from([(
            "mount".to_string(),
            "a[2Jb ".to_string()
        )])]
    );

    drop((outbound, inbound));
    collector.stop().await;
}
