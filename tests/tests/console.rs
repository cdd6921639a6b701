//! The web console end to end: its files, session login (API token or a
//! configured user with an argon2id password), the cookie's attributes, CSRF
//! refusal, logout, scopes, the failed-login limiter; and a real headless
//! Chromium that logs in, watches an incident appear when a loopback port
//! check fails, acknowledges it in the page, and saves screenshots.
//!
//! The browser test needs Debian's `chromium` and `chromium-driver`. When
//! they are missing it installs them (as root, with apt-get), else it is
//! skipped with a printed reason, unless `STEWARD_REQUIRE_BROWSER=1` (set by
//! `.ci/run`) turns the skip into a failure.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use steward_tests::{Collector, DEADLINE, Process, Receiver, binary, path_str, poll, port_check};

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

/// One HTTP/1.1 exchange with extra request headers: (status, head, body).
fn exchange(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(10))
        .unwrap_or_else(|error| panic!("connect to {address}: {error}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    let typed = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if !body.is_empty() && !typed {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, rest) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), rest.to_string())
}

/// The value of response header `name` (case-insensitive).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// A logged-in console session: its cookie and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

fn log_in(collector: &Collector, body: &Value) -> Result<Session, (u16, String)> {
    let (status, head, text) = exchange(
        collector.http_addr,
        "POST",
        "/api/v1/session",
        &[],
        Some(&body.to_string()),
    );
    if status != 200 {
        return Err((status, text));
    }
    let set_cookie = header(&head, "set-cookie")
        .expect("a login sets the session cookie")
        .to_string();
    let cookie = set_cookie
        .split(';')
        .next()
        .expect("name=value first")
        .to_string();
    let answer: Value = serde_json::from_str(&text).expect("login JSON");
    Ok(Session {
        cookie,
        csrf: answer["csrf_token"]
            .as_str()
            .expect("csrf_token")
            .to_string(),
        set_cookie,
    })
}

impl Session {
    fn get(&self, collector: &Collector, path: &str) -> (u16, String) {
        let (status, _, body) = exchange(
            collector.http_addr,
            "GET",
            path,
            &[("Cookie", &self.cookie)],
            None,
        );
        (status, body)
    }

    /// A write with the cookie, with the session's CSRF token or `csrf`.
    fn send(
        &self,
        collector: &Collector,
        method: &str,
        path: &str,
        csrf: Option<&str>,
        body: &str,
    ) -> (u16, String, String) {
        let mut headers = vec![("Cookie", self.cookie.as_str())];
        if let Some(csrf) = csrf {
            headers.push(("X-CSRF-Token", csrf));
        }
        exchange(collector.http_addr, method, path, &headers, Some(body))
    }
}

/// `steward-collector hash-password`, the password on stdin.
fn hash_password(password: &str) -> String {
    let mut child = Command::new(binary("steward-collector"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    let output = child.wait_with_output().expect("hash-password output");
    assert!(
        output.status.success(),
        "hash-password failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_string()
}

/// `[[console.users]]` tables for (name, password, scope).
fn users(list: &[(&str, &str, &str)]) -> String {
    list.iter()
        .map(|(name, password, scope)| {
            format!(
                "\n[[console.users]]\nname = \"{name}\"\npassword_hash = \"{}\"\nscope = \"{scope}\"\n",
                hash_password(password)
            )
        })
        .collect()
}

#[test]
fn console_files_are_public_embedded_and_served_under_a_strict_policy() {
    let collector = Collector::start();
    let (status, head, page) = exchange(collector.http_addr, "GET", "/", &[], None);
    assert_eq!(status, 200, "{head}");
    assert!(
        header(&head, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let policy = header(&head, "content-security-policy").expect("a CSP");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    // No inline script: every <script> element loads a file.
    for script in page.split("<script").skip(1) {
        assert!(
            script.trim_start().starts_with("src="),
            "inline script: {script}"
        );
    }
    for (path, kind) in [
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
        ("/console/vendor/uPlot.iife.min.js", "text/javascript"),
        ("/console/vendor/uPlot.min.css", "text/css"),
    ] {
        assert!(page.contains(path), "index.html loads {path}");
        let (status, head, body) = exchange(collector.http_addr, "GET", path, &[], None);
        assert_eq!(status, 200, "{path}");
        assert!(
            header(&head, "content-type").unwrap().starts_with(kind),
            "{path}: {head}"
        );
        assert_eq!(header(&head, "cache-control"), Some("no-cache"), "{path}");
        assert!(!body.is_empty(), "{path}");
        // Revalidation by ETag answers 304 without the body.
        let etag = header(&head, "etag").expect("an ETag").to_string();
        let (status, _, body) = exchange(
            collector.http_addr,
            "GET",
            path,
            &[("If-None-Match", &etag)],
            None,
        );
        assert_eq!((status, body.as_str()), (304, ""), "{path}");
    }
    assert_eq!(
        exchange(collector.http_addr, "GET", "/console/nope.js", &[], None).0,
        404
    );
    // The data stays behind authentication.
    assert_eq!(
        exchange(collector.http_addr, "GET", "/api/v1/incidents", &[], None).0,
        401
    );
    assert_eq!(
        exchange(collector.http_addr, "GET", "/api/v1/session", &[], None).0,
        401
    );
}

#[test]
fn a_token_session_sets_a_strict_cookie_needs_csrf_to_write_and_ends_at_logout() {
    let collector = Collector::start();
    let session = log_in(&collector, &json!({ "token": collector.api_token() }))
        .expect("login with the admin token");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(
            session.set_cookie.contains(attribute),
            "{}",
            session.set_cookie
        );
    }
    assert!(session.cookie.starts_with("steward_session="));
    let (status, body) = session.get(&collector, "/api/v1/session");
    assert_eq!(status, 200, "{body}");
    let me: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (me["name"].as_str(), me["scope"].as_str()),
        (Some("admin"), Some("admin"))
    );
    assert_eq!(me["csrf_token"].as_str(), Some(session.csrf.as_str()));
    assert_eq!(session.get(&collector, "/api/v1/incidents").0, 200);

    let window = r#"{"tags": ["db"], "duration": "1h", "reason": "upgrade"}"#;
    let (status, _, body) = session.send(&collector, "POST", "/api/v1/maintenance", None, window);
    assert_eq!(
        status, 403,
        "a cookie write without the CSRF header: {body}"
    );
    assert!(body.contains("X-CSRF-Token"), "{body}");
    let (status, _, _) = session.send(
        &collector,
        "POST",
        "/api/v1/maintenance",
        Some("not-the-token"),
        window,
    );
    assert_eq!(status, 403, "a cookie write with a wrong CSRF token");
    let (status, _, body) = session.send(
        &collector,
        "POST",
        "/api/v1/maintenance",
        Some(&session.csrf),
        window,
    );
    assert!(
        (200..300).contains(&status),
        "with the CSRF token: {status} {body}"
    );
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["created_by"], "admin", "{created}");

    // Logout needs the CSRF token too, then the cookie is dead.
    let (status, _, _) = session.send(&collector, "DELETE", "/api/v1/session", None, "");
    assert_eq!(status, 403);
    assert_eq!(
        session.get(&collector, "/api/v1/incidents").0,
        200,
        "still logged in"
    );
    let (status, head, _) = session.send(
        &collector,
        "DELETE",
        "/api/v1/session",
        Some(&session.csrf),
        "",
    );
    assert_eq!(status, 204);
    assert!(
        header(&head, "set-cookie").unwrap().contains("Max-Age=0"),
        "{head}"
    );
    assert_eq!(session.get(&collector, "/api/v1/incidents").0, 401);
    assert_eq!(session.get(&collector, "/api/v1/session").0, 401);

    // A session made with a token dies with the token.
    let read = collector.create_token("wallboard", "read");
    let session = log_in(&collector, &json!({ "token": read })).expect("login with a read token");
    assert_eq!(session.get(&collector, "/api/v1/agents").0, 200);
    let (ok, _, stderr) = collector.token_cli(&["revoke", "--name", "wallboard"]);
    assert!(ok, "{stderr}");
    assert_eq!(session.get(&collector, "/api/v1/agents").0, 401);

    // A bad token is refused like a bad bearer token.
    let (status, _) = log_in(&collector, &json!({ "token": "stw_wrong" }))
        .err()
        .unwrap();
    assert_eq!(status, 401);
    let (status, _) = log_in(&collector, &json!({ "token": "x", "user": "y" }))
        .err()
        .unwrap();
    assert_eq!(status, 400);
}

#[test]
fn users_log_in_with_passwords_scopes_hold_and_guessing_is_rate_limited() {
    let collector = Collector::start_with(|text| {
        text.push_str(&users(&[
            ("alice", "correct horse battery", "write"),
            ("rita", "read only please", "read"),
        ]));
    });
    let alice = log_in(
        &collector,
        &json!({ "user": "alice", "password": "correct horse battery" }),
    )
    .expect("alice logs in");
    // What a cross-site HTML form can post (text/plain, the form's `=` inside
    // the password) parses as JSON, but is no login.
    let (status, head, body) = exchange(
        collector.http_addr,
        "POST",
        "/api/v1/session",
        &[("Content-Type", "text/plain")],
        Some(r#"{"user":"alice","password":"correct horse battery"}"#),
    );
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("unsupported_media_type"), "{body}");
    assert!(header(&head, "set-cookie").is_none(), "{head}");
    let (_, body) = alice.get(&collector, "/api/v1/session");
    let me: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (me["name"].as_str(), me["scope"].as_str()),
        (Some("alice"), Some("write"))
    );
    let window = r#"{"tags": ["web"], "duration": "30m", "reason": "deploy"}"#;
    let (status, _, body) = alice.send(
        &collector,
        "POST",
        "/api/v1/maintenance",
        Some(&alice.csrf),
        window,
    );
    assert!((200..300).contains(&status), "{status} {body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["created_by"],
        "alice"
    );

    let rita = log_in(
        &collector,
        &json!({ "user": "rita", "password": "read only please" }),
    )
    .expect("rita logs in");
    assert_eq!(rita.get(&collector, "/api/v1/incidents").0, 200);
    let (status, _, body) = rita.send(
        &collector,
        "POST",
        "/api/v1/incidents/1/ack",
        Some(&rita.csrf),
        "{}",
    );
    assert_eq!(status, 403, "a read session cannot acknowledge: {body}");
    assert!(body.contains("read scope"), "{body}");

    let (status, _) = log_in(&collector, &json!({ "user": "alice", "password": "wrong" }))
        .err()
        .expect("a wrong password");
    assert_eq!(status, 401);
    let (status, _) = log_in(&collector, &json!({ "user": "mallory", "password": "x" }))
        .err()
        .expect("an unknown user");
    assert_eq!(status, 401);

    // Every password attempt spends the source's failure budget (burst 10,
    // one more every 6 s): guessing runs into 429 within a few more tries.
    let mut statuses = Vec::new();
    let refused = (0..30).any(|attempt| {
        let (status, _) = log_in(
            &collector,
            &json!({ "user": "alice", "password": format!("guess-{attempt}") }),
        )
        .err()
        .expect("a guess fails");
        statuses.push(status);
        status == 429
    });
    assert!(refused, "never rate limited: {statuses:?}");
    assert!(collector.counter("steward_http_auth_failures_throttled_total") >= 1);
    // Sessions already open are not affected.
    assert_eq!(alice.get(&collector, "/api/v1/incidents").0, 200);
}

#[test]
fn a_bad_console_user_is_refused_naming_file_line_and_key() {
    let dir = steward_tests::init_dir();
    let config = dir.path().join("collector.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[[console.users]]\nname = \"bob\"\npassword_hash = \"hunter2\"\nscope = \"write\"\n",
    );
    std::fs::write(&config, &text).unwrap();
    let line = text
        .lines()
        .position(|line| line.starts_with("password_hash = \"hunter2\""))
        .unwrap()
        + 1;
    let output = Command::new(binary("steward-collector"))
        .args(["--config", path_str(&config)])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("console.users[0].password_hash"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(":{line}")) || stderr.contains(&format!("line {line}")),
        "{stderr}"
    );
    assert!(stderr.contains("hash-password"), "{stderr}");
}

// ---- the browser test ----------------------------------------------------

/// Why the browser test cannot run here, after trying to install Chromium.
fn browser_missing() -> Option<String> {
    let present =
        || Path::new("/usr/bin/chromedriver").exists() && Path::new("/usr/bin/chromium").exists();
    if present() {
        return None;
    }
    let root = effective_uid() == 0;
    if root && Path::new("/usr/bin/apt-get").exists() {
        eprintln!("console test: installing chromium and chromium-driver with apt-get");
        let install = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|status| status.success())
        };
        if !install(&[
            "install",
            "-y",
            "--no-install-recommends",
            "chromium",
            "chromium-driver",
        ]) {
            install(&["update"]);
            install(&[
                "install",
                "-y",
                "--no-install-recommends",
                "chromium",
                "chromium-driver",
            ]);
        }
        if present() {
            return None;
        }
        return Some("apt-get could not install chromium and chromium-driver".to_string());
    }
    Some(
        "/usr/bin/chromium or /usr/bin/chromedriver is missing and this is not root with apt-get \
         (install Debian's chromium and chromium-driver packages)"
            .to_string(),
    )
}

fn effective_uid() -> u32 {
    // /proc/self/status "Uid:" line: real, effective, saved, fs.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2))
                .and_then(|uid| uid.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

/// A free loopback port (bound, read, released: chromedriver binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where screenshots go (printed).
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Runs `probe` (a JavaScript expression) in the page until it is truthy.
async fn wait_js(client: &fantoccini::Client, what: &str, expression: &str) -> Value {
    let deadline = Instant::now() + DEADLINE;
    let script = format!("return ({expression}) || null;");
    loop {
        match client.execute(&script, vec![]).await {
            Ok(value) if !value.is_null() && value != Value::Bool(false) => return value,
            Ok(_) => {}
            Err(error) => eprintln!("console test: probe for {what} failed: {error}"),
        }
        if Instant::now() > deadline {
            let body = client
                .execute("return document.body.innerText;", vec![])
                .await
                .unwrap_or(Value::Null);
            panic!("timed out waiting for {what}; the page says: {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The page needs no sideways scrolling; names the elements sticking out if it does.
/// Clicks the element `locator` finds (it must be there).
async fn click(client: &fantoccini::Client, locator: fantoccini::Locator<'_>) {
    client.find(locator).await.unwrap().click().await.unwrap();
}

async fn assert_fits_window(client: &fantoccini::Client, what: &str) {
    let report = client
        .execute(
            "const over = document.documentElement.scrollWidth - window.innerWidth; \
             if (over <= 0) return null; \
             return [over, [...document.querySelectorAll('body *')] \
               .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1) \
               .slice(-5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().width)), \
               [...document.querySelectorAll('body *')].filter(e => e.scrollWidth > window.innerWidth) \
               .slice(-5).map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth + ' ' + e.textContent.slice(0, 80))];",
            vec![],
        )
        .await
        .unwrap();
    assert!(report.is_null(), "{what} scrolls sideways: {report}");
}

async fn save_screenshot(client: &fantoccini::Client, dir: &Path, name: &str) -> PathBuf {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    let path = dir.join(name);
    std::fs::write(&path, png).expect("write screenshot");
    println!("console test: saved {}", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_an_operator_logs_in_sees_a_new_incident_live_and_acknowledges_it() {
    if let Some(reason) = browser_missing() {
        if std::env::var("STEWARD_REQUIRE_BROWSER").is_ok_and(|value| value == "1") {
            panic!("STEWARD_REQUIRE_BROWSER=1 but the browser test cannot run: {reason}");
        }
        steward_tests::skipped("console browser test", &reason);
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let webhook = Receiver::start();
    let collector = Collector::start_with(|text| {
        text.push_str(RULE);
        text.push_str(&users(&[("oncall", "pager duty 24/7", "write")]));
        text.push_str(&format!(
            "\n[[channel]]\nname = \"ops-webhook\"\ntype = \"webhook\"\nurl = \"{}\"\n\
             \n[[person]]\nname = \"dana\"\nchannels = [\"ops-webhook\"]\n\
             \n[[person]]\nname = \"eli\"\nchannels = [\"ops-webhook\"]\n\
             \n[[schedule]]\nname = \"primary\"\ntime_zone = \"UTC\"\nrotation = \"daily\"\n\
             handoff = \"09:00\"\nstart = \"2026-01-05\"\nmembers = [\"dana\", \"eli\"]\n",
            webhook.url("/hook")
        ));
    });
    let window =
        r#"{"tags": ["db"], "duration": "2h", "change": "CHG-42", "reason": "database upgrade"}"#;
    tokio::task::block_in_place(|| collector.post_json("/api/v1/maintenance", window));
    let _agent = collector.start_agent("web", |text| {
        text.push_str(&port_check(Some("web-1"), port));
        text.push_str("\n[[ping]]\ntarget = \"127.0.0.1\"\ncount = 2\n");
    });
    tokio::task::block_in_place(|| collector.wait_port_up());

    let driver_port = free_port();
    let profile = tempfile::tempdir().unwrap();
    let _driver = Process::spawn(
        "chromedriver",
        Path::new("/usr/bin/chromedriver"),
        &[&format!("--port={driver_port}"), "--allowed-ips=127.0.0.1"],
        collector.path("chromedriver.log"),
    );
    let mut args = vec![
        "--headless=new".to_string(),
        "--disable-gpu".to_string(),
        "--disable-dev-shm-usage".to_string(),
        "--window-size=1280,900".to_string(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    if effective_uid() == 0 {
        args.push("--no-sandbox".to_string());
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": "/usr/bin/chromium", "args": args }),
    );
    let webdriver = format!("http://127.0.0.1:{driver_port}");
    let deadline = Instant::now() + DEADLINE;
    let client = loop {
        let mut builder = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        );
        match builder
            .capabilities(capabilities.clone())
            .connect(&webdriver)
            .await
        {
            Ok(client) => break client,
            Err(error) if Instant::now() < deadline => {
                eprintln!("console test: chromedriver not ready yet: {error}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => panic!("cannot start a Chromium session: {error}"),
        }
    };
    let shots = screenshot_dir();
    println!("console test: screenshots go to {}", shots.display());
    let base = format!("http://{}", collector.http_addr);

    // Log in as the configured user.
    client.goto(&format!("{base}/")).await.unwrap();
    wait_js(
        &client,
        "the login form",
        "document.querySelector('#login-token')",
    )
    .await;
    click(&client, fantoccini::Locator::Id("login-user-tab")).await;
    let field = |id: &'static str| client.find(fantoccini::Locator::Id(id));
    field("login-name")
        .await
        .unwrap()
        .send_keys("oncall")
        .await
        .unwrap();
    field("login-password")
        .await
        .unwrap()
        .send_keys("pager duty 24/7")
        .await
        .unwrap();
    field("login-submit").await.unwrap().click().await.unwrap();
    wait_js(
        &client,
        "the overview after login",
        "document.body.dataset.view === 'overview' && document.body.dataset.loaded === '1'",
    )
    .await;
    // Chromium kept the Secure cookie from http://127.0.0.1, script-proof and strict.
    let cookies = client.get_all_cookies().await.unwrap();
    let cookie = cookies
        .iter()
        .find(|cookie| cookie.name() == "steward_session")
        .expect("Chromium stored the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    let script_sees_it = client
        .execute("return document.cookie;", vec![])
        .await
        .unwrap();
    assert!(
        !script_sees_it
            .as_str()
            .unwrap_or("")
            .contains("steward_session"),
        "HttpOnly hides the cookie from scripts"
    );

    // The page counts ages and SLA clocks on the collector's clock, from the
    // Date header of each answer.
    let served = client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             fetch('/api/v1/session').then(r => done(Date.parse(r.headers.get('Date')) - Date.now()));",
            vec![],
        )
        .await
        .unwrap();
    let skew_ms = served.as_f64().expect("a Date header on API answers");
    assert!(skew_ms.abs() < 5_000.0, "{skew_ms} ms");

    // The incidents page, then the port check fails: the incident appears without a reload.
    click(
        &client,
        fantoccini::Locator::Css("#nav a[data-nav='incidents']"),
    )
    .await;
    wait_js(
        &client,
        "the incident list",
        "document.body.dataset.view === 'incidents' && document.body.dataset.loaded === '1'",
    )
    .await;
    // From here on the page is one document: record any Content-Security-Policy
    // violation (an inline style or script the policy blocks, e.g. from uPlot).
    let marker = client
        .execute(
            "window.__sameDocument = 'yes'; window.__csp = []; \
             document.addEventListener('securitypolicyviolation', \
               e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI)); return 1;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(marker, json!(1));
    drop(listener);
    let id = wait_js(
        &client,
        "the port-down incident in the list",
        "(document.querySelector(\"tr[data-rule='port-down']\") || {dataset: {}}).dataset.incidentId",
    )
    .await;
    let id: i64 = id
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("an incident id");
    assert_eq!(
        client
            .execute("return window.__sameDocument || null;", vec![])
            .await
            .unwrap(),
        json!("yes"),
        "the incident appeared without reloading the page"
    );

    // The host filter asks the collector (host name containing the text).
    let filter = client
        .find(fantoccini::Locator::Id("filter-host"))
        .await
        .unwrap();
    filter.send_keys("no-such-host").await.unwrap();
    wait_js(
        &client,
        "no incident for another host",
        "document.querySelector(\"tr[data-rule='port-down']\") === null && document.body.innerText.includes('No incidents match.')",
    )
    .await;
    filter.clear().await.unwrap();
    filter.send_keys("WEB-1").await.unwrap();
    wait_js(
        &client,
        "the incident found by its host, any case",
        &format!("document.querySelector(\"tr[data-incident-id='{id}']\")"),
    )
    .await;

    // Overview with the open incident.
    click(
        &client,
        fantoccini::Locator::Css("#nav a[data-nav='overview']"),
    )
    .await;
    wait_js(
        &client,
        "the overview listing the incident",
        &format!("document.body.dataset.loaded === '1' && document.querySelector(\"#open-incidents tr[data-incident-id='{id}']\")"),
    )
    .await;
    let overview = client
        .execute("return document.body.innerText;", vec![])
        .await
        .unwrap();
    let overview = overview.as_str().unwrap_or("");
    for shown in ["primary", "database upgrade", "Connected"] {
        assert!(
            overview.contains(shown),
            "the overview shows {shown:?}: {overview}"
        );
    }
    // The page's figures are the collector's, counted over the whole fleet.
    let summary = tokio::task::block_in_place(|| collector.get_json("/api/v1/overview"));
    assert_eq!(summary["incidents"]["unresolved"], 1, "{summary}");
    assert_eq!(
        summary["incidents"]["by_severity"]["critical"], 1,
        "{summary}"
    );
    assert_eq!(
        summary["incidents"]["most_urgent"][0]["id"], id,
        "{summary}"
    );
    assert_eq!(summary["agents"]["connected"], 1, "{summary}");
    assert_eq!(summary["oncall"][0]["schedule"], "primary", "{summary}");
    assert_eq!(
        summary["maintenance"][0]["reason"], "database upgrade",
        "{summary}"
    );
    let shown_unresolved = client
        .execute(
            "return document.querySelector('#open-incidents').dataset.unresolved;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown_unresolved, json!("1"));
    save_screenshot(&client, &shots, "overview.png").await;

    // The incident page: acknowledge it there.
    client
        .find(fantoccini::Locator::Css(&format!(
            "#open-incidents tr[data-incident-id='{id}'] a"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(&client, "an enabled Acknowledge button", "document.querySelector('#ack') && !document.querySelector('#ack').disabled && document.querySelector('#incident-state').textContent === 'open'").await;
    let runbook = client
        .execute("return document.querySelector(\"a[href='https://wiki.example/runbooks/port-down']\") !== null;", vec![])
        .await
        .unwrap();
    assert_eq!(runbook, json!(true), "the runbook link is shown");
    click(&client, fantoccini::Locator::Id("ack")).await;
    wait_js(
        &client,
        "the state to read acknowledged",
        "document.querySelector('#incident-state').textContent === 'acknowledged'",
    )
    .await;
    let incident =
        tokio::task::block_in_place(|| collector.get_json(&format!("/api/v1/incidents/{id}")));
    assert_eq!(incident["state"], "acknowledged", "{incident}");
    assert_eq!(incident["acknowledged_by"], "oncall", "{incident}");
    wait_js(
        &client,
        "the ack in the timeline",
        "document.body.innerText.includes('oncall')",
    )
    .await;
    wait_js(
        &client,
        "the webhook notification listed on the incident page",
        "document.body.innerText.includes('ops-webhook')",
    )
    .await;
    save_screenshot(&client, &shots, "incident.png").await;
    client.set_window_size(390, 844).await.unwrap();
    assert_fits_window(&client, "the incident page on a phone").await;
    client.set_window_size(1280, 900).await.unwrap();

    // The host page with charts.
    click(&client, fantoccini::Locator::Css("a[href^='#/agent/']")).await;
    // Ping round trips need ICMP sockets (CI has them as root); without
    // them the probe reports only loss. Both come from one probe run.
    let ping_rtt = tokio::task::block_in_place(|| {
        poll(DEADLINE, "a ping result", || {
            collector
                .get_json("/api/v1/series?metric=ping.loss_percent")
                .as_array()
                .is_some_and(|series| !series.is_empty())
                .then_some(())
        });
        collector
            .get_json("/api/v1/series?metric=ping.rtt_ms")
            .as_array()
            .is_some_and(|series| !series.is_empty())
    });
    if effective_uid() == 0 && !ping_rtt {
        steward_tests::skipped(
            "the ping round-trip chart",
            "no ICMP socket for the agent here (root without CAP_NET_RAW?)",
        );
    }
    let charts = if ping_rtt {
        "['cpu', 'memory', 'disk', 'network', 'ping-rtt', 'ping-loss', 'port']"
    } else {
        "['cpu', 'memory', 'disk', 'network', 'ping-loss', 'port']"
    };
    let plotted = format!(
        "document.body.dataset.view === 'hosts' && document.body.dataset.loaded === '1' && \
         {charts}.every(id => {{ const box = document.querySelector('#chart-' + id); \
           return box && box.dataset.plotted === '1' && box.querySelector('canvas'); }})"
    );
    // The network chart is a rate: it needs two samples of the counters.
    wait_js(&client, "the host page with every chart drawn", &plotted).await;
    assert_fits_window(&client, "the host page").await;
    let violations = client
        .execute("return window.__csp;", vec![])
        .await
        .unwrap();
    assert_eq!(violations, json!([]), "the console runs under its CSP");
    // Tall enough for the charts, the inventory and the start of the history.
    client.set_window_size(1280, 1700).await.unwrap();
    save_screenshot(&client, &shots, "host.png").await;
    // The longer ranges come per step, shaded between each step's min and max.
    for range in ["24h", "7d"] {
        click(
            &client,
            fantoccini::Locator::Css(&format!("button[data-range='{range}']")),
        )
        .await;
        wait_js(
            &client,
            &format!("the {range} charts with min/max bands"),
            // Drawn once per click: a poll that finds no band yet (a step
            // holding a single sample) clicks again for fresh data.
            &format!(
                "(() => {{ const panel = document.querySelector('div[data-range]'); \
                 const cpu = document.querySelector('#chart-cpu'); \
                 if (panel && panel.dataset.range === '{range}' && cpu && cpu.dataset.plotted === '1' \
                     && cpu.dataset.bands === '1' \
                     && document.querySelector('#chart-memory').dataset.plotted === '1') return true; \
                 if (cpu && cpu.dataset.plotted) document.querySelector(\"button[data-range='{range}']\").click(); \
                 return false; }})()"
            ),
        )
        .await;
    }
    save_screenshot(&client, &shots, "host-7d.png").await;
    click(&client, fantoccini::Locator::Css("button[data-range='1h']")).await;

    // The asset table finds the host by search.
    client.set_window_size(1280, 900).await.unwrap();
    click(
        &client,
        fantoccini::Locator::Css("#nav a[data-nav='hosts']"),
    )
    .await;
    wait_js(
        &client,
        "the host list",
        "document.querySelector('tr[data-asset-id]')",
    )
    .await;
    client
        .find(fantoccini::Locator::Id("host-search"))
        .await
        .unwrap()
        .send_keys("no-such-host")
        .await
        .unwrap();
    wait_js(
        &client,
        "an empty search",
        "document.querySelector('tr[data-asset-id]') === null",
    )
    .await;
    let search = client
        .find(fantoccini::Locator::Id("host-search"))
        .await
        .unwrap();
    search.clear().await.unwrap();
    search.send_keys("web-1").await.unwrap();
    wait_js(
        &client,
        "web-1 found",
        "document.querySelector('tr[data-asset-id]') && document.body.innerText.includes('web-1')",
    )
    .await;
    save_screenshot(&client, &shots, "hosts.png").await;

    // A phone-sized window still shows the overview.
    client.set_window_size(390, 844).await.unwrap();
    client.goto(&format!("{base}/#/")).await.unwrap();
    wait_js(
        &client,
        "the overview on a phone",
        "document.body.dataset.view === 'overview' && document.body.dataset.loaded === '1'",
    )
    .await;
    assert_fits_window(&client, "the overview on a phone").await;
    save_screenshot(&client, &shots, "overview-phone.png").await;

    // Logout returns to the login form, and the cookie no longer works.
    client.set_window_size(1280, 900).await.unwrap();
    click(&client, fantoccini::Locator::Id("logout")).await;
    wait_js(
        &client,
        "the login form after logout",
        "document.body.dataset.view === 'login'",
    )
    .await;
    let status = client
        .execute_async(
            "const done = arguments[arguments.length - 1]; fetch('/api/v1/incidents').then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(401));
    client.close().await.unwrap();
}
