//! Agent identity end to end: enrollment tokens, the pinned CA, mutual TLS,
//! identity binding and revocation, with the real binaries.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::Value;
use steward_tests::{Collector, DEADLINE, EnrolledAgent, find_series, poll};

/// The newest `mem.used_percent` timestamp of `agent_id`, if any.
fn latest_sample_ms(collector: &Collector, agent_id: &str) -> Option<i64> {
    let series = collector.get_json(&format!("/api/v1/series?agent={agent_id}"));
    let series = find_series(&series, "mem.used_percent", None)?;
    series["timestamp_ms"].as_i64()
}

fn wait_for_data(collector: &Collector, agent_id: &str) {
    poll(DEADLINE, "the enrolled agent's samples", || {
        latest_sample_ms(collector, agent_id)
    });
}

/// The asset record of `agent_id`, once it exists.
fn asset_of(collector: &Collector, agent_id: &str) -> Option<Value> {
    let assets = collector.get_json("/api/v1/assets");
    assets.as_array()?.iter().find_map(|asset| {
        asset["agent_ids"]
            .as_array()?
            .iter()
            .any(|id| id == agent_id)
            .then(|| asset.clone())
    })
}

/// Every file of the collector directory (logs, database, its WAL) and the
/// agent logs, as bytes, searched for `needle`.
fn files_containing(collector: &Collector, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![collector.dir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn an_enrolled_agent_streams_over_mtls_and_its_one_use_token_is_refused_the_second_time() {
    let collector = Collector::start();
    let token = collector.enrollment_token(&["--ttl", "1h", "--uses", "1", "--tag", "env=prod"]);
    assert!(token.starts_with("stwe_"), "{token}");
    let fingerprint = collector.ca_fingerprint();
    assert!(fingerprint.starts_with("sha256:") && fingerprint.len() == 7 + 64);

    let (status, output, agent) = collector.run_enroll("first", &token, &fingerprint);
    assert_eq!(status, 0, "{output}");
    assert!(!output.contains(&token), "enroll must not print the token");
    for file in ["agent.toml", "ca.pem", "agent.pem", "agent.key"] {
        assert!(agent.dir.join(file).exists(), "enroll did not write {file}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(agent.dir.join("agent.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let config = std::fs::read_to_string(agent.config()).unwrap();
    assert!(
        !config.contains("token"),
        "an enrolled agent needs no shared token:\n{config}"
    );
    steward_tests::edit_file(&agent.config(), |text| {
        *text = text.replace("interval = \"10s\"", "interval = \"1s\"");
    });
    let agent_id = agent.agent_id();
    let _running = collector.start_enrolled_agent(&agent);
    wait_for_data(&collector, &agent_id);
    let log = collector.process.log_text();
    assert!(
        log.lines().any(|line| line.contains("Agent connected.")
            && line.contains("mtls=true")
            && line.contains(&agent_id)),
        "the agent connected over mTLS:\n{log}"
    );

    // The same one-use token, a second time: refused.
    let (status, output, _) = collector.run_enroll("second", &token, &fingerprint);
    assert_ne!(status, 0, "a used-up token enrolled again: {output}");
    assert!(
        output.contains("enrollment token"),
        "the refusal says why: {output}"
    );
    assert_eq!(collector.counter("steward_enrollments_total"), 1);
    assert_eq!(collector.counter("steward_enrollments_refused_total"), 1);

    // The token's tag lands on the agent's asset.
    let asset = poll(DEADLINE, "the token's tag on the agent's asset", || {
        let asset = asset_of(&collector, &agent_id)?;
        asset["tags"]
            .as_array()?
            .iter()
            .any(|tag| tag == "env:prod")
            .then_some(asset)
    });
    assert_eq!(asset["status"], "active");

    // `list` shows the token by id, used up, never the secret.
    let (status, list, _) = collector.admin(&["enroll-token", "list"]);
    assert_eq!(status, 0);
    assert!(list.contains("used") && list.contains("env:prod"), "{list}");
    assert!(!list.contains(&token), "{list}");

    // Neither the logs nor the database (nor its WAL) hold the token.
    let secret_hex = token.trim_start_matches("stwe_");
    let leaks = files_containing(&collector, secret_hex);
    assert!(
        leaks.is_empty(),
        "the token is stored or logged in {leaks:?}"
    );
}

#[test]
fn a_wrong_ca_fingerprint_is_refused_by_the_agent_before_it_sends_the_token() {
    let collector = Collector::start();
    let token = collector.enrollment_token(&[]);
    let wrong = format!("sha256:{}", "0".repeat(64));
    let (status, output, agent) = collector.run_enroll("pinned", &token, &wrong);
    assert_ne!(status, 0, "{output}");
    assert!(output.contains("fingerprint"), "{output}");
    assert!(
        !agent.dir.join("agent.pem").exists(),
        "nothing is written on a refused enrollment"
    );
    // Nothing reached the enrollment service: no attempt counted, and the
    // one-use token still works with the right fingerprint.
    assert_eq!(collector.counter("steward_enrollments_total"), 0);
    assert_eq!(collector.counter("steward_enrollments_refused_total"), 0);
    let (status, output, _) = collector.run_enroll("pinned", &token, &collector.ca_fingerprint());
    assert_eq!(status, 0, "{output}");
}

/// Gives `agent`'s certificate a state directory holding `claimed` as its id.
fn impostor(collector: &Collector, agent: &EnrolledAgent, claimed: &str) -> EnrolledAgent {
    let state_dir = collector.path(&format!("{}-impostor-state", agent.name));
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::write(state_dir.join("agent-id"), format!("{claimed}\n")).unwrap();
    let impostor = EnrolledAgent {
        name: format!("{}-impostor", agent.name),
        dir: agent.dir.clone(),
        state_dir: state_dir.clone(),
    };
    let config = std::fs::read_to_string(agent.config()).unwrap();
    let config = config
        .lines()
        .map(|line| {
            if line.starts_with("state_dir") {
                format!("state_dir = \"{}\"", state_dir.display())
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(agent.dir.join("impostor.toml"), config).unwrap();
    impostor
}

#[test]
fn a_certificate_for_agent_a_claiming_agent_b_is_refused_while_b_keeps_streaming() {
    let collector = Collector::start();
    let a = collector.enroll_agent("agent-a");
    let b = collector.enroll_agent("agent-b");
    let b_id = b.agent_id();
    let _b_running = collector.start_enrolled_agent(&b);
    wait_for_data(&collector, &b_id);

    // A's certificate, B's id in the hello.
    let fake = impostor(&collector, &a, &b_id);
    let mut fake_process = steward_tests::Process::spawn(
        &fake.name,
        &steward_tests::binary("steward-agent"),
        &[
            "--config",
            steward_tests::path_str(&a.dir.join("impostor.toml")),
        ],
        collector.path("impostor.log"),
    );
    poll(DEADLINE, "the impostor to be refused", || {
        (collector.counter("steward_agents_refused_identity_total") >= 1).then_some(())
    });
    poll(DEADLINE, "the impostor's log to say why", || {
        fake_process
            .log_text()
            .contains("refused this agent's identity")
            .then_some(())
    });
    let log = collector.process.log_text();
    assert!(
        log.contains("its certificate is for another agent id"),
        "the refusal is logged:\n{log}"
    );
    fake_process.kill9();

    // A shared-token hello may not claim a certificate-bound id either.
    let token_agent = collector.agent_config("token-impostor", |_| {});
    let state_dir = collector.path("token-impostor-state");
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::write(state_dir.join("agent-id"), format!("{b_id}\n")).unwrap();
    let _token_process = steward_tests::Process::spawn(
        "token-impostor",
        &steward_tests::binary("steward-agent"),
        &["--config", steward_tests::path_str(&token_agent)],
        collector.path("token-impostor.log"),
    );
    poll(DEADLINE, "the shared-token impostor to be refused", || {
        (collector.counter("steward_agents_refused_identity_total") >= 2).then_some(())
    });

    // B was never displaced: its data keeps arriving.
    let replaced = collector.counter("steward_streams_replaced_total");
    assert_eq!(replaced, 0, "an impostor replaced B's stream");
    let before = latest_sample_ms(&collector, &b_id).unwrap();
    poll(DEADLINE, "B's data to keep arriving", || {
        (latest_sample_ms(&collector, &b_id)? > before).then_some(())
    });
    let b_view = collector.get_json(&format!("/api/v1/agents/{b_id}"));
    assert_eq!(b_view["connected"], true, "{b_view}");
}

#[test]
fn revocation_ends_the_open_stream_within_5s_refuses_the_next_connect_and_is_in_the_history() {
    let collector = Collector::start();
    let agent = collector.enroll_agent("revoked");
    let agent_id = agent.agent_id();
    let mut running = collector.start_enrolled_agent(&agent);
    wait_for_data(&collector, &agent_id);
    // The asset exists before the revocation, so its history can record it.
    poll(DEADLINE, "the agent's asset", || {
        asset_of(&collector, &agent_id)
    });

    let started = Instant::now();
    let (status, _, stderr) = collector.admin(&["agent", "revoke", &agent_id, "--by", "alice"]);
    assert_eq!(status, 0, "{stderr}");
    poll(
        Duration::from_secs(5),
        "the revoked agent's open stream to end",
        || (collector.counter("steward_streams_ended_revoked_total") == 1).then_some(()),
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    poll(DEADLINE, "the agent to hear it was revoked", || {
        running
            .log_text()
            .contains("refused this agent's certificate")
            .then_some(())
    });

    // The next connect (a restarted agent) is refused as unauthenticated.
    running.kill9();
    let refused_before = collector.counter("steward_agents_refused_revoked_total");
    let restarted = steward_tests::Process::spawn(
        "revoked (run 2)",
        &steward_tests::binary("steward-agent"),
        &["--config", steward_tests::path_str(&agent.config())],
        collector.path("revoked-2.log"),
    );
    poll(DEADLINE, "the revoked certificate to be refused", || {
        (collector.counter("steward_agents_refused_revoked_total") > refused_before).then_some(())
    });
    poll(DEADLINE, "the restarted agent to log the refusal", || {
        restarted
            .log_text()
            .contains("refused this agent's certificate")
            .then_some(())
    });
    let agent_view = collector.get_json(&format!("/api/v1/agents/{agent_id}"));
    assert_eq!(agent_view["connected"], false, "{agent_view}");

    // The asset's history says who revoked it.
    let asset = asset_of(&collector, &agent_id).unwrap();
    let id = asset["id"].as_str().unwrap().to_string();
    let event = poll(DEADLINE, "the revocation in the asset history", || {
        let history = collector.get_json(&format!("/api/v1/assets/{id}/history"));
        history.as_array()?.iter().find_map(|event| {
            (event["kind"] == "identity"
                && event["after"]
                    .as_str()
                    .is_some_and(|after| after.contains("revoked by alice")))
            .then(|| event.clone())
        })
    });
    assert!(event["at"].is_string(), "{event}");

    // Revoking twice is an error, not a second event.
    let (status, _, stderr) = collector.admin(&["agent", "revoke", &agent_id]);
    assert_ne!(status, 0);
    assert!(stderr.contains("not enrolled"), "{stderr}");
}

#[test]
fn the_agent_renews_its_certificate_at_two_thirds_of_its_lifetime_and_reconnects_with_it() {
    // A one-minute lifetime: renewal is due about 40 s after enrollment.
    let collector =
        Collector::start_with(|text| text.push_str("\n[enrollment]\ncert_lifetime = \"1m\"\n"));
    let agent = collector.enroll_agent("renewing");
    let agent_id = agent.agent_id();
    let first = std::fs::read_to_string(agent.dir.join("agent.pem")).unwrap();
    let first_key = std::fs::read_to_string(agent.dir.join("agent.key")).unwrap();
    let mut running = collector.start_enrolled_agent(&agent);
    wait_for_data(&collector, &agent_id);
    poll(
        Duration::from_secs(120),
        "the certificate to be renewed",
        || (collector.counter("steward_certificates_renewed_total") >= 1).then_some(()),
    );
    let renewed = poll(DEADLINE, "the renewed certificate on disk", || {
        let now = std::fs::read_to_string(agent.dir.join("agent.pem")).ok()?;
        (now != first && now.contains("END CERTIFICATE")).then_some(now)
    });
    assert_ne!(renewed, first);
    let key = std::fs::read_to_string(agent.dir.join("agent.key")).unwrap();
    assert_ne!(key, first_key, "renewal makes a new key pair");
    // The pair's commit protocol cleans up after itself (no marker, no staged files).
    poll(DEADLINE, "no renewal leftovers in the agent dir", || {
        let names = ["agent.renewal-commit", "agent.key.new", "agent.pem.new"];
        names
            .iter()
            .all(|name| !agent.dir.join(name).exists())
            .then_some(())
    });
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(agent.dir.join("agent.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A restarted agent connects with the renewed certificate.
    running.kill9();
    let connects = |log: &str| {
        log.lines()
            .filter(|line| line.contains("Agent connected.") && line.contains(&agent_id))
            .count()
    };
    let before = connects(&collector.process.log_text());
    let _restarted = steward_tests::Process::spawn(
        "renewing (run 2)",
        &steward_tests::binary("steward-agent"),
        &["--config", steward_tests::path_str(&agent.config())],
        collector.path("renewing-2.log"),
    );
    poll(DEADLINE, "a reconnect with the renewed certificate", || {
        (connects(&collector.process.log_text()) > before).then_some(())
    });
    assert_eq!(collector.counter("steward_agents_refused_revoked_total"), 0);
}

#[test]
fn enrollment_attempts_are_rate_limited_per_source_address() {
    let collector = Collector::start_with(|text| {
        text.push_str("\n[enrollment]\nrate_burst = 2\nrate_every = \"1h\"\n")
    });
    let fingerprint = collector.ca_fingerprint();
    let guess = format!("stwe_{}", "1".repeat(64));
    for attempt in 0..2 {
        let (status, output, _) =
            collector.run_enroll(&format!("guess-{attempt}"), &guess, &fingerprint);
        assert_ne!(status, 0);
        assert!(output.contains("enrollment token"), "{output}");
    }
    // The third attempt is refused before the token is even looked at,
    // and so is a valid token from the same address.
    let token = collector.enrollment_token(&[]);
    let (status, output, _) = collector.run_enroll("guess-2", &token, &fingerprint);
    assert_ne!(status, 0);
    assert!(output.contains("too many enrollment attempts"), "{output}");
    assert_eq!(
        collector.counter("steward_enrollments_rate_limited_total"),
        1
    );
    assert_eq!(collector.counter("steward_enrollments_refused_total"), 2);
}

#[test]
fn a_bound_agent_id_enrolls_again_only_after_revocation_which_the_api_can_do() {
    let collector = Collector::start();
    let agent = collector.enroll_agent("again");
    let agent_id = agent.agent_id();
    let fingerprint = collector.ca_fingerprint();

    // Same state directory (same agent id), a fresh token: refused while bound.
    let token = collector.enrollment_token(&[]);
    let (status, output, _) = collector.run_enroll("again", &token, &fingerprint);
    assert_ne!(status, 0);
    assert!(output.contains("revoke it first"), "{output}");

    // Revocation through the API needs the API token.
    let path = format!("/api/v1/agents/{agent_id}/revoke");
    let (status, _) = steward_tests::http_request(collector.http_addr, "POST", &path, None, None);
    assert_eq!(status, 401);
    // Revoking is administration: a write token is not enough.
    let writer = collector.create_token("deployer", "write");
    let (status, body) =
        steward_tests::http_request(collector.http_addr, "POST", &path, Some(&writer), None);
    assert_eq!(status, 403, "{body}");
    let carol = collector.create_token("carol", "admin");
    let (status, body) = steward_tests::http_request(
        collector.http_addr,
        "POST",
        &path,
        Some(&carol),
        Some("{\"by\": \"mallory\"}"),
    );
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["revoked_by"], "carol",
        "the acting token's name, not the body's"
    );
    let api_token = collector.api_token();
    let (status, _) =
        steward_tests::http_request(collector.http_addr, "POST", &path, Some(&api_token), None);
    assert_eq!(status, 404, "already revoked");

    // A token made before the revocation cannot bring the id back (a fleet
    // token must not undo an admin's revocation), and is not spent by trying.
    let (status, output, _) = collector.run_enroll("again", &token, &fingerprint);
    assert_ne!(status, 0);
    assert!(output.contains("create a new enrollment token"), "{output}");
    // A token made after it does.
    let token = collector.enrollment_token(&[]);
    let (status, output, agent) = collector.run_enroll("again", &token, &fingerprint);
    assert_eq!(status, 0, "{output}");
    assert_eq!(agent.agent_id(), agent_id);
    steward_tests::edit_file(&agent.config(), |text| {
        *text = text.replace("interval = \"10s\"", "interval = \"1s\"");
    });
    let _running = collector.start_enrolled_agent(&agent);
    wait_for_data(&collector, &agent_id);
}

#[test]
fn an_id_that_streamed_with_the_shared_token_is_taken_over_only_by_an_adopting_token() {
    let collector = Collector::start();
    let mut legacy = collector.start_agent("legacy", |_| {});
    let agent_id = poll(DEADLINE, "the shared-token agent's id", || {
        std::fs::read_to_string(collector.path("legacy-state").join("agent-id"))
            .ok()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
    });
    wait_for_data(&collector, &agent_id);
    legacy.kill9();
    let fingerprint = collector.ca_fingerprint();

    // Whoever holds an ordinary token cannot claim the existing id...
    let token = collector.enrollment_token(&["--uses", "1"]);
    let (status, output, _) = collector.run_enroll("legacy", &token, &fingerprint);
    assert_ne!(
        status, 0,
        "an ordinary token took over a streaming id: {output}"
    );
    assert!(output.contains("--adopt-existing"), "{output}");
    let (_, list, _) = collector.admin(&["enroll-token", "list"]);
    assert!(list.contains("active"), "the refusal spent no use: {list}");

    // ...a token made for migrating shared-token agents can.
    let token = collector.enrollment_token(&["--adopt-existing"]);
    let (status, output, agent) = collector.run_enroll("legacy", &token, &fingerprint);
    assert_eq!(status, 0, "{output}");
    assert_eq!(agent.agent_id(), agent_id, "the agent keeps its id");
    steward_tests::edit_file(&agent.config(), |text| {
        *text = text.replace("interval = \"10s\"", "interval = \"1s\"");
    });
    let since = steward_tests::now_ms();
    let _running = collector.start_enrolled_agent(&agent);
    poll(DEADLINE, "the migrated agent's data over mTLS", || {
        latest_sample_ms(&collector, &agent_id).filter(|&ms| ms >= since)
    });
}

#[test]
fn a_shared_token_agent_with_an_enrolled_hosts_identifiers_gets_its_own_asset() {
    let collector = Collector::start();
    let enrolled = collector.enroll_agent("genuine");
    let enrolled_id = enrolled.agent_id();
    let _genuine = collector.start_enrolled_agent(&enrolled);
    let genuine_asset = poll(DEADLINE, "the enrolled agent's asset", || {
        asset_of(&collector, &enrolled_id)
    });
    // Same machine: the same DMI UUID, machine id and MACs, but a shared token.
    let _intruder = collector.start_agent("intruder", |_| {});
    let intruder_id = poll(DEADLINE, "the intruder's agent id", || {
        let id = std::fs::read_to_string(collector.path("intruder-state/agent-id")).ok()?;
        Some(id.trim().to_string())
    });
    let intruder_asset = poll(DEADLINE, "the intruder's asset", || {
        asset_of(&collector, &intruder_id)
    });
    assert_ne!(
        intruder_asset["id"], genuine_asset["id"],
        "a shared-token agent attached itself to an enrolled host's asset"
    );
    // An agent enrolled with its own certificate but the same identifiers
    // does not join either: enrolling is not a licence to take over a host.
    let second = collector.enroll_agent("second");
    let second_id = second.agent_id();
    let _second = collector.start_enrolled_agent(&second);
    let second_asset = poll(DEADLINE, "the second enrolled agent's asset", || {
        asset_of(&collector, &second_id)
    });
    assert_ne!(
        second_asset["id"], genuine_asset["id"],
        "a newly enrolled agent attached itself to an enrolled host's asset"
    );
    let genuine_now = asset_of(&collector, &enrolled_id).unwrap();
    assert_eq!(
        genuine_now["agent_ids"].as_array().unwrap().len(),
        1,
        "{genuine_now}"
    );
}
