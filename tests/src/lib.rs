//! Harness for end-to-end tests: runs the real `steward-collector` and
//! `steward-agent` binaries on free loopback ports in temporary directories.
//!
//! Children are killed when their handle drops. When a test fails, the
//! panic message carries the command and the tail of the process log.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a binary built by this workspace (`target/<profile>/NAME`).
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("STEWARD_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    // Test executables live in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current_exe is readable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (it builds the binaries) or `cargo build --workspace` first",
        path.display()
    );
    path
}

/// Says on the terminal that a test (or part of one) did not run, and why.
/// Written to stderr directly: libtest captures `println!`/`eprintln!` of a
/// passing test, which would make a skip look like a pass.
pub fn skipped(what: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}: {why}");
}

/// Polls `probe` until it returns `Some`, or panics after `timeout` with `what`.
pub fn poll<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A generous deadline: these machines are shared and slow under load.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A running child process with its log file; killed on drop.
pub struct Process {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
    command: String,
}

impl Process {
    pub fn spawn(name: &str, program: &Path, args: &[&str], log: PathBuf) -> Self {
        Self::spawn_with_env(name, program, args, &[], log)
    }

    /// Like [`spawn`](Self::spawn), with extra environment variables.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> Self {
        let file = std::fs::File::create(&log).expect("create log file");
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info,steward_agent=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", program.display()));
        Self {
            name: name.to_string(),
            child: Some(child),
            log,
            command: format!("{} {}", program.display(), args.join(" ")),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |child| child.id() as i32)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Command line and log tail, for failure messages.
    pub fn describe(&self) -> String {
        let log = self.log_text();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- {} ({})\n{}\n---",
            self.name,
            self.command,
            tail.join("\n")
        )
    }

    pub fn signal(&self, signal: i32) {
        #[allow(unsafe_code)]
        // SAFETY: kill(2) with a pid we spawned and still own; no memory is touched.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let description = format!("{} to exit", self.name);
        let status = poll(timeout, &description, || child.try_wait().ok().flatten());
        self.child = None;
        status.code()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.describe());
        }
        self.kill9();
    }
}

/// A directory set up by `steward-collector init`, with the running collector.
pub struct Collector {
    pub dir: tempfile::TempDir,
    pub process: Process,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    starts: usize,
}

impl Collector {
    /// `init` into a fresh temp dir, then start on free ports (port 0).
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// Like [`start`](Self::start), letting the test edit `collector.toml` first.
    pub fn start_with(edit: impl FnOnce(&mut String)) -> Self {
        Self::start_with_env(&[], edit)
    }

    /// Like [`start_with`](Self::start_with), with extra environment variables
    /// for this first start ([`restart`](Self::restart) goes without them).
    pub fn start_with_env(env: &[(&str, &str)], edit: impl FnOnce(&mut String)) -> Self {
        let dir = init_dir();
        // Tests choose their own rules: the shipped defaults (disk, CPU, ...)
        // could fire on a busy test machine and make assertions flaky.
        edit_file(&dir.path().join("collector.toml"), |text| {
            *text = text.replace("include = [\"default-rules.toml\"]\n", "");
            // Most tests start many agents from one template (see
            // `agent_config`): those use the shared token, which init leaves
            // off. Enrolled agents: `enroll_agent`.
            *text = text.replace(
                "# agent_token_file = \"agent-tokens\"",
                "agent_token_file = \"agent-tokens\"",
            );
        });
        edit_file(&dir.path().join("collector.toml"), edit);
        let (process, grpc_addr, http_addr) = launch_with_env(dir.path(), 0, env);
        // Pin the ports so a restart comes back where the agents expect it.
        edit_file(&dir.path().join("collector.toml"), |text| {
            *text = text
                .replace(
                    "grpc_listen = \"127.0.0.1:0\"",
                    &format!("grpc_listen = \"{grpc_addr}\""),
                )
                .replace(
                    "http_listen = \"127.0.0.1:0\"",
                    &format!("http_listen = \"{http_addr}\""),
                );
        });
        Self {
            dir,
            process,
            grpc_addr,
            http_addr,
            starts: 1,
        }
    }

    /// Starts the collector again (after a kill) on the same ports and database.
    pub fn restart(&mut self) {
        let (process, grpc_addr, http_addr) = launch(self.dir.path(), self.starts);
        assert_eq!(
            grpc_addr, self.grpc_addr,
            "restart must reuse the gRPC port"
        );
        self.process = process;
        self.http_addr = http_addr;
        self.starts += 1;
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The admin API token `init` wrote (named `admin`).
    pub fn api_token(&self) -> String {
        std::fs::read_to_string(self.path("api-token"))
            .expect("api-token")
            .trim()
            .to_string()
    }

    /// Writes an agent config for this collector into its own directory and
    /// returns the path. It authenticates with the shared token (init's
    /// template holds the local agent's certificate, bound to another id).
    pub fn agent_config(&self, name: &str, edit: impl FnOnce(&mut String)) -> PathBuf {
        let template = std::fs::read_to_string(self.path("agent.toml")).expect("agent.toml");
        let mut text = template
            .replace(
                "cert = \"agent.pem\"\nkey = \"agent.key\"\n",
                &format!("token = \"{}\"\n", self.agent_token()),
            )
            .replace(
                "https://127.0.0.1:0",
                &format!("https://127.0.0.1:{}", self.grpc_addr.port()),
            )
            .replace("interval = \"10s\"", "interval = \"1s\"")
            .replace(
                "state_dir = \"agent-state\"",
                &format!("state_dir = \"{name}-state\""),
            );
        edit(&mut text);
        let path = self.path(&format!("{name}.toml"));
        std::fs::write(&path, text).expect("write agent config");
        path
    }

    /// Starts a real agent with the config written by [`agent_config`](Self::agent_config).
    pub fn start_agent(&self, name: &str, edit: impl FnOnce(&mut String)) -> Process {
        let config = self.agent_config(name, edit);
        Process::spawn(
            name,
            &binary("steward-agent"),
            &["--config", path_str(&config)],
            self.path(&format!("{name}.log")),
        )
    }

    /// `GET path` with the admin token `init` created.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_request(self.http_addr, "GET", path, Some(&self.api_token()), None)
    }

    /// Runs `steward-collector token ARGS --config collector.toml`: (success, stdout, stderr).
    pub fn token_cli(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(binary("steward-collector"))
            .arg("token")
            .args(args)
            .args(["--config", path_str(&self.path("collector.toml"))])
            .output()
            .expect("run steward-collector token");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// A new API token named `name` with `scope` (read, write or admin).
    pub fn create_token(&self, name: &str, scope: &str) -> String {
        let (ok, stdout, stderr) = self.token_cli(&["create", "--name", name, "--scope", scope]);
        assert!(ok, "token create {name} failed: {stderr}");
        stdout.trim().to_string()
    }

    /// Every row of a paged list endpoint, following `X-Next-Cursor` with
    /// `limit` rows a page; also returns how many pages it took.
    pub fn get_all_pages(&self, path: &str, limit: u32) -> (Vec<serde_json::Value>, usize) {
        let separator = if path.contains('?') { '&' } else { '?' };
        let base = format!("{path}{separator}limit={limit}");
        let (mut url, mut rows, mut pages) = (base.clone(), Vec::new(), 0);
        loop {
            let (status, head, body) =
                http_exchange(self.http_addr, "GET", &url, Some(&self.api_token()), None);
            assert_eq!(status, 200, "GET {url}: {body}");
            let page: Vec<serde_json::Value> = serde_json::from_str(&body)
                .unwrap_or_else(|error| panic!("GET {url}: bad JSON ({error}): {body}"));
            assert!(
                page.len() <= limit as usize,
                "GET {url}: more than {limit} rows"
            );
            rows.extend(page);
            pages += 1;
            assert!(pages <= 10_000, "GET {base}: paging does not end");
            let next = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("x-next-cursor")
                    .then(|| value.trim().to_string())
            });
            match next {
                Some(cursor) => url = format!("{base}&cursor={cursor}"),
                None => return (rows, pages),
            }
        }
    }

    /// An authenticated write (`Authorization: Bearer {api_token}`): the
    /// status and the body as JSON (`Null` if it is not JSON).
    pub fn send_json(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let token = self.api_token();
        let (status, text) = http_request(self.http_addr, method, path, Some(&token), Some(body));
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    /// [`send_json`](Self::send_json) with POST, asserting a 2xx answer.
    pub fn post_json(&self, path: &str, body: &str) -> serde_json::Value {
        let (status, json) = self.send_json("POST", path, body);
        assert!((200..300).contains(&status), "POST {path}: {status} {json}");
        json
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("GET {path}: bad JSON ({error}): {body}"))
    }

    /// Every stored point of every series of every agent, read through the
    /// history API (head, log and chunks merged, so a point stored twice
    /// shows twice), as (metric, labels as JSON, timestamp, value).
    pub fn stored_points(&self) -> Vec<StoredPoint> {
        let mut points = Vec::new();
        let agents = self.get_json("/api/v1/agents");
        for agent in agents.as_array().expect("agents array") {
            let agent_id = agent["id"].as_str().expect("agent id");
            let latest = self.get_json(&format!("/api/v1/series?agent={agent_id}"));
            let metrics: std::collections::BTreeSet<&str> = latest
                .as_array()
                .expect("series array")
                .iter()
                .filter_map(|series| series["metric"].as_str())
                .collect();
            for metric in metrics {
                // Points come from tests that ran for minutes, not days.
                let from = now_ms() - 24 * 3_600_000;
                let to = now_ms() + 3_600_000;
                let history = self.get_json(&format!(
                    "/api/v1/series/query?agent={agent_id}&metric={metric}&from={from}&to={to}"
                ));
                for series in history["series"].as_array().expect("series") {
                    let labels = series["labels"].to_string();
                    for point in series["points"].as_array().expect("points") {
                        points.push(StoredPoint {
                            metric: metric.to_string(),
                            labels: labels.clone(),
                            timestamp_ms: point["t"].as_i64().expect("t"),
                            value: point["v"].as_f64().unwrap_or(f64::NAN),
                        });
                    }
                }
            }
        }
        points
    }

    /// The value of one counter from `/metrics`.
    pub fn counter(&self, name: &str) -> u64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("counter {name} missing from /metrics:\n{body}"))
    }

    /// A read-only connection to the collector's real SQLite file.
    pub fn database(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.path("steward.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open steward.db")
    }
}

fn launch(dir: &Path, start: usize) -> (Process, SocketAddr, SocketAddr) {
    launch_with_env(dir, start, &[])
}

fn launch_with_env(
    dir: &Path,
    start: usize,
    env: &[(&str, &str)],
) -> (Process, SocketAddr, SocketAddr) {
    let config = dir.join("collector.toml");
    let mut process = Process::spawn_with_env(
        "collector",
        &binary("steward-collector"),
        &["--config", path_str(&config)],
        env,
        dir.join(format!("collector-{start}.log")),
    );
    let (grpc, http) = poll(
        DEADLINE,
        "collector to report its listening addresses",
        || {
            if !process.is_running() {
                panic!("collector exited during start-up\n{}", process.describe());
            }
            let log = process.log_text();
            let line = log
                .lines()
                .find(|line| line.contains("Collector listening."))?;
            Some((field(line, "grpc_addr")?, field(line, "http_addr")?))
        },
    );
    (process, grpc, http)
}

/// Parses `key=value` from a tracing log line.
fn field(line: &str, key: &str) -> Option<SocketAddr> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    line[start..].split_whitespace().next()?.parse().ok()
}

/// A temp dir set up by `steward-collector init` for free loopback ports
/// (port 0), nothing started.
pub fn init_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(binary("steward-collector"))
        .args([
            "init",
            path_str(dir.path()),
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run steward-collector init");
    assert!(
        output.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir
}

pub fn edit_file(path: &Path, edit: impl FnOnce(&mut String)) {
    let mut text = std::fs::read_to_string(path).expect("read file to edit");
    edit(&mut text);
    std::fs::write(path, text).expect("write edited file");
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// A minimal HTTP/1.1 client, enough for the JSON API (no keep-alive, no TLS).
pub fn http_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let (status, _, body) = http_exchange(address, method, path, token, body);
    (status, body)
}

/// One HTTP/1.1 exchange: (status, response head, body).
pub fn http_exchange(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(10))
        .unwrap_or_else(|error| panic!("connect to {address}: {error}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    exchange_on(stream, address, method, path, token, body)
}

/// [`http_exchange`] over HTTPS, trusting only the CA certificate at `ca_pem`
/// (the server is addressed as `localhost`, a name `init`'s certificate holds).
pub fn https_exchange(
    address: SocketAddr,
    ca_pem: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_file_iter(ca_pem).expect("ca.pem") {
        roots
            .add(certificate.expect("a certificate in ca.pem"))
            .expect("a usable CA certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let connection =
        rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("TLS client");
    let tcp = TcpStream::connect_timeout(&address, Duration::from_secs(10))
        .unwrap_or_else(|error| panic!("connect to {address}: {error}"));
    tcp.set_read_timeout(Some(Duration::from_secs(30))).ok();
    exchange_on(
        rustls::StreamOwned::new(connection, tcp),
        address,
        method,
        path,
        token,
        body,
    )
}

/// One request and its response on an open stream; status 0 when the
/// stream ends without an HTTP answer (e.g. a failed TLS handshake).
fn exchange_on(
    mut stream: impl Read + Write,
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, String::new(), String::new());
    }
    let mut response = Vec::new();
    // A peer that closes without TLS close_notify still sent its answer.
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, rest) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        text = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Series of one agent from `/api/v1/series`, as (metric, labels, value).
pub fn find_series<'a>(
    series: &'a serde_json::Value,
    metric: &str,
    label: Option<(&str, &str)>,
) -> Option<&'a serde_json::Value> {
    series.as_array()?.iter().find(|item| {
        item["metric"] == metric
            && label.is_none_or(|(key, value)| item["labels"][key].as_str() == Some(value))
    })
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Lower-case header names.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body's bytes as sent (binary bodies: remote_write).
    pub raw_body: Vec<u8>,
    /// The status the receiver answered with.
    pub status: u16,
    /// When the request had been read.
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A real HTTP server on 127.0.0.1 that records requests and answers with
/// the statuses it is told (then 200). Stops when dropped.
pub struct Receiver {
    pub address: SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    statuses: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u16>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let address = listener.local_addr().expect("receiver address");
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let statuses =
            std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log, plan, halt) = (received.clone(), statuses.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let status = plan
                            .lock()
                            .map(|mut plan| plan.pop_front())
                            .ok()
                            .flatten()
                            .unwrap_or(200);
                        if let Some(request) = serve(stream, status)
                            && let Ok(mut log) = log.lock()
                        {
                            log.push(request);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            address,
            received,
            statuses,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Answer the next requests with these statuses, in order.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.statuses
            .lock()
            .expect("status plan")
            .extend(statuses.iter().copied());
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("received log").clone()
    }

    /// Whether every status given to [`answer_with`](Self::answer_with) was used.
    pub fn plan_used_up(&self) -> bool {
        self.statuses.lock().expect("status plan").is_empty()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn serve(mut stream: TcpStream, status: u16) -> Option<Received> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
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
    let mut lines = head.lines();
    let path = lines.next()?.split_whitespace().nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
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
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let raw_body = buffer[head_end..].to_vec();
    let body = String::from_utf8_lossy(&raw_body).into_owned();
    let reason = if status < 300 { "OK" } else { "Error" };
    let retry = if status == 429 {
        "Retry-After: 1\r\n"
    } else {
        ""
    };
    let _ = stream.write_all(
        format!(
            "HTTP/1.1 {status} {reason}\r\n{retry}Content-Length: 2\r\nConnection: close\r\n\r\nok"
        )
        .as_bytes(),
    );
    Some(Received {
        path,
        headers,
        body,
        raw_body,
        status,
        at: std::time::Instant::now(),
    })
}
pub mod smtp;

impl Collector {
    /// Waits until an agent's port check reports `port.up = 1`.
    pub fn wait_port_up(&self) {
        poll(DEADLINE, "port.up = 1 while the listener is open", || {
            let series = self.get_json("/api/v1/series?metric=port.up");
            (series[0]["value"] == 1.0).then_some(())
        });
    }
}

/// `hostname` (when given) and one `[[port]]` check on `127.0.0.1:port`,
/// for appending to an agent config.
pub fn port_check(hostname: Option<&str>, port: u16) -> String {
    let hostname = hostname
        .map(|name| format!("hostname = \"{name}\"\n"))
        .unwrap_or_default();
    format!("{hostname}\n[[port]]\ntarget = \"127.0.0.1:{port}\"\ntimeout = \"1s\"\n")
}

impl Collector {
    /// Starts agent `name` again from the config [`agent_config`](Self::agent_config)
    /// wrote (same state directory: same id, same spool), logging to
    /// `{name}-{run}.log` so the earlier run's log is kept.
    pub fn restart_agent(&self, name: &str, run: usize) -> Process {
        Process::spawn(
            &format!("{name} (run {run})"),
            &binary("steward-agent"),
            &["--config", path_str(&self.path(&format!("{name}.toml")))],
            self.path(&format!("{name}-{run}.log")),
        )
    }
}

/// Parses `key=value` from a tracing log line.
pub fn log_value<T: std::str::FromStr>(line: &str, key: &str) -> Option<T> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..].split_whitespace().next()?.parse().ok()
}

/// One "Collected a batch." line of an agent's debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectedBatch {
    pub seq: i64,
    pub samples: i64,
    pub timestamp_ms: i64,
}

/// Every host-metrics batch an agent log says was measured and spooled.
pub fn collected_batches(log: &str) -> Vec<CollectedBatch> {
    log.lines()
        .filter(|line| line.contains("Collected a batch."))
        .filter_map(|line| {
            Some(CollectedBatch {
                seq: log_value(line, "seq")?,
                samples: log_value(line, "samples")?,
                timestamp_ms: log_value(line, "timestamp_ms")?,
            })
        })
        .collect()
}

/// (VmRSS, VmHWM) of a running process in KiB, from `/proc/PID/status`.
pub fn memory_kib(pid: i32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((value("VmRSS:")?, value("VmHWM:")?))
}

/// Wall-clock milliseconds, comparable with sample timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// One point as the history API returns it (see [`Collector::stored_points`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPoint {
    pub metric: String,
    pub labels: String,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// Whether the long variants of the fault tests run (`STEWARD_LONG_FAULT_TESTS=1`).
pub fn long_fault_tests() -> bool {
    std::env::var("STEWARD_LONG_FAULT_TESTS").is_ok_and(|value| value == "1")
}

impl Collector {
    /// An agent token the collector accepts.
    pub fn agent_token(&self) -> String {
        let tokens = std::fs::read_to_string(self.path("agent-tokens")).expect("agent-tokens");
        tokens
            .lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty() && !line.starts_with('#'))
            .expect("an agent token")
            .to_string()
    }

    /// A new gRPC connection (its own TCP connection and TLS session) to
    /// the collector, trusting the collector's CA, for speaking the agent
    /// protocol from a test.
    pub async fn grpc_channel(&self) -> tonic::transport::Channel {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = std::fs::read(self.path("ca.pem")).expect("ca.pem");
        tonic::transport::Endpoint::from_shared(format!(
            "https://127.0.0.1:{}",
            self.grpc_addr.port()
        ))
        .expect("a valid URL")
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .domain_name("127.0.0.1"),
        )
        .expect("a valid TLS config")
        .connect()
        .await
        .expect("connect to the collector's gRPC port")
    }
}

/// An agent enrolled with `steward-agent enroll`: its directory (agent.toml,
/// certificates) and state directory.
#[derive(Debug, Clone)]
pub struct EnrolledAgent {
    pub name: String,
    pub dir: PathBuf,
    pub state_dir: PathBuf,
}

impl EnrolledAgent {
    pub fn config(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }

    /// Its persistent id.
    pub fn agent_id(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("agent-id"))
            .expect("agent-id")
            .trim()
            .to_string()
    }
}

impl Collector {
    /// Waits until an agent reporting `hostname` is connected; its id.
    pub fn connected_agent_id(&self, hostname: &str) -> String {
        poll(DEADLINE, "the agent to connect", || {
            let agents = self.get_json("/api/v1/agents");
            agents.as_array()?.iter().find_map(|agent| {
                (agent["hostname"] == hostname && agent["connected"] == true)
                    .then(|| agent["id"].as_str().map(str::to_string))
                    .flatten()
            })
        })
    }

    /// Once no agent sends any more: waits until `exporter` (`remote_write`,
    /// `otlp`) has sent every ingested sample and queues none; their count.
    pub fn wait_export_caught_up(&self, exporter: &str) -> u64 {
        poll(DEADLINE, "the export to catch up with ingest", || {
            let ingested = self.counter("steward_samples_ingested_total");
            let sent = self.counter(&format!("steward_{exporter}_samples_sent_total"));
            let queued = self.counter(&format!("steward_{exporter}_queue_samples"));
            (ingested > 0 && sent == ingested && queued == 0).then_some(ingested)
        })
    }

    /// Runs `steward-collector ARGS --config collector.toml`; (status, stdout, stderr).
    pub fn admin(&self, args: &[&str]) -> (i32, String, String) {
        let config = self.path("collector.toml");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", path_str(&config)]);
        let output = Command::new(binary("steward-collector"))
            .args(&all)
            .output()
            .expect("run steward-collector");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// A new enrollment token (`enroll-token create EXTRA...`).
    pub fn enrollment_token(&self, extra: &[&str]) -> String {
        let mut args = vec!["enroll-token", "create"];
        args.extend_from_slice(extra);
        let (status, stdout, stderr) = self.admin(&args);
        assert_eq!(status, 0, "enroll-token create failed: {stderr}");
        let token = stdout.trim().to_string();
        assert!(
            !token.is_empty() && !token.contains('\n'),
            "one token alone: {stdout:?}"
        );
        token
    }

    pub fn ca_fingerprint(&self) -> String {
        let (status, stdout, stderr) = self.admin(&["ca-fingerprint"]);
        assert_eq!(status, 0, "ca-fingerprint failed: {stderr}");
        stdout.trim().to_string()
    }

    /// Runs `steward-agent enroll` for agent `name` with `token` and
    /// `fingerprint`: (status, stdout and stderr, the agent's directories).
    pub fn run_enroll(
        &self,
        name: &str,
        token: &str,
        fingerprint: &str,
    ) -> (i32, String, EnrolledAgent) {
        let agent = EnrolledAgent {
            name: name.to_string(),
            dir: self.path(name),
            state_dir: self.path(&format!("{name}-state")),
        };
        let output = Command::new(binary("steward-agent"))
            .args([
                "enroll",
                "--collector",
                &format!("https://127.0.0.1:{}", self.grpc_addr.port()),
                "--token",
                token,
                "--ca-fingerprint",
                fingerprint,
                "--dir",
                path_str(&agent.dir),
                "--state-dir",
                path_str(&agent.state_dir),
            ])
            .output()
            .expect("run steward-agent enroll");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text, agent)
    }

    /// Enrolls agent `name` with a new one-use token; panics on failure.
    pub fn enroll_agent(&self, name: &str) -> EnrolledAgent {
        let token = self.enrollment_token(&[]);
        let (status, output, agent) = self.run_enroll(name, &token, &self.ca_fingerprint());
        assert_eq!(status, 0, "steward-agent enroll failed: {output}");
        edit_file(&agent.config(), |text| {
            *text = text.replace("interval = \"10s\"", "interval = \"1s\"");
        });
        agent
    }

    /// Starts an enrolled agent from the agent.toml `enroll` wrote.
    pub fn start_enrolled_agent(&self, agent: &EnrolledAgent) -> Process {
        Process::spawn(
            &agent.name,
            &binary("steward-agent"),
            &["--config", path_str(&agent.config())],
            self.path(&format!("{}.log", agent.name)),
        )
    }
}
