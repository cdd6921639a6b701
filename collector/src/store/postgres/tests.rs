//! The PostgreSQL store against a real server: one database per test.
//! Two `PgStore`s on one database stand for two collectors.

use std::collections::{BTreeMap, HashSet};

use super::testdb::TestDb;
use super::{PgError, PgSettings, PgStore, redact_url};
use crate::domain::{IncidentEvent, IncidentState, Severity};
use crate::store::{
    AgentHello, CommitOutcome, DeliveryAttempt, NewIncident, NewNotification, SampleBatch,
    SampleRecord, SeriesKey,
};

macro_rules! test_db {
    () => {
        match TestDb::create().await {
            Some(db) => db,
            None => return,
        }
    };
}

fn settings(db: &TestDb) -> PgSettings {
    PgSettings {
        url: db.url.clone(),
        pool_size: 4,
        ca_file: None,
    }
}

async fn collector(db: &TestDb, name: &str) -> PgStore {
    PgStore::open(&settings(db), name)
        .await
        .expect("open the PostgreSQL store")
}

fn new_incident(key: &str, opened_at_ms: i64) -> NewIncident {
    NewIncident {
        dedup_key: key.to_string(),
        rule: "cpu_high".to_string(),
        metric: "cpu.usage".to_string(),
        agent_id: "agent-1".to_string(),
        host: "web-1".to_string(),
        labels: BTreeMap::new(),
        severity: Severity::Critical,
        summary: "CPU above 90%".to_string(),
        runbook: None,
        value: Some(97.0),
        since_ms: opened_at_ms,
        opened_at_ms,
        ack_due_at_ms: Some(opened_at_ms + 60_000),
        resolve_due_at_ms: None,
        parents: Vec::new(),
        parent_hold_ms: 0,
        recurrence: None,
        change_link_after_ms: None,
    }
}

fn batch(agent: &str, seq: u64, value: f64) -> SampleBatch {
    SampleBatch {
        agent_id: agent.to_string(),
        epoch: 7,
        seq,
        received_ms: 1_000 + seq as i64,
        samples: vec![SampleRecord {
            metric: "cpu.usage".to_string(),
            labels: BTreeMap::new(),
            value,
            timestamp_ms: 1_000 * seq as i64,
        }],
    }
}

#[test]
fn passwords_never_show_in_debug_or_redacted_urls() {
    let settings = PgSettings {
        url: "postgres://steward:s3cret@db.example:5432/steward?sslmode=require".to_string(),
        pool_size: 8,
        ca_file: None,
    };
    let shown = format!("{settings:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("postgres://steward@db.example:5432/steward (password set)"),
        "{shown}"
    );
    for (url, shown) in [
        (
            "host=db user=steward password=s3cret dbname=steward",
            "postgres://steward@db/steward (password set)",
        ),
        (
            "host=db user=steward password='s3 cret' dbname=steward",
            "postgres://steward@db/steward (password set)",
        ),
        (
            "host=db user=steward password = s3cret dbname=steward",
            "postgres://steward@db/steward (password set)",
        ),
        (
            "postgres://db/steward?password=s3cret&sslmode=require",
            "postgres://db:5432/steward (password set)",
        ),
        ("postgres://steward@db/x", "postgres://steward@db:5432/x"),
        (
            "postgres://steward:s3cret@db:5433/x?sslmode=bogus",
            "(a PostgreSQL URL that does not parse)",
        ),
    ] {
        assert_eq!(redact_url(url), shown, "{url}");
    }
}

#[tokio::test]
async fn collectors_starting_together_apply_each_migration_once() {
    let db = test_db!();
    let settings = settings(&db);
    let starts = (0..4).map(|index| {
        let settings = settings.clone();
        tokio::spawn(async move { PgStore::open(&settings, &format!("c{index}")).await })
    });
    for start in starts {
        start
            .await
            .expect("task")
            .expect("open while others migrate");
    }
    let store = collector(&db, "check").await;
    let client = store.client().await.expect("client");
    let rows = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("versions");
    let versions: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    let expected: Vec<i32> = (1..=super::PG_SCHEMA_VERSION as i32).collect();
    assert_eq!(versions, expected);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let db = test_db!();
    let store = collector(&db, "a").await;
    store
        .client()
        .await
        .expect("client")
        .execute("INSERT INTO schema_migrations (version) VALUES (999)", &[])
        .await
        .expect("stamp");
    let refused = PgStore::open(&settings(&db), "b")
        .await
        .expect_err("newer schema");
    assert!(
        matches!(refused, PgError::SchemaTooNew { found: 999, .. }),
        "{refused}"
    );
}

#[tokio::test]
async fn a_bad_url_is_refused_without_showing_the_password() {
    let settings = PgSettings {
        url: "postgres://u:hunter2@127.0.0.1:1/x?sslmode=bogus".to_string(),
        pool_size: 1,
        ca_file: None,
    };
    let error = PgStore::open(&settings, "a")
        .await
        .expect_err("bad sslmode");
    let shown = error.to_string();
    assert!(shown.contains("invalid PostgreSQL URL"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn tls_is_verified_when_required() {
    let db = test_db!();
    // The server's certificate is not signed by the system roots (the local
    // test server has at most a self-signed one): require must not connect.
    let url = db.url.replace("sslmode=disable", "sslmode=require");
    let settings = PgSettings {
        url,
        pool_size: 1,
        ca_file: None,
    };
    let error = PgStore::open(&settings, "a")
        .await
        .expect_err("unverified TLS");
    assert!(matches!(error, PgError::Connect { .. }), "{error}");
}

#[tokio::test]
async fn a_batch_resent_to_another_collector_is_a_duplicate() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    let batches: Vec<SampleBatch> = (1..=5)
        .map(|seq| batch("agent-1", seq, seq as f64))
        .collect();
    let stored = a.commit_batches(&batches).await.expect("commit on a");
    assert!(
        stored
            .iter()
            .all(|outcome| matches!(outcome, CommitOutcome::Stored { samples: 1 }))
    );
    // The agent moved to b before the acknowledgements of 4 and 5 arrived.
    let resent = b.commit_batches(&batches[3..]).await.expect("resend on b");
    assert_eq!(
        resent,
        vec![CommitOutcome::Duplicate, CommitOutcome::Duplicate]
    );
    let next = b
        .commit_batches(&[batch("agent-1", 6, 6.0)])
        .await
        .expect("new on b");
    assert_eq!(next, vec![CommitOutcome::Stored { samples: 1 }]);
    assert_eq!(a.batch_counts().await.expect("counts"), (6, 6));
    assert_eq!(b.committed_seq("agent-1", 7).await.expect("seq"), 6);
    // Either collector reads the agent's raw points from the shared log.
    let key = SeriesKey {
        agent_id: "agent-1".to_string(),
        metric: "cpu.usage".to_string(),
        labels: BTreeMap::new(),
    };
    let points = a.raw_points(&key).await.expect("points");
    let expected: Vec<(i64, f64)> = (1..=6).map(|seq| (1_000 * seq, seq as f64)).collect();
    assert_eq!(points, expected);
}

#[tokio::test]
async fn concurrent_duplicate_batches_store_once() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    let batches: Vec<SampleBatch> = (1..=50).map(|seq| batch("agent-2", seq, 1.0)).collect();
    let (left, right) = tokio::join!(a.commit_batches(&batches), b.commit_batches(&batches));
    let (left, right) = (left.expect("a"), right.expect("b"));
    for (l, r) in left.iter().zip(&right) {
        let stored = [l, r]
            .iter()
            .filter(|outcome| matches!(outcome, CommitOutcome::Stored { .. }))
            .count();
        assert_eq!(stored, 1, "each batch stored by exactly one collector");
    }
    assert_eq!(a.batch_counts().await.expect("counts"), (50, 50));
}

#[tokio::test]
async fn hello_records_which_collector_an_agent_is_on() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    let hello = AgentHello {
        agent_id: "agent-1".to_string(),
        hostname: "web-1".to_string(),
        version: "1.0".to_string(),
        facts: BTreeMap::new(),
        seen_ms: 1,
    };
    a.record_hello(&hello).await.expect("hello a");
    assert_eq!(
        b.agent_collector("agent-1").await.expect("read").as_deref(),
        Some("a")
    );
    b.record_hello(&AgentHello {
        seen_ms: 2,
        ..hello
    })
    .await
    .expect("hello b");
    assert_eq!(
        a.agent_collector("agent-1").await.expect("read").as_deref(),
        Some("b")
    );
}

#[tokio::test]
async fn collectors_racing_on_one_key_open_one_incident() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    let openers = (0..16).map(|index| {
        let store = if index % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            store
                .open_incident(&new_incident("cpu|agent-1", 1_000))
                .await
        })
    });
    let mut opened = Vec::new();
    for opener in openers {
        let (record, new) = opener.await.expect("task").expect("open");
        opened.push((record.id, new));
    }
    let ids: HashSet<i64> = opened.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 1, "every opener sees the same incident");
    assert_eq!(
        opened.iter().filter(|(_, new)| *new).count(),
        1,
        "exactly one opened it"
    );
    let id = *ids.iter().next().expect("one id");
    assert_eq!(
        a.incidents_by_key("cpu|agent-1").await.expect("list").len(),
        1
    );
    assert_eq!(
        b.incident_journal(id).await.expect("journal"),
        vec![IncidentEvent::Opened],
        "journaled once, so notified once"
    );
}

#[tokio::test]
async fn a_resolved_key_opens_a_new_incident_linked_to_the_old() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    let (first, _) = a
        .open_incident(&new_incident("disk|agent-1", 1_000))
        .await
        .expect("open");
    let resolved = b
        .resolve_incident(
            first.id,
            "rules".into(),
            "back to normal".into(),
            None,
            2_000,
        )
        .await
        .expect("resolve")
        .expect("was open");
    assert_eq!(resolved.state, IncidentState::Resolved);
    assert!(
        a.resolve_incident(first.id, "rules".into(), "again".into(), None, 2_001)
            .await
            .expect("resolve")
            == Err(crate::store::ChangeRefused::AlreadyResolved)
    );
    let (second, new) = a
        .open_incident(&new_incident("disk|agent-1", 3_000))
        .await
        .expect("reopen");
    assert!(new);
    assert_eq!(second.previous_id, Some(first.id));
    assert_eq!(
        a.incident_journal(first.id).await.expect("journal"),
        vec![IncidentEvent::Opened, IncidentEvent::Resolved]
    );
}

#[tokio::test]
async fn an_sla_breach_is_marked_by_one_collector() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    for key in ["k1", "k2", "k3"] {
        a.open_incident(&new_incident(key, 1_000))
            .await
            .expect("open");
    }
    let mut total = 0;
    for _ in 0..3 {
        let (left, right) = tokio::join!(a.mark_sla_breaches(70_000), b.mark_sla_breaches(70_000));
        total += left.expect("a").len() + right.expect("b").len();
    }
    assert_eq!(total, 3, "each incident's breach fired once cluster-wide");
}

fn notification(index: i64) -> NewNotification {
    NewNotification {
        idempotency_key: format!("incident-{index}/opened/ops"),
        incident_id: index,
        event: IncidentEvent::Opened,
        channel: "ops".to_string(),
        due_ms: 1_000,
        held: false,
        group_key: None,
    }
}

fn delivered(id: i64, ts_ms: i64) -> DeliveryAttempt {
    DeliveryAttempt {
        id,
        ts_ms,
        status: Some(200),
        error: None,
        state: "delivered",
        retry_at_ms: ts_ms,
    }
}

/// Notification rows per state.
async fn outbox_states(store: &PgStore) -> Vec<(String, i64)> {
    store
        .client()
        .await
        .expect("client")
        .query(
            "SELECT state, count(*) FROM outbox GROUP BY state ORDER BY state",
            &[],
        )
        .await
        .expect("states")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// (routed_ms, claimed_by) of a journal entry.
async fn routed_by(store: &PgStore, id: i64) -> (Option<i64>, Option<String>) {
    let row = store
        .client()
        .await
        .expect("client")
        .query_one(
            "SELECT routed_ms, claimed_by FROM incident_events WHERE id = $1",
            &[&id],
        )
        .await
        .expect("entry");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn notifications_queued_twice_are_one_row() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    let rows: Vec<NewNotification> = (1..=10).map(notification).collect();
    let (left, right) = tokio::join!(
        a.enqueue_notifications(rows.clone(), 0, 1_000),
        b.enqueue_notifications(rows, 0, 1_000)
    );
    assert_eq!(left.expect("a") + right.expect("b"), 10);
}

#[tokio::test]
async fn two_collectors_claim_disjoint_notifications_and_deliver_each_once() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    let rows: Vec<NewNotification> = (1..=200).map(notification).collect();
    a.enqueue_notifications(rows, 0, 1_000)
        .await
        .expect("enqueue");
    let deliver = |store: PgStore| {
        tokio::spawn(async move {
            let mut sent = Vec::new();
            loop {
                let claims = store.claim_due(5_000, 30_000, 7).await.expect("claim");
                if claims.is_empty() {
                    return sent;
                }
                for claim in claims {
                    assert!(
                        store
                            .record_delivery(delivered(claim.id, 5_001))
                            .await
                            .expect("record")
                    );
                    sent.push(claim.id);
                }
            }
        })
    };
    let (left, right) = tokio::join!(deliver(a.clone()), deliver(b.clone()));
    let (left, right) = (left.expect("a"), right.expect("b"));
    let mut all: Vec<i64> = left.iter().chain(&right).copied().collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "no notification delivered twice");
    assert_eq!(all.len(), 200, "every notification delivered");
    assert_eq!(
        outbox_states(&a).await,
        vec![("delivered".to_string(), 200)]
    );
}

#[tokio::test]
async fn a_dead_collectors_claim_is_taken_over_after_its_lease() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    a.enqueue_notifications(vec![notification(1)], 0, 1_000)
        .await
        .expect("enqueue");
    let claimed = a.claim_due(2_000, 30_000, 10).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    // a "dies" here: b sees nothing due while the lease runs...
    assert!(
        b.claim_due(31_999, 30_000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    // ...and takes the row over once it has run out.
    let taken = b.claim_due(32_000, 30_000, 10).await.expect("claim");
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, claimed[0].id);
    // a was only stalled: its late result is refused, b's is recorded.
    assert!(
        !a.record_delivery(delivered(claimed[0].id, 33_000))
            .await
            .expect("late")
    );
    assert!(
        b.record_delivery(delivered(taken[0].id, 33_001))
            .await
            .expect("record")
    );
    assert!(
        b.claim_due(99_000, 30_000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

#[tokio::test]
async fn concurrent_single_batches_are_group_committed_with_the_right_outcomes() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    // 40 agents, each sending 5 batches to a, and resending the last two to b.
    let sends = (0..40).flat_map(|agent| {
        let (a, b) = (a.clone(), b.clone());
        (1..=7).map(move |index| {
            let store = if index <= 5 { a.clone() } else { b.clone() };
            let seq = if index <= 5 { index } else { index - 2 };
            tokio::spawn(async move {
                store
                    .commit_batch(batch(&format!("agent-{agent}"), seq, 1.0))
                    .await
                    .expect("commit")
            })
        })
    });
    // Resends are spawned after the originals' tasks, but may race them:
    // count rather than pair.
    let mut stored = 0;
    let mut duplicates = 0;
    for send in sends.collect::<Vec<_>>() {
        match send.await.expect("task") {
            CommitOutcome::Stored { .. } => stored += 1,
            CommitOutcome::Duplicate => duplicates += 1,
        }
    }
    assert_eq!((stored, duplicates), (200, 80));
    assert_eq!(a.batch_counts().await.expect("counts"), (200, 200));
}

fn routed(entry: &crate::store::JournalEntry) -> NewNotification {
    NewNotification {
        idempotency_key: format!("{}/{}/ops", entry.incident_id, entry.event.key()),
        incident_id: entry.incident_id,
        event: entry.event,
        channel: "ops".to_string(),
        due_ms: entry.ts_ms,
        held: false,
        group_key: None,
    }
}

#[tokio::test]
async fn two_collectors_route_each_journal_entry_once() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    let openers = (0..20).map(|index| {
        let store = if index % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            store
                .open_incident(&new_incident(&format!("k{index}"), 1_000))
                .await
        })
    });
    for opener in openers {
        opener.await.expect("task").expect("open");
    }
    let route = |store: PgStore| {
        tokio::spawn(async move {
            let mut routed_ids = Vec::new();
            loop {
                let entries = store
                    .claim_journal(Some(2_000), 30_000, 3)
                    .await
                    .expect("claim");
                let Some(last) = entries.last().map(|entry| entry.position) else {
                    return routed_ids;
                };
                let ids: Vec<i64> = entries.iter().map(|entry| entry.position).collect();
                let notifications: Vec<NewNotification> = entries.iter().map(routed).collect();
                assert_eq!(
                    store
                        .enqueue_notifications(notifications, last, 2_000)
                        .await
                        .expect("enqueue"),
                    ids.len()
                );
                routed_ids.extend(ids);
            }
        })
    };
    let (left, right) = tokio::join!(route(a.clone()), route(b.clone()));
    let mut all: Vec<i64> = left
        .expect("a")
        .into_iter()
        .chain(right.expect("b"))
        .collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (20, 20), "each entry routed once");
    assert_eq!(outbox_states(&a).await, vec![("pending".to_string(), 20)]);
}

#[tokio::test]
async fn an_entry_committed_late_with_a_smaller_id_is_still_routed() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    let mut slow = a.client().await.expect("client");
    let slow = slow.transaction().await.expect("transaction");
    slow.execute(
        "INSERT INTO incident_events (incident_id, kind, ts_ms) VALUES (999, 'opened', 1)",
        &[],
    )
    .await
    .expect("insert, not yet committed");
    // A later id commits first, and is routed.
    let (fast, _) = b
        .open_incident(&new_incident("fast", 1_000))
        .await
        .expect("open");
    let first = b
        .claim_journal(Some(2_000), 30_000, 10)
        .await
        .expect("claim");
    assert_eq!(
        first
            .iter()
            .map(|entry| entry.incident_id)
            .collect::<Vec<_>>(),
        vec![fast.id]
    );
    let ids: Vec<i64> = first.iter().map(|entry| entry.position).collect();
    b.enqueue_notifications(Vec::new(), ids[0], 2_000)
        .await
        .expect("mark");
    // The smaller id commits now: a cursor would have passed it.
    slow.commit().await.expect("commit");
    let late = b
        .claim_journal(Some(2_001), 30_000, 10)
        .await
        .expect("claim");
    assert_eq!(
        late.iter()
            .map(|entry| entry.incident_id)
            .collect::<Vec<_>>(),
        vec![999]
    );
    assert!(late[0].position < ids[0]);
}

#[tokio::test]
async fn a_dead_collectors_journal_claim_is_taken_over() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    a.open_incident(&new_incident("k", 1_000))
        .await
        .expect("open");
    let claimed = a
        .claim_journal(Some(2_000), 30_000, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert!(
        b.claim_journal(Some(31_999), 30_000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let taken = b
        .claim_journal(Some(32_000), 30_000, 10)
        .await
        .expect("claim");
    assert_eq!(taken, claimed);
    let position = claimed[0].position;
    // a was only stalled: its late routing marks nothing (b holds the
    // claim), and its notification is the one b queues (same key).
    a.enqueue_notifications(vec![routed(&claimed[0])], position, 33_000)
        .await
        .expect("late");
    assert_eq!(routed_by(&a, position).await, (None, Some("b".to_string())));
    assert_eq!(
        b.enqueue_notifications(vec![routed(&taken[0])], position, 33_001)
            .await
            .expect("route"),
        0,
        "already queued"
    );
    assert_eq!(routed_by(&a, position).await, (Some(33_001), None));
    assert_eq!(outbox_states(&a).await, vec![("pending".to_string(), 1)]);
}

#[tokio::test]
async fn a_batch_with_a_repeated_series_keeps_every_point_and_the_newest_value() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let core0 = BTreeMap::from([("core".to_string(), "0".to_string())]);
    let sample =
        |metric: &str, labels: &BTreeMap<String, String>, value: f64, ts: i64| SampleRecord {
            metric: metric.to_string(),
            labels: labels.clone(),
            value,
            timestamp_ms: ts,
        };
    let first = SampleBatch {
        agent_id: "agent-1".to_string(),
        epoch: 1,
        seq: 1,
        received_ms: 10,
        samples: vec![
            sample("cpu", &core0, 2.0, 2),
            sample("cpu", &core0, 1.0, 1),
            sample("mem", &BTreeMap::new(), 5.0, 1),
        ],
    };
    let second = SampleBatch {
        seq: 2,
        samples: vec![sample("cpu", &core0, 3.0, 3)],
        ..first.clone()
    };
    a.commit_batches(&[first]).await.expect("first");
    a.commit_batches(&[second]).await.expect("second");
    let key = SeriesKey {
        agent_id: "agent-1".to_string(),
        metric: "cpu".to_string(),
        labels: core0,
    };
    assert_eq!(
        a.raw_points(&key).await.expect("points"),
        vec![(1, 1.0), (2, 2.0), (3, 3.0)]
    );
    let client = a.client().await.expect("client");
    let rows = client
        .query(
            "SELECT metric, last_value, last_ts_ms FROM series ORDER BY metric",
            &[],
        )
        .await
        .expect("series");
    let series: Vec<(String, f64, i64)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        series,
        vec![("cpu".to_string(), 3.0, 3), ("mem".to_string(), 5.0, 1)]
    );
}

#[tokio::test]
async fn an_escalation_due_later_fires_once_when_due_and_held_rows_wait() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    let escalation = NewNotification {
        idempotency_key: "1/escalated:1:0/ops".to_string(),
        due_ms: 600_000,
        ..notification(1)
    };
    let held = NewNotification {
        idempotency_key: "2/opened/ops".to_string(),
        held: true,
        ..notification(2)
    };
    a.enqueue_notifications(vec![escalation.clone(), held], 0, 1_000)
        .await
        .expect("enqueue");
    // Both collectors queue the escalation (each saw the journal entry): one row.
    assert_eq!(
        b.enqueue_notifications(vec![escalation], 0, 1_000)
            .await
            .expect("again"),
        0
    );
    assert!(
        a.claim_due(599_999, 30_000, 10)
            .await
            .expect("early")
            .is_empty()
    );
    let (left, right) = tokio::join!(
        a.claim_due(600_000, 30_000, 10),
        b.claim_due(600_000, 30_000, 10)
    );
    let claimed = left.expect("a").len() + right.expect("b").len();
    assert_eq!(
        claimed, 1,
        "the escalation fires once, the held row not at all"
    );
}

#[tokio::test]
async fn two_operators_acknowledging_on_two_collectors_ack_once() {
    let db = test_db!();
    let a = collector(&db, "a").await;
    let b = collector(&db, "b").await;
    let (incident, _) = a
        .open_incident(&new_incident("k", 1_000))
        .await
        .expect("open");
    let (left, right) = tokio::join!(
        a.acknowledge_incident(incident.id, "alice".into(), None, 2_000),
        b.acknowledge_incident(incident.id, "bob".into(), Some("on it".into()), 2_000)
    );
    let outcomes = [left.expect("a"), right.expect("b")];
    assert_eq!(outcomes.iter().filter(|outcome| outcome.is_ok()).count(), 1);
    assert!(outcomes.iter().any(|outcome| matches!(
        outcome,
        Err(crate::store::ChangeRefused::AlreadyAcknowledged)
    )));
    assert_eq!(
        a.incident_journal(incident.id).await.expect("journal"),
        vec![IncidentEvent::Opened, IncidentEvent::Acknowledged]
    );
    let unresolved = b.unresolved_incidents().await.expect("unresolved");
    assert_eq!(unresolved.len(), 1);
    assert_eq!(unresolved[0].state, IncidentState::Acknowledged);
    b.resolve_incident(incident.id, "rules".into(), "ok".into(), None, 3_000)
        .await
        .expect("resolve")
        .expect("was acknowledged");
    assert!(
        a.unresolved_incidents()
            .await
            .expect("unresolved")
            .is_empty()
    );
    assert_eq!(
        a.acknowledge_incident(incident.id, "carol".into(), None, 4_000)
            .await
            .expect("ack"),
        Err(crate::store::ChangeRefused::AlreadyResolved)
    );
}

#[tokio::test]
async fn tls_with_the_servers_ca_connects_encrypted() {
    let db = test_db!();
    let Some(ca) = db.tls_ca.clone() else {
        eprintln!("SKIPPED: the test PostgreSQL server has no TLS certificate this test can read");
        return;
    };
    // The certificates the tests use name `localhost`.
    let url = db
        .url
        .replace("127.0.0.1", "localhost")
        .replace("sslmode=disable", "sslmode=require");
    let settings = PgSettings {
        url,
        pool_size: 1,
        ca_file: Some(ca),
    };
    let store = PgStore::open(&settings, "a").await.expect("open over TLS");
    let row = store
        .client()
        .await
        .expect("client")
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("ssl status");
    assert!(row.get::<_, bool>(0), "the connection is encrypted");
}

/// Two processes under one `instance` name: the second is refused while the
/// first beats, takes the name once the first's heartbeat is stale, and the
/// first's next heartbeat is then refused.
#[tokio::test]
async fn an_instance_name_is_held_by_one_live_process() {
    let db = test_db!();
    let first = collector(&db, "collector-x").await;
    let second = collector(&db, "collector-x").await;
    first.claim_instance(1_000).await.unwrap();
    first.claim_instance(1_000).await.unwrap();
    let beating = {
        let first = first.clone();
        tokio::spawn(async move {
            loop {
                first.heartbeat().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };
    let refused = second.claim_instance(1_000).await;
    assert!(
        matches!(&refused, Err(PgError::InstanceTaken { name }) if name == "collector-x"),
        "{refused:?}"
    );
    beating.abort();
    let _ = beating.await;
    second.claim_instance(1_000).await.unwrap();
    second.heartbeat().await.unwrap();
    assert!(matches!(
        first.heartbeat().await,
        Err(PgError::InstanceTaken { .. })
    ));
}
