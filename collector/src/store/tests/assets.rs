//! Inventory, assets (CMDB), problems and changes on both backends, and what
//! several collectors sharing one PostgreSQL database must do once.

use super::*;
use crate::domain::{ChangeOutcome, ChangeRisk, ProblemState};

fn asset_row(id: &str, hostname: &str, updated_ms: i64) -> AssetRow {
    AssetRow {
        id: id.into(),
        record: format!(r#"{{"id":"{id}","tags":[]}}"#),
        status: "active".into(),
        hostname: hostname.into(),
        updated_ms,
    }
}

fn asset_event(ts_ms: i64, field: &str) -> AssetEventRow {
    AssetEventRow {
        ts_ms,
        source: "agent".into(),
        kind: "field".into(),
        field: Some(field.into()),
        before: None,
        after: Some(format!("{field}-value")),
    }
}

fn link(agent_id: &str, asset_id: &str, matched_ms: i64) -> AssetLink {
    AssetLink {
        agent_id: agent_id.into(),
        asset_id: asset_id.into(),
        confidence: 0.75,
        reasons: "dmi".into(),
        matched_ms,
    }
}

fn create(id: &str, hostname: &str, agent: &str, events: Vec<AssetEventRow>) -> AssetWrite {
    AssetWrite {
        row: asset_row(id, hostname, 1_000),
        events,
        links: vec![link(agent, id, 1_000)],
        removed: Vec::new(),
    }
}

on_both_backends! {
    async fn assets_are_written_with_links_and_history_paged_newest_first(backend: &TestBackend) {
        let store = backend.open().await;
        assert!(store.assets().await.unwrap().is_empty());
        assert_eq!(store.asset("x").await.unwrap(), None);
        assert_eq!(store.asset_link("a1").await.unwrap(), None);
        store
            .write_assets(vec![
                create("asset-b", "web-2", "a2", vec![asset_event(1, "created")]),
                create(
                    "asset-a",
                    "Web-1",
                    "a1",
                    (1..=5).map(|n| asset_event(n, &format!("f{n}"))).collect(),
                ),
            ])
            .await
            .unwrap();
        let hostnames: Vec<String> = store
            .assets()
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.hostname)
            .collect();
        assert_eq!(hostnames, ["Web-1", "web-2"], "by hostname, in byte order");
        assert_eq!(
            store.asset("asset-a").await.unwrap(),
            Some(asset_row("asset-a", "Web-1", 1_000))
        );
        assert_eq!(
            store.asset_link("a1").await.unwrap(),
            Some(link("a1", "asset-a", 1_000))
        );
        assert_eq!(store.asset_links().await.unwrap().len(), 2);

        let page = store.asset_events("asset-a", None, 2).await.unwrap();
        let fields = |page: &[(i64, AssetEventRow)]| -> Vec<String> {
            page.iter().map(|(_, event)| event.field.clone().unwrap()).collect()
        };
        assert_eq!(fields(&page), ["f5", "f4"]);
        let next = store
            .asset_events("asset-a", Some(page[1].0), 10)
            .await
            .unwrap();
        assert_eq!(fields(&next), ["f3", "f2", "f1"]);
        assert_eq!(next[2].1, asset_event(1, "f1"));

        // An update rewrites the row and adds history; a merge moves the
        // absorbed asset's history and agents to the survivor.
        store
            .write_assets(vec![AssetWrite {
                row: asset_row("asset-a", "web-1", 2_000),
                events: vec![asset_event(6, "merged")],
                links: vec![link("a1", "asset-a", 2_000), link("a2", "asset-a", 2_000)],
                removed: vec!["asset-b".into()],
            }])
            .await
            .unwrap();
        assert_eq!(store.asset("asset-b").await.unwrap(), None);
        assert_eq!(store.assets().await.unwrap(), [asset_row("asset-a", "web-1", 2_000)]);
        assert_eq!(
            store.asset_link("a2").await.unwrap().map(|link| link.asset_id),
            Some("asset-a".to_string())
        );
        let all = store.asset_events("asset-a", None, 100).await.unwrap();
        assert_eq!(all.len(), 7, "five, the absorbed one's and the merge's");
        assert!(store.asset_events("asset-b", None, 100).await.unwrap().is_empty());
}
}

on_both_backends! {
    async fn a_split_moves_an_agent_to_the_new_asset(backend: &TestBackend) {
        let store = backend.open().await;
        let mut both = create("asset-a", "web-1", "a1", Vec::new());
        both.links.push(link("a2", "asset-a", 1_000));
        store.write_assets(vec![both]).await.unwrap();
        store
            .write_assets(vec![
                AssetWrite {
                    row: asset_row("asset-a", "web-1", 2_000),
                    events: vec![asset_event(2, "split")],
                    links: Vec::new(),
                    removed: Vec::new(),
                },
                create("asset-c", "web-2", "a2", vec![asset_event(2, "split_off")]),
            ])
            .await
            .unwrap();
        assert_eq!(
            store.asset_link("a2").await.unwrap().map(|link| link.asset_id),
            Some("asset-c".to_string())
        );
        assert_eq!(store.assets().await.unwrap().len(), 2);
}
}

on_both_backends! {
    async fn inventory_events_page_newest_first_and_filter_packages(backend: &TestBackend) {
        let store = backend.open().await;
        assert_eq!(store.inventory("a1").await.unwrap(), None);
        assert_eq!(store.packages_fingerprint("a1").await.unwrap(), 0);
        assert!(store.packages("a1").await.unwrap().is_empty());
        store
            .commit_inventory(full_inventory(1, &[("bash", "5.1")], "6.1"))
            .await
            .unwrap();
        let replaced = [("bash", "5.2"), ("curl", "8.0")];
        let applied = store
            .commit_inventory(full_inventory(2, &replaced, "6.2"))
            .await
            .unwrap();
        assert!(matches!(
            applied,
            InventoryOutcome::Stored(applied) if applied.packages_in_sync && applied.events == 3
        ));
        assert_eq!(store.packages("a1").await.unwrap(), packages(&replaced));
        let all = store
            .inventory_events(vec!["a1".into(), "a9".into()], false, None, 10)
            .await
            .unwrap();
        assert_eq!(all.len(), 3);
        assert!(all.windows(2).all(|pair| pair[0].id > pair[1].id), "newest first");
        let first = store
            .inventory_events(vec!["a1".into()], true, None, 1)
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        let rest = store
            .inventory_events(vec!["a1".into()], true, Some(first[0].id), 10)
            .await
            .unwrap();
        let mut kinds: Vec<String> = first.iter().chain(&rest).map(|e| e.kind.clone()).collect();
        kinds.sort();
        assert_eq!(kinds, ["package_installed", "package_upgraded"]);
        assert!(
            store.inventory_events(Vec::new(), false, None, 10).await.unwrap().is_empty()
        );
        let snapshot = store.inventory("a1").await.unwrap().unwrap();
        assert_eq!(snapshot.updated_ms, 2_000);
        assert_eq!(snapshot.package_count, 2);
        assert_eq!(
            snapshot.packages_fingerprint,
            steward_core::inventory::packages_fingerprint(&packages(&replaced))
        );
}
}

fn change(title: &str, starts_ms: i64, ends_ms: i64) -> ChangeRecord {
    ChangeRecord {
        id: 0,
        title: title.into(),
        description: Some("patch the kernel".into()),
        starts_ms,
        ends_ms,
        asset_ids: vec!["asset-a".into()],
        tags: vec!["env:prod".into()],
        risk: ChangeRisk::High,
        implementer: None,
        outcome: None,
        window_id: None,
        created_by: "ops".into(),
        created_ms: 500,
        updated_ms: 500,
    }
}

on_both_backends! {
    async fn changes_are_created_with_a_window_closed_by_an_outcome_and_listed(backend: &TestBackend) {
        let store = backend.open().await;
        let first = store.create_change(change("kernel", 1_000, 10_000)).await.unwrap();
        assert!(first.window_id.is_some(), "the change's maintenance window");
        assert_eq!(
            first,
            ChangeRecord {
                id: first.id,
                window_id: first.window_id,
                ..change("kernel", 1_000, 10_000)
            }
        );
        let second = store.create_change(change("db", 5_000, 6_000)).await.unwrap();
        let third = store.create_change(change("dns", 20_000, 30_000)).await.unwrap();
        assert_eq!(store.change(second.id).await.unwrap(), Some(second.clone()));
        assert_eq!(store.change(9_999).await.unwrap(), None);

        // An outcome before the planned end closes the change (and its window) now.
        let closed = store
            .update_change(
                first.id,
                ChangeUpdate {
                    implementer: Some("alice".into()),
                    outcome: Some(ChangeOutcome::Failed),
                    now_ms: 4_000,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(closed.ends_ms, 4_000);
        assert_eq!(closed.starts_ms, 1_000);
        assert_eq!(closed.outcome, Some(ChangeOutcome::Failed));
        assert_eq!(closed.implementer.as_deref(), Some("alice"));
        assert_eq!(closed.description.as_deref(), Some("patch the kernel"));
        assert_eq!(closed.updated_ms, 4_000);
        // A change that never started ends when its outcome is recorded.
        let early = store
            .update_change(
                third.id,
                ChangeUpdate {
                    title: Some("dns (cancelled)".into()),
                    outcome: Some(ChangeOutcome::RolledBack),
                    now_ms: 15_000,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!((early.starts_ms, early.ends_ms), (15_000, 15_000));
        assert_eq!(early.title, "dns (cancelled)");
        assert_eq!(
            store.update_change(9_999, ChangeUpdate::default()).await.unwrap(),
            None
        );

        let page: Vec<(i64, i64)> = store
            .changes(None, 2)
            .await
            .unwrap()
            .into_iter()
            .map(|(change, incidents)| (change.id, incidents))
            .collect();
        assert_eq!(page, [(third.id, 0), (second.id, 0)]);
        let rest = store.changes(Some(second.id), 2).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, closed);

        let started: Vec<i64> = store
            .changes_started_between(1_000, 15_000)
            .await
            .unwrap()
            .into_iter()
            .map(|change| change.id)
            .collect();
        assert_eq!(started, [first.id, second.id, third.id], "bounds included, oldest first");
        assert!(store.changes_started_between(16_000, 40_000).await.unwrap().is_empty());
        assert!(store.change_incidents(first.id).await.unwrap().is_empty());
}
}

/// Opens a problem P of rule `disk` on a1 with three incidents, and the
/// change C; returns (P, C). SQLite opens it as the incidents code does;
/// PostgreSQL gets the rows written directly (its incidents side is wired
/// separately), which this file's other tests do not need.
async fn seed_problem(backend: &TestBackend, store: &Store) -> (i64, i64) {
    let change = store
        .create_change(change("fix", 100, 200))
        .await
        .unwrap()
        .id;
    match backend {
        TestBackend::Sqlite(_) => {
            let recurrence = crate::domain::Recurrence {
                count: 3,
                within_ms: 10_000,
                across_agents: false,
            };
            for at in [1_000, 2_000, 3_000] {
                store
                    .apply_incident_changes(vec![open_change(NewIncident {
                        recurrence: Some(recurrence),
                        ..new_incident("disk|a1", at)
                    })])
                    .await
                    .unwrap();
                store
                    .apply_incident_changes(vec![resolve_change("disk|a1", at + 1)])
                    .await
                    .unwrap();
            }
        }
        TestBackend::Postgres(db) => {
            let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let driver = tokio::spawn(connection);
            client
                .batch_execute(
                    "INSERT INTO problems (rule, agent_id, host, title, state, opened_ms, updated_ms, updated_by)
                     VALUES ('disk', 'a1', 'web-1', 'Recurring disk on web-1 (3 incidents)', 'open',
                             3000, 3000, 'problems');
                     INSERT INTO incidents (dedup_key, rule, metric, agent_id, host, labels, severity,
                             state, summary, since_ms, opened_at_ms, problem_id)
                     SELECT 'disk|a1', 'disk', 'disk.used_percent', 'a1', 'web-1', '{}', 'critical',
                             'resolved', 'full', at, at, (SELECT id FROM problems)
                     FROM unnest(ARRAY[1000, 2000, 3000]::BIGINT[]) AS at;",
                )
                .await
                .unwrap();
            drop(client);
            let _ = driver.await;
        }
    }
    let problems = store
        .problems(ProblemFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(problems.len(), 1);
    (problems[0].0.id, change)
}

on_both_backends! {
    async fn problems_are_listed_with_their_incidents_and_move_forward_only(backend: &TestBackend) {
        let store = backend.open().await;
        assert_eq!(store.problem(1).await.unwrap(), None);
        assert_eq!(
            store.update_problem(1, ProblemUpdate::default()).await.unwrap(),
            Err(ProblemRefused::NotFound)
        );
        let (id, change) = seed_problem(backend, &store).await;
        let problem = store.problem(id).await.unwrap().unwrap();
        assert_eq!(problem.state, ProblemState::Open);
        assert_eq!(problem.title, "Recurring disk on web-1 (3 incidents)");
        assert_eq!(store.problem_incidents(id).await.unwrap().len(), 3);
        let listed = store
            .problems(ProblemFilter {
                state: Some(ProblemState::Open),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed, [(problem.clone(), 3)]);
        let known_errors = ProblemFilter {
            state: Some(ProblemState::KnownError),
            limit: 10,
            ..Default::default()
        };
        assert!(store.problems(known_errors.clone()).await.unwrap().is_empty());
        assert!(
            store
                .problems(ProblemFilter { before_id: Some(id), limit: 10, ..Default::default() })
                .await
                .unwrap()
                .is_empty()
        );

        let update = |state: Option<ProblemState>, now_ms: i64| ProblemUpdate {
            state,
            by: "ops".into(),
            now_ms,
            ..Default::default()
        };
        assert_eq!(
            store.update_problem(id, update(Some(ProblemState::KnownError), 4_000)).await.unwrap(),
            Err(ProblemRefused::NoWorkaround)
        );
        assert_eq!(
            store
                .update_problem(id, ProblemUpdate { change_id: Some(change + 100), ..update(None, 4_000) })
                .await
                .unwrap(),
            Err(ProblemRefused::UnknownChange)
        );
        let known = store
            .update_problem(
                id,
                ProblemUpdate {
                    workaround: Some("clear /tmp".into()),
                    root_cause: Some("log rotation".into()),
                    change_id: Some(change),
                    ..update(Some(ProblemState::KnownError), 5_000)
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(known.state, ProblemState::KnownError);
        assert_eq!(known.workaround.as_deref(), Some("clear /tmp"));
        assert_eq!(known.change_id, Some(change));
        assert_eq!(known.updated_by.as_deref(), Some("ops"));
        assert_eq!(known.resolved_ms, None);
        assert_eq!(store.problems(known_errors).await.unwrap().len(), 1);
        let resolved = store
            .update_problem(id, update(Some(ProblemState::Resolved), 6_000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resolved.resolved_ms, Some(6_000));
        assert_eq!(resolved.root_cause.as_deref(), Some("log rotation"));
        assert_eq!(
            store.update_problem(id, update(Some(ProblemState::Open), 7_000)).await.unwrap(),
            Err(ProblemRefused::Transition(ProblemState::Resolved, ProblemState::Open))
        );
        // Editing the text of a resolved problem keeps when it was resolved.
        let edited = store
            .update_problem(id, ProblemUpdate { title: Some("Disk fills".into()), ..update(None, 8_000) })
            .await
            .unwrap()
            .unwrap();
        assert_eq!((edited.title.as_str(), edited.resolved_ms), ("Disk fills", Some(6_000)));
}
}

/// Two collectors on one database, `None` (skip) without a PostgreSQL server.
async fn two_collectors() -> Option<(TestDb, Arc<Store>, Arc<Store>)> {
    let db = TestDb::create().await?;
    let a = Store::open_postgres(&db.settings(), "collector-a")
        .await
        .unwrap();
    let b = Store::open_postgres(&db.settings(), "collector-b")
        .await
        .unwrap();
    Some((db, Arc::new(a), Arc::new(b)))
}

#[tokio::test]
async fn one_inventory_update_committed_through_two_collectors_at_once_is_applied_once() {
    let Some((_db, a, b)) = two_collectors().await else {
        return;
    };
    a.commit_inventory(full_inventory(1, &[("bash", "5.1")], "6.1"))
        .await
        .unwrap();
    for round in 0..10u64 {
        let update = InventoryUpdate {
            full: false,
            packages_replaced: false,
            packages_upserted: packages(&[("pkg", &round.to_string())]),
            facts_changed: BTreeMap::from([("kernel".to_string(), format!("7.{round}"))]),
            ..full_inventory(2 + round, &[], "")
        };
        let (from_a, from_b) = tokio::join!(
            {
                let (a, update) = (Arc::clone(&a), update.clone());
                tokio::spawn(async move { a.commit_inventory(update).await.unwrap() })
            },
            {
                let (b, update) = (Arc::clone(&b), update.clone());
                tokio::spawn(async move { b.commit_inventory(update).await.unwrap() })
            }
        );
        let outcomes = [from_a.unwrap(), from_b.unwrap()];
        let stored = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, InventoryOutcome::Stored(_)))
            .count();
        assert_eq!(stored, 1, "round {round}: {outcomes:?}");
        assert!(outcomes.contains(&InventoryOutcome::Duplicate));
        // A resend after a failover reaches the other collector: still a duplicate.
        assert_eq!(
            b.commit_inventory(update).await.unwrap(),
            InventoryOutcome::Duplicate
        );
    }
    let events = a
        .inventory_events(vec!["a1".into()], false, None, 100)
        .await
        .unwrap();
    // Each round: the kernel fact and pkg installed (round 0) or upgraded.
    assert_eq!(events.len(), 20, "{events:?}");
    assert_eq!(b.packages("a1").await.unwrap()["pkg"], "9");
}

#[tokio::test]
async fn two_collectors_creating_an_asset_for_one_new_agent_leave_one() {
    let Some((_db, a, b)) = two_collectors().await else {
        return;
    };
    for round in 0..5 {
        let agent = format!("agent-{round}");
        let (from_a, from_b) = tokio::join!(
            {
                let (a, write) = (
                    Arc::clone(&a),
                    create(
                        &format!("a-{round}"),
                        "web",
                        &agent,
                        vec![asset_event(1, "created")],
                    ),
                );
                tokio::spawn(async move { a.write_assets(vec![write]).await })
            },
            {
                let (b, write) = (
                    Arc::clone(&b),
                    create(
                        &format!("b-{round}"),
                        "web",
                        &agent,
                        vec![asset_event(1, "created")],
                    ),
                );
                tokio::spawn(async move { b.write_assets(vec![write]).await })
            }
        );
        let results = [from_a.unwrap(), from_b.unwrap()];
        assert_eq!(
            results.iter().filter(|result| result.is_ok()).count(),
            1,
            "round {round}: {results:?}"
        );
        assert!(results.iter().any(|result| matches!(
            result,
            Err(StoreError::Postgres(postgres::PgError::Conflict(_)))
        )));
        let linked = a.asset_link(&agent).await.unwrap().unwrap().asset_id;
        let assets: Vec<String> = b
            .assets()
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.id)
            .filter(|id| id.ends_with(&format!("-{round}")))
            .collect();
        assert_eq!(
            assets,
            std::slice::from_ref(&linked),
            "one asset, the one linked"
        );
        assert_eq!(a.asset_events(&linked, None, 10).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn two_collectors_writing_one_asset_keep_every_history_line() {
    let Some((_db, a, b)) = two_collectors().await else {
        return;
    };
    a.write_assets(vec![create("asset-a", "web-1", "a1", Vec::new())])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..20 {
        let store = Arc::clone(if n % 2 == 0 { &a } else { &b });
        tasks.push(tokio::spawn(async move {
            store
                .write_assets(vec![AssetWrite {
                    row: asset_row("asset-a", "web-1", 2_000 + n),
                    events: vec![asset_event(n, "seen"), asset_event(n, "patch")],
                    links: vec![link("a1", "asset-a", 2_000 + n)],
                    removed: Vec::new(),
                }])
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        a.asset_events("asset-a", None, 100).await.unwrap().len(),
        40
    );
    assert_eq!(b.assets().await.unwrap().len(), 1);
}
