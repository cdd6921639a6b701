//! README's first command: `steward-collector quickstart` runs a collector and
//! a local agent from a fresh directory, end to end.
#![allow(clippy::unwrap_used)]

use steward_tests::{DEADLINE, Process, binary, http_request, path_str, poll};

#[test]
fn quickstart_initialises_and_streams_this_hosts_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("steward-data");
    let mut process = Process::spawn(
        "quickstart",
        &binary("steward-collector"),
        &[
            "quickstart",
            "--dir",
            path_str(&data),
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ],
        dir.path().join("quickstart.log"),
    );
    let http: std::net::SocketAddr = poll(DEADLINE, "the printed console URL", || {
        let log = process.log_text();
        let line = log.lines().find(|line| line.contains("Console:"))?;
        line.split("http://")
            .nth(1)?
            .split('/')
            .next()?
            .parse()
            .ok()
    });
    for file in [
        "collector.toml",
        "agent.toml",
        "api-token",
        "ca.pem",
        "server.pem",
    ] {
        assert!(data.join(file).exists(), "quickstart did not write {file}");
    }
    let token = std::fs::read_to_string(data.join("api-token")).unwrap();
    let series = poll(DEADLINE, "the local agent's metrics", || {
        let (status, body) = http_request(
            http,
            "GET",
            "/api/v1/series?metric=mem.used_percent",
            Some(token.trim()),
            None,
        );
        let series: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200 && series.as_array()?.len() == 1).then_some(series)
    });
    assert!(series[0]["value"].as_f64().unwrap() > 0.0);
    // The default path is the secure one: the local agent is enrolled.
    for file in ["agent.pem", "agent.key"] {
        assert!(data.join(file).exists(), "quickstart did not write {file}");
    }
    let log = process.log_text();
    assert!(
        log.lines()
            .any(|line| line.contains("Agent connected.") && line.contains("mtls=true")),
        "the local agent connects with its certificate:\n{log}"
    );
    process.signal(libc::SIGTERM);
    assert_eq!(
        process.wait_exit(DEADLINE),
        Some(0),
        "{}",
        process.describe()
    );
}
