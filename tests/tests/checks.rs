//! End to end: the agent's port check, patch level and inventory reach the
//! collector and its API.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;

use steward_tests::{Collector, DEADLINE, find_series, poll};

#[test]
fn port_check_reports_up_then_down_after_the_listener_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let collector = Collector::start();
    let _agent = collector.start_agent("checker", |text| {
        text.push_str(&format!(
            "\n[[port]]\ntarget = \"{target}\"\nname = \"test-listener\"\ntimeout = \"1s\"\n"
        ));
    });
    let port_up = || {
        let series = collector.get_json("/api/v1/series?metric=port.up");
        find_series(&series, "port.up", Some(("target", target.as_str()))).map(|found| {
            (
                found["value"].as_f64().unwrap(),
                found["labels"]["name"].clone(),
            )
        })
    };
    let (value, name) = poll(DEADLINE, "port.up = 1", || {
        port_up().filter(|(value, _)| *value == 1.0)
    });
    assert_eq!(value, 1.0);
    assert_eq!(name, "test-listener");
    let connect = collector.get_json("/api/v1/series?metric=port.connect_ms");
    assert!(connect[0]["value"].as_f64().unwrap() >= 0.0);

    drop(listener);
    poll(DEADLINE, "port.up = 0 after the listener closed", || {
        port_up().filter(|(value, _)| *value == 0.0)
    });
}

#[test]
fn inventory_and_patch_level_reach_the_collector() {
    let collector = Collector::start();
    let _agent = collector.start_agent("inventoried", |text| {
        text.push_str("hostname = \"inv-1\"\n")
    });
    let id = poll(DEADLINE, "the agent to connect", || {
        let agents = collector.get_json("/api/v1/agents");
        agents[0]["id"].as_str().map(str::to_string)
    });
    let detail = poll(DEADLINE, "the inventory to arrive", || {
        let detail = collector.get_json(&format!("/api/v1/agents/{id}"));
        (!detail["inventory"].is_null()).then_some(detail)
    });
    let inventory = &detail["inventory"];
    let facts = &inventory["facts"];
    for fact in [
        "hostname",
        "os_id",
        "kernel",
        "arch",
        "memory_total_bytes",
        "cpu_threads",
        "agent_version",
    ] {
        assert!(facts[fact].is_string(), "fact {fact} missing: {facts}");
    }
    let package_count = inventory["package_count"].as_u64().unwrap();
    if facts["os_id"] == "debian" || facts["os_id"] == "ubuntu" {
        assert!(package_count > 50, "{inventory}");
        let packages = collector.get_json(&format!("/api/v1/agents/{id}/packages"));
        assert_eq!(packages.as_array().unwrap().len() as u64, package_count);
        assert!(
            packages
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "dpkg")
        );
    }
    assert!(
        inventory["disks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|disk| disk["mount"] == "/"),
        "{inventory}"
    );

    // The patch scan runs at start-up, on its own schedule.
    let series = poll(DEADLINE, "patch level samples", || {
        let series = collector.get_json(&format!("/api/v1/series?agent={id}&metric=patch.pending"));
        (series.as_array()?.len() == 1).then_some(series)
    });
    assert!(series[0]["value"].as_f64().unwrap() >= 0.0);
    assert!(series[0]["labels"]["backend"].is_string());
}
