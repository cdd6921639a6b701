//! What every paused-time test needs: a store and config in a temp dir, the
//! incidents task on a clock that follows tokio's, a way to hold tokio's
//! auto-advance off, and polling with a wall-time deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_collector::CollectorConfig;
use steward_collector::incidents::{self, IncidentHandle, IncidentUpdate, RulesInput, Suppression};
use steward_collector::store::{Labels, Store};
use steward_core::Clock;
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// 2026-01-05 09:00:00 UTC: where every test's collector clock starts.
pub const T0: i64 = 1_767_603_600_000;
pub const SECOND: i64 = 1_000;
pub const MINUTE: i64 = 60 * SECOND;

/// Wall time a test may wait for work that needs no tokio time (a commit,
/// a delivery over loopback). Generous for a loaded 2-core machine; a
/// passing wait takes a millisecond or two.
const REAL_DEADLINE: Duration = Duration::from_secs(10);

/// Wall time given to the tasks before asserting that something did *not*
/// happen. Such a check can only pass wrongly (too early), never fail
/// wrongly; each is backed by a timestamp check once the thing happens.
const QUIET: Duration = Duration::from_millis(20);

/// The minimal collector.toml every test extends with its own tables.
const BASE_CONFIG: &str = r#"
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[tls]
enabled = false

[auth]
agent_tokens = ["paused-time-test-token-0123456789"]

[storage]
sqlite = "steward.db"
"#;

/// While alive, tokio's paused clock does not auto-advance: it moves only
/// when the test calls `tokio::time::advance`.
///
/// With `start_paused`, tokio moves the clock to the next timer whenever
/// every task is idle, and a task waiting on the store's writer (a std
/// thread) or on a socket counts as idle: the incidents tick, the delivery
/// poll and the HTTP timeout could all fire "early" in the middle of a
/// commit. Tokio does not auto-advance while a `spawn_blocking` task runs
/// (its documented way to wait for real I/O under paused time); this keeps
/// one such task open until dropped.
pub struct TimeHeld {
    _release: std::sync::mpsc::Sender<()>,
}

impl TimeHeld {
    pub fn hold() -> Self {
        let (release, released) = std::sync::mpsc::channel::<()>();
        // Ends when `release` is dropped; nothing waits for it.
        drop(tokio::task::spawn_blocking(move || {
            let _ = released.recv();
        }));
        Self { _release: release }
    }
}

/// Waits `real` wall time without moving tokio time, so the tasks can
/// finish what they are doing with the store.
pub async fn settle(real: Duration) {
    tokio::task::spawn_blocking(move || std::thread::sleep(real))
        .await
        .unwrap();
}

/// Polls `check` until it gives a value; tokio time stands still meanwhile,
/// so only work that needs no timer can complete.
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + REAL_DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {REAL_DEADLINE:?} (wall time) waiting for {what}"
        );
        settle(Duration::from_millis(1)).await;
    }
}

/// A store and a validated config in a temp dir, and the incidents task
/// running on a clock that starts at [`T0`] and follows tokio's. Tests start
/// the other tasks themselves and hand them to [`Harness::keep`].
pub struct Harness {
    pub config: CollectorConfig,
    pub store: Arc<Store>,
    pub clock: Clock,
    pub incidents: IncidentHandle,
    pub shutdown: CancellationToken,
    /// Subscribed before any input, so no announcement is missed.
    events: broadcast::Receiver<IncidentUpdate>,
    tasks: Vec<JoinHandle<()>>,
    _time: TimeHeld,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// `tables`: TOML appended to a minimal collector.toml (`[[rule]]`,
    /// `[sla.*]`, `[assets]`, `[[channel]]` …), validated as the collector does.
    pub async fn start(tables: &str) -> Self {
        let time = TimeHeld::hold();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.toml");
        std::fs::write(&path, format!("{BASE_CONFIG}\n{tables}")).unwrap();
        let config = CollectorConfig::load(&path).unwrap();
        let store = Arc::new(Store::open(&config.sqlite_path).unwrap());
        let clock = Clock::following_tokio(T0);
        let shutdown = CancellationToken::new();
        let (incidents, task) = incidents::start(
            Arc::clone(&store),
            config.rules.clone(),
            config.sla.clone(),
            config.service.clone(),
            Suppression::default(),
            clock,
            shutdown.clone(),
        )
        .await
        .unwrap();
        let events = incidents.subscribe();
        Self {
            config,
            store,
            clock,
            incidents,
            shutdown,
            events,
            tasks: vec![task],
            _time: time,
            _dir: dir,
        }
    }

    /// A task to wait for in [`Harness::stop`].
    pub fn keep(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Milliseconds since [`T0`] on the collector's clock.
    pub fn elapsed_ms(&self) -> i64 {
        self.clock.now_ms() - T0
    }

    /// Moves tokio time (and with it the collector's clock) forward to
    /// `offset_ms` after [`T0`] in one jump; timers passed fire once. Already
    /// there or past it (only if time was auto-advanced), it stays put.
    pub async fn advance_to(&self, offset_ms: i64) {
        let by = (offset_ms - self.elapsed_ms()).max(0);
        tokio::time::advance(Duration::from_millis(by as u64)).await;
        settle(Duration::from_millis(1)).await;
    }

    /// One committed sample from `agent_id` (which also counts as the agent
    /// being up), stamped with the collector's clock as ingest does.
    pub async fn sample(&self, agent_id: &str, metric: &str, value: f64) {
        self.incidents
            .send(RulesInput::Committed {
                agent_id: agent_id.into(),
                samples: vec![(metric.into(), Labels::new(), value)],
                now_ms: self.clock.now_ms(),
                synthetic: false,
            })
            .await;
    }

    /// The next incident announcement, waiting for it in wall time.
    pub async fn next_event(&mut self) -> IncidentUpdate {
        let events = &mut self.events;
        eventually("an incident event", async || events.try_recv().ok()).await
    }

    /// Lets the tasks settle, then asserts nothing was announced.
    pub async fn assert_no_event(&mut self, when: &str) {
        settle(QUIET).await;
        match self.events.try_recv() {
            Err(TryRecvError::Empty) => {}
            other => panic!("{when}: expected no incident event, got {other:?}"),
        }
    }

    /// Cancels every task, waits for each to stop, and closes the store.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
        self.store.close().await;
    }
}

/// Lets the tasks settle before a "not yet" check; see [`QUIET`].
pub async fn quiet() {
    settle(QUIET).await;
}

/// Guards [`TimeHeld`], which every other test here leans on: while held,
/// waiting on the store's writer thread (with the incidents tick pending)
/// leaves tokio's clock where it was.
#[tokio::test(start_paused = true)]
async fn holding_time_keeps_the_clock_still_while_the_store_writes() {
    let harness = Harness::start("").await;
    for seen in 0..20 {
        harness
            .store
            .record_hello(steward_collector::store::AgentHello {
                agent_id: "agent-1".into(),
                hostname: "web-1".into(),
                version: "test".into(),
                facts: Default::default(),
                seen_ms: T0 + seen,
            })
            .await
            .unwrap();
    }
    assert_eq!(
        harness.elapsed_ms(),
        0,
        "tokio auto-advanced its clock during store writes despite TimeHeld"
    );
    harness.stop().await;
}
