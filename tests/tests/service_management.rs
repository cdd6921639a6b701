//! End to end: service management on top of incidents. Dependencies (a
//! parent check's open incident suppresses its children's pages), storm
//! control, problem records and change records, with real binaries and a
//! real loopback webhook receiver.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;

use serde_json::Value;
use steward_tests::{Collector, DEADLINE, Process, Receiver, poll};

/// A webhook channel to `receiver`.
fn webhook(receiver: &Receiver) -> String {
    format!(
        "\n[[channel]]\nname = \"ops\"\ntype = \"webhook\"\nurl = \"{}\"\n",
        receiver.url("/hook")
    )
}

/// Successful webhook deliveries of `event`, as (incident id, body).
fn delivered(receiver: &Receiver, event: &str) -> Vec<(i64, Value)> {
    receiver
        .requests()
        .into_iter()
        .filter(|request| request.status == 200)
        .map(|request| request.json())
        .filter(|body| body["event"] == event)
        .map(|body| (body["incident"]["id"].as_i64().unwrap_or(0), body))
        .collect()
}

/// An agent named `name` (also its host name) checking one local port, labelled `check`.
fn port_agent(collector: &Collector, name: &str, port: u16, check: &str) -> Process {
    collector.start_agent(name, |text| {
        text.push_str(&format!(
            "hostname = \"{name}\"\n\n[[port]]\ntarget = \"127.0.0.1:{port}\"\nname = \"{check}\"\ntimeout = \"1s\"\n"
        ))
    })
}

fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Unresolved incidents of `rule`.
fn unresolved(collector: &Collector, rule: &str) -> Vec<Value> {
    let (rows, _) = collector.get_all_pages("/api/v1/incidents", 500);
    rows.into_iter()
        .filter(|incident| incident["rule"] == rule && incident["state"] != "resolved")
        .collect()
}

/// Waits until every `port.up` series (one per agent) reads 1.
fn wait_ports_up(collector: &Collector, count: usize) {
    poll(DEADLINE, "every port check to report up", || {
        let series = collector.get_json("/api/v1/series?metric=port.up");
        let up = series
            .as_array()?
            .iter()
            .filter(|s| s["value"] == 1.0)
            .count();
        (up == count).then_some(())
    });
}

const DEPENDENCY_RULES: &str = r#"
[[rule]]
name = "gw-down"
metric = "port.up"
match = { name = "gateway" }
op = "<"
threshold = 1
severity = "critical"
summary = "Gateway {target} is down"

[[rule]]
name = "svc-down"
metric = "port.up"
match = { name = "svc" }
op = "<"
threshold = 1
severity = "major"
summary = "Service on {host} is down"

[[dependency]]
hosts = ["web-1", "web-2", "web-3"]
depends_on = { rule = "gw-down", labels = { name = "gateway" } }
"#;

#[test]
fn children_of_a_down_parent_are_suppressed_and_page_only_if_they_outlive_it() {
    let receiver = Receiver::start();
    let collector = Collector::start_with(|text| {
        text.push_str(DEPENDENCY_RULES);
        text.push_str(&webhook(&receiver));
    });
    let (gateway, gateway_port) = listener();
    let _gw = port_agent(&collector, "gw", gateway_port, "gateway");
    let mut children = Vec::new();
    let mut agents = Vec::new();
    for name in ["web-1", "web-2", "web-3"] {
        let (child, port) = listener();
        agents.push(port_agent(&collector, name, port, "svc"));
        children.push((name, child, port));
    }
    wait_ports_up(&collector, 4);

    // The gateway dies first, then every host behind it.
    drop(gateway);
    let parent = poll(DEADLINE, "the gateway's incident to open", || {
        unresolved(&collector, "gw-down").into_iter().next()
    });
    let parent_id = parent["id"].as_i64().unwrap();
    let ports: Vec<(&str, u16)> = children
        .iter()
        .map(|(name, _, port)| (*name, *port))
        .collect();
    let listeners: Vec<TcpListener> = children.into_iter().map(|(_, l, _)| l).collect();
    drop(listeners);
    let suppressed = poll(DEADLINE, "three suppressed child incidents", || {
        let open = unresolved(&collector, "svc-down");
        (open.len() == 3 && open.iter().all(|i| i["state"] == "suppressed")).then_some(open)
    });
    for child in &suppressed {
        assert_eq!(child["caused_by"], parent_id, "{child}");
        assert_eq!(child["suppressed"], true);
    }
    let detail = collector.get_json(&format!("/api/v1/incidents/{}", suppressed[0]["id"]));
    assert!(
        detail["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["kind"] == "suppressed"
                && entry["detail"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("caused by #{parent_id}"))),
        "{detail}"
    );

    // Two children recover while the parent is still down: never paged.
    let (still_down, _) = ports[2];
    let _back: Vec<TcpListener> = ports[..2]
        .iter()
        .map(|(_, port)| TcpListener::bind(("127.0.0.1", *port)).unwrap())
        .collect();
    poll(DEADLINE, "two children to resolve while suppressed", || {
        (unresolved(&collector, "svc-down").len() == 1).then_some(())
    });
    // The parent recovers while web-3 still breaches: web-3 pages now.
    let _gateway_back = TcpListener::bind(("127.0.0.1", gateway_port)).unwrap();
    let released = poll(DEADLINE, "the outliving child to be paged", || {
        delivered(&receiver, "opened")
            .into_iter()
            .find(|(_, body)| body["incident"]["host"] == still_down)
    });
    assert_eq!(released.1["incident"]["caused_by"], parent_id);
    assert_eq!(released.1["incident"]["state"], "open");

    // Delivery reads the journal in order, so by now every earlier event has
    // been routed: one page for the parent, one for the released child only.
    let opened: Vec<i64> = delivered(&receiver, "opened")
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(opened, [parent_id, released.0], "pages: {opened:?}");
    poll(DEADLINE, "the parent's resolution to be delivered", || {
        delivered(&receiver, "resolved")
            .iter()
            .any(|(id, _)| *id == parent_id)
            .then_some(())
    });
    let resolved: Vec<i64> = delivered(&receiver, "resolved")
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(resolved, [parent_id], "silent children resolve silently");
    let timeline = collector.get_json(&format!("/api/v1/incidents/{}", released.0));
    assert!(
        timeline["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["kind"] == "released"),
        "{timeline}"
    );
    drop(agents);
}

const RACE_RULES: &str = r#"
[[rule]]
name = "gw-down"
metric = "port.up"
match = { name = "gateway" }
op = "<"
threshold = 1
severity = "critical"
summary = "Gateway {target} is down"

[[rule]]
name = "pdu-down"
metric = "port.up"
match = { name = "pdu" }
op = "<"
threshold = 1
severity = "critical"
summary = "PDU {target} is down"

[[rule]]
name = "svc-down"
metric = "port.up"
match = { name = "svc" }
op = "<"
threshold = 1
severity = "major"
summary = "Service on {host} is down"

[[dependency]]
hosts = ["web-1", "web-2"]
depends_on = { rule = "gw-down", labels = { name = "gateway" } }
hold = "30s"

[[dependency]]
hosts = ["web-3"]
depends_on = { rule = "pdu-down" }
hold = "2s"
"#;

#[test]
fn children_breaching_before_their_parent_wait_for_it_and_only_the_parent_pages() {
    let receiver = Receiver::start();
    let collector = Collector::start_with(|text| {
        text.push_str(RACE_RULES);
        text.push_str(&webhook(&receiver));
    });
    let (gateway, gateway_port) = listener();
    let _gw = port_agent(&collector, "gw", gateway_port, "gateway");
    let mut children = Vec::new();
    let mut agents = Vec::new();
    for name in ["web-1", "web-2", "web-3"] {
        let (child, port) = listener();
        agents.push(port_agent(&collector, name, port, "svc"));
        children.push(child);
    }
    wait_ports_up(&collector, 4);

    // The core switch dies: the hosts behind it are noticed first.
    drop(children);
    let waiting = poll(DEADLINE, "web-1 and web-2 to wait for their parent", || {
        let open: Vec<Value> = unresolved(&collector, "svc-down")
            .into_iter()
            .filter(|i| i["host"] == "web-1" || i["host"] == "web-2")
            .collect();
        (open.len() == 2
            && open
                .iter()
                .all(|i| i["state"] == "suppressed" && i["waiting_for_parent_until"].is_string()))
        .then_some(open)
    });
    assert!(
        unresolved(&collector, "gw-down").is_empty(),
        "children first"
    );
    drop(gateway);
    let parent = poll(DEADLINE, "the gateway's page", || {
        delivered(&receiver, "opened")
            .into_iter()
            .find(|(_, body)| body["incident"]["rule"] == "gw-down")
    });
    let parent_id = parent.0;
    for child in &waiting {
        let id = child["id"].as_i64().unwrap();
        let detail = poll(DEADLINE, "the child to be adopted by its parent", || {
            let detail = collector.get_json(&format!("/api/v1/incidents/{id}"));
            (detail["caused_by"] == parent_id).then_some(detail)
        });
        assert_eq!(detail["state"], "suppressed");
        assert!(detail["waiting_for_parent_until"].is_null(), "{detail}");
        assert!(
            timeline_says(&collector, id, "which opened while this waited for it"),
            "{detail}"
        );
    }
    // web-3 waits 2 s for a parent that never opens, then pages.
    let web3 = poll(DEADLINE, "web-3 to page after its hold", || {
        delivered(&receiver, "opened")
            .into_iter()
            .find(|(_, body)| body["incident"]["host"] == "web-3")
    });
    assert!(timeline_says(
        &collector,
        web3.0,
        "Paged after waiting 2s for parent pdu-down, which did not open."
    ));
    let mut opened: Vec<i64> = delivered(&receiver, "opened")
        .iter()
        .map(|(id, _)| *id)
        .collect();
    opened.sort_unstable();
    let mut expected = vec![parent_id, web3.0];
    expected.sort_unstable();
    assert_eq!(
        opened, expected,
        "one page for the parent, none for its children"
    );
    drop(agents);
}

#[test]
fn a_held_page_survives_kill_9_and_pages_when_its_hold_ends() {
    let receiver = Receiver::start();
    let mut collector = Collector::start_with(|text| {
        text.push_str(&RACE_RULES.replace("hold = \"2s\"", "hold = \"3s\""));
        text.push_str(&webhook(&receiver));
    });
    let (child, port) = listener();
    let _web3 = port_agent(&collector, "web-3", port, "svc");
    wait_ports_up(&collector, 1);
    drop(child);
    let waiting = poll(DEADLINE, "web-3 to wait for its parent", || {
        unresolved(&collector, "svc-down")
            .into_iter()
            .find(|i| i["waiting_for_parent_until"].is_string())
    });
    collector.process.kill9();
    collector.restart();
    let page = poll(DEADLINE, "the held page after the restart", || {
        delivered(&receiver, "opened").into_iter().next()
    });
    assert_eq!(page.0, waiting["id"].as_i64().unwrap());
    assert!(timeline_says(
        &collector,
        page.0,
        "Paged after waiting 3s for parent pdu-down"
    ));
}

const STORM: &str = r#"
[[rule]]
name = "svc-down"
metric = "port.up"
op = "<"
threshold = 1
severity = "major"
summary = "Port {target} is down"

[[route]]
channels = ["ops"]
group_by = ["rule"]
group_interval = "2s"
storm_threshold = 10
storm_window = "1m"
"#;

/// Successful grouped webhook messages of `kind`.
fn grouped(receiver: &Receiver, kind: &str) -> Vec<Value> {
    receiver
        .requests()
        .into_iter()
        .filter(|request| request.status == 200)
        .map(|request| request.json())
        .filter(|body| body["event"] == "grouped" && body["kind"] == kind)
        .collect()
}

fn listed_ids(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .flat_map(|message| message["incidents"].as_array().unwrap().clone())
        .map(|incident| incident["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn forty_breaches_on_one_route_page_ten_then_one_storm_summary_a_digest_and_every_resolution() {
    let receiver = Receiver::start();
    let collector = Collector::start_with(|text| {
        text.push_str(STORM);
        text.push_str(&webhook(&receiver));
    });
    let mut listeners: Vec<(TcpListener, u16)> = (0..40).map(|_| listener()).collect();
    let ports: Vec<u16> = listeners.iter().map(|(_, port)| *port).collect();
    let _agent = collector.start_agent("many", |text| {
        text.push_str("hostname = \"many\"\n");
        for port in &ports {
            text.push_str(&format!(
                "\n[[port]]\ntarget = \"127.0.0.1:{port}\"\ntimeout = \"1s\"\n"
            ));
        }
    });
    poll(DEADLINE, "forty port checks up", || {
        let series = collector.get_json("/api/v1/series?metric=port.up");
        let up = series
            .as_array()?
            .iter()
            .filter(|s| s["value"] == 1.0)
            .count();
        (up == 40).then_some(())
    });

    // Wave one: 25 ports go down. Ten page on their own, then the storm.
    let second_wave = listeners.split_off(25);
    drop(listeners);
    let storm = poll(DEADLINE, "the storm summary", || {
        grouped(&receiver, "storm").into_iter().next()
    });
    assert!(
        storm["headline"].as_str().unwrap().contains("Alert storm"),
        "{storm}"
    );
    assert_eq!(storm["hosts"], serde_json::json!(["many"]));
    // Wave two, during the storm: only digests, never a page each.
    drop(second_wave);
    poll(
        DEADLINE,
        "all forty incidents paged alone, summarised or digested",
        || {
            let alone = delivered(&receiver, "opened").len();
            let storms = grouped(&receiver, "storm");
            let digests = grouped(&receiver, "digest");
            let listed = listed_ids(&storms).len() + listed_ids(&digests).len();
            (alone + listed == 40 && !digests.is_empty()).then_some(())
        },
    );
    let alone: Vec<i64> = delivered(&receiver, "opened")
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(alone.len(), 10, "exactly the threshold pages alone");
    assert_eq!(grouped(&receiver, "storm").len(), 1, "one storm summary");
    let mut every: Vec<i64> = alone.clone();
    every.extend(listed_ids(&grouped(&receiver, "storm")));
    every.extend(listed_ids(&grouped(&receiver, "digest")));
    every.sort_unstable();
    every.dedup();
    assert_eq!(every.len(), 40, "each incident told once: {every:?}");
    let summarised = listed_ids(&grouped(&receiver, "storm"))[0];
    let timeline = collector.get_json(&format!("/api/v1/incidents/{summarised}"));
    assert!(
        timeline["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["kind"] == "grouped"
                && entry["detail"]
                    .as_str()
                    .unwrap()
                    .contains("storm notification")),
        "{timeline}"
    );

    // Every port comes back: every resolution is delivered, grouped ones grouped.
    let _back: Vec<TcpListener> = ports
        .iter()
        .map(|port| TcpListener::bind(("127.0.0.1", *port)).unwrap())
        .collect();
    poll(DEADLINE, "every resolution delivered", || {
        let mut resolved: Vec<i64> = delivered(&receiver, "resolved")
            .iter()
            .map(|(id, _)| *id)
            .collect();
        resolved.extend(listed_ids(&grouped(&receiver, "resolved")));
        resolved.sort_unstable();
        resolved.dedup();
        (resolved == every).then_some(())
    });
    let mut alone_resolved: Vec<i64> = delivered(&receiver, "resolved")
        .iter()
        .map(|(id, _)| *id)
        .collect();
    alone_resolved.sort_unstable();
    let mut alone_sorted = alone;
    alone_sorted.sort_unstable();
    assert_eq!(alone_resolved, alone_sorted, "paged alone, resolved alone");
}

#[test]
fn acknowledging_a_storm_group_acknowledges_every_incident_it_carried() {
    let receiver = Receiver::start();
    let collector = Collector::start_with(|text| {
        text.push_str(&STORM.replace("storm_threshold = 10", "storm_threshold = 2"));
        text.push_str(&webhook(&receiver));
    });
    let listeners: Vec<(TcpListener, u16)> = (0..6).map(|_| listener()).collect();
    let ports: Vec<u16> = listeners.iter().map(|(_, port)| *port).collect();
    let _agent = collector.start_agent("many", |text| {
        text.push_str("hostname = \"many\"\n");
        for port in &ports {
            text.push_str(&format!(
                "\n[[port]]\ntarget = \"127.0.0.1:{port}\"\ntimeout = \"1s\"\n"
            ));
        }
    });
    wait_ports_up(&collector, 6);
    drop(listeners);
    let storm = poll(DEADLINE, "the storm summary", || {
        grouped(&receiver, "storm").into_iter().next()
    });
    let group = storm["group"].as_str().unwrap().to_string();
    let carried = listed_ids(std::slice::from_ref(&storm));
    assert!(!carried.is_empty(), "{storm}");
    let alone: Vec<i64> = delivered(&receiver, "opened")
        .iter()
        .map(|(id, _)| *id)
        .collect();

    let (status, body) = collector.send_json(
        "POST",
        &format!("/api/v1/incidents/ack?group={}", percent(&group)),
        r#"{"note": "core switch, on it"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let acknowledged: Vec<i64> = body["acknowledged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    for id in &carried {
        assert!(acknowledged.contains(id), "{id} in {acknowledged:?}");
        let detail = collector.get_json(&format!("/api/v1/incidents/{id}"));
        assert_eq!(detail["state"], "acknowledged", "{detail}");
        assert_eq!(detail["acknowledged_by"], "admin");
    }
    for id in &alone {
        assert!(
            !acknowledged.contains(id),
            "paged alone: acknowledged alone"
        );
    }
    let (status, _) = collector.send_json("POST", "/api/v1/incidents/ack?group=no-such-group", "");
    assert_eq!(status, 404);
}

#[test]
fn grouped_incidents_escalate_together_in_one_message() {
    let receiver = Receiver::start();
    let boss = Receiver::start();
    let collector = Collector::start_with(|text| {
        text.push_str(
            &STORM
                .replace("storm_threshold = 10", "storm_threshold = 2")
                .replace(
                    "channels = [\"ops\"]",
                    "channels = [\"ops\"]\nescalation = \"up\"",
                ),
        );
        text.push_str(&webhook(&receiver));
        text.push_str(&format!(
            "\n[[channel]]\nname = \"boss\"\ntype = \"webhook\"\nurl = \"{}\"\n\n[[escalation]]\nname = \"up\"\nlevels = [{{ notify = [\"channel:boss\"], after = \"2s\" }}]\n",
            boss.url("/hook")
        ));
    });
    let listeners: Vec<(TcpListener, u16)> = (0..6).map(|_| listener()).collect();
    let ports: Vec<u16> = listeners.iter().map(|(_, port)| *port).collect();
    let _agent = collector.start_agent("many", |text| {
        text.push_str("hostname = \"many\"\n");
        for port in &ports {
            text.push_str(&format!(
                "\n[[port]]\ntarget = \"127.0.0.1:{port}\"\ntimeout = \"1s\"\n"
            ));
        }
    });
    wait_ports_up(&collector, 6);
    drop(listeners);
    let escalation = poll(DEADLINE, "the group's escalation", || {
        grouped(&boss, "escalation").into_iter().next()
    });
    let alone: Vec<i64> = delivered(&receiver, "opened")
        .iter()
        .map(|(id, _)| *id)
        .collect();
    // Those paged alone escalate alone.
    let escalated_alone = poll(DEADLINE, "the lone pages' escalations", || {
        let ids: Vec<i64> = delivered(&boss, "escalated")
            .iter()
            .map(|(id, _)| *id)
            .collect();
        (ids.len() >= alone.len()).then_some(ids)
    });
    let mut sorted = escalated_alone.clone();
    sorted.sort_unstable();
    let mut alone_sorted = alone.clone();
    alone_sorted.sort_unstable();
    assert_eq!(sorted, alone_sorted, "only lone pages escalate one by one");
    // Every incident sent grouped is escalated once, in a group message
    // (one, unless a straggler opened after the group's step had gone out).
    let grouped_ids = poll(DEADLINE, "every grouped incident escalated", || {
        let ids = listed_ids(&grouped(&boss, "escalation"));
        (alone.len() + ids.len() == 6).then_some(ids)
    });
    let mut unique = grouped_ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), grouped_ids.len(), "each escalated once");
    assert!(grouped_ids.iter().all(|id| !alone.contains(id)));
    assert!(
        grouped(&boss, "escalation").len() < grouped_ids.len(),
        "grouped, not one by one"
    );
    assert!(
        escalation["headline"]
            .as_str()
            .unwrap()
            .contains("still unacknowledged"),
        "{escalation}"
    );
    assert!(timeline_says(
        &collector,
        grouped_ids[0],
        "Escalated with its group (level 0) to boss."
    ));
}

#[test]
fn a_storm_goes_on_after_kill_9_without_a_burst_of_single_pages() {
    let receiver = Receiver::start();
    let mut collector = Collector::start_with(|text| {
        text.push_str(&STORM.replace("storm_threshold = 10", "storm_threshold = 2"));
        text.push_str(&webhook(&receiver));
    });
    let mut first: Vec<(TcpListener, u16)> = (0..8).map(|_| listener()).collect();
    let ports: Vec<u16> = first.iter().map(|(_, port)| *port).collect();
    let _agent = collector.start_agent("many", |text| {
        text.push_str("hostname = \"many\"\n");
        for port in &ports {
            text.push_str(&format!(
                "\n[[port]]\ntarget = \"127.0.0.1:{port}\"\ntimeout = \"1s\"\n"
            ));
        }
    });
    wait_ports_up(&collector, 8);
    let second = first.split_off(4);
    drop(first);
    poll(DEADLINE, "the storm summary", || {
        grouped(&receiver, "storm").into_iter().next()
    });
    poll(DEADLINE, "four incidents told", || {
        let mut told: Vec<i64> = delivered(&receiver, "opened")
            .iter()
            .map(|(id, _)| *id)
            .collect();
        told.extend(listed_ids(&grouped(&receiver, "storm")));
        told.extend(listed_ids(&grouped(&receiver, "digest")));
        (unique(told).len() == 4).then_some(())
    });
    // A delivery cut off by the kill is sent again (same Idempotency-Key),
    // so count incidents, not requests.
    let alone_before = unique(delivered(&receiver, "opened").iter().map(|(id, _)| *id));
    assert_eq!(alone_before.len(), 2, "the threshold pages alone");

    collector.process.kill9();
    collector.restart();
    drop(second);
    poll(DEADLINE, "the four new incidents grouped", || {
        let mut told = alone_before.clone();
        told.extend(listed_ids(&grouped(&receiver, "storm")));
        told.extend(listed_ids(&grouped(&receiver, "digest")));
        (unique(told).len() == 8).then_some(())
    });
    assert_eq!(
        unique(delivered(&receiver, "opened").iter().map(|(id, _)| *id)),
        alone_before,
        "no single page after the restart"
    );
}

fn unique(ids: impl IntoIterator<Item = i64>) -> Vec<i64> {
    let mut ids: Vec<i64> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Percent-encodes a query value (group keys hold `|`, `=` and the like).
fn percent(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

const RECURRING: &str = r#"
[[rule]]
name = "port-down"
metric = "port.up"
op = "<"
threshold = 1
severity = "major"
summary = "Port {target} on {host} is down"

[problems]
recurrences = 3
within = "1h"
"#;

/// With the port closed, waits for its incident to page, then opens the port
/// until that incident resolves; returns the page's body and the listener.
fn flap_once(
    collector: &Collector,
    receiver: &Receiver,
    port: u16,
    pages_before: usize,
) -> (Value, TcpListener) {
    let page = poll(DEADLINE, "the port's incident to page", || {
        let pages = delivered(receiver, "opened");
        (pages.len() > pages_before).then(|| pages[pages_before].1.clone())
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    poll(DEADLINE, "the incident to resolve", || {
        unresolved(collector, "port-down").is_empty().then_some(())
    });
    (page, listener)
}

#[test]
fn a_port_down_three_times_opens_one_problem_and_its_workaround_reaches_the_next_page() {
    let receiver = Receiver::start();
    let collector = Collector::start_with(|text| {
        text.push_str(RECURRING);
        text.push_str(&webhook(&receiver));
    });
    let (service, port) = listener();
    let _agent = port_agent(&collector, "app-1", port, "app");
    wait_ports_up(&collector, 1);
    drop(service);
    let mut pages = Vec::new();
    let mut open_port = None;
    for round in 0..3 {
        drop(open_port.take());
        let (page, listener) = flap_once(&collector, &receiver, port, round);
        pages.push(page);
        open_port = Some(listener);
    }
    let problems = collector.get_json("/api/v1/problems");
    let problems = problems.as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let problem = &problems[0];
    assert_eq!(problem["state"], "open");
    assert_eq!(problem["rule"], "port-down");
    assert_eq!(problem["host"], "app-1");
    let id = problem["id"].as_i64().unwrap();
    let detail = collector.get_json(&format!("/api/v1/problems/{id}"));
    let linked: Vec<i64> = detail["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|incident| incident["id"].as_i64().unwrap())
        .collect();
    let paged: Vec<i64> = pages
        .iter()
        .map(|page| page["incident"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(linked[..3], paged[..], "the three recurrences are linked");
    let first = collector.get_json(&format!("/api/v1/incidents/{}", paged[0]));
    assert_eq!(first["problem_id"], id);
    assert!(
        first["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("Linked to problem P-{id}"))),
        "{first}"
    );

    // Known error: the workaround rides along with the next page.
    let (status, body) = collector.send_json(
        "PATCH",
        &format!("/api/v1/problems/{id}"),
        r#"{"state": "known_error"}"#,
    );
    assert_eq!(status, 400, "a known error needs a workaround: {body}");
    let (status, updated) = collector.send_json(
        "PATCH",
        &format!("/api/v1/problems/{id}"),
        r#"{"state": "known_error", "root_cause": "leaky pool", "workaround": "restart app-1 with `systemctl restart app`"}"#,
    );
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["state"], "known_error");
    // The acting token is init's `admin`; a `by` in the body would be ignored.
    assert_eq!(updated["updated_by"], "admin");
    drop(open_port);
    let page = poll(DEADLINE, "the next page", || {
        let pages = delivered(&receiver, "opened");
        (pages.len() > 3).then(|| pages[3].1.clone())
    });
    assert_eq!(page["problem"]["reference"], format!("P-{id}"));
    assert_eq!(
        page["problem"]["workaround"],
        "restart app-1 with `systemctl restart app`"
    );
    assert_eq!(page["incident"]["problem_id"], id);
    let (status, refused) = collector.send_json(
        "PATCH",
        &format!("/api/v1/problems/{id}"),
        r#"{"state": "open"}"#,
    );
    assert_eq!(status, 409, "problems move forward only");
    assert_eq!(refused["error"], "invalid_transition", "{refused}");
}

const CHANGES: &str = r#"
[[rule]]
name = "port-down"
metric = "port.up"
op = "<"
threshold = 1
severity = "major"
summary = "Port {target} on {host} is down"

[changes]
link_after = "1h"
"#;

fn timeline_says(collector: &Collector, incident: i64, text: &str) -> bool {
    let detail = collector.get_json(&format!("/api/v1/incidents/{incident}"));
    detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|entry| entry["detail"].as_str().unwrap().contains(text))
}

#[test]
fn a_change_on_a_tag_silences_its_assets_and_links_what_breaks_after_it() {
    let receiver = Receiver::start();
    let collector = Collector::start_with(|text| {
        text.push_str(CHANGES);
        text.push_str(&webhook(&receiver));
    });
    let (service, port) = listener();
    let _agent = port_agent(&collector, "app-1", port, "app");
    let asset = poll(DEADLINE, "the asset record", || {
        let assets = collector.get_json("/api/v1/assets");
        assets
            .as_array()?
            .iter()
            .find(|asset| asset["hostname"] == "app-1")
            .cloned()
    });
    let (status, body) = collector.send_json(
        "PATCH",
        &format!("/api/v1/assets/{}", asset["id"].as_str().unwrap()),
        r#"{"tags": ["site:a"]}"#,
    );
    assert_eq!(status, 200, "{body}");
    wait_ports_up(&collector, 1);

    let change = collector.post_json(
        "/api/v1/changes",
        r#"{"title": "Upgrade app on site a", "tags": ["site:a"], "duration": "1h", "risk": "high", "implementer": "alice"}"#,
    );
    let change_id = change["id"].as_i64().unwrap();
    assert_eq!(change["reference"], format!("C-{change_id}"));
    assert_eq!(change["active"], true);
    assert_eq!(change["created_by"], "admin", "the acting token's name");
    // A change elsewhere that breaks nothing.
    collector.post_json(
        "/api/v1/changes",
        r#"{"title": "Patch site b", "tags": ["site:b"], "duration": "1h", "risk": "low"}"#,
    );
    let windows = collector.get_json("/api/v1/maintenance");
    let window = windows
        .as_array()
        .unwrap()
        .iter()
        .find(|window| window["change_id"] == change_id)
        .unwrap_or_else(|| panic!("the change's window: {windows}"));
    assert_eq!(window["change"], format!("C-{change_id}"));
    assert_eq!(window["tags"], serde_json::json!(["site:a"]));

    // During the change: the incident is recorded and linked, nobody is paged.
    drop(service);
    let during = poll(DEADLINE, "an incident during the change", || {
        unresolved(&collector, "port-down").into_iter().next()
    });
    let during_id = during["id"].as_i64().unwrap();
    assert_eq!(during["change_id"], change_id);
    assert!(timeline_says(
        &collector,
        during_id,
        &format!("Opened during change C-{change_id}")
    ));
    poll(DEADLINE, "its notification to be held", || {
        let held = collector.get_json("/api/v1/notifications?state=held");
        (held.as_array()?.len() == 1).then_some(())
    });
    let back = TcpListener::bind(("127.0.0.1", port)).unwrap();
    poll(DEADLINE, "the incident to resolve", || {
        unresolved(&collector, "port-down").is_empty().then_some(())
    });

    // Recording the outcome closes the change and its window.
    let (status, closed) = collector.send_json(
        "PATCH",
        &format!("/api/v1/changes/{change_id}"),
        r#"{"outcome": "failed"}"#,
    );
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["active"], false);
    assert_eq!(closed["outcome"], "failed");

    // After it: the next breach pages, and is linked to the change.
    drop(back);
    let after = poll(DEADLINE, "the incident after the change to page", || {
        delivered(&receiver, "opened").into_iter().next()
    });
    let after_id = after.0;
    assert_ne!(after_id, during_id);
    assert_eq!(after.1["incident"]["change_id"], change_id);
    assert!(timeline_says(
        &collector,
        after_id,
        &format!("after change C-{change_id} ended")
    ));
    let _back = TcpListener::bind(("127.0.0.1", port)).unwrap();
    poll(DEADLINE, "the incident to resolve", || {
        unresolved(&collector, "port-down").is_empty().then_some(())
    });
    let detail = collector.get_json(&format!("/api/v1/changes/{change_id}"));
    assert_eq!(detail["incident_count"], 2, "{detail}");

    let stats = collector.get_json("/api/v1/changes/stats?window=30d");
    assert_eq!(stats["changes"], 2, "{stats}");
    assert_eq!(stats["changes_with_incidents"], 1);
    assert_eq!(stats["change_failure_rate"], 0.5);
    assert_eq!(stats["incidents"], 2);
    assert_eq!(stats["restored_incidents"], 2);
    assert!(stats["mean_time_to_restore_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(stats["outcomes"]["failed"], 1);
    assert_eq!(stats["outcomes"]["open"], 1);
    let opened: Vec<i64> = delivered(&receiver, "opened")
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(opened, [after_id], "nothing paged during the change");
}
