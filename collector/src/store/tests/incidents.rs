//! The store suite for incidents, parent holds and SLA clocks, on both backends.
//! The `#[tokio::test]`s at the end are PostgreSQL only: two `Store`s on one
//! database stand for two collectors racing on what must happen once.

use super::*;
use crate::domain::{IncidentEvent, IncidentState, ParentCheck, Severity};

fn open_at(key: &str, agent: &str, severity: Severity, at: i64) -> IncidentChange {
    IncidentChange::Open(Box::new(NewIncident {
        agent_id: agent.into(),
        host: format!("host-{agent}"),
        severity,
        ..new_incident(key, at)
    }))
}

async fn opened_id(store: &Store, change: IncidentChange) -> i64 {
    store.apply_incident_changes(vec![change]).await.unwrap()[0]
        .as_ref()
        .expect("opened")
        .1
        .id
}

fn keys(incidents: &[IncidentRecord]) -> Vec<&str> {
    incidents
        .iter()
        .map(|incident| incident.dedup_key.as_str())
        .collect()
}

on_both_backends! {
    async fn incidents_are_listed_newest_first_by_state_severity_and_agent_in_pages(backend: &TestBackend) {
        let store = backend.open().await;
        let k1 = opened_id(&store, open_at("k1", "a1", Severity::Critical, 100)).await;
        let k2 = opened_id(&store, open_at("k2", "a2", Severity::Warning, 200)).await;
        let k3 = opened_id(&store, open_at("k3", "a1", Severity::Critical, 300)).await;
        store
            .acknowledge_incident(k3, "alice".into(), None, 400)
            .await
            .unwrap()
            .unwrap();
        store
            .resolve_incident(k1, "alice".into(), "fixed".into(), None, 500)
            .await
            .unwrap()
            .unwrap();
        let list = |filter: IncidentFilter| {
            let store = &store;
            async move { store.incidents(filter).await.unwrap() }
        };
        assert_eq!(keys(&list(IncidentFilter::default()).await), ["k3", "k2", "k1"]);
        for (state, expected) in [
            (IncidentState::Open, "k2"),
            (IncidentState::Acknowledged, "k3"),
            (IncidentState::Resolved, "k1"),
        ] {
            let found = list(IncidentFilter { state: Some(state), ..Default::default() }).await;
            assert_eq!(keys(&found), [expected], "{state:?}");
        }
        let on_host = |text: &str| IncidentFilter {
            host_contains: Some(text.to_string()),
            ..Default::default()
        };
        // Hosts of open_at: "host-<agent>".
        assert_eq!(keys(&list(on_host("HOST-A1")).await), ["k3", "k1"], "any case");
        assert_eq!(keys(&list(on_host("t-a2")).await), ["k2"]);
        assert!(list(on_host("%")).await.is_empty(), "wildcards are text");
        assert!(list(on_host("host_a1")).await.is_empty(), "wildcards are text");
        let unresolved = list(IncidentFilter { unresolved: true, ..Default::default() }).await;
        assert_eq!(keys(&unresolved), ["k3", "k2"]);
        let resolved_and_unresolved = list(IncidentFilter {
            state: Some(IncidentState::Resolved),
            unresolved: true,
            ..Default::default()
        })
        .await;
        assert!(resolved_and_unresolved.is_empty());
        let warnings = list(IncidentFilter {
            severity: Some(Severity::Warning),
            ..Default::default()
        })
        .await;
        assert_eq!(keys(&warnings), ["k2"]);
        let a1 = list(IncidentFilter {
            agent_id: Some("a1".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(keys(&a1), ["k3", "k1"]);
        let first_page = list(IncidentFilter { limit: 2, ..Default::default() }).await;
        assert_eq!(keys(&first_page), ["k3", "k2"]);
        let next_page = list(IncidentFilter {
            before_id: Some(k2),
            limit: 2,
            ..Default::default()
        })
        .await;
        assert_eq!(keys(&next_page), ["k1"]);
        let none = list(IncidentFilter {
            state: Some(IncidentState::Open),
            agent_id: Some("a1".into()),
            ..Default::default()
        })
        .await;
        assert!(none.is_empty());
        let record = &list(IncidentFilter::default()).await[2];
        assert_eq!(
            (record.state, record.resolved_by.as_deref(), record.severity),
            (IncidentState::Resolved, Some("alice"), Severity::Critical)
        );
        assert_eq!(store.incident(k1).await.unwrap().as_ref(), Some(record));
        assert!(store.incident(9_999).await.unwrap().is_none());
}
}

on_both_backends! {
    async fn the_timeline_tells_an_incidents_story_in_order(backend: &TestBackend) {
        let store = backend.open().await;
        let id = opened_id(&store, open_at("k", "a1", Severity::Critical, 100)).await;
        let flapping = store
            .apply_incident_changes(vec![IncidentChange::Flapping {
                dedup_key: "k".into(),
                flapping: true,
                detail: "Changed state 5 times in 10 minutes.".into(),
                now_ms: 150,
            }])
            .await
            .unwrap();
        let (event, record) = flapping[0].clone().unwrap();
        assert_eq!(event, IncidentEvent::FlappingStarted);
        assert!(record.flapping);
        assert_eq!(store.mark_sla_breaches(1_100).await.unwrap().len(), 1);
        store
            .acknowledge_incident(id, "alice".into(), Some("on it".into()), 1_200)
            .await
            .unwrap()
            .unwrap();
        let resolved = store.apply_incident_changes(vec![resolve_change("k", 1_300)]).await.unwrap();
        assert!(!resolved[0].as_ref().unwrap().1.flapping, "resolving ends flapping");
        // Flapping on a resolved key finds nothing.
        let late = store
            .apply_incident_changes(vec![IncidentChange::Flapping {
                dedup_key: "k".into(),
                flapping: false,
                detail: "Stable.".into(),
                now_ms: 1_400,
            }])
            .await
            .unwrap();
        assert!(late[0].is_none());
        let timeline: Vec<(i64, String, String, String)> = store
            .incident_timeline(id)
            .await
            .unwrap()
            .into_iter()
            .map(|entry| (entry.ts_ms, entry.kind, entry.actor, entry.detail))
            .collect();
        let expected = [
            (100, "opened", "rules", "Opened by rule disk (value 95): Disk / on web-1 at 95%"),
            (150, "flapping_started", "rules", "Changed state 5 times in 10 minutes."),
            (1_100, "sla_breached", "sla", "SLA time-to-ack target missed."),
            (1_200, "acknowledged", "alice", "Acknowledged: on it"),
            (1_300, "resolved", "rules", "Resolved: cleared (value 10)."),
        ]
        .map(|(ts, kind, actor, detail)| (ts, kind.to_string(), actor.to_string(), detail.to_string()));
        assert_eq!(timeline, expected);
        assert!(store.incident_timeline(9_999).await.unwrap().is_empty());
}
}

on_both_backends! {
    async fn a_note_joins_the_timeline_and_an_unknown_incident_is_refused(backend: &TestBackend) {
        let store = backend.open().await;
        let id = opened_id(&store, open_at("k", "a1", Severity::Critical, 100)).await;
        let noted = store
            .add_incident_note(id, "bob".into(), "Looks like the backup job.".into(), 200)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((noted.id, noted.state), (id, IncidentState::Open));
        store
            .resolve_incident(id, "bob".into(), "job moved".into(), None, 300)
            .await
            .unwrap()
            .unwrap();
        // A resolved incident still takes notes (the post-mortem).
        store
            .add_incident_note(id, "carol".into(), "Moved to 3am.".into(), 400)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .add_incident_note(9_999, "bob".into(), "lost".into(), 500)
                .await
                .unwrap(),
            Err(ChangeRefused::NotFound)
        );
        let notes: Vec<(i64, String, String)> = store
            .incident_timeline(id)
            .await
            .unwrap()
            .into_iter()
            .filter(|entry| entry.kind == "note")
            .map(|entry| (entry.ts_ms, entry.actor, entry.detail))
            .collect();
        assert_eq!(
            notes,
            [
                (200, "bob".to_string(), "Looks like the backup job.".to_string()),
                (400, "carol".to_string(), "Moved to 3am.".to_string()),
            ]
        );
        assert!(store.incident_timeline(9_999).await.unwrap().is_empty());
}
}

on_both_backends! {
    async fn incidents_opened_since_a_time_include_resolved_ones_oldest_first(backend: &TestBackend) {
        let store = backend.open().await;
        for (key, at) in [("k1", 100), ("k2", 200), ("k3", 300)] {
            opened_id(&store, open_at(key, "a1", Severity::Critical, at)).await;
        }
        store.apply_incident_changes(vec![resolve_change("k2", 250)]).await.unwrap();
        assert_eq!(keys(&store.incidents_opened_since(200).await.unwrap()), ["k2", "k3"]);
        assert_eq!(keys(&store.incidents_opened_since(0).await.unwrap()), ["k1", "k2", "k3"]);
        assert!(store.incidents_opened_since(301).await.unwrap().is_empty());
        assert_eq!(keys(&store.unresolved_incidents().await.unwrap()), ["k1", "k3"]);
}
}

on_both_backends! {
    async fn an_acknowledged_child_released_by_its_parent_is_not_paged_again(backend: &TestBackend) {
        let store = backend.open().await;
        let gw = Labels::from([("target".to_string(), "gw".to_string())]);
        let parent = opened_id(&store, IncidentChange::Open(Box::new(NewIncident {
            rule: "gw-down".into(),
            labels: gw.clone(),
            ..new_incident("gw", 100)
        })))
        .await;
        let child = opened_id(&store, IncidentChange::Open(Box::new(NewIncident {
            parents: vec![ParentCheck { rule: "gw-down".into(), labels: gw }],
            ..new_incident("child", 200)
        })))
        .await;
        store
            .acknowledge_incident(child, "alice".into(), None, 300)
            .await
            .unwrap()
            .unwrap();
        store
            .resolve_incident(parent, "alice".into(), "rebooted".into(), None, 400)
            .await
            .unwrap()
            .unwrap();
        let child_now = store.incident(child).await.unwrap().unwrap();
        assert!(!child_now.suppressed);
        let released: Vec<String> = store
            .incident_timeline(child)
            .await
            .unwrap()
            .into_iter()
            .filter(|entry| entry.kind == "released")
            .map(|entry| entry.detail)
            .collect();
        assert_eq!(
            released,
            [format!("Released: parent #{parent} resolved while this still breaches.")]
        );
}
}

on_both_backends! {
    async fn a_hold_that_runs_out_after_an_acknowledgement_releases_without_paging(backend: &TestBackend) {
        let store = backend.open().await;
        let child = opened_id(&store, IncidentChange::Open(Box::new(NewIncident {
            parents: vec![ParentCheck { rule: "pdu-down".into(), labels: Labels::new() }],
            parent_hold_ms: 30_000,
            ..new_incident("child", 1_000)
        })))
        .await;
        store
            .acknowledge_incident(child, "alice".into(), None, 2_000)
            .await
            .unwrap()
            .unwrap();
        assert!(store.expire_parent_holds(31_000).await.unwrap().is_empty(), "not paged");
        let child_now = store.incident(child).await.unwrap().unwrap();
        assert!(!child_now.suppressed && child_now.held_until_ms.is_none());
        let timeline = store.incident_timeline(child).await.unwrap();
        let last = timeline.last().unwrap();
        assert_eq!(
            (last.kind.as_str(), last.detail.as_str()),
            (
                "released",
                "Waited 30s for parent pdu-down, which did not open; acknowledged meanwhile, so not paged."
            )
        );
        assert!(store.expire_parent_holds(60_000).await.unwrap().is_empty(), "ended once");
}
}

/// Two collectors on the test's database, and a plain connection to look
/// at its tables.
async fn first_collector(db: &TestDb) -> Store {
    Store::open_postgres(&db.settings(), "collector-a")
        .await
        .unwrap()
}

async fn second_collector(db: &TestDb) -> Store {
    Store::open_postgres(&db.settings(), "collector-b")
        .await
        .unwrap()
}

async fn sql(db: &TestDb) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

async fn count(client: &tokio_postgres::Client, query: &str) -> i64 {
    client.query_one(query, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn two_collectors_opening_one_key_at_once_make_one_incident_journaled_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let a = std::sync::Arc::new(first_collector(&db).await);
    let b = std::sync::Arc::new(second_collector(&db).await);
    let openers = (0..16).map(|index| {
        let store = std::sync::Arc::clone(if index % 2 == 0 { &a } else { &b });
        tokio::spawn(async move {
            store
                .apply_incident_changes(vec![
                    IncidentChange::Open(Box::new(new_incident("k", 1_000 + index))),
                    IncidentChange::Open(Box::new(new_incident(&format!("own{index}"), 1_000))),
                ])
                .await
                .unwrap()
        })
    });
    let mut opened_k = Vec::new();
    for opener in openers {
        let applied = opener.await.unwrap();
        assert!(applied[1].is_some(), "a key of its own always opens");
        opened_k.extend(applied[0].clone().map(|(_, record)| record.id));
    }
    assert_eq!(opened_k.len(), 1, "exactly one collector opened k");
    let k = a
        .incidents(IncidentFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|incident| incident.dedup_key == "k")
        .collect::<Vec<_>>();
    assert_eq!(k.len(), 1);
    assert_eq!(k[0].id, opened_k[0]);
    let client = sql(&db).await;
    let journal = client
        .query(
            "SELECT kind FROM incident_events WHERE incident_id = $1",
            &[&k[0].id],
        )
        .await
        .unwrap();
    assert_eq!(journal.len(), 1, "journaled once, so paged once");
    assert_eq!(journal[0].get::<_, &str>(0), "opened");
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM incident_timeline WHERE kind = 'opened'"
        )
        .await,
        17
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_and_its_child_opening_on_two_collectors_at_once_never_page_the_child() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let a = first_collector(&db).await;
    let b = second_collector(&db).await;
    for round in 0..12 {
        let target = Labels::from([("target".to_string(), format!("gw{round}"))]);
        let child = NewIncident {
            parents: vec![ParentCheck {
                rule: "gw-down".into(),
                labels: target.clone(),
            }],
            parent_hold_ms: 30_000,
            ..new_incident(&format!("child{round}"), 1_000)
        };
        let parent = NewIncident {
            rule: "gw-down".into(),
            labels: target,
            ..new_incident(&format!("gw{round}"), 1_000)
        };
        let (child, parent) = tokio::join!(
            a.apply_incident_changes(vec![IncidentChange::Open(Box::new(child))]),
            b.apply_incident_changes(vec![IncidentChange::Open(Box::new(parent))]),
        );
        let child = child.unwrap()[0].clone().unwrap().1.id;
        let parent = parent.unwrap()[0].clone().unwrap().1.id;
        // Whichever committed first, the child ends up caused by the parent,
        // suppressed and no longer waiting (so no tick pages it).
        let child = a.incident(child).await.unwrap().unwrap();
        assert_eq!(child.caused_by, Some(parent), "round {round}");
        assert!(
            child.suppressed && child.held_until_ms.is_none(),
            "round {round}"
        );
    }
    assert!(a.expire_parent_holds(i64::MAX).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_opening_while_its_parent_resolves_is_never_left_suppressed() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let a = first_collector(&db).await;
    let b = second_collector(&db).await;
    for round in 0..12 {
        let target = Labels::from([("target".to_string(), format!("gw{round}"))]);
        let parent = NewIncident {
            rule: "gw-down".into(),
            labels: target.clone(),
            ..new_incident(&format!("gw{round}"), 1_000)
        };
        a.apply_incident_changes(vec![IncidentChange::Open(Box::new(parent))])
            .await
            .unwrap();
        let child = NewIncident {
            parents: vec![ParentCheck {
                rule: "gw-down".into(),
                labels: target,
            }],
            ..new_incident(&format!("child{round}"), 2_000)
        };
        let (child, _) = tokio::join!(
            b.apply_incident_changes(vec![IncidentChange::Open(Box::new(child))]),
            a.apply_incident_changes(vec![resolve_change(&format!("gw{round}"), 2_000)]),
        );
        let child = child.unwrap()[0].clone().unwrap().1.id;
        let child = b.incident(child).await.unwrap().unwrap();
        assert!(
            !child.suppressed,
            "round {round}: opened after the parent resolved, or released by it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_runs_out_once_across_collectors_and_holds_are_never_adopted_after() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let a = first_collector(&db).await;
    let b = second_collector(&db).await;
    let pdu = vec![ParentCheck {
        rule: "pdu-down".into(),
        labels: Labels::new(),
    }];
    let children: Vec<IncidentChange> = (0..10)
        .map(|index| {
            IncidentChange::Open(Box::new(NewIncident {
                parents: pdu.clone(),
                parent_hold_ms: 30_000,
                ..new_incident(&format!("c{index}"), 1_000)
            }))
        })
        .collect();
    a.apply_incident_changes(children).await.unwrap();
    let mut released = 0;
    for _ in 0..3 {
        let (left, right) =
            tokio::join!(a.expire_parent_holds(31_000), b.expire_parent_holds(31_000));
        released += left.unwrap().len() + right.unwrap().len();
    }
    assert_eq!(released, 10, "each hold ran out once cluster-wide");
    let client = sql(&db).await;
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM incident_events WHERE kind = 'released'"
        )
        .await,
        10
    );
    // The parent opening late adopts no one: they paged already.
    b.apply_incident_changes(vec![IncidentChange::Open(Box::new(NewIncident {
        rule: "pdu-down".into(),
        ..new_incident("pdu", 40_000)
    }))])
    .await
    .unwrap();
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM incidents WHERE caused_by IS NOT NULL OR suppressed"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn sla_breaches_are_marked_once_across_collectors() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let a = first_collector(&db).await;
    let b = second_collector(&db).await;
    let opens = (0..5)
        .map(|index| IncidentChange::Open(Box::new(new_incident(&format!("k{index}"), 100))))
        .collect();
    a.apply_incident_changes(opens).await.unwrap();
    let mut breaches = Vec::new();
    for now in [1_100, 1_200, 5_100, 5_200] {
        let (left, right) = tokio::join!(a.mark_sla_breaches(now), b.mark_sla_breaches(now));
        breaches.extend(
            left.unwrap()
                .into_iter()
                .chain(right.unwrap())
                .map(|(_, kind)| kind),
        );
    }
    breaches.sort_unstable();
    assert_eq!(breaches, [["ack"; 5], ["resolve"; 5]].concat());
    let client = sql(&db).await;
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM incident_timeline WHERE kind = 'sla_breached'"
        )
        .await,
        10
    );
}

/// The `problems` table is migration 0005's (another part of the PG
/// backend); made here as SQLite has it when that migration is not there
/// yet, so the incident side of recurrences is tested on its own.
const PROBLEMS_IF_MISSING: &str = "CREATE TABLE IF NOT EXISTS problems (
    id BIGSERIAL PRIMARY KEY, rule TEXT NOT NULL, agent_id TEXT, host TEXT, title TEXT NOT NULL,
    state TEXT NOT NULL, root_cause TEXT, workaround TEXT, change_id BIGINT,
    opened_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, updated_by TEXT, resolved_ms BIGINT)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recurrence_on_two_collectors_at_once_opens_one_problem() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let a = first_collector(&db).await;
    let b = second_collector(&db).await;
    let client = sql(&db).await;
    client.batch_execute(PROBLEMS_IF_MISSING).await.unwrap();
    // Each round a new rule recurs for the second time on both collectors at
    // once: the second opening must see the first and open its problem.
    let recurring = |rule: String, key: String| {
        IncidentChange::Open(Box::new(NewIncident {
            rule,
            agent_id: format!("agent-{key}"),
            recurrence: Some(crate::domain::Recurrence {
                count: 2,
                within_ms: 60_000,
                across_agents: true,
            }),
            ..new_incident(&key, 1_000)
        }))
    };
    for round in 0..8 {
        let rule = format!("r{round}");
        let (left, right) = tokio::join!(
            a.apply_incident_changes(vec![recurring(rule.clone(), format!("a{round}"))]),
            b.apply_incident_changes(vec![recurring(rule, format!("b{round}"))]),
        );
        left.unwrap();
        right.unwrap();
    }
    let per_rule = client
        .query(
            "SELECT p.rule, count(i.id) FROM problems p JOIN incidents i ON i.problem_id = p.id
             GROUP BY p.id, p.rule ORDER BY p.rule",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
        .collect::<Vec<_>>();
    let expected: Vec<(String, i64)> = (0..8).map(|round| (format!("r{round}"), 2)).collect();
    assert_eq!(per_rule, expected, "one problem per rule, linking both");
    let linked = a.incidents(IncidentFilter::default()).await.unwrap();
    let timeline = a.incident_timeline(linked[0].id).await.unwrap();
    assert!(timeline.iter().any(|entry| entry.kind == "problem"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_changing_the_same_incidents_in_opposite_orders_both_succeed() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let a = first_collector(&db).await;
    let b = second_collector(&db).await;
    let keys: Vec<String> = (0..30).map(|index| format!("k{index}")).collect();
    let opens = keys
        .iter()
        .map(|key| IncidentChange::Open(Box::new(new_incident(key, 100))))
        .collect();
    a.apply_incident_changes(opens).await.unwrap();
    let flap = |keys: Vec<&String>, flapping: bool| -> Vec<IncidentChange> {
        keys.into_iter()
            .map(|key| IncidentChange::Flapping {
                dedup_key: key.clone(),
                flapping,
                detail: "flap".into(),
                now_ms: 200,
            })
            .collect()
    };
    // Rows locked crosswise deadlock; PostgreSQL aborts one transaction,
    // which runs again and succeeds.
    for round in 0..6 {
        let flapping = round % 2 == 0;
        let (left, right) = tokio::join!(
            a.apply_incident_changes(flap(keys.iter().collect(), flapping)),
            b.apply_incident_changes(flap(keys.iter().rev().collect(), flapping)),
        );
        assert_eq!(left.unwrap().len(), 30);
        assert_eq!(right.unwrap().len(), 30);
    }
    let (left, right) = tokio::join!(
        a.apply_incident_changes(keys.iter().map(|key| resolve_change(key, 300)).collect()),
        b.apply_incident_changes(
            keys.iter()
                .rev()
                .map(|key| resolve_change(key, 300))
                .collect()
        ),
    );
    let resolved = left
        .unwrap()
        .into_iter()
        .chain(right.unwrap())
        .filter(Option::is_some)
        .count();
    assert_eq!(resolved, 30, "each resolved once");
    assert!(a.unresolved_incidents().await.unwrap().is_empty());
}

/// The change and asset tables are migration 0005's (another part of the PG
/// backend); made here as SQLite has them when that migration is not there
/// yet, so the incident side of change linking is tested on its own.
const CHANGES_IF_MISSING: &str = "
    CREATE TABLE IF NOT EXISTS changes (
        id BIGSERIAL PRIMARY KEY, title TEXT NOT NULL, description TEXT,
        starts_ms BIGINT NOT NULL, ends_ms BIGINT NOT NULL, asset_ids TEXT NOT NULL, tags TEXT NOT NULL,
        risk TEXT NOT NULL, implementer TEXT, outcome TEXT, window_id BIGINT,
        created_by TEXT NOT NULL, created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS assets (
        id TEXT PRIMARY KEY, record TEXT NOT NULL, status TEXT NOT NULL,
        hostname TEXT NOT NULL, updated_ms BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS asset_agents (
        agent_id TEXT PRIMARY KEY, asset_id TEXT NOT NULL, confidence DOUBLE PRECISION NOT NULL,
        reasons TEXT NOT NULL, matched_ms BIGINT NOT NULL);";

#[tokio::test]
async fn an_incident_opening_during_or_soon_after_a_change_on_its_asset_links_to_it() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = first_collector(&db).await;
    let client = sql(&db).await;
    client.batch_execute(CHANGES_IF_MISSING).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO assets (id, record, status, hostname, updated_ms)
                 VALUES ('web', '{\"tags\": [\"frontend\"]}', 'active', 'web-1', 0);
             INSERT INTO asset_agents (agent_id, asset_id, confidence, reasons, matched_ms)
                 VALUES ('a1', 'web', 1.0, '[]', 0);
             INSERT INTO changes (title, starts_ms, ends_ms, asset_ids, tags, risk, created_by, created_ms, updated_ms)
                 VALUES ('Other asset', 0, 100000, '[\"db\"]', '[]', 'low', 'ops', 0, 0),
                        ('Upgrade nginx', 1000, 10000, '[]', '[\"frontend\"]', 'low', 'ops', 0, 0);",
        )
        .await
        .unwrap();
    let linked = |key: &str, at: i64| NewIncident {
        change_link_after_ms: Some(60_000),
        ..new_incident(key, at)
    };
    let during = store
        .apply_incident_changes(vec![IncidentChange::Open(Box::new(linked(
            "during", 5_000,
        )))])
        .await
        .unwrap()[0]
        .clone()
        .unwrap()
        .1;
    let after = store
        .apply_incident_changes(vec![IncidentChange::Open(Box::new(linked(
            "after", 40_000,
        )))])
        .await
        .unwrap()[0]
        .clone()
        .unwrap()
        .1;
    let late = store
        .apply_incident_changes(vec![IncidentChange::Open(Box::new(linked("late", 80_000)))])
        .await
        .unwrap()[0]
        .clone()
        .unwrap()
        .1;
    let upgrade: i64 = client
        .query_one("SELECT id FROM changes WHERE title = 'Upgrade nginx'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (during.change_id, after.change_id, late.change_id),
        (Some(upgrade), Some(upgrade), None)
    );
    let details = |id: i64| {
        let store = &store;
        async move {
            store
                .incident_timeline(id)
                .await
                .unwrap()
                .into_iter()
                .filter(|entry| entry.kind == "change")
                .map(|entry| entry.detail)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        details(during.id).await,
        [format!("Opened during change C-{upgrade}: Upgrade nginx.")]
    );
    assert_eq!(
        details(after.id).await,
        [format!(
            "Opened 30s after change C-{upgrade} ended: Upgrade nginx."
        )]
    );
}
