//! List endpoints page with `?limit=&cursor=`: following `X-Next-Cursor`
//! visits every row exactly once, and a bad cursor is a clear 400.
#![allow(clippy::unwrap_used)]

use steward_collector::CollectorConfig;
use steward_collector::domain::Severity;
use steward_collector::store::{
    IncidentChange, InventoryUpdate, NewIncident, SampleBatch, SampleRecord,
};
use tokio_util::sync::CancellationToken;

fn incident(key: &str) -> IncidentChange {
    IncidentChange::Open(Box::new(NewIncident {
        dedup_key: key.into(),
        rule: "r".into(),
        metric: "m".into(),
        agent_id: "a1".into(),
        host: "h".into(),
        labels: Default::default(),
        severity: Severity::Minor,
        summary: key.into(),
        runbook: None,
        value: None,
        since_ms: 1,
        opened_at_ms: 1,
        ack_due_at_ms: None,
        resolve_due_at_ms: None,
        parents: Vec::new(),
        parent_hold_ms: 0,
        recurrence: None,
        change_link_after_ms: None,
    }))
}

/// Every row of `base` (which carries its own `limit`), following
/// `X-Next-Cursor`; returns the rows and the number of pages.
async fn follow(client: &reqwest::Client, base: &str) -> (Vec<serde_json::Value>, usize) {
    let (mut url, mut rows, mut pages) = (base.to_string(), Vec::new(), 0);
    loop {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let next = response
            .headers()
            .get("x-next-cursor")
            .map(|value| value.to_str().unwrap().to_string());
        let page: Vec<serde_json::Value> =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        rows.extend(page);
        pages += 1;
        assert!(pages < 20, "paging does not end: {base}");
        match next {
            Some(cursor) => url = format!("{base}&cursor={cursor}"),
            None => return (rows, pages),
        }
    }
}

#[tokio::test]
async fn following_the_cursor_visits_every_incident_once() {
    steward_core::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.toml");
    std::fs::write(
        &path,
        "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\n[tls]\nenabled = false\n\n\
         [auth]\nagent_tokens = [\"paging-test-token-0123456789\"]\napi_tokens = [\"paging-test-api-token-0123456789\"]\n\n[storage]\nsqlite = \"steward.db\"\n",
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let collector =
        steward_collector::start(CollectorConfig::load(&path).unwrap(), shutdown.clone())
            .await
            .unwrap();
    let keys: Vec<String> = (0..7).map(|index| format!("k{index}")).collect();
    collector
        .store
        .apply_incident_changes(keys.iter().map(|key| incident(key)).collect())
        .await
        .unwrap();

    // A token from `[auth] api_tokens` (admin, `config-1`).
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        "Bearer paging-test-api-token-0123456789".parse().unwrap(),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let base = format!("http://{}/api/v1/incidents?limit=3", collector.http_addr);
    let (rows, pages) = follow(&client, &base).await;
    assert!(rows.len() <= 3 * pages);
    let seen: Vec<String> = rows
        .iter()
        .map(|incident| incident["dedup_key"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = keys.iter().rev().cloned().collect();
    assert_eq!(seen, expected, "newest first, each once");
    assert_eq!(pages, 3);

    let bad = client
        .get(format!("{base}&cursor=nonsense"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let agents = client
        .get(format!(
            "http://{}/api/v1/agents?limit=2&cursor=zz",
            collector.http_addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(agents.status(), 400);

    // Latest values page the same way, by (agent, metric, labels).
    let samples = (0..5)
        .map(|index| SampleRecord {
            metric: "disk.used_percent".into(),
            labels: [("mount".to_string(), format!("/m{index}"))].into(),
            value: f64::from(index),
            timestamp_ms: 1_000,
        })
        .collect();
    collector
        .store
        .commit_batch(SampleBatch {
            agent_id: "a1".into(),
            epoch: 1,
            seq: 1,
            received_ms: 1_000,
            samples,
        })
        .await
        .unwrap();
    let base = format!(
        "http://{}/api/v1/series?agent=a1&limit=2",
        collector.http_addr
    );
    let mounts: Vec<String> = follow(&client, &base)
        .await
        .0
        .iter()
        .map(|series| series["labels"]["mount"].to_string())
        .collect();
    assert_eq!(
        mounts,
        ["\"/m0\"", "\"/m1\"", "\"/m2\"", "\"/m3\"", "\"/m4\""]
    );

    // Packages page by name, inventory changes by id (newest first).
    let list = |names: &[&str]| -> std::collections::BTreeMap<String, String> {
        names
            .iter()
            .map(|name| (name.to_string(), "1.0".to_string()))
            .collect()
    };
    let update = |seq: u64, full: bool, names: &[&str]| InventoryUpdate {
        agent_id: "a1".into(),
        epoch: 1,
        seq,
        received_ms: 1_000 * seq as i64,
        full,
        facts_changed: Default::default(),
        facts_removed: vec![],
        disks: full.then(Vec::new),
        interfaces: full.then(Vec::new),
        packages_replaced: full,
        packages_upserted: list(names),
        packages_removed: vec![],
        packages_fingerprint: 0,
    };
    collector
        .store
        .commit_inventory(update(2, true, &["a", "b", "c", "d", "e"]))
        .await
        .unwrap();
    collector
        .store
        .commit_inventory(update(3, false, &["f", "g", "h"]))
        .await
        .unwrap();
    let agent_list =
        |path: &str, limit: u32| format!("http://{}{path}?limit={limit}", collector.http_addr);
    let names: Vec<String> = follow(&client, &agent_list("/api/v1/agents/a1/packages", 3))
        .await
        .0
        .iter()
        .map(|package| package["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "b", "c", "d", "e", "f", "g", "h"]);
    let (changes, _) = follow(&client, &agent_list("/api/v1/agents/a1/changes", 2)).await;
    let (all, _) = follow(&client, &agent_list("/api/v1/agents/a1/changes", 1000)).await;
    assert!(
        all.len() >= 3,
        "the diff recorded a change per package: {all:?}"
    );
    assert_eq!(changes, all, "paged and unpaged give the same events");
    shutdown.cancel();
    collector.wait().await.unwrap();
}
