//! A database written before schema versioning is upgraded in place without
//! losing a row, and a database from a newer release is refused.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::Connection;
use steward_collector::store::{
    CommitOutcome, IncidentFilter, SCHEMA_VERSION, SampleBatch, SampleRecord, SeriesKey, Store,
    StoreError,
};

/// The schema exactly as commit 03dc34a created it (user_version stays 0).
const SCHEMA_V0: &str = include_str!("fixtures/schema-v0.sql");

/// At least one row in every table of the v0 schema.
const ROWS_V0: &str = r#"
INSERT INTO agents VALUES ('a1', 'web-1', '0.1.0', '{"os":"debian"}', 1000, 5000);
INSERT INTO agents VALUES ('a2', 'db-1', '0.1.0', '{}', 1100, 5100);
INSERT INTO series VALUES (1, 'a1', 'disk.used_percent', '{"mount":"/"}', 71.5, 4000);
INSERT INTO series VALUES (2, 'a2', 'cpu.usage_percent', '{}', 12.0, 4100);
INSERT INTO samples VALUES (1, 3000, 70.0), (1, 4000, 71.5), (2, 4100, 12.0);
INSERT INTO batches VALUES ('a1', 7, 1, 3000, 1), ('a1', 7, 2, 4000, 1), ('a2', 3, 1, 4100, 1);
INSERT INTO inventory VALUES ('a1', '{"serial":"SN1"}', '[]', '[]', 99, 3500);
INSERT INTO packages VALUES ('a1', 'openssl', '3.0.1'), ('a1', 'curl', '8.0');
INSERT INTO inventory_events VALUES (1, 'a1', 3500, 'package_installed', 'curl', NULL, '8.0');
INSERT INTO incidents (id, dedup_key, rule, metric, agent_id, host, labels, severity, state,
    summary, since_ms, opened_at_ms)
    VALUES (1, 'disk-full|a1|/', 'disk-full', 'disk.used_percent', 'a1', 'web-1',
    '{"mount":"/"}', 'critical', 'open', 'Disk / is 71.5% full', 3900, 4000);
INSERT INTO incident_timeline VALUES (1, 1, 4000, 'opened', 'rules', 'value 71.5');
INSERT INTO assets VALUES ('asset-1', '{}', 'active', 'web-1', 4200);
INSERT INTO asset_agents VALUES ('a1', 'asset-1', 0.9, '["serial"]', 4200);
INSERT INTO asset_events VALUES (1, 'asset-1', 4200, 'inventory', 'created', NULL, NULL, NULL);
INSERT INTO incident_events VALUES (1, 1, 'opened', 4000);
INSERT INTO notify_cursor VALUES (1, 1);
INSERT INTO outbox VALUES (1, 'incident-1-opened-ops', 1, 'opened', 'ops', 'pending', 1, 4500,
    'connection refused', 4000, NULL);
INSERT INTO outbox_attempts VALUES (1, 1, 4100, NULL, 'connection refused');
INSERT INTO maintenance_windows VALUES (1, '["asset-1"]', '[]', 6000, 9000, 'CHG-1', 'kernel',
    'ops', 4300);
"#;

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap()
}

/// Every row of every table of the v0 schema, its v0 columns only (later
/// migrations may add columns and tables), as text, keyed by table name.
fn dump(path: &Path) -> BTreeMap<String, Vec<String>> {
    let reference = Connection::open_in_memory().unwrap();
    reference.execute_batch(SCHEMA_V0).unwrap();
    let tables: Vec<String> = reference
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let connection = Connection::open(path).unwrap();
    tables
        .into_iter()
        .map(|table| {
            let columns: Vec<String> = reference
                .prepare("SELECT '\"' || name || '\"' FROM pragma_table_info(?1) ORDER BY cid")
                .unwrap()
                .query_map([&table], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let mut statement = connection
                .prepare(&format!("SELECT {} FROM \"{table}\"", columns.join(", ")))
                .unwrap();
            let width = statement.column_count();
            let mut rows: Vec<String> = statement
                .query_map([], |row| {
                    (0..width)
                        .map(|index| row.get::<_, rusqlite::types::Value>(index))
                        .collect::<Result<Vec<_>, _>>()
                        .map(|values| format!("{values:?}"))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            rows.sort();
            (table, rows)
        })
        .collect()
}

#[tokio::test]
async fn a_database_from_before_versioning_keeps_every_row_and_reaches_the_latest_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    {
        let connection = Connection::open(&path).unwrap();
        connection.execute_batch(SCHEMA_V0).unwrap();
        connection.execute_batch(ROWS_V0).unwrap();
    }
    assert_eq!(user_version(&path), 0);
    let before = dump(&path);
    assert!(
        before.values().all(|rows| !rows.is_empty()),
        "the fixture must fill every table: {before:#?}"
    );

    let store = Store::open(&path).unwrap();
    // The code reads the adopted rows as its own.
    let agents = store.agents().await.unwrap();
    assert_eq!(
        agents
            .iter()
            .map(|agent| agent.hostname.as_str())
            .collect::<Vec<_>>(),
        ["db-1", "web-1"]
    );
    let disk = SeriesKey {
        agent_id: "a1".into(),
        metric: "disk.used_percent".into(),
        labels: BTreeMap::from([("mount".into(), "/".into())]),
    };
    assert_eq!(store.latest_value(&disk).unwrap().value, 71.5);
    assert_eq!(store.counts().await.unwrap(), (3, 3));
    // Rows of the pre-chunk `samples` table stay readable.
    assert_eq!(
        store.series_points(&disk).await.unwrap(),
        [(3000, 70.0), (4000, 71.5)]
    );
    assert_eq!(store.committed_seq("a1", 7).await.unwrap(), 2);
    let incident = store.incident(1).await.unwrap().unwrap();
    assert_eq!(
        (incident.state.as_str(), incident.host.as_str()),
        ("open", "web-1")
    );
    assert_eq!(
        store
            .incidents(IncidentFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    let outbox = store
        .notifications(steward_collector::store::NotificationFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].idempotency_key, "incident-1-opened-ops");
    assert_eq!(store.packages("a1").await.unwrap().len(), 2);
    store.close().await;

    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    assert_eq!(dump(&path), before, "the upgrade must not change any row");

    // And it keeps working: the old idempotency keys still hold.
    let store = Store::open(&path).unwrap();
    let batch = |seq| SampleBatch {
        agent_id: "a1".into(),
        epoch: 7,
        seq,
        received_ms: 6000,
        samples: vec![SampleRecord {
            metric: "disk.used_percent".into(),
            labels: disk.labels.clone(),
            value: 80.0,
            timestamp_ms: 6000,
        }],
    };
    assert_eq!(
        store.commit_batch(batch(2)).await.unwrap(),
        CommitOutcome::Duplicate
    );
    assert_eq!(
        store.commit_batch(batch(3)).await.unwrap(),
        CommitOutcome::Stored { samples: 1 }
    );
    assert_eq!(store.latest_value(&disk).unwrap().value, 80.0);
    // New points are stored beside the old rows and read together with them.
    assert_eq!(
        store.series_points(&disk).await.unwrap(),
        [(3000, 70.0), (4000, 71.5), (6000, 80.0)]
    );
    store.close_head_chunks().await.unwrap();
    assert_eq!(store.counts().await.unwrap(), (4, 4));
    store.close().await;
}

#[tokio::test]
async fn a_database_from_a_newer_release_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    {
        let connection = Connection::open(&path).unwrap();
        connection.execute_batch(SCHEMA_V0).unwrap();
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let error = Store::open(&path).unwrap_err();
    let shown = error.to_string();
    assert!(
        matches!(error, StoreError::SchemaTooNew { found, supported, .. }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{error:?}"
    );
    assert!(
        shown.contains(&format!(
            "schema version {} but this collector knows only up to {SCHEMA_VERSION}",
            SCHEMA_VERSION + 1
        )) && shown.contains("newer release")
            && shown.contains("steward.db"),
        "{shown}"
    );
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION + 1));
}
