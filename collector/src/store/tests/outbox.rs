//! The store suite for the notification outbox, groups and maintenance windows, on both backends.

use super::*;
use crate::domain::IncidentEvent;

/// A direct connection to a test database, for rows other areas' methods write.
async fn sql(db: &TestDb) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Writes a journal entry as the incidents code does (which may not run
/// on this backend yet).
async fn journal(
    backend: &TestBackend,
    store: &Store,
    incident_id: i64,
    event: IncidentEvent,
    ts_ms: i64,
) {
    match backend {
        TestBackend::Sqlite(_) => store
            .sqlite()
            .write(move |transaction| {
                crate::store::outbox::journal(transaction, incident_id, event, ts_ms)
            })
            .await
            .unwrap(),
        TestBackend::Postgres(db) => {
            sql(db)
                .await
                .execute(
                    "INSERT INTO incident_events (incident_id, kind, ts_ms) VALUES ($1, $2, $3)",
                    &[&incident_id, &event.key().as_ref(), &ts_ms],
                )
                .await
                .unwrap();
        }
    }
}

fn notification(incident_id: i64, event: IncidentEvent, due_ms: i64) -> NewNotification {
    NewNotification {
        idempotency_key: format!("{incident_id}/{}/ops", event.key()),
        incident_id,
        event,
        channel: "ops".to_string(),
        due_ms,
        held: false,
        group_key: None,
    }
}

fn attempt(id: i64, ts_ms: i64, state: &'static str, retry_at_ms: i64) -> DeliveryAttempt {
    DeliveryAttempt {
        id,
        ts_ms,
        status: (state == "delivered").then_some(200),
        error: (state != "delivered").then(|| "HTTP 503".to_string()),
        state,
        retry_at_ms,
    }
}

on_both_backends! {
    async fn journal_entries_are_queued_delivered_and_retried(backend: &TestBackend) {
        let store = backend.open().await;
        assert!(store.unnotified_journal(10).await.unwrap().is_empty());
        journal(backend, &store, 1, IncidentEvent::Opened, 100).await;
        journal(backend, &store, 1, IncidentEvent::Acknowledged, 200).await;
        journal(backend, &store, 2, IncidentEvent::Opened, 300).await;

        let first = store.unnotified_journal(2).await.unwrap();
        assert_eq!(
            first.iter().map(|entry| (entry.incident_id, entry.event, entry.ts_ms)).collect::<Vec<_>>(),
            vec![(1, IncidentEvent::Opened, 100), (1, IncidentEvent::Acknowledged, 200)]
        );
        assert!(first[0].position < first[1].position);
        assert_eq!(
            store.unnotified_journal(2).await.unwrap(),
            first,
            "unrouted entries come back until they are queued"
        );
        let position = first[1].position;
        let queued = vec![
            notification(1, IncidentEvent::Opened, 1_000),
            notification(1, IncidentEvent::Acknowledged, 5_000),
        ];
        assert_eq!(store.enqueue_notifications(queued.clone(), position, 900).await.unwrap(), 2);
        assert_eq!(
            store.enqueue_notifications(queued, 0, 900).await.unwrap(),
            0,
            "a key is queued once"
        );
        let rest = store.unnotified_journal(10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].incident_id, rest[0].event), (2, IncidentEvent::Opened));
        // An entry that pages nobody is still passed.
        assert_eq!(store.enqueue_notifications(Vec::new(), rest[0].position, 900).await.unwrap(), 0);
        assert!(store.unnotified_journal(10).await.unwrap().is_empty());

        assert_eq!(store.next_notification_due().await.unwrap(), Some(1_000));
        assert!(store.due_notifications(999, 10).await.unwrap().is_empty());
        let due = store.due_notifications(1_000, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        let opened = &due[0];
        assert_eq!(
            (opened.idempotency_key.as_str(), opened.state.as_str(), opened.attempts, opened.created_ms),
            ("1/opened/ops", "pending", 0, 900)
        );
        assert_eq!(opened.event, IncidentEvent::Opened);
        store.record_delivery(attempt(opened.id, 1_001, "pending", 2_000)).await.unwrap();
        assert_eq!(store.next_notification_due().await.unwrap(), Some(2_000));
        assert!(store.due_notifications(1_999, 10).await.unwrap().is_empty());

        let due = store.due_notifications(6_000, 10).await.unwrap();
        assert_eq!(
            due.iter().map(|row| row.idempotency_key.as_str()).collect::<Vec<_>>(),
            vec!["1/opened/ops", "1/acknowledged/ops"],
            "soonest first"
        );
        assert_eq!(due[0].attempts, 1);
        assert_eq!(due[0].last_error.as_deref(), Some("HTTP 503"));
        store.record_delivery(attempt(due[0].id, 6_001, "delivered", 6_001)).await.unwrap();
        store.record_delivery(attempt(due[1].id, 6_002, "failed", 6_002)).await.unwrap();
        assert_eq!(store.next_notification_due().await.unwrap(), None);
        assert!(store.due_notifications(99_000, 10).await.unwrap().is_empty());

        let delivered = store.notifications(NotificationFilter { state: Some("delivered".to_string()), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(delivered.len(), 1);
        assert_eq!((delivered[0].attempts, delivered[0].delivered_ms), (2, Some(6_001)));
        let failed = store.notifications(NotificationFilter { state: Some("failed".to_string()), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].delivered_ms, None);
    }
}

on_both_backends! {
    async fn notifications_page_newest_first(backend: &TestBackend) {
        let store = backend.open().await;
        let queued: Vec<NewNotification> = (1..=5)
            .map(|incident| notification(incident, IncidentEvent::Opened, 1_000))
            .collect();
        assert_eq!(store.enqueue_notifications(queued, 0, 900).await.unwrap(), 5);
        let all = store.notifications(NotificationFilter { limit: 100, ..Default::default() }).await.unwrap();
        assert_eq!(all.len(), 5);
        assert!(all.windows(2).all(|pair| pair[0].id > pair[1].id), "newest first");

        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let page = store.notifications(NotificationFilter { before_id: before, limit: 2, ..Default::default() }).await.unwrap();
            let Some(last) = page.last() else { break };
            assert!(page.len() <= 2);
            before = Some(last.id);
            paged.extend(page);
        }
        assert_eq!(paged, all);

        let due = store.due_notifications(1_000, 1).await.unwrap();
        store.record_delivery(attempt(due[0].id, 1_001, "delivered", 1_001)).await.unwrap();
        let pending = store.notifications(NotificationFilter { state: Some("pending".to_string()), limit: 100, ..Default::default() }).await.unwrap();
        assert_eq!(pending.len(), 4);
        let older = store
            .notifications(NotificationFilter {
                state: Some("pending".to_string()),
                before_id: Some(pending[1].id),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(older, pending[2..].to_vec());
        assert!(store.notifications(NotificationFilter { state: Some("held".to_string()), limit: 100, ..Default::default() }).await.unwrap().is_empty());

        let of_incident_3 = store
            .notifications(NotificationFilter { incident_id: Some(3), limit: 100, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(of_incident_3.iter().map(|row| row.incident_id).collect::<Vec<_>>(), [3]);
        let delivered_of = |incident_id| {
            let store = &store;
            async move {
                store
                    .notifications(NotificationFilter {
                        incident_id: Some(incident_id),
                        state: Some("delivered".to_string()),
                        limit: 100,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .len()
            }
        };
        let delivered_incident = due[0].incident_id;
        assert_eq!(delivered_of(delivered_incident).await, 1);
        assert_eq!(delivered_of(delivered_incident % 5 + 1).await, 0);
    }
}

fn window(assets: &[&str], tags: &[&str], starts_ms: i64, ends_ms: i64) -> MaintenanceWindow {
    MaintenanceWindow {
        id: 0,
        asset_ids: assets.iter().map(|asset| asset.to_string()).collect(),
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        starts_ms,
        ends_ms,
        change_ref: Some("CHG-7".to_string()),
        change_id: None,
        reason: Some("kernel update".to_string()),
        created_by: "alice".to_string(),
        created_ms: 500,
    }
}

on_both_backends! {
    async fn maintenance_windows_are_created_listed_and_ended(backend: &TestBackend) {
        let store = backend.open().await;
        let now = 10_000;
        let current = store.create_maintenance(window(&["db-1"], &[], 5_000, 20_000)).await.unwrap();
        let later = store.create_maintenance(window(&[], &["web", "eu"], 15_000, 30_000)).await.unwrap();
        let past = store.create_maintenance(window(&["db-2"], &[], 1_000, 2_000)).await.unwrap();
        assert!(current != later && later != past);

        let windows = store.maintenance_windows(now).await.unwrap();
        assert_eq!(windows.iter().map(|window| window.id).collect::<Vec<_>>(), vec![current, later]);
        assert_eq!(windows[0], MaintenanceWindow { id: current, ..window(&["db-1"], &[], 5_000, 20_000) });
        assert_eq!(windows[1].tags, vec!["web".to_string(), "eu".to_string()]);
        assert!(windows[0].is_active(now) && !windows[1].is_active(now));

        // Ending a window now: it stops covering anything; a future one
        // ended now never starts.
        assert!(store.end_maintenance(current, now).await.unwrap());
        assert!(store.end_maintenance(later, now).await.unwrap());
        assert!(!store.end_maintenance(past + 100, now).await.unwrap(), "no such window");
        assert!(store.maintenance_windows(now).await.unwrap().is_empty());
        let ended = store.maintenance_windows(now - 1).await.unwrap();
        assert_eq!(
            ended.iter().map(|window| (window.id, window.starts_ms, window.ends_ms)).collect::<Vec<_>>(),
            vec![(current, 5_000, now), (later, now, now)]
        );
        // Ending an already ended window does not move it later.
        assert!(store.end_maintenance(past, now).await.unwrap());
        let all = store.maintenance_windows(0).await.unwrap();
        assert_eq!(all[0].id, past);
        assert_eq!((all[0].starts_ms, all[0].ends_ms), (1_000, 2_000));
    }
}

on_both_backends! {
    async fn held_notifications_wait_until_released_or_suppressed(backend: &TestBackend) {
        let store = backend.open().await;
        let held = |incident_id| NewNotification {
            held: true,
            // Held rows are never grouped: they page on their own.
            group_key: Some("g".to_string()),
            ..notification(incident_id, IncidentEvent::Opened, 1_000)
        };
        store
            .enqueue_notifications(vec![held(1), held(2), notification(3, IncidentEvent::Opened, 1_000)], 0, 900)
            .await
            .unwrap();
        let waiting = store.held_notifications().await.unwrap();
        assert_eq!(waiting.iter().map(|row| row.incident_id).collect::<Vec<_>>(), vec![1, 2]);
        assert!(waiting.iter().all(|row| row.state == "held" && row.group_key.is_none()));
        assert_eq!(
            store.notification_state("1/opened/ops".to_string()).await.unwrap(),
            Some(("held".to_string(), None))
        );
        let due = store.due_notifications(50_000, 10).await.unwrap();
        assert_eq!(due.iter().map(|row| row.incident_id).collect::<Vec<_>>(), vec![3], "held rows are not due");
        store.record_delivery(attempt(due[0].id, 50_000, "delivered", 50_000)).await.unwrap();

        store.release_notification(waiting[0].id, "pending", 60_000).await.unwrap();
        store.release_notification(waiting[1].id, "suppressed", 60_000).await.unwrap();
        // A second release (another collector's, or a late one) changes nothing.
        store.release_notification(waiting[1].id, "pending", 61_000).await.unwrap();
        assert!(store.held_notifications().await.unwrap().is_empty());
        assert_eq!(
            store.notification_state("2/opened/ops".to_string()).await.unwrap(),
            Some(("suppressed".to_string(), None))
        );
        assert!(store.due_notifications(59_999, 10).await.unwrap().is_empty(), "due from its release");
        let released = store.due_notifications(60_000, 10).await.unwrap();
        assert_eq!(released.iter().map(|row| row.incident_id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(store.notification_state("9/opened/ops".to_string()).await.unwrap(), None);
    }
}

fn grouped(incident_id: i64, group: &str) -> NewNotification {
    NewNotification {
        group_key: Some(group.to_string()),
        ..notification(incident_id, IncidentEvent::Opened, 1_000)
    }
}

fn flush(group: &str, now_ms: i64) -> GroupFlush {
    GroupFlush {
        group_key: group.to_string(),
        channel: "ops".to_string(),
        kind: "storm".to_string(),
        event: IncidentEvent::Opened,
        detail: r#"{"count":2}"#.to_string(),
        timeline: "sent in a storm message".to_string(),
        now_ms,
    }
}

on_both_backends! {
    async fn grouped_rows_go_out_in_one_message_per_flush(backend: &TestBackend) {
        let store = backend.open().await;
        store
            .enqueue_notifications(vec![grouped(1, "g"), grouped(2, "g"), grouped(3, "h")], 0, 900)
            .await
            .unwrap();
        assert!(store.due_notifications(50_000, 10).await.unwrap().is_empty(), "kept, not sent alone");
        let mut kept = store.kept_groups().await.unwrap();
        kept.sort();
        assert_eq!(kept, vec![("g".to_string(), "ops".to_string()), ("h".to_string(), "ops".to_string())]);
        assert_eq!(
            store.notification_state("1/opened/ops".to_string()).await.unwrap(),
            Some(("grouped".to_string(), Some("g".to_string())))
        );

        let (message, members) = store.flush_group(flush("g", 2_000)).await.unwrap().unwrap();
        assert_eq!(members, 2);
        assert_eq!(store.flush_group(flush("g", 2_001)).await.unwrap(), None, "nothing left to send");
        assert_eq!(store.group_members(message).await.unwrap(), vec![1, 2]);
        assert_eq!(store.grouped_incidents("g".to_string()).await.unwrap(), vec![1, 2]);
        assert_eq!(store.kept_groups().await.unwrap(), vec![("h".to_string(), "ops".to_string())]);
        assert_eq!(
            store.notification_state("2/opened/ops".to_string()).await.unwrap(),
            Some(("grouped_sent".to_string(), Some("g".to_string())))
        );
        let due = store.due_notifications(2_000, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        let sent = &due[0];
        assert_eq!(sent.id, message);
        assert_eq!(
            (sent.incident_id, sent.group_key.as_deref(), sent.digest_kind.as_deref(), sent.group_detail.as_deref()),
            (1, Some("g"), Some("storm"), Some(r#"{"count":2}"#))
        );
        let rows = store.notifications(NotificationFilter { limit: 10, ..Default::default() }).await.unwrap();
        let first = rows.iter().find(|row| row.idempotency_key == "1/opened/ops").unwrap();
        assert_eq!(first.digest_id, Some(message));

        let escalation = GroupEscalationMessage {
            idempotency_key: "group:g/escalated.0.0/ops".to_string(),
            group_key: "g".to_string(),
            event: IncidentEvent::Escalated { level: 0, round: 0 },
            channel: "ops".to_string(),
            due_ms: 3_000,
            detail: r#"{"level":0,"round":0,"incidents":[1,2]}"#.to_string(),
            members: vec![1, 2],
            timeline: "escalated with its group".to_string(),
        };
        let empty = GroupEscalationMessage {
            idempotency_key: "group:e/escalated.0.0/ops".to_string(),
            members: Vec::new(),
            ..escalation.clone()
        };
        assert_eq!(
            store.enqueue_group_escalations(vec![escalation.clone(), empty], 2_500).await.unwrap(),
            1
        );
        assert_eq!(store.enqueue_group_escalations(vec![escalation], 2_600).await.unwrap(), 0, "queued once");
        let escalations = store.notifications(NotificationFilter { limit: 10, ..Default::default() }).await.unwrap();
        let queued = escalations.iter().find(|row| row.digest_kind.as_deref() == Some("escalation")).unwrap();
        assert_eq!(
            (queued.incident_id, queued.event, queued.next_attempt_ms, queued.created_ms),
            (1, IncidentEvent::Escalated { level: 0, round: 0 }, 3_000, 2_500)
        );
    }
}

/// Two collectors on one database (PostgreSQL only: SQLite has one writer).
async fn two_collectors() -> Option<(TestDb, Store, Store)> {
    let db = TestDb::create().await?;
    let a = Store::open_postgres(&db.settings(), "collector-a")
        .await
        .unwrap();
    let b = Store::open_postgres(&db.settings(), "collector-b")
        .await
        .unwrap();
    Some((db, a, b))
}

/// Delivers everything due at `now_ms` until nothing is; returns the ids sent.
async fn deliver_all(store: Store, now_ms: i64) -> Vec<i64> {
    let mut sent = Vec::new();
    loop {
        let due = store.due_notifications(now_ms, 7).await.unwrap();
        if due.is_empty() {
            return sent;
        }
        for row in due {
            tokio::task::yield_now().await;
            store
                .record_delivery(attempt(row.id, now_ms, "delivered", now_ms))
                .await
                .unwrap();
            sent.push(row.id);
        }
    }
}

#[tokio::test]
async fn two_collectors_deliver_every_notification_exactly_once() {
    let Some((db, a, b)) = two_collectors().await else {
        return;
    };
    let queued: Vec<NewNotification> = (1..=150)
        .map(|incident| notification(incident, IncidentEvent::Opened, 1_000))
        .collect();
    // Both collectors route the same entries: one row per key.
    let (left, right) = tokio::join!(
        a.enqueue_notifications(queued.clone(), 0, 900),
        b.enqueue_notifications(queued, 0, 900)
    );
    assert_eq!(left.unwrap() + right.unwrap(), 150);

    let (left, right) = tokio::join!(
        tokio::spawn(deliver_all(
            Store::open_postgres(&db.settings(), "collector-a")
                .await
                .unwrap(),
            5_000
        )),
        tokio::spawn(deliver_all(
            Store::open_postgres(&db.settings(), "collector-b")
                .await
                .unwrap(),
            5_000
        )),
    );
    let (left, right) = (left.unwrap(), right.unwrap());
    assert!(
        !left.is_empty() && !right.is_empty(),
        "both took part: {} / {}",
        left.len(),
        right.len()
    );
    let mut all: Vec<i64> = left.into_iter().chain(right).collect();
    all.sort_unstable();
    let sent = all.len();
    all.dedup();
    assert_eq!((sent, all.len()), (150, 150), "each delivered once");
    let attempts: i64 = sql(&db)
        .await
        .query_one("SELECT count(*) FROM outbox_attempts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 150);
    let delivered = a
        .notifications(NotificationFilter {
            state: Some("delivered".to_string()),
            limit: 1_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(delivered.len(), 150);
    assert!(delivered.iter().all(|row| row.attempts == 1));
    assert!(
        b.due_notifications(99_000_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_dead_collectors_delivery_claim_is_taken_over() {
    let Some((_db, a, b)) = two_collectors().await else {
        return;
    };
    a.enqueue_notifications(vec![notification(1, IncidentEvent::Opened, 1_000)], 0, 900)
        .await
        .unwrap();
    let claimed = a.due_notifications(2_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    // a stalls: while its lease runs the row is due for nobody, and the
    // next try is when the lease ends (not now, which would spin the loop).
    assert!(b.due_notifications(3_000, 10).await.unwrap().is_empty());
    let lease_end = b.next_notification_due().await.unwrap().unwrap();
    assert!(lease_end > 3_000, "{lease_end}");
    assert!(
        b.due_notifications(lease_end - 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let taken = b.due_notifications(lease_end, 10).await.unwrap();
    assert_eq!(
        taken.iter().map(|row| row.id).collect::<Vec<_>>(),
        vec![claimed[0].id]
    );

    // a's late result is ignored without failing its loop; b's stands.
    a.record_delivery(attempt(
        claimed[0].id,
        lease_end + 1,
        "failed",
        lease_end + 1,
    ))
    .await
    .unwrap();
    b.record_delivery(attempt(
        taken[0].id,
        lease_end + 2,
        "delivered",
        lease_end + 2,
    ))
    .await
    .unwrap();
    let rows = a
        .notifications(NotificationFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (
            rows[0].state.as_str(),
            rows[0].attempts,
            rows[0].delivered_ms
        ),
        ("delivered", 1, Some(lease_end + 2))
    );
}

#[tokio::test]
async fn two_collectors_route_each_journal_entry_once() {
    let Some((db, a, b)) = two_collectors().await else {
        return;
    };
    let client = sql(&db).await;
    for incident in 1..=60_i64 {
        client
            .execute(
                "INSERT INTO incident_events (incident_id, kind, ts_ms) VALUES ($1, 'opened', 100)",
                &[&incident],
            )
            .await
            .unwrap();
    }
    let route = |store: Store| {
        tokio::spawn(async move {
            let mut routed = Vec::new();
            loop {
                let entries = store.unnotified_journal(4).await.unwrap();
                let Some(last) = entries.last().map(|entry| entry.position) else {
                    return routed;
                };
                let queued = entries
                    .iter()
                    .map(|entry| notification(entry.incident_id, entry.event, 1_000))
                    .collect();
                store
                    .enqueue_notifications(queued, last, 1_000)
                    .await
                    .unwrap();
                routed.extend(entries.iter().map(|entry| entry.incident_id));
            }
        })
    };
    let (left, right) = tokio::join!(route(a), route(b));
    let mut all: Vec<i64> = left.unwrap().into_iter().chain(right.unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=60).collect::<Vec<_>>(), "each entry routed once");
    let unrouted: i64 = client
        .query_one(
            "SELECT count(*) FROM incident_events WHERE routed_ms IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unrouted, 0);
}

#[tokio::test]
async fn two_collectors_flush_a_group_once() {
    let Some((_db, a, b)) = two_collectors().await else {
        return;
    };
    let queued: Vec<NewNotification> = (1..=20).map(|incident| grouped(incident, "g")).collect();
    a.enqueue_notifications(queued, 0, 900).await.unwrap();
    let (left, right) = tokio::join!(
        a.flush_group(flush("g", 2_000)),
        b.flush_group(flush("g", 2_000))
    );
    let flushed: Vec<(i64, usize)> = [left.unwrap(), right.unwrap()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(flushed.len(), 1, "one message: {flushed:?}");
    assert_eq!(flushed[0].1, 20);
    assert_eq!(
        a.group_members(flushed[0].0).await.unwrap(),
        (1..=20).collect::<Vec<_>>()
    );
    // Both collectors escalate the group at the same step: one message.
    let escalation = GroupEscalationMessage {
        idempotency_key: "group:g/escalated.0.0/ops".to_string(),
        group_key: "g".to_string(),
        event: IncidentEvent::Escalated { level: 0, round: 0 },
        channel: "ops".to_string(),
        due_ms: 3_000,
        detail: r#"{"level":0,"round":0,"incidents":[1,2]}"#.to_string(),
        members: vec![1, 2],
        timeline: "escalated with its group".to_string(),
    };
    let (left, right) = tokio::join!(
        a.enqueue_group_escalations(vec![escalation.clone()], 2_500),
        b.enqueue_group_escalations(vec![escalation], 2_500)
    );
    assert_eq!(left.unwrap() + right.unwrap(), 1);
}

/// Inserts an incident row as the incidents code would; returns its id.
async fn incident_row(
    client: &tokio_postgres::Client,
    key: &str,
    resolved_at_ms: Option<i64>,
) -> i64 {
    let state = if resolved_at_ms.is_some() {
        "resolved"
    } else {
        "open"
    };
    client
        .query_one(
            "INSERT INTO incidents (dedup_key, rule, metric, agent_id, host, labels, severity, state, summary,
                 since_ms, opened_at_ms, resolved_at_ms)
             VALUES ($1, 'r', 'm', 'a1', 'h', '{}', 'critical', $2, 's', 1, 1, $3) RETURNING id",
            &[&key, &state, &resolved_at_ms],
        )
        .await
        .unwrap()
        .get(0)
}

async fn count(client: &tokio_postgres::Client, query: &str) -> i64 {
    client.query_one(query, &[]).await.unwrap().get(0)
}

/// PostgreSQL has no notify cursor: an incident is kept while any journal
/// entry of it is unrouted (the SQLite suite's retention test covers the
/// cursor and the tables of other areas).
#[tokio::test]
async fn retention_keeps_incidents_until_every_journal_entry_is_routed() {
    const DAY: i64 = 24 * 3600 * 1000;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = Store::open_postgres(&db.settings(), "collector-a")
        .await
        .unwrap();
    let client = sql(&db).await;
    let now = 1_000 * DAY;
    let old = incident_row(&client, "old", Some(2 * DAY)).await;
    let recent = incident_row(&client, "recent", Some(now - DAY)).await;
    let open = incident_row(&client, "open", None).await;
    for incident in [old, recent, open] {
        client
            .execute(
                "INSERT INTO incident_events (incident_id, kind, ts_ms) VALUES ($1, 'opened', 1)",
                &[&incident],
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO incident_timeline (incident_id, ts_ms, kind, actor, detail) VALUES ($1, 1, 'opened', 'rule', '')",
                &[&incident],
            )
            .await
            .unwrap();
    }
    // An old delivered notification of the open incident, and a pending one.
    store
        .enqueue_notifications(
            vec![
                notification(open, IncidentEvent::Opened, DAY),
                notification(open, IncidentEvent::Acknowledged, DAY),
            ],
            0,
            DAY,
        )
        .await
        .unwrap();
    let due = store.due_notifications(DAY, 1).await.unwrap();
    store
        .record_delivery(attempt(due[0].id, DAY, "delivered", DAY))
        .await
        .unwrap();
    let policy = RetentionPolicy {
        resolved_incidents: std::time::Duration::from_secs(30 * 24 * 3600),
        notifications: std::time::Duration::from_secs(30 * 24 * 3600),
        ..RetentionPolicy::default()
    };

    let report = store.prune_records(policy, now).await.unwrap();
    assert_eq!(
        (report.incidents, report.notifications),
        (0, 1),
        "{report:?}"
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox_attempts").await,
        0
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox").await,
        1,
        "the pending one stays"
    );

    // Once the journal is routed, the old resolved incident goes with its
    // timeline and journal; the recent and the open one stay.
    let journal = store.unnotified_journal(100).await.unwrap();
    assert_eq!(journal.len(), 3);
    store
        .enqueue_notifications(
            vec![notification(old, IncidentEvent::Resolved, now)],
            journal[2].position,
            now,
        )
        .await
        .unwrap();
    let report = store.prune_records(policy, now).await.unwrap();
    assert_eq!(
        report.incidents, 0,
        "its resolution is still to be sent: {report:?}"
    );
    let due = store.due_notifications(now, 10).await.unwrap();
    let resolution = due.iter().find(|row| row.incident_id == old).unwrap();
    store
        .record_delivery(attempt(resolution.id, now, "delivered", now))
        .await
        .unwrap();
    let report = store.prune_records(policy, now).await.unwrap();
    assert_eq!(report.incidents, 1, "{report:?}");
    let remaining: Vec<i64> = client
        .query("SELECT id FROM incidents ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(remaining, vec![recent, open]);
    for table in ["incident_events", "incident_timeline", "outbox"] {
        let left: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE incident_id = $1"),
                &[&old],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "{table}");
    }
    assert!(store.prune_records(policy, now).await.unwrap().is_empty());
}

// Retention of samples also drops journal entries already routed (and only
// those): an unrouted entry survives any cutoff.
on_both_backends! {
    async fn prune_drops_routed_journal_entries_and_keeps_unrouted_ones(backend: &TestBackend) {
        let store = backend.open().await;
        store
            .apply_incident_changes(vec![
                open_change(new_incident("rule/a1/x", 1_000)),
                open_change(new_incident("rule/a1/y", 2_000)),
            ])
            .await
            .unwrap();
        let first = store.unnotified_journal(1).await.unwrap();
        assert_eq!(first.len(), 1);
        store
            .enqueue_notifications(Vec::new(), first[0].position, 3_000)
            .await
            .unwrap();
        assert_eq!(table_rows(backend, &store, "incident_events").await, 2);
        store.prune(i64::MAX).await.unwrap();
        assert_eq!(table_rows(backend, &store, "incident_events").await, 1);
        let left = store.unnotified_journal(10).await.unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_ne!(left[0].position, first[0].position);
        assert_eq!(
            store
                .incident(left[0].incident_id)
                .await
                .unwrap()
                .unwrap()
                .dedup_key,
            "rule/a1/y"
        );
    }
}
