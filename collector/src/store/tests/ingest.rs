use super::*;

fn hello_of(agent_id: &str, hostname: &str) -> AgentHello {
    AgentHello {
        agent_id: agent_id.into(),
        hostname: hostname.into(),
        ..hello()
    }
}

on_both_backends! {
    async fn agents_are_paged_by_hostname_then_id_byte_wise(backend: &TestBackend) {
        let store = backend.open().await;
        // Upper case sorts before lower case byte-wise (not in most locales).
        for (id, hostname) in [("b", "web"), ("a", "web"), ("c", "Web"), ("d", "app"), ("e", "web")] {
            store.record_hello(hello_of(id, hostname)).await.unwrap();
        }
        let expected = ["c", "d", "a", "b", "e"];
        let all: Vec<String> = store.agents().await.unwrap().into_iter().map(|a| a.id).collect();
        assert_eq!(all, expected);
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store.agents_page(after.clone(), 2).await.unwrap();
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            after = Some((last.hostname.clone(), last.id.clone()));
            paged.extend(page.into_iter().map(|agent| agent.id));
        }
        assert_eq!(paged, expected);
        let agent = store.agent("c").await.unwrap().unwrap();
        assert_eq!((agent.hostname.as_str(), agent.first_seen_ms), ("Web", 500));
        assert!(store.agent("nope").await.unwrap().is_none());
    }
}

on_both_backends! {
    async fn history_spans_many_batches_and_series(backend: &TestBackend) {
        let store = backend.open().await;
        // 600 batches 10 s apart, each with three series of `m` and one of
        // another metric; value = index of the batch (+ 1000 for /boot).
        for seq in 1..=600u64 {
            let t = seq as i64 * 10_000;
            let v = seq as f64;
            store
                .commit_batch(batch(
                    seq,
                    vec![
                        sample("m", "/", v, t),
                        sample("m", "/boot", v + 1_000.0, t),
                        sample("m", "/var", -v, t),
                        sample("other", "/", 0.0, t),
                    ],
                ))
                .await
                .unwrap();
            if seq == 300 {
                store.close_head_chunks().await.unwrap();
            }
        }
        let query = |labels: &[(&str, &str)], from_ms: i64, to_ms: i64, step_ms: Option<i64>| {
            HistoryQuery {
                agent_id: "a1".into(),
                metric: "m".into(),
                labels: labels
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect(),
                from_ms,
                to_ms,
                step_ms,
            }
        };
        // Raw, one series, across 401 batches.
        let raw = store
            .history(query(&[("mount", "/")], 1_000_000, 5_000_000, None))
            .await
            .unwrap();
        assert_eq!(raw.len(), 1);
        let points: Vec<(i64, f64)> = raw[0]
            .points
            .iter()
            .map(|p| (p.timestamp_ms, p.value))
            .collect();
        assert_eq!(
            points,
            (100..=500).map(|s| (s * 10_000, s as f64)).collect::<Vec<_>>()
        );
        // Every series of the metric, ordered by labels; the other metric not.
        let all = store.history(query(&[], 0, i64::MAX, None)).await.unwrap();
        let mounts: Vec<&str> = all.iter().map(|s| s.key.labels["mount"].as_str()).collect();
        assert_eq!(mounts, ["/", "/boot", "/var"]);
        assert!(all.iter().all(|series| series.points.len() == 600));
        // One-minute steps from raw points: six points a step.
        let minutes = store
            .history(query(&[("mount", "/boot")], 60_000, 600_000 - 1, Some(60_000)))
            .await
            .unwrap();
        let first = minutes[0].points[0];
        assert_eq!(minutes[0].points.len(), 9);
        assert_eq!(
            (first.timestamp_ms, first.min, first.max, first.value),
            (60_000, 1_006.0, 1_011.0, 1_008.5)
        );
        // Ten-minute steps through the rollups: 60 points a step.
        let coarse = store
            .history(query(&[("mount", "/var")], 0, 6_000_000, Some(600_000)))
            .await
            .unwrap();
        let steps = &coarse[0].points;
        assert_eq!(steps.len(), 11);
        assert_eq!((steps[0].min, steps[0].max), (-59.0, -1.0));
        assert_eq!(
            (steps[3].timestamp_ms, steps[3].min, steps[3].max, steps[3].value),
            (1_800_000, -239.0, -180.0, -209.5)
        );
        assert_eq!((steps[10].min, steps[10].max), (-600.0, -600.0));
        let total: u64 = store.counts().await.unwrap().0;
        assert_eq!(total, 600 * 4);
        assert_eq!(
            store.series_points(&series_key("/var")).await.unwrap().len(),
            600
        );
    }
}

on_both_backends! {
    async fn latest_values_keep_the_newest_point_per_series_and_agent(backend: &TestBackend) {
        let store = backend.open().await;
        store
            .commit_batch(batch(1, vec![sample("m", "/", 5.0, 500)]))
            .await
            .unwrap();
        // A late batch with an older point does not win.
        store
            .commit_batch(batch(2, vec![sample("m", "/", 4.0, 400), sample("m", "/boot", 1.0, 400)]))
            .await
            .unwrap();
        store
            .commit_batch(SampleBatch {
                agent_id: "a2".into(),
                ..batch(1, vec![sample("m", "/", 9.0, 900)])
            })
            .await
            .unwrap();
        assert_eq!(
            store.latest_value(&series_key("/")),
            Some(LatestValue { value: 5.0, timestamp_ms: 500 })
        );
        let of_a1: Vec<String> = store
            .latest(Some("a1"))
            .into_iter()
            .map(|(key, _)| key.labels["mount"].clone())
            .collect();
        assert_eq!(of_a1, ["/", "/boot"]);
        assert_eq!(store.latest(None).len(), 3);
        assert!(store.latest(Some("a3")).is_empty());
        assert_eq!(store.write_problem(), None);
    }
}

/// Two collectors on one database receive the same batch at once (an agent
/// resending after a failover): it is stored once, and both agree on the
/// agent's committed sequence. PostgreSQL only: SQLite has one collector.
#[tokio::test]
async fn the_same_batch_sent_to_two_collectors_at_once_is_stored_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let a = Store::open_postgres(&db.settings(), "collector-a")
        .await
        .unwrap();
    let b = Store::open_postgres(&db.settings(), "collector-b")
        .await
        .unwrap();
    for seq in 1..=20u64 {
        let sent = batch(seq, vec![sample("m", "/", seq as f64, seq as i64 * 1_000)]);
        let (left, right) = tokio::join!(a.commit_batch(sent.clone()), b.commit_batch(sent));
        let mut outcomes = [left.unwrap(), right.unwrap()];
        outcomes.sort_by_key(|outcome| matches!(outcome, CommitOutcome::Duplicate));
        assert_eq!(
            outcomes,
            [
                CommitOutcome::Stored { samples: 1 },
                CommitOutcome::Duplicate
            ],
            "seq {seq}"
        );
        assert_eq!(a.committed_seq("a1", 7).await.unwrap(), seq);
        assert_eq!(b.committed_seq("a1", 7).await.unwrap(), seq);
    }
    assert_eq!(a.counts().await.unwrap(), (20, 20));
    assert_eq!(b.counts().await.unwrap(), (20, 20));
    // Either collector answers history for the agent, whichever stored what.
    let expected: Vec<(i64, f64)> = (1..=20).map(|s| (s * 1_000, s as f64)).collect();
    assert_eq!(a.series_points(&series_key("/")).await.unwrap(), expected);
    assert_eq!(b.series_points(&series_key("/")).await.unwrap(), expected);
    // A collector starting now loads the newest value, whoever stored it.
    let c = Store::open_postgres(&db.settings(), "collector-c")
        .await
        .unwrap();
    assert_eq!(
        c.latest_value(&series_key("/")),
        Some(LatestValue {
            value: 20.0,
            timestamp_ms: 20_000
        })
    );
}

/// A group that cannot be committed (here: a table gone) is the store's
/// write problem, shown by /healthz, until a group commits again.
#[tokio::test]
async fn a_failed_group_commit_is_a_write_problem_until_one_commits() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = Store::open_postgres(&db.settings(), "collector-a")
        .await
        .unwrap();
    let (admin, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    admin
        .batch_execute("ALTER TABLE sample_log RENAME TO sample_log_away")
        .await
        .unwrap();
    let failed = store
        .commit_batch(batch(1, vec![sample("m", "/", 1.0, 100)]))
        .await;
    assert!(failed.is_err());
    let problem = store.write_problem().expect("a failed commit is a problem");
    assert!(problem.starts_with("cannot commit: "), "{problem}");
    assert!(store.latest(None).is_empty(), "nothing was stored");
    admin
        .batch_execute("ALTER TABLE sample_log_away RENAME TO sample_log")
        .await
        .unwrap();
    // The agent resends; the database takes it now.
    assert_eq!(
        store
            .commit_batch(batch(1, vec![sample("m", "/", 1.0, 100)]))
            .await
            .unwrap(),
        CommitOutcome::Stored { samples: 1 }
    );
    assert_eq!(store.write_problem(), None);
    drop(admin);
    let _ = driver.await;
}

on_both_backends! {
    async fn a_batch_sent_twice_at_once_to_one_store_is_stored_once(backend: &TestBackend) {
        let store = backend.open().await;
        let sent = batch(1, vec![sample("m", "/", 1.0, 100)]);
        let (left, right) = tokio::join!(store.commit_batch(sent.clone()), store.commit_batch(sent));
        let mut outcomes = [left.unwrap(), right.unwrap()];
        outcomes.sort_by_key(|outcome| matches!(outcome, CommitOutcome::Duplicate));
        assert_eq!(
            outcomes,
            [CommitOutcome::Stored { samples: 1 }, CommitOutcome::Duplicate]
        );
        assert_eq!(store.counts().await.unwrap(), (1, 1));
        assert_eq!(store.series_points(&series_key("/")).await.unwrap(), [(100, 1.0)]);
    }
}

/// A series one collector's retention deletes is forgotten by the others'
/// latest values at their next prune (which finds nothing left to delete).
#[tokio::test]
async fn a_series_pruned_by_one_collector_leaves_the_others_latest_values() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let a = Store::open_postgres(&db.settings(), "collector-a")
        .await
        .unwrap();
    a.commit_batch(batch(1, vec![sample("m", "/", 1.0, 100)]))
        .await
        .unwrap();
    let b = Store::open_postgres(&db.settings(), "collector-b")
        .await
        .unwrap();
    b.commit_batch(batch(2, vec![sample("m", "/boot", 1.0, 9_000)]))
        .await
        .unwrap();
    assert_eq!(b.latest(None).len(), 2, "loaded at open, and committed");
    a.prune_rollups(5_000).await.unwrap();
    assert!(a.prune(5_000).await.unwrap() >= 1);
    assert_eq!(a.latest(None).len(), 0, "a never saw /boot's commit");
    b.prune(5_000).await.unwrap();
    let left: Vec<String> = b
        .latest(None)
        .into_iter()
        .map(|(key, _)| key.labels["mount"].clone())
        .collect();
    assert_eq!(left, ["/boot"]);
}
