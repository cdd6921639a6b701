//! Fault test: `kill -9` of the collector, twice, while several agents
//! stream to it. After the last restart every agent's batches 1..=N are
//! stored exactly once (nothing acknowledged is missing, nothing resent is
//! stored twice) and the database passes `PRAGMA integrity_check`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use steward_tests::{Collector, DEADLINE, poll};

const AGENTS: usize = 4;

/// agent id → (min seq, max seq, rows) of its committed batches.
fn committed(collector: &Collector) -> BTreeMap<String, (i64, i64, i64)> {
    let database = collector.database();
    let mut statement = database
        .prepare("SELECT agent_id, min(seq), max(seq), count(*) FROM batches GROUP BY agent_id")
        .unwrap();
    statement
        .query_map([], |row| {
            Ok((row.get(0)?, (row.get(1)?, row.get(2)?, row.get(3)?)))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn total_rows(collector: &Collector) -> i64 {
    committed(collector).values().map(|(_, _, rows)| rows).sum()
}

#[test]
fn kill_9_under_load_from_several_agents_loses_and_duplicates_nothing() {
    let mut collector = Collector::start();
    let _agents: Vec<_> = (0..AGENTS)
        .map(|index| {
            collector.start_agent(&format!("host{index}"), |text| {
                text.push_str(&format!("hostname = \"load-{index}\"\n"));
            })
        })
        .collect();
    poll(DEADLINE, "every agent streaming", || {
        let committed = committed(&collector);
        (committed.len() == AGENTS && committed.values().all(|(_, max, _)| *max >= 2)).then_some(())
    });

    for round in 0..2 {
        let before = total_rows(&collector);
        poll(DEADLINE, "more batches before the kill", || {
            (total_rows(&collector) >= before + AGENTS as i64).then_some(())
        });
        collector.process.kill9();
        let at_kill = committed(&collector);
        collector.restart();
        poll(
            DEADLINE,
            "every agent to catch up after the restart",
            || {
                let now = committed(&collector);
                at_kill
                    .iter()
                    .all(|(agent, (_, max, _))| {
                        now.get(agent)
                            .is_some_and(|(_, now_max, _)| now_max >= &(max + 2))
                    })
                    .then_some(())
            },
        );
        println!(
            "round {round}: killed at {} rows, caught up",
            at_kill.values().map(|c| c.2).sum::<i64>()
        );
    }

    let committed = committed(&collector);
    assert_eq!(committed.len(), AGENTS);
    for (agent, (min, max, rows)) in &committed {
        assert_eq!(*min, 1, "{agent}: sequence numbers start at 1");
        assert_eq!(
            rows, max,
            "{agent}: every batch 1..={max} stored exactly once"
        );
    }
    let integrity: String = collector
        .database()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    println!(
        "kill -9 under load: {} batches from {AGENTS} agents, none missing, none twice",
        committed.values().map(|c| c.2).sum::<i64>()
    );
}
