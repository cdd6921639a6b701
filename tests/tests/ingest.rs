//! End to end: real collector and agent binaries, real TLS, real SQLite.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use steward_tests::{Collector, DEADLINE, find_series, poll};

fn agent_id(collector: &Collector, hostname: &str) -> String {
    poll(DEADLINE, "the agent to connect", || {
        let agents = collector.get_json("/api/v1/agents");
        agents.as_array()?.iter().find_map(|agent| {
            (agent["hostname"] == hostname && agent["connected"] == true)
                .then(|| agent["id"].as_str().map(str::to_string))
                .flatten()
        })
    })
}

#[test]
fn samples_arrive_over_tls_and_are_queryable_over_http() {
    let collector = Collector::start();
    let _agent = collector.start_agent("web-1", |text| text.push_str("hostname = \"web-1\"\n"));
    let id = agent_id(&collector, "web-1");

    let agents = collector.get_json("/api/v1/agents");
    let agent = &agents[0];
    assert_eq!(agent["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        agent["last_seen"]
            .as_str()
            .is_some_and(|text| text.ends_with('Z')),
        "{agent}"
    );

    let series = poll(DEADLINE, "host metrics for the agent", || {
        let series = collector.get_json(&format!("/api/v1/series?agent={id}"));
        find_series(&series, "host.uptime_seconds", None)?;
        Some(series)
    });
    for (metric, label) in [
        ("cpu.usage_percent", Some(("cpu", "total"))),
        ("cpu.usage_percent", Some(("cpu", "0"))),
        ("load.1m", None),
        ("mem.used_percent", None),
        ("mem.used_bytes", None),
        ("swap.used_percent", None),
        ("disk.used_percent", Some(("mount", "/"))),
        ("disk.total_bytes", Some(("mount", "/"))),
        ("net.rx_bytes", Some(("iface", "lo"))),
        ("net.tx_bytes", Some(("iface", "lo"))),
    ] {
        let found = find_series(&series, metric, label)
            .unwrap_or_else(|| panic!("missing {metric} {label:?} in {series}"));
        assert!(found["value"].is_number(), "{found}");
        assert_eq!(found["agent_id"], id.as_str());
        assert!(found["timestamp"].is_string(), "{found}");
    }
    let memory = find_series(&series, "mem.used_percent", None).unwrap()["value"]
        .as_f64()
        .unwrap();
    assert!(
        memory > 0.0 && memory <= 100.0,
        "mem.used_percent = {memory}"
    );

    // Only this agent's series are returned for ?agent=.
    let other = collector.get_json("/api/v1/series?agent=someone-else");
    assert_eq!(other.as_array().map(Vec::len), Some(0));
    assert!(collector.counter("steward_samples_ingested_total") > 0);
}

#[test]
fn agent_with_wrong_token_is_refused_logged_counted_and_others_keep_working() {
    let collector = Collector::start();
    let _good = collector.start_agent("good", |text| text.push_str("hostname = \"good\"\n"));
    let good_id = agent_id(&collector, "good");
    let bad_token = "wrong-token-that-must-never-be-logged";
    let bad = collector.start_agent("bad", |text| {
        let start = text.find("token = \"").unwrap();
        let end = start + text[start..].find('\n').unwrap();
        text.replace_range(start..end, &format!("token = \"{bad_token}\""));
        text.push_str("hostname = \"bad\"\n");
    });

    poll(DEADLINE, "the bad agent to be refused and counted", || {
        (collector.counter("steward_agents_rejected_auth_total") >= 1).then_some(())
    });
    poll(DEADLINE, "the bad agent to log the rejection", || {
        bad.log_text()
            .contains("rejected this agent's token")
            .then_some(())
    });
    let log = collector.process.log_text();
    assert!(
        log.contains("Rejected agent: missing or invalid token."),
        "{log}"
    );
    assert!(
        !log.contains(bad_token),
        "the presented token leaked into the collector log"
    );
    let real_token = std::fs::read_to_string(collector.path("agent-tokens")).unwrap();
    let real_token = real_token.lines().last().unwrap();
    assert!(
        !log.contains(real_token),
        "a valid token leaked into the collector log"
    );

    let agents = collector.get_json("/api/v1/agents");
    assert!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .all(|agent| agent["hostname"] != "bad"),
        "a refused agent must not be registered: {agents}"
    );
    // The good agent keeps streaming after the rejection.
    let before = collector.counter("steward_batches_committed_total");
    poll(
        DEADLINE,
        "the good agent's batches to keep arriving",
        || (collector.counter("steward_batches_committed_total") >= before + 2).then_some(()),
    );
    let series = collector.get_json(&format!("/api/v1/series?agent={good_id}"));
    assert!(find_series(&series, "mem.used_percent", None).is_some());
}

/// The highest committed seq and the number of distinct seqs for the single
/// agent epoch in the database (read from the real SQLite file).
fn committed(collector: &Collector) -> (i64, i64, i64) {
    let database = collector.database();
    database
        .query_row(
            "SELECT coalesce(min(seq), 0), coalesce(max(seq), 0), count(*) FROM batches",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap()
}

#[test]
fn sigkill_loses_no_acknowledged_batch_and_the_agent_resends_the_rest() {
    let mut collector = Collector::start();
    // Host metrics only, so every batch carries exactly one uptime sample.
    let agent = collector.start_agent("host", |text| {
        text.push_str("\n[patch]\nenabled = false\n\n[inventory]\nenabled = false\n");
    });
    poll(DEADLINE, "three acknowledged batches", || {
        (committed(&collector).2 >= 3).then_some(())
    });
    collector.process.kill9();
    let (_, committed_before_kill, _) = committed(&collector);
    let killed_at = steward_agent_now_ms();

    // While the collector is down the agent keeps collecting into its buffer;
    // wait until it has failed to reconnect twice (at least one more interval).
    let failures = |log: &str| log.matches("Collector session ended.").count();
    let seen = failures(&agent.log_text());
    poll(
        DEADLINE,
        "the agent to notice the collector is gone",
        || (failures(&agent.log_text()) >= seen + 2).then_some(()),
    );
    poll(
        DEADLINE,
        "at least one batch collected while the collector was down",
        || {
            agent
                .log_text()
                .lines()
                .filter(|line| line.contains("Collected a batch."))
                .filter_map(|line| line.split("seq=").nth(1)?.trim().parse::<i64>().ok())
                .any(|seq| seq > committed_before_kill + 1)
                .then_some(())
        },
    );

    let restarted_at = steward_agent_now_ms();
    collector.restart();
    poll(
        DEADLINE,
        "the agent to resend what was not acknowledged",
        || {
            let (_, max, _) = committed(&collector);
            (max >= committed_before_kill + 2).then_some(())
        },
    );
    let (min, max, count) = committed(&collector);
    assert_eq!(min, 1, "sequence numbers start at 1");
    assert_eq!(
        count, max,
        "every sequence number 1..={max} is stored exactly once"
    );
    assert!(max > committed_before_kill);

    // Samples measured while the collector was down were resent and stored,
    // read back through the history API (head, log replay and chunks merged).
    let agents = collector.get_json("/api/v1/agents");
    let agent_id = agents[0]["id"].as_str().unwrap().to_string();
    let uptime_times = |from: i64, to: i64| -> Vec<i64> {
        let history = collector.get_json(&format!(
            "/api/v1/series/query?agent={agent_id}&metric=host.uptime_seconds&from={from}&to={to}"
        ));
        let series = history["series"].as_array().unwrap();
        assert_eq!(series.len(), 1, "{history}");
        series[0]["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|point| point["t"].as_i64().unwrap())
            .collect()
    };
    assert!(
        !uptime_times(killed_at + 1, restarted_at - 1).is_empty(),
        "no sample measured during the outage was resent"
    );
    // Every batch carries exactly one uptime sample: none was stored twice.
    let all = uptime_times(0, i64::MAX);
    assert_eq!(all.len() as i64, count);
    let mut distinct = all.clone();
    distinct.dedup();
    assert_eq!(distinct, all, "one point per timestamp");
}

fn steward_agent_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn sigterm_flushes_and_exits_cleanly() {
    let mut collector = Collector::start();
    let _agent = collector.start_agent("host", |_| {});
    poll(DEADLINE, "a committed batch", || {
        (committed(&collector).2 >= 1).then_some(())
    });
    collector.process.signal(libc::SIGTERM);
    let code = collector.process.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{}", collector.process.describe());
    assert!(collector.process.log_text().contains("Collector stopped."));
}
