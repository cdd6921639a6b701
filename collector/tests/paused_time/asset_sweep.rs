//! The asset sweep under paused time: an agent that falls silent leaves its
//! asset `stale` after `stale_after` and `missing` after `missing_after`,
//! and a new report brings it back to `active`. Nothing but the sweep's own
//! interval moves the asset along.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use steward_collector::assets;
use steward_collector::incidents::Suppression;
use steward_collector::store::{
    AgentHello, AssetEventRow, CommitOutcome, InventoryUpdate, SampleBatch, SampleRecord,
};

use crate::support::{Harness, MINUTE, T0, eventually, quiet};

const AGENT: &str = "agent-web-1";

const POLICY: &str = r#"
[assets]
stale_after = "10m"
missing_after = "1h"
"#;

/// A full first inventory, received at T0.
fn inventory() -> InventoryUpdate {
    InventoryUpdate {
        agent_id: AGENT.into(),
        epoch: 1,
        seq: 1,
        received_ms: T0,
        full: true,
        facts_changed: BTreeMap::from([("hostname".to_string(), "web-1".to_string())]),
        facts_removed: Vec::new(),
        disks: Some(Vec::new()),
        interfaces: Some(Vec::new()),
        packages_replaced: true,
        packages_upserted: BTreeMap::new(),
        packages_removed: Vec::new(),
        packages_fingerprint: steward_core::inventory::packages_fingerprint(&BTreeMap::new()),
    }
}

async fn status(harness: &Harness, asset_id: &str) -> String {
    harness.store.asset(asset_id).await.unwrap().unwrap().status
}

/// The newest history entry that moved the asset's status `from` → `to`.
async fn status_change(
    harness: &Harness,
    asset_id: &str,
    from: &str,
    to: &str,
) -> Option<AssetEventRow> {
    harness
        .store
        .asset_events(asset_id, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, event)| event)
        .find(|event| {
            event.field.as_deref() == Some("status")
                && event.before.as_deref() == Some(from)
                && event.after.as_deref() == Some(to)
        })
}

#[tokio::test(start_paused = true)]
async fn a_silent_asset_goes_stale_then_missing_and_is_active_again_once_its_agent_reports() {
    let mut harness = Harness::start(POLICY).await;
    let policy = harness.config.assets.clone();
    // As the collector chooses it: a quarter of `stale_after`, at most 30 s.
    let sweep_every =
        (policy.stale_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let sweep_ms = sweep_every.as_millis() as i64;
    let (assets, task) = assets::service::start(
        Arc::clone(&harness.store),
        policy,
        sweep_every,
        harness.incidents.clone(),
        Suppression::default(),
        harness.clock,
        harness.shutdown.clone(),
    )
    .await
    .unwrap();
    harness.keep(task);
    // A change may be recorded up to one sweep after its threshold.
    let just_after =
        |at_ms: i64, offset_ms: i64| (T0 + offset_ms..=T0 + offset_ms + sweep_ms).contains(&at_ms);

    // The agent says hello and sends its inventory at T0, then falls silent.
    harness
        .store
        .record_hello(AgentHello {
            agent_id: AGENT.into(),
            hostname: "web-1".into(),
            version: "test".into(),
            facts: BTreeMap::new(),
            seen_ms: T0,
        })
        .await
        .unwrap();
    harness.store.commit_inventory(inventory()).await.unwrap();
    assets.inventory_committed(AGENT.into(), T0).await;
    let asset_id = eventually("the agent's asset record", async || {
        let link = harness.store.asset_link(AGENT).await.unwrap()?;
        Some(link.asset_id)
    })
    .await;
    assert_eq!(status(&harness, &asset_id).await, "active");

    // Swept every 30 s while silent; still active just before `stale_after`.
    let mut offset = 0;
    while offset + sweep_ms < 10 * MINUTE {
        offset += sweep_ms;
        harness.advance_to(offset).await;
    }
    quiet().await;
    assert_eq!(status(&harness, &asset_id).await, "active");

    harness.advance_to(10 * MINUTE).await;
    let stale = eventually("the asset to go stale", async || {
        status_change(&harness, &asset_id, "active", "stale").await
    })
    .await;
    assert!(
        just_after(stale.ts_ms, 10 * MINUTE),
        "stale at +{} ms, expected +10m: {stale:?}",
        stale.ts_ms - T0
    );
    assert_eq!(stale.source, "system");

    // One sweep shortly before `missing_after`, then one at it.
    harness.advance_to(60 * MINUTE - sweep_ms).await;
    quiet().await;
    assert_eq!(status(&harness, &asset_id).await, "stale");
    harness.advance_to(60 * MINUTE).await;
    let missing = eventually("the asset to go missing", async || {
        status_change(&harness, &asset_id, "stale", "missing").await
    })
    .await;
    assert!(
        just_after(missing.ts_ms, 60 * MINUTE),
        "missing at +{} ms, expected +1h: {missing:?}",
        missing.ts_ms - T0
    );
    assert_eq!(status(&harness, &asset_id).await, "missing");

    // A batch at +61m: the next sweep finds the agent reporting again.
    harness.advance_to(61 * MINUTE).await;
    let outcome = harness
        .store
        .commit_batch(SampleBatch {
            agent_id: AGENT.into(),
            // The inventory took seq 1 of this epoch.
            epoch: 1,
            seq: 2,
            received_ms: harness.clock.now_ms(),
            samples: vec![SampleRecord {
                metric: "cpu.used_percent".into(),
                labels: BTreeMap::new(),
                value: 12.0,
                timestamp_ms: harness.clock.now_ms(),
            }],
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Stored { samples: 1 });
    harness.advance_to(61 * MINUTE + sweep_ms).await;
    let back = eventually("the asset to be active again", async || {
        status_change(&harness, &asset_id, "missing", "active").await
    })
    .await;
    assert!(just_after(back.ts_ms, 61 * MINUTE), "{back:?}");
    harness.stop().await;
}
