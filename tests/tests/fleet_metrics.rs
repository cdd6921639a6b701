//! End to end: with `[server] fleet_metrics = true`, `/metrics` carries the
//! latest value of every agent series (`steward_cpu_usage_percent{agent_id,
//! host, cpu}`), as an independent Prometheus text-format parser reads it;
//! without the switch those series are absent.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use steward_tests::{Collector, DEADLINE, now_ms, poll};

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

/// `/metrics`, parsed; panics with the body when it does not parse.
fn scrape(collector: &Collector) -> Exposition {
    let (status, body) = collector.get("/metrics");
    assert_eq!(status, 200, "{body}");
    parse_prometheus(&body)
        .unwrap_or_else(|error| panic!("/metrics does not parse ({error:?}):\n{body}"))
}

/// The value and timestamp of the series of `family` whose labels include all of `wanted`.
fn find(exposition: &Exposition, family: &str, wanted: &[(&str, &str)]) -> Option<(f64, f64)> {
    let family = exposition.families.get(family)?;
    family.iter_samples().find_map(|sample| {
        let labels = sample.get_labelset().ok()?;
        let matches = wanted
            .iter()
            .all(|(name, value)| labels.get_label_value(name) == Some(*value));
        let value = match &sample.value {
            PrometheusValue::Gauge(number) | PrometheusValue::Unknown(number) => number.as_f64(),
            PrometheusValue::Counter(counter) => counter.value.as_f64(),
            _ => return None,
        };
        matches.then_some((value, sample.timestamp?))
    })
}

fn agent_id(collector: &Collector) -> String {
    poll(DEADLINE, "the agent to register", || {
        let agents = collector.get_json("/api/v1/agents");
        agents[0]["id"].as_str().map(str::to_string)
    })
}

#[test]
fn fleet_series_are_exposed_with_identity_labels_and_hostile_values_round_trip() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector = Collector::start_with(|text| {
        *text = text.replace("[server]\n", "[server]\nfleet_metrics = true\n");
    });
    // A check name with a quote, a backslash, a line feed (ingest turns it
    // into a space) and the characters a naive parser splits on.
    let _agent = collector.start_agent("web", |text| {
        text.push_str(&format!(
            "hostname = \"web-1\"\n\n[[port]]\ntarget = \"127.0.0.1:{port}\"\nname = \"we\\\"b\\\\x\\ny}},z=\\\"1\\\"\"\ntimeout = \"1s\"\n"
        ));
    });
    let hostile = "we\"b\\x y},z=\"1\"";
    let agent = agent_id(&collector);

    let exposition = poll(DEADLINE, "CPU, port and network series in /metrics", || {
        let exposition = scrape(&collector);
        let cpu = find(
            &exposition,
            "steward_cpu_usage_percent",
            &[("agent_id", &agent), ("host", "web-1"), ("cpu", "total")],
        );
        let port = find(
            &exposition,
            "steward_port_up",
            &[("agent_id", &agent), ("name", hostile)],
        );
        let network = exposition.families.contains_key("steward_net_rx_bytes");
        (cpu.is_some() && port.is_some() && network).then_some(exposition)
    });
    let (cpu, timestamp) = find(
        &exposition,
        "steward_cpu_usage_percent",
        &[("agent_id", &agent), ("host", "web-1"), ("cpu", "total")],
    )
    .unwrap();
    assert!((0.0..=100.0).contains(&cpu), "CPU {cpu}");
    let age_ms = now_ms() as f64 - timestamp;
    assert!(
        (-60_000.0..600_000.0).contains(&age_ms),
        "the sample timestamp is in ms and recent: {timestamp}"
    );
    let family = &exposition.families["steward_cpu_usage_percent"];
    assert_eq!(family.family_type, PrometheusType::Gauge);
    assert!(!family.help.is_empty());
    let (up, _) = find(
        &exposition,
        "steward_port_up",
        &[
            ("agent_id", &agent),
            ("host", "web-1"),
            ("name", hostile),
            ("target", &format!("127.0.0.1:{port}")),
        ],
    )
    .unwrap();
    assert_eq!(up, 1.0);
    // Network totals are counters; the collector's own counters are still there.
    assert_eq!(
        exposition.families["steward_net_rx_bytes"].family_type,
        PrometheusType::Counter
    );
    assert!(
        exposition
            .families
            .contains_key("steward_samples_ingested_total"),
        "the collector's own counters: {:?}",
        exposition.families.keys().collect::<Vec<_>>()
    );
}

#[test]
fn without_the_switch_metrics_carries_no_fleet_series() {
    let collector = Collector::start();
    let _agent = collector.start_agent("web", |text| text.push_str("hostname = \"web-1\"\n"));
    poll(DEADLINE, "CPU samples stored", || {
        let series = collector.get_json("/api/v1/series?metric=cpu.usage_percent");
        (!series.as_array()?.is_empty()).then_some(())
    });
    let exposition = scrape(&collector);
    let fleet: Vec<&String> = exposition
        .families
        .keys()
        .filter(|name| name.starts_with("steward_cpu_") || name.starts_with("steward_port_"))
        .collect();
    assert!(fleet.is_empty(), "{fleet:?}");
    assert!(
        exposition
            .families
            .contains_key("steward_samples_ingested_total")
    );
}
