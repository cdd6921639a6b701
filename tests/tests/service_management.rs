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
