//! API access end to end: every read needs a token, scopes are enforced,
//! the acting token's name is recorded, a token revoked by the CLI while
//! the collector runs is refused at once, tokens never reach the log or the
//! database in plaintext, failed logins are rate limited, and the API
//! serves HTTPS (and refuses plain HTTP off loopback).

use std::process::Command;

use serde_json::Value;
use steward_tests::{Collector, binary, http_exchange, http_request, https_exchange, path_str};

fn get(collector: &Collector, path: &str, token: Option<&str>) -> (u16, String, String) {
    http_exchange(collector.http_addr, "GET", path, token, None)
}

#[test]
fn reads_need_a_token_read_tokens_cannot_write_and_writes_record_the_token_name() {
    let collector = Collector::start();

    // Open: health only.
    assert_eq!(get(&collector, "/healthz", None).0, 200);
    for path in [
        "/api/v1/agents",
        "/api/v1/assets/export",
        "/api/v1/compliance",
        "/api/v1/incidents",
        "/api/v1/oncall",
        "/metrics",
        "/no/such/path",
    ] {
        let (status, head, _) = get(&collector, path, None);
        assert_eq!(status, 401, "GET {path} without a token");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "GET {path}: {head}"
        );
        let (status, _, _) = get(&collector, path, Some("stw_not-a-real-token"));
        assert_eq!(status, 401, "GET {path} with an unknown token");
    }

    let read = collector.create_token("dashboard", "read");
    assert_eq!(get(&collector, "/api/v1/agents", Some(&read)).0, 200);
    assert_eq!(get(&collector, "/metrics", Some(&read)).0, 200);
    let window = r#"{"tags": ["db"], "duration": "1h", "reason": "upgrade", "by": "mallory"}"#;
    let (status, body) = http_request(
        collector.http_addr,
        "POST",
        "/api/v1/maintenance",
        Some(&read),
        Some(window),
    );
    assert_eq!(status, 403, "a read token cannot write: {body}");
    let refused: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refused["error"], "insufficient_scope", "{body}");
    assert!(
        refused["message"].as_str().unwrap().contains("read scope"),
        "{body}"
    );

    // A write token may; the window is recorded as the token's, not the body's `by`.
    let write = collector.create_token("ci-deploy", "write");
    let (status, body) = http_request(
        collector.http_addr,
        "POST",
        "/api/v1/maintenance",
        Some(&write),
        Some(window),
    );
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["created_by"], "ci-deploy", "{created}");

    // The CLI lists names and scopes, never tokens.
    let (ok, listed, stderr) = collector.token_cli(&["list"]);
    assert!(ok, "{stderr}");
    for name in ["admin", "dashboard", "ci-deploy"] {
        assert!(listed.contains(name), "{listed}");
    }
    assert!(
        !listed.contains(&read) && !listed.contains(&write),
        "{listed}"
    );
}

#[test]
fn a_token_revoked_while_the_collector_runs_is_refused_at_once_and_no_token_is_stored_or_logged() {
    let collector = Collector::start();
    let temporary = collector.create_token("temporary", "read");
    assert_eq!(get(&collector, "/api/v1/agents", Some(&temporary)).0, 200);

    let (ok, _, stderr) = collector.token_cli(&["revoke", "--name", "temporary"]);
    assert!(ok, "{stderr}");
    let (status, _, body) = get(&collector, "/api/v1/agents", Some(&temporary));
    assert_eq!(status, 401, "the very next request is refused: {body}");
    let (ok, _, stderr) = collector.token_cli(&["revoke", "--name", "temporary"]);
    assert!(!ok && stderr.contains("temporary"), "{stderr}");
    let (ok, _, stderr) = collector.token_cli(&["create", "--name", "x", "--scope", "root"]);
    assert!(!ok && stderr.contains("root"), "{stderr}");
    // The admin token still works, and its use is recorded.
    assert_eq!(collector.get("/api/v1/agents").0, 200);

    let tokens = [collector.api_token(), temporary];
    let mut files = vec![collector.path("steward.db")];
    for suffix in ["-wal", "-shm"] {
        let path = collector.path(&format!("steward.db{suffix}"));
        if path.exists() {
            files.push(path);
        }
    }
    let log = collector.process.log_text();
    for token in &tokens {
        assert!(!log.contains(token.as_str()), "a token is in the log");
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            assert!(
                !bytes
                    .windows(token.len())
                    .any(|window| window == token.as_bytes()),
                "a token is in {} in plaintext",
                file.display()
            );
        }
    }
}

#[test]
fn repeated_bad_tokens_from_one_address_get_429_while_good_tokens_still_work() {
    let collector = Collector::start();
    let mut statuses = Vec::new();
    for attempt in 0..30 {
        let (status, head, _) = get(
            &collector,
            "/api/v1/agents",
            Some(&format!("stw_guess-{attempt}")),
        );
        if status == 429 {
            assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
        }
        statuses.push(status);
    }
    let first_throttled = statuses.iter().position(|status| *status == 429);
    assert!(
        first_throttled.is_some_and(|at| at >= 1 && statuses[..at].iter().all(|s| *s == 401)),
        "some 401s, then 429: {statuses:?}"
    );
    assert_eq!(
        collector.get("/api/v1/agents").0,
        200,
        "a valid token from the same address is served"
    );
    assert!(collector.counter("steward_http_auth_failures_throttled_total") >= 1);
    assert!(collector.counter("steward_http_auth_failures_total") >= 1);
}

#[test]
fn the_api_serves_https_with_the_init_ca_and_metrics_can_be_public() {
    let collector = Collector::start_with(|text| {
        *text = text.replace(
            "[server]\n",
            "[server]\nhttp_tls = true\nmetrics_public = true\n",
        );
    });
    let ca = collector.path("ca.pem");
    let token = collector.api_token();
    let (status, _, body) = https_exchange(
        collector.http_addr,
        &ca,
        "GET",
        "/api/v1/agents",
        Some(&token),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = https_exchange(
        collector.http_addr,
        &ca,
        "GET",
        "/api/v1/agents",
        None,
        None,
    );
    assert_eq!(status, 401);
    let (status, _, body) = https_exchange(collector.http_addr, &ca, "GET", "/metrics", None, None);
    assert_eq!(status, 200, "metrics_public: {body}");
    assert!(body.contains("steward_"), "{body}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert_eq!(get(&collector, "/healthz", None).0, 0);
}

#[test]
fn plain_http_on_a_non_loopback_address_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let init = Command::new(binary("steward-collector"))
        .args(["init", path_str(dir.path())])
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(init.status.success());
    let config = dir.path().join("collector.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("\nhttp_tls = true"),
        "init turns HTTPS on off loopback: {text}"
    );
    std::fs::write(&config, text.replace("\nhttp_tls = true", "\n")).unwrap();
    let run = Command::new(binary("steward-collector"))
        .args(["--config", path_str(&config)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("collector.toml")
            && stderr.contains("server.http_listen")
            && stderr.contains("http_tls"),
        "{stderr}"
    );
}

#[test]
fn only_admin_tokens_manage_tokens_over_the_api() {
    let collector = Collector::start();
    let admin = collector.api_token();
    let write = collector.create_token("ops", "write");
    let (status, _, _) = get(&collector, "/api/v1/tokens", Some(&write));
    assert_eq!(status, 403, "a write token cannot list tokens");
    let (status, _) = http_request(
        collector.http_addr,
        "POST",
        "/api/v1/tokens",
        Some(&write),
        Some(r#"{"name": "sneaky", "scope": "admin"}"#),
    );
    assert_eq!(status, 403, "nor create them");

    let (status, body) = http_request(
        collector.http_addr,
        "POST",
        "/api/v1/tokens",
        Some(&admin),
        Some(r#"{"name": "grafana", "scope": "read"}"#),
    );
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let grafana = created["token"].as_str().unwrap().to_string();
    assert_eq!(get(&collector, "/api/v1/agents", Some(&grafana)).0, 200);
    let (status, body) = http_request(
        collector.http_addr,
        "POST",
        "/api/v1/tokens",
        Some(&admin),
        Some(r#"{"name": "grafana", "scope": "read"}"#),
    );
    assert_eq!(status, 409, "names of unrevoked tokens are unique");
    let refused: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refused["error"], "already_exists", "{body}");

    let (_, _, listed) = get(&collector, "/api/v1/tokens", Some(&admin));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|token| token["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "ops", "grafana"], "{listed}");
    assert!(!listed.to_string().contains(&grafana));

    let (status, body) = http_request(
        collector.http_addr,
        "POST",
        "/api/v1/tokens/grafana/revoke",
        Some(&admin),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&collector, "/api/v1/agents", Some(&grafana)).0, 401);
    assert!(
        !collector.process.log_text().contains(&grafana),
        "the token is not logged"
    );
}
