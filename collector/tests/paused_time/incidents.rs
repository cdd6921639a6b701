//! The incidents task's clock at work: `for`, `keep_firing_for`, absence
//! and SLA targets, with samples fed as ingest would after each commit.

use steward_collector::domain::{IncidentEvent, IncidentRecord, IncidentState, Severity};

use crate::support::{Harness, MINUTE, SECOND, T0};

const CPU: &str = "cpu.used_percent";

/// Pages when CPU stays above 90 % for two minutes; resolves once it has
/// stayed at or below 80 % for five.
const CPU_RULE: &str = r#"
[[rule]]
name = "cpu-hot"
metric = "cpu.used_percent"
op = ">"
threshold = 90.0
clear = 80.0
for = "2m"
keep_firing_for = "5m"
severity = "critical"
"#;

/// How far past a boundary a change may be recorded: the collector ticks
/// every second, and agents here report every 10 s (or every minute).
const SLACK: i64 = 10 * SECOND;

/// Each agent reports `value` for `metric` every `every_ms`, from now
/// through `until_ms` after T0; time ends at the last report.
async fn report(
    harness: &Harness,
    agents: &[&str],
    metric: &str,
    value: f64,
    every_ms: i64,
    until_ms: i64,
) {
    loop {
        for agent in agents {
            harness.sample(agent, metric, value).await;
        }
        let next = harness.elapsed_ms() + every_ms;
        if next > until_ms {
            return;
        }
        harness.advance_to(next).await;
    }
}

/// Whether `at_ms` lies within [`SLACK`] after `offset_ms` after T0.
fn just_after(at_ms: i64, offset_ms: i64) -> bool {
    (T0 + offset_ms..=T0 + offset_ms + SLACK).contains(&at_ms)
}

async fn expect(harness: &mut Harness, event: IncidentEvent) -> IncidentRecord {
    let update = harness.next_event().await;
    assert_eq!(update.event, event, "{:?}", update.incident);
    update.incident
}

#[tokio::test(start_paused = true)]
async fn a_threshold_incident_opens_only_after_for_and_resolves_only_after_keep_firing_for() {
    let mut harness = Harness::start(CPU_RULE).await;

    // Breaching from T0 on; `for` is over at +2m.
    report(&harness, &["web-1"], CPU, 95.0, 10 * SECOND, 110 * SECOND).await;
    harness
        .assert_no_event("breaching for 1m50s, less than `for`")
        .await;
    assert!(
        harness
            .store
            .unresolved_incidents()
            .await
            .unwrap()
            .is_empty()
    );

    harness.advance_to(2 * MINUTE).await;
    harness.sample("web-1", CPU, 95.0).await;
    let opened = expect(&mut harness, IncidentEvent::Opened).await;
    assert_eq!(
        opened.since_ms, T0,
        "the breach began with the first sample"
    );
    assert!(
        just_after(opened.opened_at_ms, 2 * MINUTE),
        "opened at +{} ms, expected +2m",
        opened.opened_at_ms - T0
    );
    assert_eq!(opened.severity, Severity::Critical);

    // 85 lies between `clear` and `threshold`: still firing (hysteresis).
    // Only 70 counts as cleared, from +2m30s on.
    harness.advance_to(2 * MINUTE + 10 * SECOND).await;
    report(&harness, &["web-1"], CPU, 85.0, 10 * SECOND, 140 * SECOND).await;
    harness.advance_to(150 * SECOND).await;
    report(&harness, &["web-1"], CPU, 70.0, 10 * SECOND, 440 * SECOND).await;
    harness
        .assert_no_event("cleared for 4m50s, less than `keep_firing_for`")
        .await;
    let still_open = harness.store.incident(opened.id).await.unwrap().unwrap();
    assert_eq!(still_open.state, IncidentState::Open);

    harness.advance_to(450 * SECOND).await;
    harness.sample("web-1", CPU, 70.0).await;
    let resolved = expect(&mut harness, IncidentEvent::Resolved).await;
    assert_eq!(resolved.id, opened.id);
    assert_eq!(resolved.resolve_reason.as_deref(), Some("cleared"));
    let resolved_at = resolved.resolved_at_ms.unwrap();
    assert!(
        just_after(resolved_at, 450 * SECOND),
        "resolved at +{} ms, expected +7m30s (cleared at +2m30s, keep_firing_for 5m)",
        resolved_at - T0
    );
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unacknowledged_critical_incident_misses_its_15_minute_ack_target() {
    let mut harness = Harness::start(&format!(
        "{CPU_RULE}\n[sla.critical]\nack = \"15m\"\nresolve = \"4h\"\n"
    ))
    .await;

    report(
        &harness,
        &["web-1", "web-2"],
        CPU,
        95.0,
        10 * SECOND,
        2 * MINUTE,
    )
    .await;
    let mut opened = [
        expect(&mut harness, IncidentEvent::Opened).await,
        expect(&mut harness, IncidentEvent::Opened).await,
    ];
    opened.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    let [unacknowledged, acknowledged] = opened;
    assert_eq!(unacknowledged.agent_id, "web-1");
    let ack_due = unacknowledged.ack_due_at_ms.unwrap();
    assert_eq!(ack_due, unacknowledged.opened_at_ms + 15 * MINUTE);

    // Someone takes web-2's incident in time; nobody takes web-1's.
    report(
        &harness,
        &["web-1", "web-2"],
        CPU,
        95.0,
        MINUTE,
        10 * MINUTE,
    )
    .await;
    harness
        .incidents
        .acknowledge(acknowledged.id, "alice".into(), None)
        .await
        .unwrap();
    expect(&mut harness, IncidentEvent::Acknowledged).await;

    report(
        &harness,
        &["web-1", "web-2"],
        CPU,
        95.0,
        MINUTE,
        16 * MINUTE,
    )
    .await;
    harness.advance_to(ack_due - T0 - 10 * SECOND).await;
    harness.assert_no_event("10 s before the ack target").await;
    let before = harness
        .store
        .incident(unacknowledged.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!before.ack_breached);

    harness.advance_to(ack_due - T0).await;
    let breached = expect(&mut harness, IncidentEvent::SlaBreached).await;
    assert_eq!(breached.id, unacknowledged.id);
    assert!(breached.ack_breached);
    assert!(!breached.resolve_breached);
    let timeline = harness
        .store
        .incident_timeline(unacknowledged.id)
        .await
        .unwrap();
    let missed = timeline
        .iter()
        .find(|entry| entry.actor == "sla")
        .unwrap_or_else(|| panic!("no SLA entry in {timeline:?}"));
    assert!(
        just_after(missed.ts_ms, ack_due - T0),
        "{missed:?}, ack due at +{} ms",
        ack_due - T0
    );

    // The acknowledged incident never misses its ack target.
    harness.advance_to(30 * MINUTE).await;
    harness.assert_no_event("15 min after the ack target").await;
    let taken = harness
        .store
        .incident(acknowledged.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.state, IncidentState::Acknowledged);
    assert!(!taken.ack_breached);
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_agent_opens_an_absent_incident_after_for_and_it_resolves_when_data_resumes() {
    let mut harness = Harness::start(
        r#"
[[rule]]
name = "agent-down"
kind = "absent"
metric = "agent.up"
for = "5m"
severity = "major"
"#,
    )
    .await;

    // Every committed batch sets agent.up; the last one arrives at +1m.
    report(&harness, &["web-1"], CPU, 12.0, 10 * SECOND, MINUTE).await;
    for offset in (70..=350).step_by(10) {
        harness.advance_to(offset * SECOND).await;
    }
    harness
        .assert_no_event("silent for 4m50s, less than `for`")
        .await;

    harness.advance_to(6 * MINUTE).await;
    let opened = expect(&mut harness, IncidentEvent::Opened).await;
    assert_eq!(opened.rule, "agent-down");
    assert_eq!(opened.metric, "agent.up");
    assert_eq!(opened.severity, Severity::Major);
    assert_eq!(opened.since_ms, T0 + MINUTE, "silent since the last batch");
    assert!(
        just_after(opened.opened_at_ms, 6 * MINUTE),
        "opened at +{} ms, expected +6m (last batch +1m, `for` 5m)",
        opened.opened_at_ms - T0
    );

    harness.advance_to(7 * MINUTE).await;
    harness.sample("web-1", CPU, 12.0).await;
    let resolved = expect(&mut harness, IncidentEvent::Resolved).await;
    assert_eq!(resolved.id, opened.id);
    assert_eq!(resolved.resolve_reason.as_deref(), Some("data_resumed"));
    harness.stop().await;
}

/// Ingest sends the rules task only samples of metrics some rule reads; while
/// a reload is queued, the metrics of both the old and the new rules pass,
/// so no sample misses the rules in force when it is evaluated.
#[tokio::test(start_paused = true)]
async fn only_rule_metrics_reach_the_rules_task_and_a_reload_widens_them_until_it_applies() {
    let harness = Harness::start(CPU_RULE).await;
    let held = harness.incidents.rule_metrics();
    assert!(held.contains(CPU), "{held:?}");
    assert!(!held.contains("disk.used_percent"), "{held:?}");

    let mut disk_rule = harness.config.rules[0].clone();
    disk_rule.name = "disk-full".into();
    disk_rule.metric = "disk.used_percent".into();
    harness
        .incidents
        .replace_rules(
            vec![disk_rule],
            harness.config.sla.clone(),
            harness.config.service.clone(),
        )
        .await;
    let swapped = crate::support::eventually("the reload to apply", async || {
        let metrics = harness.incidents.rule_metrics();
        (!metrics.contains(CPU)).then_some(metrics)
    })
    .await;
    assert!(swapped.contains("disk.used_percent"), "{swapped:?}");
    assert_eq!(swapped.len(), 1, "{swapped:?}");
    harness.stop().await;
}
