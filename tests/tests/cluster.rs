//! Two real collectors on one PostgreSQL database, several real agents that
//! know both: `kill -9` one collector during ingest; its agents move to the
//! other within seconds; no acknowledged batch is lost or stored twice;
//! breaches before, during and after the failover open exactly one incident
//! each and page exactly once; an incident opened by the dead collector is
//! resolved by the survivor.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::time::Instant;

use serde_json::Value;
use steward_collector::store::postgres::testdb::TestDb;
use steward_tests::{
    Collector, DEADLINE, Process, Receiver, collected_batches, path_str, poll, port_check,
};

const AGENTS: [&str; 3] = ["web-1", "web-2", "web-3"];

/// A port-down rule paging `webhook`, escalating to `pager` after 4 s
/// without an acknowledgement.
fn rules_and_channels(webhook: &Receiver, pager: &Receiver) -> String {
    format!(
        r#"
[[rule]]
name = "port-down"
metric = "port.up"
op = "<"
threshold = 1
severity = "critical"
summary = "Port {{target}} on {{host}} is down"

[[channel]]
name = "ops-webhook"
type = "webhook"
url = "{}"
secret = "0123456789abcdef"

[[channel]]
name = "pager-webhook"
type = "webhook"
url = "{}"
secret = "0123456789abcdef"

[[person]]
name = "oncall"
channels = ["pager-webhook"]

[[escalation]]
name = "ops"
levels = [{{ notify = ["person:oncall"], after = "4s" }}]

[[route]]
channels = ["ops-webhook"]
escalation = "ops"
"#,
        webhook.url("/hooks/steward"),
        pager.url("/hooks/pager"),
    )
}

/// `collector.toml` on the shared database, as collector `instance`.
fn on_postgres(text: &mut String, url: &str, instance: &str) {
    assert!(text.contains("sqlite = \"steward.db\""), "{text}");
    *text = text
        .replace(
            "sqlite = \"steward.db\"",
            &format!("postgres = {url:?}\ninstance = {instance:?}"),
        )
        // init stores its admin token in SQLite; here it comes from the config.
        .replace("[auth]\n", "[auth]\napi_token_file = \"api-token\"\n");
}

/// Agent id -> connected, at one collector.
fn connected_agents(collector: &Collector) -> BTreeSet<String> {
    collector
        .get_json("/api/v1/agents")
        .as_array()
        .unwrap()
        .iter()
        .filter(|agent| agent["connected"] == true)
        .map(|agent| agent["hostname"].as_str().unwrap().to_string())
        .collect()
}

/// Successful webhook deliveries: (event, dedup key) -> how many.
fn pages(webhook: &Receiver) -> BTreeMap<(String, String), usize> {
    let mut pages = BTreeMap::new();
    for request in webhook.requests() {
        if request.status != 200 {
            continue;
        }
        let body = request.json();
        let key = (
            body["event"].as_str().unwrap_or_default().to_string(),
            body["dedup_key"].as_str().unwrap_or_default().to_string(),
        );
        *pages.entry(key).or_insert(0) += 1;
    }
    pages
}

/// Successful escalation pages per dedup key.
fn escalations(pager: &Receiver) -> BTreeMap<String, usize> {
    let mut pages = BTreeMap::new();
    for request in pager.requests() {
        if request.status == 200 {
            let key = request.json()["dedup_key"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            *pages.entry(key).or_insert(0) += 1;
        }
    }
    pages
}

fn paged(webhook: &Receiver, event: &str, host: &str) -> bool {
    webhook.requests().iter().any(|request| {
        let body = request.json();
        request.status == 200 && body["event"] == event && body["incident"]["host"] == host
    })
}

/// Every incident in the shared database, through one collector's API.
fn incidents(collector: &Collector) -> Vec<Value> {
    collector
        .get_json("/api/v1/incidents?limit=500")
        .as_array()
        .unwrap()
        .clone()
}

/// (agent id, seq) of every stored batch.
fn stored_batches(runtime: &tokio::runtime::Runtime, url: &str) -> BTreeSet<(String, i64)> {
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        let rows = client
            .query("SELECT agent_id, seq FROM batches", &[])
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
        rows.iter().map(|row| (row.get(0), row.get(1))).collect()
    })
}

/// Two collectors on database `url` with `config` appended, as one cluster
/// as agents see it: the second presents the first's certificate and
/// accepts its agent token. Also returns the agents' `collector = [...]` line.
fn two_collectors(url: &str, config: &str) -> (Collector, Collector, String) {
    let first = Collector::start_with(|text| {
        on_postgres(text, url, "collector-a");
        text.push_str(config);
    });
    let shared = |name: &str| path_str(&first.path(name)).to_string();
    let (cert, key, ca, ca_key, tokens) = (
        shared("server.pem"),
        shared("server.key"),
        shared("ca.pem"),
        shared("ca.key"),
        shared("agent-tokens"),
    );
    let second = Collector::start_with(|text| {
        on_postgres(text, url, "collector-b");
        *text = text
            .replace("\"server.pem\"", &format!("{cert:?}"))
            .replace("\"server.key\"", &format!("{key:?}"))
            .replace("\"ca.pem\"", &format!("{ca:?}"))
            .replace("\"ca.key\"", &format!("{ca_key:?}"))
            .replace("\"agent-tokens\"", &format!("{tokens:?}"));
        text.push_str(config);
    });
    let urls = format!(
        "collector = [\"https://127.0.0.1:{}\", \"https://127.0.0.1:{}\"]",
        first.grpc_addr.port(),
        second.grpc_addr.port()
    );
    (first, second, urls)
}

#[test]
fn two_collectors_on_postgres_survive_a_kill_9_without_losing_or_doubling_anything() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(TestDb::create()) else {
        return;
    };
    let (webhook, pager) = (Receiver::start(), Receiver::start());
    let (mut first, mut second, urls) =
        two_collectors(&db.url, &rules_and_channels(&webhook, &pager));
    let single = format!(
        "collector = \"https://127.0.0.1:{}\"",
        first.grpc_addr.port()
    );
    let mut listeners: BTreeMap<&str, TcpListener> = AGENTS
        .iter()
        .map(|&name| (name, TcpListener::bind("127.0.0.1:0").unwrap()))
        .collect();
    let ports: BTreeMap<&str, u16> = listeners
        .iter()
        .map(|(&name, listener)| (name, listener.local_addr().unwrap().port()))
        .collect();
    let agents: Vec<Process> = AGENTS
        .iter()
        .map(|&name| {
            first.start_agent(name, |text| {
                assert!(text.contains(&single), "{text}");
                *text = text.replace(&single, &urls);
                // `hostname` belongs to the template's last table: first.
                text.push_str(&port_check(Some(name), ports[name]));
                text.push_str("\n[patch]\nenabled = false\n\n[inventory]\nenabled = false\n");
            })
        })
        .collect();
    let everyone: BTreeSet<String> = AGENTS.iter().map(|name| name.to_string()).collect();
    poll(DEADLINE, "every agent connected to a collector", || {
        let connected: BTreeSet<String> = connected_agents(&first)
            .union(&connected_agents(&second))
            .cloned()
            .collect();
        (connected == everyone).then_some(())
    });
    // Each collector's overview counts the agents streaming to the other one
    // as connected too (they share the database, not their streams).
    for collector in [&first, &second] {
        poll(
            DEADLINE,
            "the overview counting every agent connected",
            || {
                let agents = &collector.get_json("/api/v1/overview")["agents"];
                let mine = connected_agents(collector).len() as u64;
                (agents["connected"] == AGENTS.len() as u64
                    && agents["on_other_collectors"] == AGENTS.len() as u64 - mine)
                    .then_some(())
            },
        );
    }

    let agent_ids: BTreeMap<&str, String> = AGENTS
        .iter()
        .map(|&name| {
            let file = first.path(&format!("{name}-state")).join("agent-id");
            (
                name,
                std::fs::read_to_string(file).unwrap().trim().to_string(),
            )
        })
        .collect();

    // Before the failover: web-1's port goes down; one incident, one page.
    listeners.remove("web-1");
    poll(DEADLINE, "web-1's incident paged", || {
        paged(&webhook, "opened", "web-1").then_some(())
    });
    // Recorded as delivered before the kill, so no delivery is in flight.
    poll(DEADLINE, "the page recorded", || {
        (first.counter("steward_notifications_sent_total")
            + second.counter("steward_notifications_sent_total")
            >= 1)
            .then_some(())
    });

    // Kill the collector serving web-1: it opened web-1's incident and, woken
    // by it, most likely routed its opening, so the survivor must take over
    // the escalation as well as the agents.
    let first_dies = connected_agents(&first).contains("web-1");
    let (dead, survivor) = if first_dies {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    let moving = connected_agents(dead);
    dead.process.kill9();
    let killed = Instant::now();
    // A breach during the failover.
    listeners.remove("web-2");
    poll(DEADLINE, "every agent at the survivor", || {
        (connected_agents(survivor) == everyone).then_some(())
    });
    let moved_after = killed.elapsed();
    // And one after it.
    listeners.remove("web-3");
    for host in ["web-2", "web-3"] {
        poll(DEADLINE, &format!("{host}'s incident paged"), || {
            paged(&webhook, "opened", host).then_some(())
        });
    }
    // web-1's escalation was due 4 s after it opened, whichever collector
    // routed its opening: it is paged once, by the survivor if need be.
    poll(DEADLINE, "every incident escalated", || {
        (escalations(&pager).len() == 3).then_some(())
    });
    // web-1 recovers: its incident, opened before the kill, resolves once.
    let _web_1 = TcpListener::bind(("127.0.0.1", ports["web-1"])).unwrap();
    poll(DEADLINE, "web-1's incident resolved and paged", || {
        paged(&webhook, "resolved", "web-1").then_some(())
    });

    // Exactly one incident per breached port, all in the shared database.
    let all = incidents(survivor);
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for incident in &all {
        *per_key
            .entry(incident["dedup_key"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(per_key.len(), 3, "{all:#?}");
    assert!(per_key.values().all(|&count| count == 1), "{per_key:?}");
    // Every page once: wait until nothing is left to deliver, then count.
    poll(DEADLINE, "the outbox drained", || {
        let pending = survivor.get_json("/api/v1/notifications?state=pending");
        pending.as_array().unwrap().is_empty().then_some(())
    });
    let pages = pages(&webhook);
    assert_eq!(
        pages.keys().filter(|(event, _)| event == "opened").count(),
        3,
        "{pages:?}"
    );
    assert!(
        pages.values().all(|&count| count == 1),
        "paged twice: {pages:?}"
    );
    let escalated = escalations(&pager);
    assert_eq!(
        escalated.keys().collect::<BTreeSet<_>>(),
        per_key.keys().collect::<BTreeSet<_>>(),
        "{escalated:?}"
    );
    assert!(
        escalated.values().all(|&count| count == 1),
        "escalated twice: {escalated:?}"
    );

    // No acknowledged batch lost, none stored twice (the primary key would
    // refuse it): every batch an agent measured is in the database.
    let stored = stored_batches(&runtime, &db.url);
    for (name, agent) in AGENTS.iter().zip(&agents) {
        let agent_id = agent_ids[name].as_str();
        let measured = collected_batches(&agent.log_text());
        let last = measured.iter().map(|batch| batch.seq).max().unwrap();
        poll(
            DEADLINE,
            &format!("{name}'s measured batches stored"),
            || {
                let stored = stored_batches(&runtime, &db.url);
                measured
                    .iter()
                    .all(|batch| stored.contains(&(agent_id.to_string(), batch.seq)))
                    .then_some(())
            },
        );
        assert!(
            stored
                .iter()
                .any(|(id, seq)| id == agent_id && *seq <= last),
            "{name} stored nothing"
        );
    }
    println!(
        "cluster failover: {} agent(s) moved to the survivor {:.1}s after kill -9; 3 incidents, 3 opened pages and 3 escalations, each once",
        moving.len(),
        moved_after.as_secs_f64()
    );
}

/// An agent that dies together with its collector is noticed by the one
/// left (its absence rule, once the dead collector's heartbeat is stale),
/// exactly once; an agent that only moved opens nothing.
#[test]
fn an_agent_that_dies_with_its_collector_is_reported_by_the_other_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(TestDb::create()) else {
        return;
    };
    let absent = "\n[[rule]]\nname = \"agent-down\"\nkind = \"absent\"\nmetric = \"agent.up\"\nfor = \"3s\"\nseverity = \"critical\"\n";
    let (mut first, mut second, urls) = two_collectors(&db.url, absent);
    let single = format!(
        "collector = \"https://127.0.0.1:{}\"",
        first.grpc_addr.port()
    );
    let start = |name: &str| {
        first.start_agent(name, |text| {
            *text = text.replace(&single, &urls);
            text.push_str(&format!("hostname = {name:?}\n"));
            text.push_str("\n[patch]\nenabled = false\n\n[inventory]\nenabled = false\n");
        })
    };
    let mut victim = start("db-1");
    let _mover = start("web-1");
    let everyone: BTreeSet<String> = ["db-1", "web-1"].map(String::from).into();
    poll(DEADLINE, "both agents connected", || {
        let connected: BTreeSet<String> = connected_agents(&first)
            .union(&connected_agents(&second))
            .cloned()
            .collect();
        (connected == everyone).then_some(())
    });
    let (dead, survivor) = if connected_agents(&first).contains("db-1") {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    // The host goes down with its collector.
    dead.process.kill9();
    victim.kill9();
    let incident = poll(DEADLINE, "agent-down for db-1 at the survivor", || {
        incidents(survivor)
            .into_iter()
            .find(|incident| incident["host"] == "db-1")
    });
    assert_eq!(incident["rule"], "agent-down");
    // The mover reconnected within seconds; give a false absence of it
    // longer than `for` and the dead collector's heartbeat to show.
    let opened = Instant::now();
    poll(DEADLINE, "five more seconds", || {
        (opened.elapsed().as_secs() >= 5).then_some(())
    });
    assert!(connected_agents(survivor).contains("web-1"));
    let all = incidents(survivor);
    let hosts: Vec<&str> = all
        .iter()
        .map(|incident| incident["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["db-1"], "{all:#?}");
}
