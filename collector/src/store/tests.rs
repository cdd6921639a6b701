use super::*;

fn sample(metric: &str, label: &str, value: f64, timestamp_ms: i64) -> SampleRecord {
    SampleRecord {
        metric: metric.into(),
        labels: Labels::from([("mount".to_string(), label.to_string())]),
        value,
        timestamp_ms,
    }
}

fn batch(seq: u64, samples: Vec<SampleRecord>) -> SampleBatch {
    SampleBatch {
        agent_id: "a1".into(),
        epoch: 7,
        seq,
        received_ms: 1_000,
        samples,
    }
}

fn hello() -> AgentHello {
    AgentHello {
        agent_id: "a1".into(),
        hostname: "web-1".into(),
        version: "0.1.0".into(),
        facts: BTreeMap::new(),
        seen_ms: 500,
    }
}

#[tokio::test]
async fn committed_batches_are_deduplicated_by_agent_epoch_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    store.record_hello(hello()).await.unwrap();
    let first = store
        .commit_batch(batch(1, vec![sample("disk.used_percent", "/", 10.0, 100)]))
        .await
        .unwrap();
    assert_eq!(first, CommitOutcome::Stored { samples: 1 });
    let again = store
        .commit_batch(batch(1, vec![sample("disk.used_percent", "/", 99.0, 200)]))
        .await
        .unwrap();
    assert_eq!(again, CommitOutcome::Duplicate);
    assert_eq!(store.committed_seq("a1", 7).await.unwrap(), 1);
    assert_eq!(store.committed_seq("a1", 8).await.unwrap(), 0);
    assert_eq!(store.counts().await.unwrap(), (1, 1));
    let latest = store.latest(Some("a1"));
    assert_eq!(latest.len(), 1);
    assert_eq!(
        latest[0].1.value, 10.0,
        "the duplicate must not change the latest value"
    );
}

#[tokio::test]
async fn latest_values_and_agents_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let store = Store::open(&path).unwrap();
        store.record_hello(hello()).await.unwrap();
        store
            .commit_batch(batch(
                1,
                vec![
                    sample("disk.used_percent", "/", 10.0, 100),
                    sample("disk.used_percent", "/", 12.0, 300),
                    sample("disk.used_percent", "/boot", 50.0, 100),
                ],
            ))
            .await
            .unwrap();
        store
            .commit_batch(batch(2, vec![sample("disk.used_percent", "/", 11.0, 200)]))
            .await
            .unwrap();
        store.close().await;
    }
    let store = Store::open(&path).unwrap();
    let latest = store.latest(None);
    assert_eq!(latest.len(), 2);
    let root = latest
        .iter()
        .find(|(key, _)| key.labels["mount"] == "/")
        .unwrap();
    assert_eq!(
        root.1,
        LatestValue {
            value: 12.0,
            timestamp_ms: 300
        },
        "an older sample must not win"
    );
    let agents = store.agents().await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].hostname, "web-1");
    assert_eq!(agents[0].last_seen_ms, 1_000);
    assert_eq!(store.counts().await.unwrap(), (4, 2));
}

#[tokio::test]
async fn concurrent_commits_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
    let mut tasks = Vec::new();
    for seq in 1..=50u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .commit_batch(batch(seq, vec![sample("m", &seq.to_string(), 1.0, 1)]))
                .await
        }));
    }
    for task in tasks {
        assert!(matches!(
            task.await.unwrap().unwrap(),
            CommitOutcome::Stored { .. }
        ));
    }
    assert_eq!(store.committed_seq("a1", 7).await.unwrap(), 50);
    assert_eq!(store.counts().await.unwrap(), (50, 50));
}

#[tokio::test]
async fn prune_removes_only_old_samples() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    store
        .commit_batch(batch(
            1,
            vec![sample("m", "/", 1.0, 100), sample("m", "/", 2.0, 900)],
        ))
        .await
        .unwrap();
    assert_eq!(store.prune_samples(500).await.unwrap(), 1);
    assert_eq!(store.counts().await.unwrap().0, 1);
}
