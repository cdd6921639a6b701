//! End to end: the real `stewardctl` binary against a real collector and
//! agent: every command, table and `--json` output, exit statuses 0/1/2,
//! and settings from flags, environment or `ctl.toml` (HOME and
//! XDG_CONFIG_HOME pointed at temp dirs).
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use steward_tests::{Collector, DEADLINE, binary, path_str, poll, port_check};

const CONFIG: &str = r#"
[[rule]]
name = "port-down"
metric = "port.up"
op = "<"
threshold = 1
severity = "critical"
summary = "Port {target} on {host} is down"

[sla.critical]
ack = "10m"
resolve = "1h"

[[channel]]
name = "ops"
type = "webhook"
url = "http://127.0.0.1:9/unused"

[[person]]
name = "alice"
channels = ["ops"]

[[schedule]]
name = "primary"
time_zone = "UTC"
rotation = "weekly"
handoff = "09:00"
start = "2026-01-05"
members = ["alice"]
"#;

/// What one run of `stewardctl` did.
#[derive(Debug)]
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.status, 0, "{self:?}");
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("--json output is not JSON ({error}): {self:?}"))
    }

    fn ok(self) -> Self {
        assert_eq!(self.status, 0, "{self:?}");
        self
    }
}

/// Runs `stewardctl ARGS` with HOME at `home`, no inherited STEWARD_* or
/// XDG_CONFIG_HOME, and `env` set.
fn stewardctl(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let output = Command::new(binary("stewardctl"))
        .args(args)
        .env_remove("STEWARD_URL")
        .env_remove("STEWARD_TOKEN")
        .env_remove("STEWARD_CA_FILE")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", home)
        .envs(env.iter().copied())
        .output()
        .expect("run stewardctl");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn every_command_works_against_a_real_collector_with_tables_json_and_exit_codes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector = Collector::start_with(|text| text.push_str(CONFIG));
    let _web = collector.start_agent("web", |text| {
        text.push_str(&port_check(Some("web-1"), port))
    });
    let _db = collector.start_agent("db", |text| text.push_str("hostname = \"db-1\"\n"));
    let home = tempfile::tempdir().unwrap();
    let url = format!("http://{}", collector.http_addr);
    let admin = collector.api_token();
    let env = [
        ("STEWARD_URL", url.as_str()),
        ("STEWARD_TOKEN", admin.as_str()),
    ];
    let ctl = |args: &[&str]| stewardctl(home.path(), &env, args);

    // Agents, followed over pages of one.
    let agents = poll(DEADLINE, "both agents listed", || {
        let agents = ctl(&["agents", "--json", "--page-size", "1"]).json();
        (agents.as_array()?.len() == 2).then_some(agents)
    });
    let hosts: Vec<&str> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| agent["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["db-1", "web-1"], "{agents}");
    let table = ctl(&["agents"]).ok().stdout;
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("web-1") && table.contains("CONNECTED"),
        "{table}"
    );

    // Incidents: a port goes down.
    collector.wait_port_up();
    assert_eq!(ctl(&["incidents"]).ok().stdout, "No incidents.\n");
    drop(listener);
    let opened = poll(DEADLINE, "one open incident", || {
        let open = ctl(&["incidents", "--state", "open", "--json"]).json();
        (open.as_array()?.len() == 1).then_some(open)
    });
    let id = opened[0]["id"].as_i64().unwrap();
    let id_text = id.to_string();
    assert_eq!(opened[0]["rule"], "port-down");
    let table = ctl(&["incidents"]).ok().stdout;
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("SEVERITY") && header.contains("SLA"),
        "{table}"
    );
    let row = table.lines().nth(1).unwrap();
    for expected in [
        &id_text[..],
        "critical",
        "open",
        "web-1",
        "port-down",
        "ack in",
    ] {
        assert!(row.contains(expected), "{expected:?} missing: {table}");
    }

    // A read-scope token may look but not acknowledge: exit 1, the server's message.
    let viewer = collector.create_token("viewer", "read");
    let as_viewer = [
        ("STEWARD_URL", url.as_str()),
        ("STEWARD_TOKEN", viewer.as_str()),
    ];
    stewardctl(home.path(), &as_viewer, &["incidents"]).ok();
    let refused = stewardctl(home.path(), &as_viewer, &["ack", &id_text]);
    assert_eq!(refused.status, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("403") && refused.stderr.contains("read scope"),
        "{refused:?}"
    );
    assert!(
        !refused.stderr.contains(&viewer),
        "the token is never printed"
    );

    // Acknowledge with a note, note, resolve.
    let acked = ctl(&["ack", &id_text, "--note", "on it"]).ok();
    assert!(
        acked
            .stdout
            .starts_with(&format!("Acknowledged incident {id} ")),
        "{acked:?}"
    );
    let again = ctl(&["ack", &id_text]);
    assert_eq!(again.status, 1, "{again:?}");
    assert!(again.stderr.contains("already acknowledged"), "{again:?}");
    ctl(&["note", &id_text, "rebooting web-1"]).ok();
    let detail = ctl(&["incident", &id_text, "--json"]).json();
    assert_eq!(detail["state"], "acknowledged");
    let timeline = detail["timeline"].to_string();
    assert!(
        timeline.contains("on it") && timeline.contains("rebooting web-1"),
        "{timeline}"
    );
    let shown = ctl(&["incident", &id_text]).ok().stdout;
    assert!(
        shown.contains("Acknowledged by:") && shown.contains("rebooting web-1"),
        "{shown}"
    );
    let unresolved = ctl(&["incidents", "--state", "unresolved", "--json"]).json();
    assert_eq!(unresolved[0]["id"], id, "{unresolved}");
    let on_web = ctl(&["incidents", "--host", "WEB-", "--json"]).json();
    assert_eq!(on_web[0]["id"], id, "{on_web}");
    let elsewhere = ctl(&["incidents", "--host", "db-", "--json"]).json();
    assert_eq!(elsewhere, serde_json::json!([]));
    let resolved = ctl(&["resolve", &id_text, "--json"]).json();
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["id"], id);
    let unresolved = ctl(&["incidents", "--state", "unresolved", "--json"]).json();
    assert_eq!(
        unresolved,
        serde_json::json!([]),
        "resolved is not unresolved"
    );
    let missing = ctl(&["ack", "999999"]);
    assert_eq!(missing.status, 1, "{missing:?}");
    assert!(
        missing.stderr.contains("404") && missing.stderr.contains("no such incident"),
        "{missing:?}"
    );

    // Assets. Both agents run on this machine, so they are one asset
    // (matched by machine id), named after whichever reported last.
    let assets = poll(DEADLINE, "the asset", || {
        let assets = ctl(&["assets", "--json", "--page-size", "1"]).json();
        (assets.as_array()?.len() == 1).then_some(assets)
    });
    let asset_id = assets[0]["id"].as_str().unwrap();
    let hostname = assets[0]["hostname"].as_str().unwrap();
    assert!(["web-1", "db-1"].contains(&hostname), "{assets}");
    assert_eq!(
        ctl(&["assets", "--status", "stale", "--json"]).json(),
        Value::Array(vec![])
    );
    let table = ctl(&["assets"]).ok().stdout;
    assert!(
        table.contains("PATCHES") && table.contains(asset_id) && table.contains("active"),
        "{table}"
    );
    let one = ctl(&["asset", asset_id]).ok().stdout;
    assert!(
        one.contains("ID:") && one.contains(asset_id) && one.contains("Hostname:"),
        "{one}"
    );
    assert_eq!(ctl(&["asset", asset_id, "--json"]).json()["id"], asset_id);
    let unknown = ctl(&["asset", "no/such asset"]);
    assert_eq!(unknown.status, 1, "{unknown:?}");
    assert!(unknown.stderr.contains("no such asset"), "{unknown:?}");

    // On call.
    let table = ctl(&["oncall"]).ok().stdout;
    assert!(
        table.contains("primary") && table.contains("alice"),
        "{table}"
    );
    assert_eq!(
        ctl(&["oncall", "--json"]).json()[0]["now"]["person"],
        "alice"
    );

    // Maintenance: create as in the issue, list, end.
    let window = ctl(&[
        "maintenance",
        "create",
        "--tag",
        "web",
        "--for",
        "2h",
        "--reason",
        "kernel patching",
        "--change",
        "CHG-42",
        "--json",
    ])
    .json();
    assert_eq!(window["tags"], serde_json::json!(["web"]));
    assert_eq!(window["change"], "CHG-42");
    assert_eq!(window["reason"], "kernel patching");
    assert_eq!(window["active"], true);
    let window_id = window["id"].as_i64().unwrap().to_string();
    let table = ctl(&["maintenance", "list"]).ok().stdout;
    assert!(
        table.contains("tag:web") && table.contains("CHG-42"),
        "{table}"
    );
    ctl(&["maintenance", "end", &window_id]).ok();
    assert_eq!(
        ctl(&["maintenance", "list", "--json"]).json(),
        Value::Array(vec![])
    );

    // Usage errors exit 2 without a request.
    for args in [
        &["ack"][..],
        &["ack", "seven"],
        &["incidents", "--state", "bogus"],
        &["maintenance", "create", "--tag", "web"],
        &["maintenance", "create", "--tag", "web", "--for", "soon"],
        &["frobnicate"],
    ] {
        let run = ctl(args);
        assert_eq!(run.status, 2, "{args:?}: {run:?}");
    }
}

#[test]
fn settings_come_from_flags_then_environment_then_ctl_toml_over_https() {
    let collector = Collector::start_with(|text| {
        *text = text.replace("[server]\n", "[server]\nhttp_tls = true\n");
    });
    let home = tempfile::tempdir().unwrap();
    let url = format!("https://localhost:{}", collector.http_addr.port());
    let token_file = collector.path("api-token");
    let ca = collector.path("ca.pem");

    // Nothing configured: a usage error naming what to set.
    let run = stewardctl(home.path(), &[], &["agents"]);
    assert_eq!(run.status, 2, "{run:?}");
    assert!(run.stderr.contains("STEWARD_URL"), "{run:?}");

    // ~/.config/steward/ctl.toml alone: url, token_file, ca_file.
    let ctl_toml = home.path().join(".config/steward/ctl.toml");
    write_private(
        &ctl_toml,
        &format!(
            "url = \"{url}\"\ntoken_file = \"{}\"\nca_file = \"{}\"\n",
            path_str(&token_file),
            path_str(&ca)
        ),
    );
    let agents = stewardctl(home.path(), &[], &["agents", "--json"]).json();
    assert!(agents.is_array(), "{agents}");

    // The environment beats the file: a dead port, so exit 1 "cannot reach".
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let run = stewardctl(home.path(), &[("STEWARD_URL", &dead_url)], &["agents"]);
    assert_eq!(run.status, 1, "{run:?}");
    assert!(run.stderr.contains("cannot reach the collector"), "{run:?}");
    // ...and a flag beats the environment.
    stewardctl(
        home.path(),
        &[("STEWARD_URL", &dead_url)],
        &["agents", "--url", &url],
    )
    .ok();
    // A wrong token from the environment beats the file's.
    let run = stewardctl(home.path(), &[("STEWARD_TOKEN", "stw_wrong")], &["agents"]);
    assert_eq!(run.status, 1, "{run:?}");
    assert!(run.stderr.contains("401"), "{run:?}");

    // Without the private CA the certificate is not trusted: exit 1.
    let bare = tempfile::tempdir().unwrap();
    let token = collector.api_token();
    let run = stewardctl(
        bare.path(),
        &[("STEWARD_URL", &url), ("STEWARD_TOKEN", &token)],
        &["agents"],
    );
    assert_eq!(run.status, 1, "{run:?}");
    assert!(
        run.stderr.contains("cannot reach") && !run.stderr.contains(&token),
        "{run:?}"
    );
    // STEWARD_CA_FILE supplies it.
    stewardctl(
        bare.path(),
        &[
            ("STEWARD_URL", &url),
            ("STEWARD_TOKEN", &token),
            ("STEWARD_CA_FILE", path_str(&ca)),
        ],
        &["agents"],
    )
    .ok();

    // $XDG_CONFIG_HOME wins over ~/.config; a bad key there names file, line and key.
    let xdg = home.path().join("xdg");
    write_private(
        &xdg.join("steward/ctl.toml"),
        &format!("url = \"{url}\"\ntokn = \"x\"\n"),
    );
    let run = stewardctl(
        home.path(),
        &[("XDG_CONFIG_HOME", path_str(&xdg))],
        &["agents"],
    );
    assert_eq!(run.status, 2, "{run:?}");
    assert!(run.stderr.contains("ctl.toml:2: key `tokn`"), "{run:?}");

    // A token in a ctl.toml every user can read is refused.
    let public = home.path().join("public.toml");
    std::fs::write(
        &public,
        format!(
            "url = \"{url}\"\ntoken = \"{token}\"\nca_file = \"{}\"\n",
            path_str(&ca)
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = stewardctl(home.path(), &[], &["agents", "--config", path_str(&public)]);
    assert_eq!(run.status, 2, "{run:?}");
    assert!(
        run.stderr.contains("chmod 600") && !run.stderr.contains(&token),
        "{run:?}"
    );
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o600)).unwrap();
    stewardctl(home.path(), &[], &["agents", "--config", path_str(&public)]).ok();

    // A --config that does not exist is an error, not a silent default.
    let run = stewardctl(
        home.path(),
        &[],
        &["agents", "--config", "/nonexistent/ctl.toml"],
    );
    assert_eq!(run.status, 2, "{run:?}");
}
