//! End to end: the collector exports committed samples with Prometheus
//! remote_write 1.0, to a loopback receiver in this test that decodes every
//! body (Snappy block format, then protobuf), and to a real Prometheus
//! (`--web.enable-remote-write-receiver`) that then answers a PromQL query.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message;
use steward_proto::prometheus::WriteRequest;
use steward_tests::{
    Collector, DEADLINE, Process, Received, Receiver, http_request, path_str, poll,
};

/// A remote_write body: Snappy block format, then a `prometheus.WriteRequest`.
fn decode(request: &Received) -> WriteRequest {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&request.raw_body)
        .expect("the body is Snappy block format");
    WriteRequest::decode(raw.as_slice()).expect("the body is a prometheus.WriteRequest")
}

/// A loopback receiver answering `statuses` first, then 200.
fn receiver(statuses: &[u16]) -> Receiver {
    let receiver = Receiver::start();
    receiver.answer_with(statuses);
    receiver
}

fn export_config(url: &str) -> String {
    format!(
        "\n[[export.remote_write]]\nname = \"test\"\nurl = \"{url}\"\nbatch_wait = \"100ms\"\nmin_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n"
    )
}

/// A series' labels as a map.
fn labels(series: &steward_proto::prometheus::TimeSeries) -> BTreeMap<String, String> {
    series
        .labels
        .iter()
        .map(|label| (label.name.clone(), label.value.clone()))
        .collect()
}

#[test]
fn committed_samples_arrive_as_remote_write_with_prometheus_labels() {
    let receiver = receiver(&[]);
    let collector =
        Collector::start_with(|text| text.push_str(&export_config(&receiver.url("/api/v1/write"))));
    let _agent = collector.start_agent("web", |text| text.push_str("hostname = \"web-1\"\n"));
    let id = collector.connected_agent_id("web-1");

    let (request, series) = poll(DEADLINE, "steward_cpu_usage_percent to arrive", || {
        receiver.requests().into_iter().find_map(|request| {
            let series = decode(&request).timeseries.into_iter().find(|series| {
                let labels = labels(series);
                labels.get("__name__").map(String::as_str) == Some("steward_cpu_usage_percent")
                    && labels.get("cpu").map(String::as_str) == Some("total")
            })?;
            Some((request, series))
        })
    });
    assert_eq!(request.header("content-encoding"), Some("snappy"));
    assert_eq!(
        request.header("content-type"),
        Some("application/x-protobuf")
    );
    assert_eq!(
        request.header("x-prometheus-remote-write-version"),
        Some("0.1.0")
    );
    let names: Vec<&str> = series
        .labels
        .iter()
        .map(|label| label.name.as_str())
        .collect();
    assert_eq!(names, ["__name__", "agent_id", "cpu", "host"]);
    let labels = labels(&series);
    assert_eq!(labels["agent_id"], id);
    assert_eq!(labels["host"], "web-1");
    let now = steward_tests::now_ms();
    for sample in &series.samples {
        assert!(
            (0.0..=100.0).contains(&sample.value),
            "{:?}",
            series.samples
        );
        assert!(
            (now - 120_000..=now + 5_000).contains(&sample.timestamp),
            "{:?}",
            series.samples
        );
    }
    poll(DEADLINE, "the sent counter to move", || {
        (collector.counter("steward_remote_write_samples_sent_total") > 0).then_some(())
    });
}

#[test]
fn a_failing_receiver_is_retried_and_nothing_is_lost() {
    // Two server errors and a rate limit, then success: the same request is
    // sent again each time, and every committed sample arrives once.
    let receiver = receiver(&[500, 503, 429]);
    let collector =
        Collector::start_with(|text| text.push_str(&export_config(&receiver.url("/api/v1/write"))));
    let mut agent = collector.start_agent("web", |text| text.push_str("hostname = \"web-2\"\n"));
    collector.connected_agent_id("web-2");
    poll(DEADLINE, "two accepted requests after the failures", || {
        let accepted = receiver
            .requests()
            .iter()
            .filter(|request| request.status == 200)
            .count();
        (receiver.plan_used_up() && accepted >= 2).then_some(())
    });
    agent.kill9();
    agent.wait_exit(DEADLINE);

    // Once the agent is gone, everything committed has been exported.
    let ingested = collector.wait_export_caught_up("remote_write");
    let requests = receiver.requests();
    let statuses: Vec<u16> = requests.iter().map(|request| request.status).collect();
    assert_eq!(statuses[..4], [500, 503, 429, 200], "{statuses:?}");
    for failed in &requests[..3] {
        assert_eq!(failed.body, requests[3].body, "a retry resends the request");
    }
    let mut delivered = BTreeSet::new();
    let mut count = 0;
    for request in requests.iter().filter(|request| request.status == 200) {
        for series in decode(request).timeseries {
            let key = format!("{:?}", labels(&series));
            for sample in series.samples {
                count += 1;
                assert!(
                    delivered.insert((key.clone(), sample.timestamp)),
                    "{key} at {} delivered twice",
                    sample.timestamp
                );
            }
        }
    }
    assert_eq!(count, ingested, "every stored sample is delivered once");
    assert!(collector.counter("steward_remote_write_retries_total") >= 3);
    assert!(collector.counter("steward_remote_write_requests_failed_total") >= 3);
    assert_eq!(
        collector.counter("steward_remote_write_samples_refused_total"),
        0
    );
    assert_eq!(
        collector.counter("steward_remote_write_samples_dropped_queue_full_total"),
        0
    );
}

#[test]
fn a_refused_request_is_dropped_and_counted() {
    // 400 is final, as in Prometheus: the batch is dropped, later ones go on.
    let receiver = receiver(&[400]);
    let collector =
        Collector::start_with(|text| text.push_str(&export_config(&receiver.url("/api/v1/write"))));
    let _agent = collector.start_agent("web", |text| text.push_str("hostname = \"web-3\"\n"));
    poll(DEADLINE, "a request accepted after the refusal", || {
        let requests = receiver.requests();
        (requests.len() >= 2 && requests[1].status == 200).then_some(())
    });
    let requests = receiver.requests();
    assert_ne!(
        requests[0].raw_body, requests[1].raw_body,
        "a refusal is not retried"
    );
    let refused: u64 = decode(&requests[0])
        .timeseries
        .iter()
        .map(|series| series.samples.len() as u64)
        .sum();
    poll(DEADLINE, "the refusal to be counted", || {
        (collector.counter("steward_remote_write_samples_refused_total") >= refused).then_some(())
    });
    assert_eq!(
        collector.counter("steward_remote_write_samples_refused_total"),
        refused
    );
}

/// Where Debian's package puts Prometheus.
fn prometheus_binary() -> Option<PathBuf> {
    ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Percent-encodes a query string value.
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn start_prometheus(binary: &Path, dir: &Path) -> (Process, SocketAddr) {
    let config = dir.join("prometheus.yml");
    // No scrape jobs: everything it stores arrives by remote_write.
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let storage = dir.join("tsdb");
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let process = Process::spawn(
        "prometheus",
        binary,
        &[
            &format!("--config.file={}", path_str(&config)),
            &format!("--storage.tsdb.path={}", path_str(&storage)),
            &format!("--web.listen-address={address}"),
            "--web.enable-remote-write-receiver",
            "--log.level=warn",
        ],
        dir.join("prometheus.log"),
    );
    (process, address)
}

#[test]
fn prometheus_answers_a_promql_query_for_an_exported_series() {
    let Some(binary) = prometheus_binary() else {
        assert!(
            std::env::var_os("STEWARD_REQUIRE_PROMETHEUS").is_none(),
            "STEWARD_REQUIRE_PROMETHEUS is set but prometheus is not installed (apt-get install prometheus)"
        );
        steward_tests::skipped(
            "remote_write to Prometheus",
            "prometheus is not installed (apt-get install prometheus)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (prometheus, address) = start_prometheus(&binary, dir.path());
    poll(DEADLINE, "Prometheus to be ready", || {
        let stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
        drop(stream);
        let (status, _) = http_request(address, "GET", "/-/ready", None, None);
        (status == 200).then_some(())
    });
    let collector = Collector::start_with(|text| {
        text.push_str(&export_config(&format!("http://{address}/api/v1/write")))
    });
    let _agent = collector.start_agent("web", |text| text.push_str("hostname = \"prom-1\"\n"));
    let id = collector.connected_agent_id("prom-1");

    let query = encode_query(&format!(
        "steward_cpu_usage_percent{{agent_id=\"{id}\",cpu=\"total\"}}"
    ));
    let result = poll(DEADLINE, "Prometheus to answer for the series", || {
        let (status, body) = http_request(
            address,
            "GET",
            &format!("/api/v1/query?query={query}"),
            None,
            None,
        );
        assert_eq!(status, 200, "{body}\n{}", prometheus.log_text());
        let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = answer["data"]["result"].as_array()?.first()?.clone();
        Some(result)
    });
    assert_eq!(result["metric"]["host"], "prom-1");
    assert_eq!(result["metric"]["agent_id"], id.as_str());
    let value: f64 = result["value"][1].as_str().unwrap().parse().unwrap();
    assert!((0.0..=100.0).contains(&value), "{result}");
    assert_eq!(
        collector.counter("steward_remote_write_samples_refused_total"),
        0,
        "Prometheus refused samples:\n{}",
        prometheus.log_text()
    );
}
