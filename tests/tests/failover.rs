//! An agent given several collectors moves to the next when its collector
//! dies, and its spool replays what the dead one never acknowledged: with
//! the real binaries, two collectors sharing one CA and agent token.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Instant;

use steward_tests::{Collector, DEADLINE, collected_batches, now_ms, path_str, poll};

/// Seqs of `agent_id`'s batches in a collector's `batches` table.
fn stored_seqs(collector: &Collector, agent_id: &str) -> BTreeSet<i64> {
    let database = collector.database();
    let mut statement = database
        .prepare("SELECT seq FROM batches WHERE agent_id = ?1")
        .unwrap();
    statement
        .query_map([agent_id], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn connected(collector: &Collector, agent_id: &str) -> bool {
    collector
        .get_json("/api/v1/agents")
        .as_array()
        .unwrap()
        .iter()
        .any(|agent| agent["id"] == agent_id && agent["connected"] == true)
}

/// The newest `mem.used_percent` timestamp `collector` holds for the agent.
fn latest_ms(collector: &Collector, agent_id: &str) -> Option<i64> {
    let series = collector.get_json(&format!("/api/v1/series?agent={agent_id}"));
    steward_tests::find_series(&series, "mem.used_percent", None)?["timestamp_ms"].as_i64()
}

#[test]
fn an_agent_moves_to_the_next_collector_when_its_collector_dies_and_loses_no_batch() {
    let mut first = Collector::start();
    // The second collector presents the first's certificate and accepts its
    // agent token: one cluster, as agents see it.
    let shared = |name: &str| path_str(&first.path(name)).to_string();
    let (cert, key, ca, ca_key, tokens) = (
        shared("server.pem"),
        shared("server.key"),
        shared("ca.pem"),
        shared("ca.key"),
        shared("agent-tokens"),
    );
    let mut second = Collector::start_with(|text| {
        *text = text
            .replace("\"server.pem\"", &format!("{cert:?}"))
            .replace("\"server.key\"", &format!("{key:?}"))
            .replace("\"ca.pem\"", &format!("{ca:?}"))
            .replace("\"ca.key\"", &format!("{ca_key:?}"))
            .replace("\"agent-tokens\"", &format!("{tokens:?}"));
    });
    let urls = format!(
        "collector = [\"https://127.0.0.1:{}\", \"https://127.0.0.1:{}\"]",
        first.grpc_addr.port(),
        second.grpc_addr.port()
    );
    let single = format!(
        "collector = \"https://127.0.0.1:{}\"",
        first.grpc_addr.port()
    );
    let agent = first.start_agent("roamer", |text| {
        assert!(text.contains(&single), "{text}");
        *text = text.replace(&single, &urls);
        text.push_str("\n[patch]\nenabled = false\n\n[inventory]\nenabled = false\n");
    });
    let agent_id = poll(DEADLINE, "the agent's id", || {
        std::fs::read_to_string(first.path("roamer-state").join("agent-id"))
            .ok()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
    });

    // It starts at either collector.
    let serving_first = poll(DEADLINE, "the agent to connect to one collector", || {
        if connected(&first, &agent_id) {
            Some(true)
        } else if connected(&second, &agent_id) {
            Some(false)
        } else {
            None
        }
    });
    let (dead, survivor) = if serving_first {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    poll(DEADLINE, "three stored batches", || {
        (stored_seqs(dead, &agent_id).len() >= 3).then_some(())
    });

    dead.process.kill9();
    let killed_at = now_ms();
    let killed = Instant::now();
    let newest = poll(DEADLINE, "the agent's data at the other collector", || {
        latest_ms(survivor, &agent_id).filter(|&ms| ms > killed_at)
    });
    let moved_after = killed.elapsed();
    assert!(connected(survivor, &agent_id));
    assert!(
        agent.log_text().contains("Moving to the next collector."),
        "{}",
        agent.describe()
    );
    // A few more batches at the survivor, then the dead one comes back so
    // its database can be read; the agent stays where it is.
    poll(DEADLINE, "three more seconds of data", || {
        latest_ms(survivor, &agent_id).filter(|&ms| ms > newest + 3_000)
    });
    dead.restart();

    let measured = collected_batches(&agent.log_text());
    let last_seq = measured.iter().map(|batch| batch.seq).max().unwrap();
    let (at_dead, at_survivor) = poll(DEADLINE, "every measured batch stored", || {
        let at_dead = stored_seqs(dead, &agent_id);
        let at_survivor = stored_seqs(survivor, &agent_id);
        measured
            .iter()
            .all(|batch| at_dead.contains(&batch.seq) || at_survivor.contains(&batch.seq))
            .then_some((at_dead, at_survivor))
    });
    let union: BTreeSet<i64> = at_dead.union(&at_survivor).copied().collect();
    let first_seq = *union.first().unwrap();
    let gaps: Vec<i64> = (first_seq..=last_seq)
        .filter(|seq| !union.contains(seq))
        .collect();
    let twice = at_dead.intersection(&at_survivor).count();
    println!(
        "failover: moved to the other collector {:.1}s after kill -9; batches {first_seq}..={last_seq}: \
         {} at the killed collector, {} at the survivor, {twice} at both (the agent sends what is still in \
         its spool above the seq a collector says it holds: with separate databases delivery is at least once)",
        moved_after.as_secs_f64(),
        at_dead.len(),
        at_survivor.len(),
    );
    assert!(gaps.is_empty(), "batches lost in the move: {gaps:?}");
    assert!(
        at_survivor.len() >= 3,
        "the survivor took over: {at_survivor:?}"
    );
}
