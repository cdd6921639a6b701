//! End to end: a port check against a loopback listener drives a threshold
//! rule; incidents open, are acknowledged, resolve, and survive kill -9.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;

use serde_json::Value;
use steward_tests::{Collector, DEADLINE, http_request, poll, port_check};

const RULE: &str = r#"
[[rule]]
name = "port-down"
metric = "port.up"
op = "<"
threshold = 1
severity = "critical"
summary = "Port {target} on {host} is down"
runbook = "https://wiki.example/runbooks/port-down"

[sla.critical]
ack = "10m"
resolve = "1h"
"#;

fn incidents(collector: &Collector, query: &str) -> Vec<Value> {
    collector
        .get_json(&format!("/api/v1/incidents{query}"))
        .as_array()
        .unwrap()
        .clone()
}

/// Waits for exactly `count` incidents matching `query`.
fn wait_for(collector: &Collector, query: &str, count: usize, what: &str) -> Vec<Value> {
    poll(DEADLINE, what, || {
        let found = incidents(collector, query);
        (found.len() == count).then_some(found)
    })
}

fn post(collector: &Collector, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let (status, body) = http_request(collector.http_addr, "POST", path, token, Some(body));
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn port_down_opens_one_incident_ack_shows_in_timeline_and_recovery_resolves_it() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut collector = Collector::start_with(|text| text.push_str(RULE));
    let _agent = collector.start_agent("web", |text| {
        text.push_str(&port_check(Some("web-1"), port))
    });
    collector.wait_port_up();
    assert!(incidents(&collector, "").is_empty());

    drop(listener);
    let opened = wait_for(
        &collector,
        "?state=open",
        1,
        "one open incident after the listener closed",
    );
    let incident = &opened[0];
    assert_eq!(incident["rule"], "port-down");
    assert_eq!(incident["host"], "web-1");
    assert_eq!(incident["severity"], "critical");
    assert_eq!(incident["value"], 0.0);
    assert_eq!(incident["labels"]["target"], format!("127.0.0.1:{port}"));
    assert_eq!(
        incident["summary"],
        format!("Port 127.0.0.1:{port} on web-1 is down")
    );
    assert!(incident["ack_due_at"].is_string() && incident["resolve_due_at"].is_string());
    assert_eq!(incident["sla_breached"], false);
    let id = incident["id"].as_i64().unwrap();
    let dedup_key = incident["dedup_key"].as_str().unwrap().to_string();

    // Further failing checks do not open a second incident.
    let committed = collector.counter("steward_batches_committed_total");
    poll(DEADLINE, "more failing checks", || {
        (collector.counter("steward_batches_committed_total") >= committed + 3).then_some(())
    });
    assert_eq!(incidents(&collector, "").len(), 1);

    // Writes need the API token.
    let (status, _) = post(
        &collector,
        &format!("/api/v1/incidents/{id}/ack"),
        None,
        "{}",
    );
    assert_eq!(status, 401);
    let (status, _) = post(
        &collector,
        &format!("/api/v1/incidents/{id}/ack"),
        Some("wrong"),
        "{}",
    );
    assert_eq!(status, 401);
    // The timeline names the token; a `by` in the body is ignored.
    let token = collector.create_token("alice", "write");
    let (status, acked) = post(
        &collector,
        &format!("/api/v1/incidents/{id}/ack"),
        Some(&token),
        r#"{"by": "mallory", "note": "looking"}"#,
    );
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    let (status, refused) = post(
        &collector,
        &format!("/api/v1/incidents/{id}/ack"),
        Some(&token),
        "{}",
    );
    assert_eq!(status, 409, "a second acknowledgement is refused");
    assert_eq!(refused["error"], "already_acknowledged", "{refused}");
    let (status, _) = post(
        &collector,
        &format!("/api/v1/incidents/{id}/notes"),
        Some(&token),
        r#"{"by": "alice", "text": "service restarted"}"#,
    );
    assert_eq!(status, 201);

    let detail = collector.get_json(&format!("/api/v1/incidents/{id}"));
    assert_eq!(detail["acknowledged_by"], "alice");
    let kinds: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "acknowledged", "note"]);
    assert_eq!(detail["timeline"][1]["actor"], "alice");

    // kill -9 while the incident is open: nothing lost, nothing duplicated.
    collector.process.kill9();
    collector.restart();
    let after = incidents(&collector, "");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["id"], id);
    assert_eq!(after[0]["state"], "acknowledged");
    assert_eq!(
        after[0]["ack_due_at"], incident["ack_due_at"],
        "SLA timers survive the restart"
    );
    let committed = collector.counter("steward_batches_committed_total");
    poll(DEADLINE, "failing checks after the restart", || {
        (collector.counter("steward_batches_committed_total") >= committed + 3).then_some(())
    });
    assert_eq!(
        incidents(&collector, "").len(),
        1,
        "the restart must not duplicate the incident"
    );

    // Recovery resolves it.
    let _listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let resolved = wait_for(
        &collector,
        "?state=resolved",
        1,
        "the incident to resolve after recovery",
    );
    assert_eq!(resolved[0]["id"], id);
    assert_eq!(resolved[0]["dedup_key"], dedup_key.as_str());
    assert!(resolved[0]["resolved_at"].is_string());
    let detail = collector.get_json(&format!("/api/v1/incidents/{id}"));
    let last = detail["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "resolved");
    assert_eq!(last["actor"], "rules");
    assert!(incidents(&collector, "?state=open").is_empty());

    let sla = collector.get_json("/api/v1/sla?window=1h");
    let critical = &sla["severities"]["critical"];
    assert_eq!(critical["incidents"], 1);
    assert_eq!(critical["resolved"], 1);
    assert!(critical["mtta_seconds"].as_f64().unwrap() >= 0.0);
    assert!(
        critical["mttr_seconds"].as_f64().unwrap() >= critical["mtta_seconds"].as_f64().unwrap()
    );
    let rules = collector.get_json("/api/v1/rules");
    assert_eq!(rules[0]["name"], "port-down");
}

/// Regression: `agent.up` is never stored, so absence must be seeded from the
/// agents' last contact after a restart; and an asset tagged
/// `expected_offline` (a laptop) must not page when it goes quiet.
#[test]
fn silent_server_pages_after_a_collector_restart_but_an_expected_offline_laptop_does_not() {
    let mut collector = Collector::start_with(|text| {
        text.push_str(
            "\n[[rule]]\nname = \"agent-down\"\nkind = \"absent\"\nmetric = \"agent.up\"\nfor = \"3s\"\nseverity = \"critical\"\n",
        )
    });
    let mut laptop =
        collector.start_agent("laptop", |text| text.push_str("hostname = \"laptop-1\"\n"));
    // No inventory, so no asset: nothing can exempt this one.
    let mut server = collector.start_agent("server", |text| {
        text.push_str("hostname = \"srv-1\"\n\n[inventory]\nenabled = false\n")
    });
    let asset = poll(DEADLINE, "the laptop's asset", || {
        let assets = collector.get_json("/api/v1/assets");
        assets
            .as_array()?
            .iter()
            .find(|asset| asset["hostname"] == "laptop-1")
            .cloned()
    });
    let (status, body) = http_request(
        collector.http_addr,
        "PATCH",
        &format!("/api/v1/assets/{}", asset["id"].as_str().unwrap()),
        Some(&collector.api_token()),
        Some(r#"{"tags": ["expected_offline"]}"#),
    );
    assert_eq!(status, 200, "{body}");
    poll(DEADLINE, "both agents connected", || {
        let agents = collector.get_json("/api/v1/agents");
        (agents
            .as_array()?
            .iter()
            .filter(|agent| agent["connected"] == true)
            .count()
            == 2)
            .then_some(())
    });

    // Everything goes down at once; only the collector comes back.
    collector.process.kill9();
    laptop.kill9();
    server.kill9();
    collector.restart();
    poll(DEADLINE, "agent-down for the silent server", || {
        let incidents = collector.get_json("/api/v1/incidents?state=open");
        (!incidents.as_array()?.is_empty()).then_some(())
    });
    // The laptop went quiet at the same moment; give its absence longer than
    // `for` (3 s) to show up before asserting that it never does.
    let opened_at = std::time::Instant::now();
    poll(DEADLINE, "four more seconds", || {
        (opened_at.elapsed().as_secs() >= 4).then_some(())
    });
    let incidents = collector.get_json("/api/v1/incidents");
    let hosts: Vec<&str> = incidents
        .as_array()
        .unwrap()
        .iter()
        .map(|incident| incident["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["srv-1"], "{incidents}");
    assert_eq!(incidents[0]["rule"], "agent-down");
}

#[test]
fn sighup_reloads_rules_keeping_open_incidents_and_refuses_invalid_files() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector = Collector::start_with(|text| text.push_str(RULE));
    let _agent = collector.start_agent("web", |text| {
        text.push_str(&port_check(Some("web-1"), port))
    });
    collector.wait_port_up();
    drop(listener);
    let opened = poll(DEADLINE, "the incident", || {
        let open = collector.get_json("/api/v1/incidents?state=open");
        open.as_array()?.first().cloned()
    });

    // Add a rule and change the existing one's severity, then SIGHUP.
    let config = collector.path("collector.toml");
    steward_tests::edit_file(&config, |text| {
        *text = text.replace("severity = \"critical\"", "severity = \"major\"");
        text.push_str("\n[[rule]]\nname = \"port-slow\"\nmetric = \"port.connect_ms\"\nop = \">\"\nthreshold = 10000\nseverity = \"warning\"\n");
    });
    collector.process.signal(libc::SIGHUP);
    poll(DEADLINE, "the new rule set", || {
        let rules = collector.get_json("/api/v1/rules");
        (rules.as_array()?.len() == 2 && rules[0]["severity"] == "major").then_some(())
    });
    let committed = collector.counter("steward_batches_committed_total");
    poll(DEADLINE, "more failing checks after the reload", || {
        (collector.counter("steward_batches_committed_total") >= committed + 3).then_some(())
    });
    let open = collector.get_json("/api/v1/incidents?state=open");
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    assert_eq!(
        open[0]["id"], opened["id"],
        "the open incident survives the reload"
    );

    // An invalid file is refused and the running rules stay.
    steward_tests::edit_file(&config, |text| text.push_str("\nbogus = 1\n"));
    collector.process.signal(libc::SIGHUP);
    poll(DEADLINE, "the refusal in the log", || {
        collector
            .process
            .log_text()
            .contains("Reload refused")
            .then_some(())
    });
    assert!(collector.process.log_text().contains("bogus"));
    assert_eq!(
        collector
            .get_json("/api/v1/rules")
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The reloaded engine still resolves the incident it kept.
    let _listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    poll(DEADLINE, "the kept incident to resolve", || {
        let resolved = collector.get_json("/api/v1/incidents?state=resolved");
        (resolved.as_array()?.len() == 1 && resolved[0]["id"] == opened["id"]).then_some(())
    });
}
