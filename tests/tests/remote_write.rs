//! End to end: the collector exports committed samples with Prometheus
//! remote_write 1.0, to a loopback receiver in this test that decodes every
//! body (Snappy block format, then protobuf), and to a real Prometheus
//! (`--web.enable-remote-write-receiver`) that then answers a PromQL query.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use steward_proto::prometheus::WriteRequest;
use steward_tests::{Collector, DEADLINE, Process, http_request, path_str, poll};

/// One request the receiver read, and what it answered.
#[derive(Debug, Clone)]
struct WriteReceived {
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
}

impl WriteReceived {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn decode(&self) -> WriteRequest {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&self.body)
            .expect("the body is Snappy block format");
        WriteRequest::decode(raw.as_slice()).expect("the body is a prometheus.WriteRequest")
    }
}

/// A loopback HTTP server that keeps request bodies as bytes (remote_write
/// bodies are binary) and answers with planned statuses, then 200.
struct WriteReceiver {
    address: SocketAddr,
    received: Arc<Mutex<Vec<WriteReceived>>>,
    plan: Arc<Mutex<Vec<u16>>>,
    stop: Arc<AtomicBool>,
}

impl WriteReceiver {
    fn start(plan: &[u16]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let plan = Arc::new(Mutex::new(plan.iter().rev().copied().collect::<Vec<_>>()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, statuses, halt) = (received.clone(), plan.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(request) = serve(stream, &statuses) {
                            log.lock().unwrap().push(request);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            address,
            received,
            plan,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.address)
    }

    fn requests(&self) -> Vec<WriteReceived> {
        self.received.lock().unwrap().clone()
    }

    fn plan_used_up(&self) -> bool {
        self.plan.lock().unwrap().is_empty()
    }
}

impl Drop for WriteReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one request (head, then `Content-Length` bytes) and answers it.
fn serve(mut stream: TcpStream, plan: &Mutex<Vec<u16>>) -> Option<WriteReceived> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let read = stream.read(&mut chunk).ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let status = plan.lock().unwrap().pop().unwrap_or(200);
    stream
        .write_all(
            format!("HTTP/1.1 {status} Planned\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
    Some(WriteReceived {
        headers,
        body: buffer[head_end..head_end + length].to_vec(),
        status,
    })
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
    let receiver = WriteReceiver::start(&[]);
    let collector = Collector::start_with(|text| text.push_str(&export_config(&receiver.url())));
    let _agent = collector.start_agent("web", |text| text.push_str("hostname = \"web-1\"\n"));
    let id = collector.connected_agent_id("web-1");

    let (request, series) = poll(DEADLINE, "steward_cpu_usage_percent to arrive", || {
        receiver.requests().into_iter().find_map(|request| {
            let series = request.decode().timeseries.into_iter().find(|series| {
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
    let receiver = WriteReceiver::start(&[500, 503, 429]);
    let collector = Collector::start_with(|text| text.push_str(&export_config(&receiver.url())));
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
        for series in request.decode().timeseries {
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
    let receiver = WriteReceiver::start(&[400]);
    let collector = Collector::start_with(|text| text.push_str(&export_config(&receiver.url())));
    let _agent = collector.start_agent("web", |text| text.push_str("hostname = \"web-3\"\n"));
    poll(DEADLINE, "a request accepted after the refusal", || {
        let requests = receiver.requests();
        (requests.len() >= 2 && requests[1].status == 200).then_some(())
    });
    let requests = receiver.requests();
    assert_ne!(
        requests[0].body, requests[1].body,
        "a refusal is not retried"
    );
    let refused: u64 = requests[0]
        .decode()
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
        eprintln!("skipped: prometheus is not installed (apt-get install prometheus)");
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
