//! Supervised tasks: a collector task that dies takes the collector down
//! loudly (503 naming it, then a non-zero exit) instead of running on half
//! alive.

use steward_tests::{Collector, DEADLINE, poll};

/// Regression: a panicking notify task used to be ignored: the collector kept
/// acknowledging agents, paged nobody, and `/healthz` said ok.
#[test]
fn a_panicking_notify_task_turns_healthz_503_and_exits_with_status_3() {
    let mut collector =
        Collector::start_with_env(&[("STEWARD_FAULT_PANIC_TASK", "notify")], |_| {});

    let body = poll(DEADLINE, "/healthz to answer 503", || {
        let (status, body) = collector.get("/healthz");
        (status == 503).then_some(body)
    });
    let health: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|error| panic!("/healthz: bad JSON ({error}): {body}"));
    assert_eq!(health["status"], "unhealthy", "{body}");
    let notify = health["failures"]
        .as_array()
        .and_then(|failures| failures.iter().find(|failure| failure["task"] == "notify"))
        .unwrap_or_else(|| panic!("/healthz does not name notify: {body}"));
    assert_eq!(
        notify["reason"], "panicked: fault injected by STEWARD_FAULT_PANIC_TASK=notify",
        "{body}"
    );

    let code = collector.process.wait_exit(DEADLINE);
    let log = collector.process.log_text();
    assert_eq!(code, Some(3), "exit status\n{log}");
    // It shut down the rest and closed the store before exiting.
    assert!(
        log.contains("Collector stopped after a task failed."),
        "{log}"
    );
    assert!(
        log.contains("steward-collector: task notify panicked: fault injected"),
        "{log}"
    );
    let integrity: String = collector
        .database()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity check");
    assert_eq!(integrity, "ok");
}
