use super::*;
use crate::store::postgres::testdb::TestDb;

/// One backend under test: a temporary SQLite file, or a fresh database on a
/// real PostgreSQL server (`postgres::testdb`); `open` may be called again to
/// reopen the same one, as a restarted collector would.
enum TestBackend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDb),
}

impl TestBackend {
    async fn open(&self) -> Store {
        match self {
            Self::Sqlite(dir) => Store::open(&dir.path().join("s.db")).unwrap(),
            Self::Postgres(db) => Store::open_postgres(&db.settings(), "test-collector")
                .await
                .unwrap(),
        }
    }
}

/// The store suite runs on both backends: `NAME::sqlite` and `NAME::postgres`
/// (which skips, saying why, only where no PostgreSQL server can be found or
/// started, and fails then under STEWARD_REQUIRE_POSTGRES).
macro_rules! on_both_backends {
    (async fn $name:ident($backend:ident: &TestBackend) $body:block) => {
        mod $name {
            use super::*;

            async fn run($backend: &TestBackend) $body

            #[tokio::test]
            async fn sqlite() {
                run(&TestBackend::Sqlite(tempfile::tempdir().unwrap())).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(db) = TestDb::create().await {
                    run(&TestBackend::Postgres(db)).await;
                }
            }
        }
    };
}

// Declared after the macro so they can use it.
mod assets;
mod compaction;
mod identity;
mod incidents;
mod ingest;
mod outbox;

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

on_both_backends! {
    async fn committed_batches_are_deduplicated_by_agent_epoch_and_seq(backend: &TestBackend) {
        let store = backend.open().await;
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
}

on_both_backends! {
    async fn latest_values_and_agents_survive_reopening(backend: &TestBackend) {
        {
            let store = backend.open().await;
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
        let store = backend.open().await;
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
}

on_both_backends! {
    async fn concurrent_commits_all_complete(backend: &TestBackend) {
        let store = Arc::new(backend.open().await);
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
}

on_both_backends! {
    async fn prune_drops_whole_chunks_that_end_before_the_cutoff(backend: &TestBackend) {
        let store = backend.open().await;
        store
            .commit_batch(batch(
                1,
                vec![sample("m", "/", 1.0, 100), sample("m", "/", 2.0, 900)],
            ))
            .await
            .unwrap();
        assert_eq!(
            store.prune(500).await.unwrap(),
            0,
            "points still in the head are not pruned one by one"
        );
        assert_eq!(store.counts().await.unwrap(), (2, 1));
        store.close_head_chunks().await.unwrap();
        store
            .commit_batch(batch(2, vec![sample("m", "/", 3.0, 3_000)]))
            .await
            .unwrap();
        assert_eq!(store.prune(1_000).await.unwrap(), 1, "the chunk [100, 900]");
        assert_eq!(
            store.counts().await.unwrap(),
            (1, 2),
            "the batch records are not older than the cutoff"
        );
        assert_eq!(store.latest(None).len(), 1, "the series has a newer point");
        // A series stays while its rollups do.
        assert_eq!(store.prune_rollups(5_000).await.unwrap(), 1);
        assert!(store.prune(5_000).await.unwrap() >= 1);
        assert_eq!(
            store.counts().await.unwrap(),
            (0, 0),
            "old batch records go too"
        );
        assert!(
            store.latest(None).is_empty(),
            "a series silent for the whole retention is forgotten"
        );
        // A new sample for the same series starts it afresh.
        store
            .commit_batch(batch(3, vec![sample("m", "/", 3.0, 6_000)]))
            .await
            .unwrap();
        assert_eq!(store.latest(None).len(), 1);
        assert_eq!(store.counts().await.unwrap(), (1, 1));
}
}

fn series_key(label: &str) -> SeriesKey {
    SeriesKey {
        agent_id: "a1".into(),
        metric: "m".into(),
        labels: Labels::from([("mount".to_string(), label.to_string())]),
    }
}

/// Regression guard for the log/head/chunk split: whatever mix of written
/// chunks, unwritten head points and log records a restart finds, every
/// committed point is there exactly once.
#[tokio::test]
async fn every_point_survives_reopening_exactly_once_wherever_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut expected = Vec::new();
    {
        let store = Store::open(&path).unwrap();
        for seq in 1..=800u64 {
            let t = seq as i64 * 10_000;
            let mut samples = vec![sample("m", "/", seq as f64 * 0.25, t)];
            if seq % 3 == 0 {
                samples.push(sample("m", "/boot", 1.0, t));
            }
            expected.push((t, seq as f64 * 0.25));
            store.commit_batch(batch(seq, samples)).await.unwrap();
            if seq == 400 {
                // Some points in written chunks, the rest only in the log.
                store.close_head_chunks().await.unwrap();
            }
        }
        // No close: the writer stops when the store is dropped, as after kill -9.
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.series_points(&series_key("/")).await.unwrap(),
        expected
    );
    assert_eq!(
        store
            .series_points(&series_key("/boot"))
            .await
            .unwrap()
            .len(),
        266
    );
    assert_eq!(store.counts().await.unwrap(), (800 + 266, 800));
    assert_eq!(
        store.latest_value(&series_key("/")).unwrap().timestamp_ms,
        8_000_000
    );
    // Writing the head and reopening again changes nothing.
    store.close_head_chunks().await.unwrap();
    store.close().await;
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.series_points(&series_key("/")).await.unwrap(),
        expected
    );
    assert_eq!(store.counts().await.unwrap(), (800 + 266, 800));
    let log_records: i64 = store
        .sqlite()
        .read(|connection| {
            connection.query_row("SELECT count(*) FROM sample_log", [], |row| row.get(0))
        })
        .await
        .unwrap();
    store.commit_batch(batch(801, vec![])).await.unwrap();
    let after: i64 = store
        .sqlite()
        .read(|connection| {
            connection.query_row("SELECT count(*) FROM sample_log", [], |row| row.get(0))
        })
        .await
        .unwrap();
    assert!(
        after <= 1 && log_records <= 800,
        "log records covered by written chunks are deleted ({log_records} then {after})"
    );
}

on_both_backends! {
    async fn history_merges_chunks_and_head_and_steps_through_rollups(backend: &TestBackend) {
        let store = backend.open().await;
        // Two days at 1-minute intervals: value = minute of the day.
        for seq in 0..2 * 1440u64 {
            let t = seq as i64 * 60_000;
            store
                .commit_batch(batch(
                    seq + 1,
                    vec![sample("m", "/", (seq % 1440) as f64, t)],
                ))
                .await
                .unwrap();
            if seq == 1000 {
                store.close_head_chunks().await.unwrap();
            }
        }
        let query = |from_ms: i64, to_ms: i64, step_ms: Option<i64>| HistoryQuery {
            agent_id: "a1".into(),
            metric: "m".into(),
            labels: Labels::from([("mount".to_string(), "/".to_string())]),
            from_ms,
            to_ms,
            step_ms,
        };
        // Raw across the chunk/head boundary.
        let raw = store
            .history(query(990 * 60_000, 1_010 * 60_000, None))
            .await
            .unwrap();
        assert_eq!(raw.len(), 1);
        let times: Vec<i64> = raw[0].points.iter().map(|p| p.timestamp_ms).collect();
        assert_eq!(times, (990..=1010).map(|m| m * 60_000).collect::<Vec<_>>());
        // A step below the interval is raw too.
        let fine = store
            .history(query(0, 59 * 60_000, Some(10_000)))
            .await
            .unwrap();
        assert_eq!(fine[0].points.len(), 60);
        // 10-minute steps from raw-aggregating code and from rollups agree.
        let coarse = store
            .history(query(0, 2 * 86_400_000 - 1, Some(3_600_000)))
            .await
            .unwrap();
        let points = &coarse[0].points;
        assert_eq!(points.len(), 48);
        assert_eq!(
            (points[1].min, points[1].max, points[1].value),
            (60.0, 119.0, 89.5)
        );
        assert_eq!(points[24].timestamp_ms, 86_400_000);
        assert_eq!((points[24].min, points[24].max), (0.0, 59.0));
        let two_minutes = store
            .history(query(0, 3_600_000 - 1, Some(120_000)))
            .await
            .unwrap();
        assert_eq!(two_minutes[0].points.len(), 30);
        assert_eq!(two_minutes[0].points[1].value, 2.5);
        // Bounds.
        let refused = store
            .history(query(0, 86_400_000 * 400, Some(60_000)))
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::QueryTooLarge(_)), "{refused}");
        // Extreme ranges are answered or refused, never overflow.
        let everything = store
            .history(query(i64::MIN, i64::MAX, None))
            .await
            .unwrap();
        assert_eq!(everything[0].points.len(), 2 * 1440);
        let refused = store
            .history(query(i64::MIN, i64::MAX, Some(3_600_000)))
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::QueryTooLarge(_)), "{refused}");
        // Label filtering: an unknown label value matches nothing.
        let mut none = query(0, 10, None);
        none.labels.insert("mount".into(), "/nope".into());
        assert!(store.history(none).await.unwrap().is_empty());
        // Rollup retention removes rollups only.
        assert!(store.prune_rollups(i64::MAX).await.unwrap() >= 1);
        assert_eq!(store.counts().await.unwrap().0, 2 * 1440);
}
}

fn new_incident(key: &str, opened_at_ms: i64) -> NewIncident {
    NewIncident {
        dedup_key: key.into(),
        rule: "disk".into(),
        metric: "disk.used_percent".into(),
        agent_id: "a1".into(),
        host: "web-1".into(),
        labels: Labels::from([("mount".to_string(), "/".to_string())]),
        severity: crate::domain::Severity::Critical,
        summary: "Disk / on web-1 at 95%".into(),
        runbook: None,
        value: Some(95.0),
        since_ms: opened_at_ms,
        opened_at_ms,
        ack_due_at_ms: Some(opened_at_ms + 1_000),
        resolve_due_at_ms: Some(opened_at_ms + 5_000),
        parents: Vec::new(),
        parent_hold_ms: 0,
        recurrence: None,
        change_link_after_ms: None,
    }
}

fn resolve_change(key: &str, now_ms: i64) -> IncidentChange {
    IncidentChange::Resolve {
        dedup_key: key.into(),
        reason: "cleared".into(),
        value: Some(10.0),
        now_ms,
    }
}

on_both_backends! {
    async fn one_unresolved_incident_per_key_and_recurrences_link_back(backend: &TestBackend) {
        let store = backend.open().await;
        let applied = store
            .apply_incident_changes(vec![
                IncidentChange::Open(Box::new(new_incident("k", 100))),
                IncidentChange::Open(Box::new(new_incident("k", 200))),
            ])
            .await
            .unwrap();
        assert_eq!(
            applied[0].as_ref().map(|(event, _)| *event),
            Some(crate::domain::IncidentEvent::Opened)
        );
        assert!(
            applied[1].is_none(),
            "a second open for the same key is not a new incident"
        );
        let first = applied[0].clone().unwrap().1;

        let applied = store
            .apply_incident_changes(vec![resolve_change("k", 300)])
            .await
            .unwrap();
        let resolved = applied[0].clone().unwrap().1;
        assert_eq!(
            (resolved.state.as_str(), resolved.resolved_at_ms),
            ("resolved", Some(300))
        );
        assert_eq!(resolved.last_value, Some(10.0));
        // Resolving again finds nothing unresolved.
        assert!(
            store
                .apply_incident_changes(vec![resolve_change("k", 400)])
                .await
                .unwrap()[0]
                .is_none()
        );

        let applied = store
            .apply_incident_changes(vec![IncidentChange::Open(Box::new(new_incident("k", 500)))])
            .await
            .unwrap();
        let second = applied[0].clone().unwrap().1;
        assert_ne!(second.id, first.id);
        assert_eq!(second.previous_id, Some(first.id));
        let timeline = store.incident_timeline(second.id).await.unwrap();
        assert!(
            timeline[0]
                .detail
                .contains(&format!("recurrence of incident {}", first.id)),
            "{timeline:?}"
        );
}
}

on_both_backends! {
    async fn acknowledge_and_resolve_refuse_invalid_transitions(backend: &TestBackend) {
        let store = backend.open().await;
        let applied = store
            .apply_incident_changes(vec![IncidentChange::Open(Box::new(new_incident("k", 100)))])
            .await
            .unwrap();
        let id = applied[0].clone().unwrap().1.id;
        let acked = store
            .acknowledge_incident(id, "alice".into(), Some("on it".into()), 150)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(acked.state, crate::domain::IncidentState::Acknowledged);
        assert_eq!(
            store
                .acknowledge_incident(id, "bob".into(), None, 160)
                .await
                .unwrap(),
            Err(ChangeRefused::AlreadyAcknowledged)
        );
        store
            .resolve_incident(id, "alice".into(), "fixed".into(), None, 200)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .acknowledge_incident(id, "bob".into(), None, 250)
                .await
                .unwrap(),
            Err(ChangeRefused::AlreadyResolved)
        );
        assert_eq!(
            store
                .resolve_incident(id, "bob".into(), "again".into(), None, 250)
                .await
                .unwrap(),
            Err(ChangeRefused::AlreadyResolved)
        );
        assert_eq!(
            store
                .acknowledge_incident(999, "bob".into(), None, 250)
                .await
                .unwrap(),
            Err(ChangeRefused::NotFound)
        );
        let kinds: Vec<String> = store
            .incident_timeline(id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["opened", "acknowledged", "resolved"]);
}
}

on_both_backends! {
    async fn sla_breaches_are_marked_once_when_due_times_pass_unmet(backend: &TestBackend) {
        let store = backend.open().await;
        store
            .apply_incident_changes(vec![IncidentChange::Open(Box::new(new_incident("k", 100)))])
            .await
            .unwrap();
        assert!(
            store.mark_sla_breaches(1_000).await.unwrap().is_empty(),
            "not yet due"
        );
        let breaches: Vec<&str> = store
            .mark_sla_breaches(1_100)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, kind)| kind)
            .collect();
        assert_eq!(breaches, ["ack"]);
        assert!(
            store.mark_sla_breaches(1_200).await.unwrap().is_empty(),
            "marked once"
        );
        let breaches: Vec<&str> = store
            .mark_sla_breaches(5_100)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, kind)| kind)
            .collect();
        assert_eq!(breaches, ["resolve"]);
        let incident = store.unresolved_incidents().await.unwrap().remove(0);
        assert!(incident.ack_breached && incident.resolve_breached);
}
}

fn packages(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(name, version)| (name.to_string(), version.to_string()))
        .collect()
}

fn full_inventory(seq: u64, list: &[(&str, &str)], kernel: &str) -> InventoryUpdate {
    InventoryUpdate {
        agent_id: "a1".into(),
        epoch: 7,
        seq,
        received_ms: 1_000 * seq as i64,
        full: true,
        facts_changed: BTreeMap::from([
            ("hostname".to_string(), "web-1".to_string()),
            ("kernel".to_string(), kernel.to_string()),
        ]),
        facts_removed: vec![],
        disks: Some(vec![]),
        interfaces: Some(vec![]),
        packages_replaced: true,
        packages_upserted: packages(list),
        packages_removed: vec![],
        packages_fingerprint: steward_core::inventory::packages_fingerprint(&packages(list)),
    }
}

on_both_backends! {
    async fn inventory_diffs_patch_the_stored_list_and_record_each_change(backend: &TestBackend) {
        let store = backend.open().await;
        let first = store
            .commit_inventory(full_inventory(
                1,
                &[("bash", "5.1"), ("curl", "7.0")],
                "6.1",
            ))
            .await
            .unwrap();
        assert!(
            matches!(first, InventoryOutcome::Stored(applied) if applied.packages_in_sync && applied.events == 0)
        );
        assert_eq!(
            store.packages_fingerprint("a1").await.unwrap(),
            full_inventory(1, &[("bash", "5.1"), ("curl", "7.0")], "").packages_fingerprint
        );

        let after = [("bash", "5.2"), ("vim", "9.0")];
        let diff = InventoryUpdate {
            seq: 2,
            received_ms: 2_000,
            full: false,
            facts_changed: BTreeMap::from([("kernel".to_string(), "6.2".to_string())]),
            disks: None,
            interfaces: None,
            packages_replaced: false,
            packages_upserted: packages(&[("bash", "5.2"), ("vim", "9.0")]),
            packages_removed: vec!["curl".into()],
            packages_fingerprint: steward_core::inventory::packages_fingerprint(&packages(&after)),
            ..full_inventory(2, &[], "")
        };
        let applied = store.commit_inventory(diff.clone()).await.unwrap();
        assert!(
            matches!(applied, InventoryOutcome::Stored(applied) if applied.packages_in_sync && applied.events == 4)
        );
        assert_eq!(
            store.commit_inventory(diff).await.unwrap(),
            InventoryOutcome::Duplicate
        );
        assert_eq!(store.packages("a1").await.unwrap(), packages(&after));
        let snapshot = store.inventory("a1").await.unwrap().unwrap();
        assert_eq!(snapshot.facts["kernel"], "6.2");
        assert_eq!(
            snapshot.facts["hostname"], "web-1",
            "a diff keeps facts it does not mention"
        );
        assert_eq!(snapshot.package_count, 2);

        let mut events: Vec<(String, String, Option<String>, Option<String>)> = store
            .inventory_events(vec!["a1".to_string()], false, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|event| (event.kind, event.subject, event.before, event.after))
            .collect();
        events.sort();
        let some = |text: &str| Some(text.to_string());
        assert_eq!(
            events,
            [
                ("fact".into(), "kernel".into(), some("6.1"), some("6.2")),
                ("package_installed".into(), "vim".into(), None, some("9.0")),
                ("package_removed".into(), "curl".into(), some("7.0"), None),
                (
                    "package_upgraded".into(),
                    "bash".into(),
                    some("5.1"),
                    some("5.2")
                ),
            ]
        );
}
}

on_both_backends! {
    async fn a_lost_diff_shows_as_a_fingerprint_mismatch(backend: &TestBackend) {
        let store = backend.open().await;
        store
            .commit_inventory(full_inventory(1, &[("bash", "5.1")], "6.1"))
            .await
            .unwrap();
        // The agent believes it also has curl (its diff adding curl was lost).
        let diff = InventoryUpdate {
            seq: 3,
            full: false,
            packages_replaced: false,
            packages_upserted: packages(&[("vim", "9.0")]),
            packages_fingerprint: steward_core::inventory::packages_fingerprint(&packages(&[
                ("bash", "5.1"),
                ("curl", "7.0"),
                ("vim", "9.0"),
            ])),
            facts_changed: BTreeMap::new(),
            ..full_inventory(3, &[], "")
        };
        let applied = store.commit_inventory(diff).await.unwrap();
        assert!(matches!(applied, InventoryOutcome::Stored(applied) if !applied.packages_in_sync));
}
}

/// Rows of `table`, for retention tests.
/// Rows of `table` on either backend (for what no store method shows).
async fn table_rows(backend: &TestBackend, store: &Store, table: &'static str) -> i64 {
    match backend {
        TestBackend::Sqlite(_) => rows(store, table).await,
        TestBackend::Postgres(db) => {
            let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let driver = tokio::spawn(connection);
            let count: i64 = client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get(0);
            drop(client);
            let _ = driver.await;
            count
        }
    }
}

async fn rows(store: &Store, table: &'static str) -> i64 {
    store
        .sqlite()
        .read(move |connection| {
            connection.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
        })
        .await
        .unwrap()
}

/// Runs `sql` (statements without parameters) on either backend, for rows
/// no store method writes directly.
async fn execute_sql(backend: &TestBackend, store: &Store, sql: String) {
    match backend {
        TestBackend::Sqlite(_) => store
            .sqlite()
            .write(move |transaction| transaction.execute_batch(&sql))
            .await
            .unwrap(),
        TestBackend::Postgres(db) => {
            let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let driver = tokio::spawn(connection);
            client.batch_execute(&sql).await.unwrap();
            drop(client);
            let _ = driver.await;
        }
    }
}

on_both_backends! {
    async fn retention_removes_old_records_but_never_an_unnotified_incident_or_an_asset(backend: &TestBackend) {
    const DAY: i64 = 24 * 3600 * 1000;
    let store = backend.open().await;
    let now = 1_000 * DAY;
    // An old resolved incident, a recent resolved one and an old open one.
    store
        .apply_incident_changes(vec![
            IncidentChange::Open(Box::new(new_incident("old", DAY))),
            resolve_change("old", 2 * DAY),
            IncidentChange::Open(Box::new(new_incident("recent", now - DAY))),
            resolve_change("recent", now - DAY),
            IncidentChange::Open(Box::new(new_incident("open", DAY))),
        ])
        .await
        .unwrap();
    store.record_hello(hello()).await.unwrap(); // agent "a1", seen at its hello time
    execute_sql(
        backend,
        &store,
        format!(
            "INSERT INTO inventory_events (agent_id, ts_ms, kind, subject) VALUES ('a1', {DAY}, 'k', 's'), ('a1', {now}, 'k', 's');
             INSERT INTO asset_events (asset_id, ts_ms, source, kind) VALUES ('x', {DAY}, 'agent', 'k'), ('x', {now}, 'agent', 'k');
             INSERT INTO assets (id, record, status, hostname, updated_ms) VALUES ('x', '{{}}', 'active', 'h', {DAY});"
        ),
    )
    .await;
    let policy = RetentionPolicy {
        resolved_incidents: std::time::Duration::from_secs(30 * 24 * 3600),
        notifications: std::time::Duration::from_secs(30 * 24 * 3600),
        inventory_events: std::time::Duration::from_secs(30 * 24 * 3600),
        asset_events: std::time::Duration::from_secs(30 * 24 * 3600),
        silent_agents: std::time::Duration::from_secs(30 * 24 * 3600),
    };

    // Notify has not passed the old incident's journal yet: it stays.
    let report = store.prune_records(policy, now).await.unwrap();
    assert_eq!(report.incidents, 0, "{report:?}");
    assert_eq!(report.inventory_events, 1);
    assert_eq!(report.asset_events, 1);
    assert_eq!(report.agents, ["a1".to_string()], "the hello was long ago");
    assert_eq!(table_rows(backend, &store, "agents").await, 0);
    assert_eq!(
        table_rows(backend, &store, "assets").await,
        1,
        "assets are never pruned"
    );
    assert_eq!(table_rows(backend, &store, "inventory_events").await, 1);
    assert_eq!(table_rows(backend, &store, "asset_events").await, 1);

    // Once notify has passed the journal, the old resolved incident goes
    // with its timeline and journal; the recent and the open one stay.
    let journal = store.unnotified_journal(100).await.unwrap();
    let position = journal.last().unwrap().position;
    store
        .enqueue_notifications(Vec::new(), position, now)
        .await
        .unwrap();
    let report = store.prune_records(policy, now).await.unwrap();
    assert_eq!(report.incidents, 1, "{report:?}");
    let kept: Vec<String> = store
        .incidents(IncidentFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|incident| incident.dedup_key)
        .collect();
    assert_eq!(kept.len(), 2);
    assert!(!kept.contains(&"old".to_string()), "{kept:?}");
    assert!(store.prune_records(policy, now).await.unwrap().is_empty());
}
}

/// A backlog of every kind of record retention handles, more than one
/// pruning step of each (PostgreSQL only), half of it due to go.
const PRUNE_BACKLOG: &str = "
    INSERT INTO incidents (dedup_key, rule, metric, agent_id, host, labels, severity, state, summary,
                           since_ms, opened_at_ms, resolved_at_ms)
    SELECT 'k' || n, 'r', 'm', 'a' || n, 'h', '{}', 'critical',
           CASE WHEN n % 5 = 0 THEN 'open' ELSE 'resolved' END, 's', 1, 1,
           CASE WHEN n % 5 = 0 THEN NULL WHEN n % 3 = 0 THEN 99000000000 ELSE 1 END
    FROM generate_series(1, 1500) AS n;
    -- One journal entry each, unrouted for every seventh.
    INSERT INTO incident_events (incident_id, kind, ts_ms, routed_ms)
    SELECT id, 'opened', 1, CASE WHEN id % 7 = 0 THEN NULL ELSE 1 END FROM incidents;
    INSERT INTO incident_timeline (incident_id, ts_ms, kind, actor, detail)
    SELECT id, 1, 'opened', 'rule', '' FROM incidents;
    -- Two old notifications each: delivered (with an attempt) and, for every
    -- eleventh incident, one still pending.
    INSERT INTO outbox (idempotency_key, incident_id, event, channel, state, next_attempt_ms, created_ms)
    SELECT 'd' || id, id, 'opened', 'c', 'delivered', 1, 1 FROM incidents;
    INSERT INTO outbox (idempotency_key, incident_id, event, channel, state, next_attempt_ms, created_ms)
    SELECT 'p' || id, id, 'resolved', 'c', 'pending', 1, 1 FROM incidents WHERE id % 11 = 0;
    INSERT INTO outbox_attempts (outbox_id, ts_ms, status, collector)
    SELECT id, 1, 200, 'c' FROM outbox WHERE state = 'delivered';
    INSERT INTO inventory_events (agent_id, ts_ms, kind, subject)
    SELECT 'a' || n, CASE WHEN n % 2 = 0 THEN 1 ELSE 99000000000 END, 'k', 's'
    FROM generate_series(1, 1300) AS n;
    INSERT INTO asset_events (asset_id, ts_ms, source, kind)
    SELECT 'x' || n, CASE WHEN n % 2 = 0 THEN 1 ELSE 99000000000 END, 'agent', 'k'
    FROM generate_series(1, 1300) AS n;
    -- Agents, silent for the even ones, each with inventory, packages and an asset.
    INSERT INTO agents (id, hostname, version, first_seen_ms, last_seen_ms)
    SELECT 'a' || n, 'h', 'v', 1, CASE WHEN n % 2 = 0 THEN 1 ELSE 99000000000 END
    FROM generate_series(1, 1300) AS n;
    INSERT INTO inventory (agent_id, updated_ms) SELECT id, 1 FROM agents;
    INSERT INTO packages (agent_id, name, version)
    SELECT id, 'p' || p, '1' FROM agents, generate_series(1, 3) AS p;
    INSERT INTO assets (id, record, status, hostname, updated_ms)
    SELECT 'x' || id, '{}', 'active', 'h', 1 FROM agents;
    INSERT INTO asset_agents (agent_id, asset_id, confidence, reasons, matched_ms)
    SELECT id, 'x' || id, 1.0, '[]', 1 FROM agents;
";

const PRUNED_TABLES: [&str; 12] = [
    "incidents",
    "incident_events",
    "incident_timeline",
    "outbox",
    "outbox_attempts",
    "inventory_events",
    "asset_events",
    "agents",
    "inventory",
    "packages",
    "assets",
    "asset_agents",
];

/// The backlog pruned by the given stores at once; returns the sum of their
/// reports (agents sorted) and the rows left per table.
async fn prune_backlog(collectors: &[&str]) -> Option<(PruneReport, Vec<(&'static str, i64)>)> {
    const DAY: i64 = 24 * 3600 * 1000;
    let db = TestDb::create().await?;
    let backend = TestBackend::Postgres(db);
    let TestBackend::Postgres(db) = &backend else {
        unreachable!()
    };
    let mut stores = Vec::new();
    for collector in collectors {
        stores.push(
            Store::open_postgres(&db.settings(), collector)
                .await
                .unwrap(),
        );
    }
    execute_sql(&backend, &stores[0], PRUNE_BACKLOG.to_string()).await;
    let policy = RetentionPolicy {
        resolved_incidents: std::time::Duration::from_secs(30 * 24 * 3600),
        notifications: std::time::Duration::from_secs(30 * 24 * 3600),
        inventory_events: std::time::Duration::from_secs(30 * 24 * 3600),
        asset_events: std::time::Duration::from_secs(30 * 24 * 3600),
        silent_agents: std::time::Duration::from_secs(30 * 24 * 3600),
    };
    let now = 1_000 * DAY;
    // Spawned first, awaited after: the runs overlap.
    let runs: Vec<_> = stores
        .into_iter()
        .map(|store| {
            tokio::spawn(async move {
                let report = store.prune_records(policy, now).await;
                (report, store)
            })
        })
        .collect();
    let mut total = PruneReport::default();
    let mut last = None;
    for run in runs {
        let (report, store) = run.await.unwrap();
        total.add(report.expect("no error (nor deadlock) while pruning together"));
        last = Some(store);
    }
    total.agents.sort();
    let store = last.unwrap();
    let mut left = Vec::new();
    for table in PRUNED_TABLES {
        left.push((table, table_rows(&backend, &store, table).await));
    }
    Some((total, left))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_pruning_at_once_remove_what_one_would() {
    let Some((alone, left_alone)) = prune_backlog(&["collector-a"]).await else {
        return;
    };
    let Some((together, left_together)) = prune_backlog(&["collector-a", "collector-b"]).await
    else {
        return;
    };
    // What a notification counts as depends on timing, even in one run: a
    // finished notification of an old incident counts among `notifications`
    // if the notification phase takes it before the incident's own phase
    // removes it with the incident. Every other count, and what is left, is exact.
    let without_notifications = |report: &PruneReport| PruneReport {
        notifications: 0,
        ..report.clone()
    };
    assert_eq!(
        without_notifications(&together),
        without_notifications(&alone)
    );
    assert_eq!(left_together, left_alone);
    // And one run removed what the rules say (1500 incidents: 300 open, 400
    // resolved recently, 800 old of which those with an unrouted entry or a
    // pending notification stay).
    assert_eq!(alone.agents.len(), 650);
    assert_eq!((alone.inventory_events, alone.asset_events), (650, 650));
    let left = |table: &str| {
        left_alone
            .iter()
            .find(|(name, _)| *name == table)
            .unwrap()
            .1
    };
    assert_eq!(left("agents"), 650);
    assert_eq!(left("inventory"), 650);
    assert_eq!(left("packages"), 3 * 650);
    assert_eq!((left("assets"), left("asset_agents")), (1300, 1300));
    assert_eq!(left("incidents"), 1500 - alone.incidents as i64);
    assert!(alone.incidents > 500, "{alone:?}");
}

/// The lock order between a pruning collector's incident phase and another's
/// notification phase (PostgreSQL only): the other holds a finished
/// notification of an old incident and removes its attempts while this one
/// prunes the incident. Taking attempts before the notification would
/// deadlock here; the incident phase waits for the notification instead.
#[tokio::test]
async fn pruning_an_incident_waits_for_a_notification_another_collector_prunes() {
    const DAY: i64 = 24 * 3600 * 1000;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = Store::open_postgres(&db.settings(), "collector-a")
        .await
        .unwrap();
    let (mut other, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    other
        .batch_execute(
            "INSERT INTO incidents (dedup_key, rule, metric, agent_id, host, labels, severity, state, summary,
                                    since_ms, opened_at_ms, resolved_at_ms)
             VALUES ('old', 'r', 'm', 'a1', 'h', '{}', 'critical', 'resolved', 's', 1, 1, 1);
             INSERT INTO incident_events (incident_id, kind, ts_ms, routed_ms)
             SELECT id, 'opened', 1, 1 FROM incidents;
             INSERT INTO outbox (idempotency_key, incident_id, event, channel, state, next_attempt_ms, created_ms)
             SELECT 'd', id, 'opened', 'c', 'delivered', 1, 1 FROM incidents;
             INSERT INTO outbox_attempts (outbox_id, ts_ms, status, collector)
             SELECT id, 1, 200, 'c' FROM outbox;",
        )
        .await
        .unwrap();
    let other_step = other.transaction().await.unwrap();
    other_step
        .execute("SELECT id FROM outbox FOR UPDATE", &[])
        .await
        .unwrap();
    let policy = RetentionPolicy {
        resolved_incidents: std::time::Duration::from_secs(30 * 24 * 3600),
        notifications: std::time::Duration::from_secs(30 * 24 * 3600),
        ..RetentionPolicy::default()
    };
    let pruning = tokio::spawn(async move { store.prune_records(policy, 1_000 * DAY).await });
    // Until the pruning collector waits on a lock (the notification's row).
    let (watcher, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query LIKE '%outbox%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pruning collector never waited on the notification's row lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    other_step
        .batch_execute("DELETE FROM outbox_attempts; DELETE FROM outbox;")
        .await
        .expect("the other collector's step is not a deadlock victim");
    other_step.commit().await.unwrap();
    let report = pruning.await.unwrap().unwrap();
    assert_eq!(report.incidents, 1, "{report:?}");
    for table in ["incidents", "incident_events", "outbox", "outbox_attempts"] {
        let left: i64 = watcher
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "{table}");
    }
}

fn open_change(new: NewIncident) -> IncidentChange {
    IncidentChange::Open(Box::new(new))
}

on_both_backends! {
    async fn a_child_opens_suppressed_under_an_open_parent_and_is_released_when_it_resolves(backend: &TestBackend) {
        let store = backend.open().await;
        let parent = NewIncident {
            rule: "gw-down".into(),
            labels: Labels::from([("target".to_string(), "gw".to_string())]),
            ..new_incident("gw", 1_000)
        };
        let child = |key: &str, at: i64| NewIncident {
            agent_id: format!("agent-{key}"),
            parents: vec![crate::domain::ParentCheck {
                rule: "gw-down".into(),
                labels: Labels::from([("target".to_string(), "gw".to_string())]),
            }],
            ..new_incident(key, at)
        };
        // No parent open yet: a child opens normally.
        let early = store
            .apply_incident_changes(vec![open_change(child("early", 500))])
            .await
            .unwrap();
        assert!(!early[0].as_ref().unwrap().1.suppressed);
        let applied = store
            .apply_incident_changes(vec![
                open_change(parent),
                open_change(child("c1", 1_100)),
                open_change(child("c2", 1_100)),
            ])
            .await
            .unwrap();
        let parent_id = applied[0].as_ref().unwrap().1.id;
        for opened in &applied[1..] {
            let (_, record) = opened.as_ref().unwrap();
            assert!(record.suppressed);
            assert_eq!(record.caused_by, Some(parent_id));
        }
        // c1 clears while suppressed: it stays suppressed (never paged).
        store
            .apply_incident_changes(vec![resolve_change("c1", 1_200)])
            .await
            .unwrap();
        store
            .apply_incident_changes(vec![resolve_change("gw", 1_300)])
            .await
            .unwrap();
        let c1 = store
            .incident(applied[1].as_ref().unwrap().1.id)
            .await
            .unwrap()
            .unwrap();
        let c2 = store
            .incident(applied[2].as_ref().unwrap().1.id)
            .await
            .unwrap()
            .unwrap();
        assert!(c1.suppressed, "resolved while suppressed: never paged");
        assert!(!c2.suppressed, "released");
        let journal: Vec<(i64, crate::domain::IncidentEvent)> = store
            .unnotified_journal(100)
            .await
            .unwrap()
            .into_iter()
            .map(|entry| (entry.incident_id, entry.event))
            .collect();
        assert!(journal.contains(&(c2.id, crate::domain::IncidentEvent::Released)));
        assert!(!journal.contains(&(c1.id, crate::domain::IncidentEvent::Released)));
        let timeline = store.incident_timeline(c2.id).await.unwrap();
        assert!(timeline.iter().any(|entry| entry.kind == "suppressed"
            && entry.detail.contains(&format!("caused by #{parent_id}"))));
        assert!(timeline.iter().any(|entry| entry.kind == "released"));
}
}

on_both_backends! {
    async fn a_child_waits_its_hold_for_the_parent_then_is_adopted_or_pages(backend: &TestBackend) {
        let store = backend.open().await;
        let gw = Labels::from([("target".to_string(), "gw".to_string())]);
        let child = |key: &str, at: i64| NewIncident {
            agent_id: format!("agent-{key}"),
            parents: vec![crate::domain::ParentCheck {
                rule: "gw-down".into(),
                labels: gw.clone(),
            }],
            parent_hold_ms: 30_000,
            ..new_incident(key, at)
        };
        // Children breach first: they wait, suppressed, for up to 30 s.
        let applied = store
            .apply_incident_changes(vec![
                open_change(child("c1", 1_000)),
                open_change(child("c2", 2_000)),
            ])
            .await
            .unwrap();
        let (c1, c2) = (
            applied[0].as_ref().unwrap().1.clone(),
            applied[1].as_ref().unwrap().1.clone(),
        );
        assert!(c1.suppressed && c1.caused_by.is_none());
        assert_eq!(c1.held_until_ms, Some(31_000));
        // Nothing runs out before the hold does.
        assert!(store.expire_parent_holds(30_999).await.unwrap().is_empty());
        // c2 clears; then the parent opens: c1 is adopted and never pages.
        store
            .apply_incident_changes(vec![resolve_change("c2", 3_000)])
            .await
            .unwrap();
        let parent = store
            .apply_incident_changes(vec![open_change(NewIncident {
                rule: "gw-down".into(),
                labels: gw.clone(),
                // The gateway's own incident depends on itself by tag: no wait.
                parents: vec![crate::domain::ParentCheck {
                    rule: "gw-down".into(),
                    labels: gw.clone(),
                }],
                parent_hold_ms: 30_000,
                ..new_incident("gw", 5_000)
            })])
            .await
            .unwrap()[0]
            .as_ref()
            .unwrap()
            .1
            .clone();
        assert!(!parent.suppressed && parent.held_until_ms.is_none());
        let c1 = store.incident(c1.id).await.unwrap().unwrap();
        assert_eq!(c1.caused_by, Some(parent.id));
        assert!(c1.suppressed && c1.held_until_ms.is_none());
        assert!(store.expire_parent_holds(40_000).await.unwrap().is_empty());
        let c2 = store.incident(c2.id).await.unwrap().unwrap();
        assert!(
            c2.suppressed && c2.held_until_ms.is_none(),
            "resolved while waiting: never paged"
        );

        // A child whose parent never opens pages when its hold runs out.
        let c3 = store
            .apply_incident_changes(vec![open_change(NewIncident {
                parents: vec![crate::domain::ParentCheck {
                    rule: "pdu-down".into(),
                    labels: Labels::new(),
                }],
                ..child("c3", 50_000)
            })])
            .await
            .unwrap()[0]
            .as_ref()
            .unwrap()
            .1
            .clone();
        assert!(c3.suppressed);
        let released = store.expire_parent_holds(80_000).await.unwrap();
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].id, c3.id);
        assert!(!released[0].suppressed && released[0].held_until_ms.is_none());
        let journal: Vec<(i64, crate::domain::IncidentEvent)> = store
            .unnotified_journal(100)
            .await
            .unwrap()
            .into_iter()
            .map(|entry| (entry.incident_id, entry.event))
            .collect();
        assert!(journal.contains(&(c3.id, crate::domain::IncidentEvent::Released)));
        assert!(!journal.contains(&(c1.id, crate::domain::IncidentEvent::Released)));
        let timeline = store.incident_timeline(c3.id).await.unwrap();
        assert!(
            timeline.iter().any(|entry| entry.detail
                == "Paged after waiting 30s for parent pdu-down, which did not open."),
            "{timeline:?}"
        );
        let timeline = store.incident_timeline(c1.id).await.unwrap();
        assert!(timeline.iter().any(|entry| {
            entry.kind == "waiting"
                && entry
                    .detail
                    .contains("Waiting up to 30s for parent gw-down{target=\"gw\"}")
        }));
}
}

on_both_backends! {
    async fn the_nth_recurrence_within_the_window_opens_one_problem_per_scope(backend: &TestBackend) {
        let store = backend.open().await;
        let per_agent = crate::domain::Recurrence {
            count: 3,
            within_ms: 10_000,
            across_agents: false,
        };
        let open_at = |agent: &str, at: i64| NewIncident {
            agent_id: agent.into(),
            dedup_key: format!("disk|{agent}"),
            recurrence: Some(per_agent),
            ..new_incident("unused", at)
        };
        // a1 recurs 3 times, but the first is outside the window: no problem yet.
        for at in [0, 20_000, 25_000] {
            store
                .apply_incident_changes(vec![open_change(open_at("a1", at))])
                .await
                .unwrap();
            store
                .apply_incident_changes(vec![resolve_change("disk|a1", at + 1)])
                .await
                .unwrap();
        }
        assert!(
            store
                .problems(ProblemFilter {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap()
                .is_empty()
        );
        // Another agent's incidents do not count towards a1's problem.
        store
            .apply_incident_changes(vec![open_change(open_at("a2", 26_000))])
            .await
            .unwrap();
        store
            .apply_incident_changes(vec![open_change(open_at("a1", 27_000))])
            .await
            .unwrap();
        let problems = store
            .problems(ProblemFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(problems.len(), 1);
        let (problem, incident_count) = &problems[0];
        assert_eq!(problem.agent_id.as_deref(), Some("a1"));
        let linked = store.problem_incidents(problem.id).await.unwrap();
        assert_eq!(linked.len(), 3, "the three within the window");
        assert_eq!(*incident_count, 3, "the list counts them too");
        // Known error needs a workaround; forward only.
        let refused = store
            .update_problem(
                problem.id,
                ProblemUpdate {
                    state: Some(crate::domain::ProblemState::KnownError),
                    by: "ops".into(),
                    now_ms: 28_000,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(refused, Err(ProblemRefused::NoWorkaround));
}
}
