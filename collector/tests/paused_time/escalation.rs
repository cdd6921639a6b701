//! Escalation under paused time, delivered over real loopback HTTP: level 0
//! pages at once, level 1 only after its 10 minutes, and acknowledging stops
//! every level still to come.
//!
//! "Not yet" is read from the outbox (what routing has queued), which does
//! not depend on how fast a delivery crosses the network; "now" is awaited
//! on the receiver, and checked against the collector's clock as the
//! receiver saw it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use steward_collector::domain::{IncidentEvent, IncidentRecord};
use steward_collector::notify::service::NotifyService;
use steward_collector::store::{Notification, NotificationFilter};
use steward_collector::telemetry::Telemetry;
use steward_core::Clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{Harness, MINUTE, SECOND, T0, eventually, quiet};

const DISK: &str = "disk.used_percent";

/// How long after its due time a page may arrive: routing wakes at least
/// every 500 ms, and tests step time by a minute at most.
const SLACK: i64 = 30 * SECOND;

/// A rule that opens at once, and one escalation policy for everything:
/// the first responder now, the team lead 10 minutes later, the head of
/// operations 10 minutes after that.
fn tables(receiver: &Receiver) -> String {
    format!(
        r#"
[[rule]]
name = "disk-full"
metric = "{DISK}"
op = ">"
threshold = 95.0
severity = "critical"

[[channel]]
name = "first-responder"
type = "webhook"
url = "{first}"

[[channel]]
name = "team-lead"
type = "webhook"
url = "{second}"

[[channel]]
name = "head-of-ops"
type = "webhook"
url = "{third}"

[[escalation]]
name = "ops"
levels = [
  {{ notify = ["channel:first-responder"], after = "0s" }},
  {{ notify = ["channel:team-lead"], after = "10m" }},
  {{ notify = ["channel:head-of-ops"], after = "10m" }},
]

[[route]]
escalation = "ops"
"#,
        first = receiver.url("/first-responder"),
        second = receiver.url("/team-lead"),
        third = receiver.url("/head-of-ops"),
    )
}

/// The receiver, and the incidents and notify tasks with an incident open
/// at T0 whose level 0 has been delivered.
async fn open_and_page_level_0() -> (Harness, Receiver, IncidentRecord) {
    // Made before the harness's clock at the same tokio instant (time does
    // not move until the first advance), so both read the same time.
    let receiver = Receiver::start(Clock::following_tokio(T0)).await;
    let mut harness = Harness::start(&tables(&receiver)).await;
    let notify = NotifyService {
        store: Arc::clone(&harness.store),
        config: Arc::clone(&harness.config.notify),
        base_url: harness.config.base_url.clone(),
        telemetry: Arc::new(Telemetry::default()),
        clock: harness.clock,
    };
    let task = tokio::spawn(notify.run(harness.incidents.clone(), harness.shutdown.clone()));
    harness.keep(task);

    harness.sample("db-1", DISK, 97.0).await;
    let opened = harness.next_event().await;
    assert_eq!(opened.event, IncidentEvent::Opened);
    let incident = opened.incident;
    assert_eq!(incident.opened_at_ms, T0);

    let page = eventually("level 0 to reach the first responder", async || {
        receiver.requests().first().cloned()
    })
    .await;
    assert_eq!(page.path, "/first-responder");
    assert_eq!(
        page.idempotency_key,
        Some(format!("{}:escalated.0.0:first-responder", incident.id))
    );
    assert_eq!(page.at_ms, T0, "level 0 pages at once");
    (harness, receiver, incident)
}

/// Outbox rows, oldest first.
async fn outbox(harness: &Harness) -> Vec<Notification> {
    let mut rows = harness
        .store
        .notifications(NotificationFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    rows.reverse();
    rows
}

fn level(row: &Notification) -> Option<usize> {
    match row.event {
        IncidentEvent::Escalated { level, round: 0 } => Some(level),
        _ => None,
    }
}

fn paths(receiver: &Receiver) -> Vec<String> {
    receiver
        .requests()
        .into_iter()
        .map(|request| request.path)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn level_1_pages_only_after_10_minutes_and_acknowledging_stops_level_2() {
    let (harness, receiver, incident) = open_and_page_level_0().await;

    for minute in 1..=9 {
        harness.advance_to(minute * MINUTE).await;
    }
    quiet().await;
    let queued = outbox(&harness).await;
    assert_eq!(
        queued.iter().map(level).collect::<Vec<_>>(),
        vec![Some(0)],
        "only level 0 is queued at +9m: {queued:?}"
    );
    assert_eq!(paths(&receiver), ["/first-responder"]);

    harness.advance_to(10 * MINUTE).await;
    let page = eventually("level 1 to reach the team lead", async || {
        receiver.requests().get(1).cloned()
    })
    .await;
    assert_eq!(page.path, "/team-lead");
    assert_eq!(
        page.idempotency_key,
        Some(format!("{}:escalated.1.0:team-lead", incident.id))
    );
    assert!(
        (T0 + 10 * MINUTE..=T0 + 10 * MINUTE + SLACK).contains(&page.at_ms),
        "level 1 paged at +{} ms, expected +10m",
        page.at_ms - T0
    );
    let row = eventually("level 1 to be recorded as delivered", async || {
        outbox(&harness)
            .await
            .into_iter()
            .find(|row| level(row) == Some(1) && row.state == "delivered")
    })
    .await;
    assert!(row.created_ms >= T0 + 10 * MINUTE, "queued early: {row:?}");

    // Taken at +12m: level 2, due at +20m, never pages.
    harness.advance_to(12 * MINUTE).await;
    harness
        .incidents
        .acknowledge(incident.id, "alice".into(), None)
        .await
        .unwrap();
    for minute in 13..=40 {
        harness.advance_to(minute * MINUTE).await;
    }
    quiet().await;
    let queued = outbox(&harness).await;
    assert!(
        queued.iter().all(|row| level(row) != Some(2)),
        "level 2 queued after the acknowledgement: {queued:?}"
    );
    assert_eq!(paths(&receiver), ["/first-responder", "/team-lead"]);
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn acknowledging_within_10_minutes_means_level_1_never_pages() {
    let (harness, receiver, incident) = open_and_page_level_0().await;

    harness.advance_to(5 * MINUTE).await;
    let acknowledged = harness
        .incidents
        .acknowledge(incident.id, "alice".into(), None)
        .await
        .unwrap();
    assert_eq!(acknowledged.acknowledged_at_ms, Some(T0 + 5 * MINUTE));
    for minute in 6..=30 {
        harness.advance_to(minute * MINUTE).await;
    }
    quiet().await;
    let queued = outbox(&harness).await;
    assert_eq!(
        queued.iter().map(level).collect::<Vec<_>>(),
        vec![Some(0)],
        "only level 0 is ever queued: {queued:?}"
    );
    assert_eq!(paths(&receiver), ["/first-responder"]);
    harness.stop().await;
}

/// One request a [`Receiver`] got, with the collector's clock when it arrived.
#[derive(Debug, Clone)]
struct Received {
    at_ms: i64,
    path: String,
    idempotency_key: Option<String>,
}

/// A loopback HTTP/1.1 receiver in the test's runtime: answers 200 to every
/// request and records it.
struct Receiver {
    address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    accept: JoinHandle<()>,
}

impl Receiver {
    async fn start(clock: Clock) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    if let Some(request) = serve(stream, clock).await {
                        log.lock().unwrap().push(request);
                    }
                });
            }
        });
        Self {
            address,
            received,
            accept,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Reads one request (head and `content-length` body) and answers 200.
async fn serve(mut stream: TcpStream, clock: Clock) -> Option<Received> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let at_ms = clock.now_ms();
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.lines();
    let path = lines.next()?.split_whitespace().nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let header = |wanted: &str| {
        headers
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.clone())
    };
    let length: usize = header("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    Some(Received {
        at_ms,
        path,
        idempotency_key: header("idempotency-key"),
    })
}
