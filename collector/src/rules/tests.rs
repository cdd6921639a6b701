//! Table-driven tests of the rule engine: each case is a script of samples and
//! ticks (in seconds) and the transitions it must produce, in order.

use std::time::Duration;

use super::config::{AbsentRule, FlapDetection, Op, Rule, RuleKind, Severity, ThresholdRule};
use super::eval::{RestoredIncident, RuleEngine, SeriesPhase};
use super::{Labels, ResolveReason, Transition, dedup_key};

const METRIC: &str = "disk.used_percent";

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn threshold_rule(name: &str, op: Op, threshold: f64) -> Rule {
    Rule {
        name: name.to_string(),
        metric: METRIC.to_string(),
        matchers: Labels::new(),
        severity: Severity::Critical,
        summary: "{value}".to_string(),
        runbook: None,
        kind: RuleKind::Threshold(ThresholdRule {
            op,
            threshold,
            clear: None,
            for_duration: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            flap: None,
        }),
    }
}

/// `threshold_rule(">" 90)` adjusted by `change`.
fn disk_rule(change: impl FnOnce(&mut ThresholdRule)) -> Rule {
    let mut rule = threshold_rule("disk", Op::Gt, 90.0);
    if let RuleKind::Threshold(threshold) = &mut rule.kind {
        change(threshold);
    }
    rule
}

fn absent_rule(after: Option<u64>, intervals: Option<u32>) -> Rule {
    Rule {
        name: "down".to_string(),
        metric: "host.uptime_seconds".to_string(),
        matchers: Labels::new(),
        severity: Severity::Major,
        summary: "{host} silent for {silence}".to_string(),
        runbook: None,
        kind: RuleKind::Absent(AbsentRule {
            after: after.map(Duration::from_secs),
            intervals,
        }),
    }
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// One step of a script; times in seconds.
#[derive(Debug, Clone, Copy)]
enum Event {
    Sample(i64, f64),
    Tick(i64),
}
use Event::{Sample, Tick};

/// What a script produced: (second, short transition name), in order.
type Happened = Vec<(i64, &'static str)>;

fn short(transition: &Transition) -> &'static str {
    match transition {
        Transition::Open { .. } => "open",
        Transition::Resolve { .. } => "resolve",
        Transition::FlappingStarted { .. } => "flap+",
        Transition::FlappingStopped { .. } => "flap-",
    }
}

/// Runs a script on agent `a1`, series `{mount="/"}`, and lists what happened when.
fn run(engine: &mut RuleEngine, events: &[Event]) -> Happened {
    let series = labels(&[("mount", "/")]);
    let mut happened = Vec::new();
    for event in events {
        let (at, transitions) = match *event {
            Sample(at, value) => (at, engine.observe("a1", METRIC, &series, value, at * 1000)),
            Tick(at) => (at, engine.tick(at * 1000)),
        };
        happened.extend(transitions.iter().map(|transition| (at, short(transition))));
    }
    happened
}

#[test]
fn every_operator_opens_on_breach_and_resolves_on_return() {
    // (op, threshold, breaching value, ok value)
    let cases = [
        (Op::Gt, 90.0, 90.5, 90.0),
        (Op::Ge, 90.0, 90.0, 89.9),
        (Op::Lt, 10.0, 9.9, 10.0),
        (Op::Le, 10.0, 10.0, 10.1),
        (Op::Eq, 2.0, 2.0, 3.0),
        (Op::Ne, 0.0, 1.0, 0.0),
    ];
    for (op, threshold, breach, ok) in cases {
        let mut engine = RuleEngine::new(vec![threshold_rule("r", op, threshold)]);
        let happened = run(
            &mut engine,
            &[
                Sample(0, ok),
                Sample(10, breach),
                Sample(20, breach),
                Sample(30, ok),
                Sample(40, ok),
            ],
        );
        assert_eq!(
            happened,
            [(10, "open"), (30, "resolve")],
            "{op} {threshold}"
        );
    }
}

#[test]
fn for_delays_opening_until_the_breach_has_held() {
    let two_minutes = || disk_rule(|rule| rule.for_duration = secs(120));
    // (script, expected)
    let cases: Vec<(Vec<Event>, Happened)> = vec![
        // Opens on the first sample once `for` has passed.
        (
            vec![
                Sample(0, 95.0),
                Sample(60, 95.0),
                Sample(119, 95.0),
                Sample(120, 95.0),
            ],
            vec![(120, "open")],
        ),
        // A dip below the threshold restarts the wait.
        (
            vec![
                Sample(0, 95.0),
                Sample(60, 80.0),
                Sample(120, 95.0),
                Sample(239, 95.0),
                Sample(240, 95.0),
            ],
            vec![(240, "open")],
        ),
        // A tick opens it without waiting for another sample.
        (
            vec![Sample(0, 95.0), Tick(119), Tick(120), Tick(130)],
            vec![(120, "open")],
        ),
        // Cleared before `for` passed: nothing ever opens.
        (vec![Sample(0, 95.0), Sample(100, 50.0), Tick(500)], vec![]),
    ];
    for (script, expected) in cases {
        let mut engine = RuleEngine::new(vec![two_minutes()]);
        assert_eq!(run(&mut engine, &script), expected, "{script:?}");
    }
}

#[test]
fn open_reports_when_the_breach_began() {
    let mut engine = RuleEngine::new(vec![disk_rule(|rule| rule.for_duration = secs(120))]);
    engine.observe("a1", METRIC, &Labels::new(), 95.0, 5_000);
    let opened = engine.tick(125_000);
    let [
        Transition::Open {
            since_ms, value, ..
        },
    ] = opened.as_slice()
    else {
        panic!("expected one open: {opened:?}");
    };
    assert_eq!(*since_ms, 5_000);
    assert_eq!(*value, Some(95.0));
}

#[test]
fn clear_adds_hysteresis() {
    // (op, threshold, clear, values, expected)
    let cases: Vec<(Op, f64, f64, Vec<f64>, Happened)> = vec![
        (
            Op::Gt,
            90.0,
            85.0,
            vec![95.0, 88.0, 86.0, 85.0, 89.0, 91.0],
            vec![(0, "open"), (3, "resolve"), (5, "open")],
        ),
        (
            Op::Ge,
            90.0,
            85.0,
            vec![90.0, 85.0, 84.9],
            vec![(0, "open"), (2, "resolve")],
        ),
        (
            Op::Lt,
            10.0,
            20.0,
            vec![5.0, 15.0, 19.9, 20.0, 12.0, 9.0],
            vec![(0, "open"), (3, "resolve"), (5, "open")],
        ),
        (
            Op::Le,
            10.0,
            20.0,
            vec![10.0, 20.0, 20.1],
            vec![(0, "open"), (2, "resolve")],
        ),
        // clear == threshold behaves like no clear at all.
        (
            Op::Gt,
            90.0,
            90.0,
            vec![95.0, 90.0],
            vec![(0, "open"), (1, "resolve")],
        ),
    ];
    for (op, threshold, clear, values, expected) in cases {
        let mut rule = threshold_rule("r", op, threshold);
        if let RuleKind::Threshold(threshold) = &mut rule.kind {
            threshold.clear = Some(clear);
        }
        let mut engine = RuleEngine::new(vec![rule]);
        let script: Vec<Event> = values
            .iter()
            .enumerate()
            .map(|(at, value)| Sample(at as i64, *value))
            .collect();
        assert_eq!(
            run(&mut engine, &script),
            expected,
            "{op} {threshold} clear {clear}: {values:?}"
        );
    }
}

#[test]
fn keep_firing_for_waits_before_resolving() {
    let five_minutes = || disk_rule(|rule| rule.keep_firing_for = secs(300));
    let cases: Vec<(Vec<Event>, Happened)> = vec![
        // Resolved by a tick once clear for the whole time.
        (
            vec![Sample(0, 95.0), Sample(60, 80.0), Tick(359), Tick(360)],
            vec![(0, "open"), (360, "resolve")],
        ),
        // Resolved by a sample once clear for the whole time.
        (
            vec![
                Sample(0, 95.0),
                Sample(60, 80.0),
                Sample(200, 80.0),
                Sample(360, 80.0),
            ],
            vec![(0, "open"), (360, "resolve")],
        ),
        // A new breach while clearing keeps the same incident and restarts the wait.
        (
            vec![
                Sample(0, 95.0),
                Sample(60, 80.0),
                Sample(120, 95.0),
                Sample(180, 80.0),
                Tick(360),
                Tick(480),
            ],
            vec![(0, "open"), (480, "resolve")],
        ),
    ];
    for (script, expected) in cases {
        let mut engine = RuleEngine::new(vec![five_minutes()]);
        assert_eq!(run(&mut engine, &script), expected, "{script:?}");
    }
}

#[test]
fn phases_are_visible() {
    let mut engine = RuleEngine::new(vec![disk_rule(|rule| {
        rule.for_duration = secs(60);
        rule.keep_firing_for = secs(60);
    })]);
    let key = dedup_key("disk", "a1", &labels(&[("mount", "/")]));
    let phase = |engine: &RuleEngine| engine.series_by_key(&key).map(|series| series.phase);
    assert_eq!(phase(&engine), None);
    let script = [
        (Sample(0, 50.0), SeriesPhase::Ok),
        (Sample(10, 95.0), SeriesPhase::Pending { since_ms: 10_000 }),
        (Tick(70), SeriesPhase::Firing { since_ms: 70_000 }),
        (Sample(80, 50.0), SeriesPhase::Clearing { since_ms: 80_000 }),
        (Sample(90, 95.0), SeriesPhase::Firing { since_ms: 70_000 }),
        (
            Sample(100, 50.0),
            SeriesPhase::Clearing { since_ms: 100_000 },
        ),
        (Tick(160), SeriesPhase::Ok),
    ];
    for (event, expected) in script {
        run(&mut engine, &[event]);
        assert_eq!(phase(&engine), Some(expected), "after {event:?}");
    }
}

#[test]
fn flapping_holds_the_incident_open_until_it_settles() {
    let mut engine = RuleEngine::new(vec![disk_rule(|rule| {
        rule.flap = Some(FlapDetection {
            window: secs(600),
            threshold_percent: 50.0,
        });
    })]);
    // Swings every 10 s, then settles below the threshold.
    let mut script: Vec<Event> = (0..5)
        .map(|step| Sample(step * 10, if step % 2 == 0 { 95.0 } else { 80.0 }))
        .collect();
    script.extend((5..=25).map(|step| Sample(step * 10, 80.0)));
    let happened = run(&mut engine, &script);
    // Five samples are the minimum to judge: the fifth (4 changes of 4) starts
    // flapping, and the incident it opens is held. Flapping stops once the
    // 5 changes are under 25 % (half of 50) of the possible ones: 5/21 at the
    // 22nd sample (t = 210 s), and only then does the incident resolve.
    assert_eq!(
        happened,
        [
            (0, "open"),
            (10, "resolve"),
            (20, "open"),
            (30, "resolve"),
            (40, "open"),
            (40, "flap+"),
            (210, "flap-"),
            (210, "resolve"),
        ]
    );
}

#[test]
fn flapping_noticed_while_firing_is_announced_at_once() {
    let mut engine = RuleEngine::new(vec![disk_rule(|rule| {
        rule.clear = Some(85.0);
        rule.keep_firing_for = secs(1000);
        rule.flap = Some(FlapDetection {
            window: secs(600),
            threshold_percent: 30.0,
        });
    })]);
    // keep_firing_for keeps it open through the swings; flapping starts on
    // the fifth sample (2 changes of 4 = 50 % > 30 %).
    let happened = run(
        &mut engine,
        &[
            Sample(0, 95.0),
            Sample(10, 80.0),
            Sample(20, 80.0),
            Sample(30, 80.0),
            Sample(40, 95.0),
            Tick(2000),
        ],
    );
    assert_eq!(happened, [(0, "open"), (40, "flap+")]);
    let key = dedup_key("disk", "a1", &labels(&[("mount", "/")]));
    assert!(
        engine
            .series_by_key(&key)
            .is_some_and(|series| series.flapping)
    );
}

#[test]
fn flapping_without_an_incident_is_silent() {
    // Swings too fast for `for` to ever pass: flapping starts and stops, but
    // with no incident open there is nothing to mark, so nothing is emitted.
    let mut engine = RuleEngine::new(vec![disk_rule(|rule| {
        rule.for_duration = secs(30);
        rule.flap = Some(FlapDetection {
            window: secs(600),
            threshold_percent: 50.0,
        });
    })]);
    let key = dedup_key("disk", "a1", &labels(&[("mount", "/")]));
    let mut script: Vec<Event> = (0..6)
        .map(|step| Sample(step, if step % 2 == 0 { 95.0 } else { 80.0 }))
        .collect();
    assert_eq!(run(&mut engine, &script), []);
    assert!(
        engine
            .series_by_key(&key)
            .is_some_and(|series| series.flapping)
    );
    script = (6..40).map(|step| Sample(step, 80.0)).collect();
    assert_eq!(run(&mut engine, &script), []);
    assert!(
        engine
            .series_by_key(&key)
            .is_some_and(|series| !series.flapping)
    );
}

#[test]
fn a_series_is_one_agent_and_label_set() {
    let mut engine = RuleEngine::new(vec![disk_rule(|_| {})]);
    let root = labels(&[("mount", "/")]);
    let home = labels(&[("mount", "/home")]);
    let opened: Vec<String> = [
        engine.observe("a1", METRIC, &root, 95.0, 0),
        engine.observe("a1", METRIC, &home, 95.0, 0),
        engine.observe("a2", METRIC, &root, 95.0, 0),
        engine.observe("a1", METRIC, &root, 96.0, 1),
    ]
    .concat()
    .iter()
    .map(|transition| transition.dedup_key().to_string())
    .collect();
    assert_eq!(
        opened,
        ["disk|a1|mount=/", "disk|a1|mount=/home", "disk|a2|mount=/"]
    );
}

#[test]
fn rules_select_by_metric_and_match() {
    let mut root_only = disk_rule(|_| {});
    root_only.matchers = labels(&[("mount", "/")]);
    let mut engine = RuleEngine::new(vec![root_only]);
    let cases = [
        ("other.metric", labels(&[("mount", "/")]), false),
        (METRIC, labels(&[("mount", "/home")]), false),
        (METRIC, labels(&[]), false),
        (METRIC, labels(&[("mount", "/"), ("device", "sda1")]), true),
    ];
    for (metric, series, opens) in cases {
        let opened = engine.observe("a1", metric, &series, 99.0, 0);
        assert_eq!(!opened.is_empty(), opens, "{metric} {series:?}");
    }
}

#[test]
fn open_carries_everything_incidents_needs() {
    let mut rule = disk_rule(|_| {});
    rule.summary = "Disk {mount} on {host} at {value}% ({agent}, {rule})".to_string();
    rule.runbook = Some("https://wiki.example/runbooks/disk-full".to_string());
    let series = labels(&[("mount", "/")]);
    let mut engine = RuleEngine::new(vec![rule]);
    engine.set_host_name("a1", "web-1");
    let opened = engine.observe("a1", METRIC, &series, 93.456, 42);
    assert_eq!(
        opened,
        [Transition::Open {
            dedup_key: "disk|a1|mount=/".to_string(),
            rule: "disk".to_string(),
            metric: METRIC.to_string(),
            agent_id: "a1".to_string(),
            labels: series.clone(),
            value: Some(93.456),
            severity: Severity::Critical,
            summary: "Disk / on web-1 at 93.46% (a1, disk)".to_string(),
            runbook: Some("https://wiki.example/runbooks/disk-full".to_string()),
            since_ms: 42,
        }]
    );
    let resolved = engine.observe("a1", METRIC, &series, 50.0, 43);
    assert_eq!(
        resolved,
        [Transition::Resolve {
            dedup_key: "disk|a1|mount=/".to_string(),
            value: Some(50.0),
            reason: ResolveReason::Cleared,
        }]
    );
}

#[test]
fn summary_host_falls_back_to_the_host_label_then_the_agent_id() {
    let mut rule = disk_rule(|_| {});
    rule.summary = "{host}".to_string();
    // (host name known to the engine, labels, expected summary)
    let cases = [
        (Some("web-1"), labels(&[("host", "label-host")]), "web-1"),
        (None, labels(&[("host", "label-host")]), "label-host"),
        (None, labels(&[]), "a1"),
    ];
    for (host_name, series, expected) in cases {
        let mut engine = RuleEngine::new(vec![rule.clone()]);
        if let Some(host_name) = host_name {
            engine.set_host_name("a1", host_name);
        }
        let opened = engine.observe("a1", METRIC, &series, 99.0, 0);
        let [Transition::Open { summary, .. }] = opened.as_slice() else {
            panic!("expected one open: {opened:?}");
        };
        assert_eq!(summary, expected);
    }
}

mod absence {
    use super::*;

    const UP: &str = "host.uptime_seconds";

    /// Samples from `agent` at the given seconds, then absence checks at
    /// `checks`; returns (check time, transition) pairs.
    fn script(engine: &mut RuleEngine, agent: &str, samples: &[i64], checks: &[i64]) -> Happened {
        for at in samples {
            engine.observe(agent, UP, &Labels::new(), 1.0, at * 1000);
        }
        checks
            .iter()
            .flat_map(|at| {
                engine
                    .evaluate_absence(at * 1000)
                    .iter()
                    .map(|transition| (*at, short(transition)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn silence_opens_after_the_limit() {
        struct Case {
            after: Option<u64>,
            intervals: Option<u32>,
            samples: &'static [i64],
            checks: &'static [i64],
            expected: &'static [(i64, &'static str)],
        }
        let cases = [
            Case {
                after: Some(180),
                intervals: None,
                samples: &[0, 60],
                checks: &[239, 240, 300],
                expected: &[(240, "open")],
            },
            // 3 intervals of 10 s.
            Case {
                after: None,
                intervals: Some(3),
                samples: &[0, 10, 20],
                checks: &[49, 50],
                expected: &[(50, "open")],
            },
            // The median interval ignores one long outage gap.
            Case {
                after: None,
                intervals: Some(3),
                samples: &[0, 10, 20, 500, 510],
                checks: &[539, 540],
                expected: &[(540, "open")],
            },
            // One sample teaches no interval: an interval-only rule waits.
            Case {
                after: None,
                intervals: Some(3),
                samples: &[0],
                checks: &[10_000],
                expected: &[],
            },
            // Both: the longer of the two limits applies.
            Case {
                after: Some(60),
                intervals: Some(3),
                samples: &[0, 10, 20],
                checks: &[50, 79, 80],
                expected: &[(80, "open")],
            },
            Case {
                after: Some(20),
                intervals: Some(3),
                samples: &[0, 10, 20],
                checks: &[40, 49, 50],
                expected: &[(50, "open")],
            },
        ];
        for case in cases {
            let mut engine = RuleEngine::new(vec![absent_rule(case.after, case.intervals)]);
            assert_eq!(
                script(&mut engine, "a1", case.samples, case.checks),
                case.expected,
                "for {:?} intervals {:?} samples {:?}",
                case.after,
                case.intervals,
                case.samples
            );
        }
    }

    #[test]
    fn data_resuming_resolves() {
        let mut engine = RuleEngine::new(vec![absent_rule(Some(60), None)]);
        engine.set_host_name("a1", "laptop-7");
        engine.observe("a1", UP, &Labels::new(), 1.0, 0);
        let opened = engine.evaluate_absence(90_000);
        let [
            Transition::Open {
                summary,
                value,
                since_ms,
                ..
            },
        ] = opened.as_slice()
        else {
            panic!("expected one open: {opened:?}");
        };
        assert_eq!(summary, "laptop-7 silent for 1m 30s");
        assert_eq!(*value, None);
        assert_eq!(*since_ms, 0);
        assert!(engine.evaluate_absence(100_000).is_empty(), "opens once");
        let resolved = engine.observe("a1", UP, &Labels::new(), 7.0, 110_000);
        assert_eq!(
            resolved,
            [Transition::Resolve {
                dedup_key: "down|a1|".to_string(),
                value: Some(7.0),
                reason: ResolveReason::DataResumed,
            }]
        );
    }

    #[test]
    fn expected_offline_agents_do_not_page() {
        let mut engine = RuleEngine::new(vec![absent_rule(Some(60), None)]);
        engine.set_expected_offline(["laptop-1".to_string()]);
        assert_eq!(script(&mut engine, "laptop-1", &[0], &[]), []);
        let happened = script(&mut engine, "server-1", &[0], &[100]);
        assert_eq!(happened, [(100, "open")]);

        // The server goes into maintenance: its open incident resolves.
        engine.set_expected_offline(["laptop-1".to_string(), "server-1".to_string()]);
        let resolved = engine.evaluate_absence(200_000);
        assert_eq!(
            resolved,
            [Transition::Resolve {
                dedup_key: "down|server-1|".to_string(),
                value: Some(1.0),
                reason: ResolveReason::ExpectedOffline,
            }]
        );
        // Out of maintenance and still silent: it opens again.
        engine.set_expected_offline([]);
        let reopened = engine.evaluate_absence(300_000);
        let keys: Vec<&str> = reopened.iter().map(Transition::dedup_key).collect();
        assert_eq!(keys, ["down|laptop-1|", "down|server-1|"]);
    }

    #[test]
    fn one_incident_per_agent_not_per_label_set() {
        let mut rule = absent_rule(Some(60), None);
        rule.metric = "cpu.usage_percent".to_string();
        let mut engine = RuleEngine::new(vec![rule]);
        for cpu in ["0", "1", "total"] {
            engine.observe("a1", "cpu.usage_percent", &labels(&[("cpu", cpu)]), 5.0, 0);
        }
        let opened = engine.evaluate_absence(60_000);
        let keys: Vec<&str> = opened.iter().map(Transition::dedup_key).collect();
        assert_eq!(keys, ["down|a1|"]);
    }

    #[test]
    fn seeded_last_seen_lets_a_host_silent_since_before_a_restart_open() {
        let mut engine = RuleEngine::new(vec![absent_rule(Some(60), None)]);
        engine.seed_last_seen("a1", UP, &Labels::new(), 10_000);
        engine.seed_last_seen("a1", UP, &Labels::new(), 5_000);
        engine.seed_last_seen("a1", "not.watched", &Labels::new(), 5_000);
        assert!(engine.evaluate_absence(69_000).is_empty());
        let opened = engine.evaluate_absence(70_000);
        assert_eq!(opened.len(), 1, "{opened:?}");
    }
}

mod restart {
    use super::*;

    fn restored(key: &str, flapping: bool) -> RestoredIncident {
        RestoredIncident {
            dedup_key: key.to_string(),
            opened_ms: 1_000,
            flapping,
        }
    }

    #[test]
    fn restored_incidents_are_not_opened_again() {
        let series = labels(&[("mount", "/")]);
        let key = dedup_key("disk", "a1", &series);
        let mut engine = RuleEngine::new(vec![disk_rule(|_| {})]);
        assert_eq!(engine.restore([restored(&key, false)]), []);
        assert_eq!(engine.restore([restored(&key, false)]), [], "idempotent");
        assert_eq!(
            engine.series_by_key(&key).map(|series| series.phase),
            Some(SeriesPhase::Firing { since_ms: 1_000 })
        );
        assert_eq!(engine.observe("a1", METRIC, &series, 95.0, 5_000), []);
        let resolved = engine.observe("a1", METRIC, &series, 50.0, 6_000);
        assert_eq!(resolved.iter().map(short).collect::<Vec<_>>(), ["resolve"]);
    }

    #[test]
    fn restored_absent_incident_resolves_when_data_returns() {
        let mut engine = RuleEngine::new(vec![absent_rule(Some(60), None)]);
        assert_eq!(engine.restore([restored("down|a1|", false)]), []);
        assert!(engine.evaluate_absence(1_000_000).is_empty());
        let resolved = engine.observe("a1", "host.uptime_seconds", &Labels::new(), 1.0, 1_000_001);
        assert_eq!(resolved.iter().map(short).collect::<Vec<_>>(), ["resolve"]);
    }

    #[test]
    fn incidents_no_rule_can_produce_are_resolved() {
        let mut root_only = disk_rule(|_| {});
        root_only.matchers = labels(&[("mount", "/")]);
        let mut engine = RuleEngine::new(vec![root_only, absent_rule(Some(60), None)]);
        let cases = [
            "gone|a1|mount=/",        // rule removed
            "disk|a1|mount=/home",    // rule's match no longer selects it
            "down|a1|cpu=0",          // absent series carry exactly the match labels
            "not a dedup key at all", // unparseable
        ];
        for key in cases {
            assert_eq!(
                engine.restore([restored(key, false)]),
                [Transition::Resolve {
                    dedup_key: key.to_string(),
                    value: None,
                    reason: ResolveReason::RuleRemoved,
                }],
                "{key}"
            );
        }
    }

    #[test]
    fn restored_flapping_flag_is_kept_or_ended() {
        let flappy = disk_rule(|rule| {
            rule.flap = Some(FlapDetection {
                window: secs(600),
                threshold_percent: 50.0,
            });
        });
        let key = "disk|a1|";
        let mut engine = RuleEngine::new(vec![flappy]);
        assert_eq!(engine.restore([restored(key, true)]), []);
        assert!(
            engine
                .series_by_key(key)
                .is_some_and(|series| series.flapping)
        );

        // The rule no longer detects flapping: the stored flag must be ended.
        let mut engine = RuleEngine::new(vec![disk_rule(|_| {})]);
        assert_eq!(
            engine.restore([restored(key, true)]),
            [Transition::FlappingStopped {
                dedup_key: key.to_string(),
                percent: 0.0,
            }]
        );
    }
}

mod reload {
    use super::*;

    #[test]
    fn state_survives_when_the_rule_still_selects_the_series() {
        let series = labels(&[("mount", "/")]);
        let mut engine = RuleEngine::new(vec![disk_rule(|_| {})]);
        assert_eq!(engine.observe("a1", METRIC, &series, 95.0, 0).len(), 1);
        // New threshold and clear level; same name, metric and match.
        let transitions = engine.replace_rules(vec![disk_rule(|rule| {
            rule.threshold = 97.0;
            rule.clear = Some(80.0);
        })]);
        assert_eq!(transitions, []);
        // No second open; the new clear level applies.
        assert_eq!(engine.observe("a1", METRIC, &series, 98.0, 10), []);
        assert_eq!(engine.observe("a1", METRIC, &series, 85.0, 20), []);
        let resolved = engine.observe("a1", METRIC, &series, 79.0, 30);
        assert_eq!(resolved.iter().map(short).collect::<Vec<_>>(), ["resolve"]);
    }

    #[test]
    fn incidents_of_removed_or_reselected_rules_resolve() {
        let series = labels(&[("mount", "/")]);
        let mut engine = RuleEngine::new(vec![
            threshold_rule("stays", Op::Gt, 90.0),
            threshold_rule("removed", Op::Gt, 90.0),
            threshold_rule("reselected", Op::Gt, 90.0),
        ]);
        assert_eq!(engine.observe("a1", METRIC, &series, 95.0, 0).len(), 3);
        let mut reselected = threshold_rule("reselected", Op::Gt, 90.0);
        reselected.metric = "other.metric".to_string();
        let transitions = engine.replace_rules(vec![
            threshold_rule("stays", Op::Gt, 90.0),
            reselected,
            threshold_rule("new", Op::Gt, 90.0),
        ]);
        let resolved: Vec<(&str, ResolveReason)> = transitions
            .iter()
            .filter_map(|transition| match transition {
                Transition::Resolve {
                    dedup_key, reason, ..
                } => Some((dedup_key.as_str(), *reason)),
                _ => None,
            })
            .collect();
        assert_eq!(
            resolved,
            [
                ("removed|a1|mount=/", ResolveReason::RuleRemoved),
                ("reselected|a1|mount=/", ResolveReason::RuleRemoved),
            ]
        );
        // The kept rule does not reopen; the new one opens.
        let opened: Vec<String> = engine
            .observe("a1", METRIC, &series, 95.0, 10)
            .iter()
            .map(|transition| transition.dedup_key().to_string())
            .collect();
        assert_eq!(opened, ["new|a1|mount=/"]);
    }

    #[test]
    fn turning_flap_detection_off_releases_a_held_incident() {
        let flappy = disk_rule(|rule| {
            rule.flap = Some(FlapDetection {
                window: secs(600),
                threshold_percent: 50.0,
            });
        });
        let mut engine = RuleEngine::new(vec![flappy]);
        let script: Vec<Event> = (0..6)
            .map(|step| Sample(step * 10, if step % 2 == 0 { 95.0 } else { 80.0 }))
            .collect();
        let happened = run(&mut engine, &script);
        assert_eq!(happened.last(), Some(&(40, "flap+")), "{happened:?}");
        // Held open although the last value (80) is clear.
        let transitions = engine.replace_rules(vec![disk_rule(|_| {})]);
        assert_eq!(transitions.iter().map(short).collect::<Vec<_>>(), ["flap-"]);
        assert_eq!(run(&mut engine, &[Tick(60)]), [(60, "resolve")]);
    }
}

#[test]
fn forgetting_an_agent_resolves_its_incidents() {
    let mut engine = RuleEngine::new(vec![disk_rule(|_| {}), absent_rule(Some(60), None)]);
    engine.observe("a1", METRIC, &Labels::new(), 95.0, 0);
    engine.observe("a1", "host.uptime_seconds", &Labels::new(), 1.0, 0);
    engine.observe("a2", METRIC, &Labels::new(), 95.0, 0);
    engine.evaluate_absence(100_000);
    let forgotten = engine.forget_agent("a1");
    assert_eq!(
        forgotten
            .iter()
            .map(|transition| (transition.dedup_key(), short(transition)))
            .collect::<Vec<_>>(),
        [("disk|a1|", "resolve"), ("down|a1|", "resolve")]
    );
    assert!(engine.series().all(|series| series.agent_id == "a2"));
}

#[test]
fn tick_forgets_idle_ok_series_but_not_open_ones() {
    let mut engine = RuleEngine::new(vec![disk_rule(|_| {})]);
    engine.observe("a1", METRIC, &labels(&[("mount", "/old")]), 50.0, 0);
    engine.observe("a1", METRIC, &labels(&[("mount", "/full")]), 95.0, 0);
    engine.tick(3_600_000);
    assert_eq!(engine.series().count(), 2, "not idle for long enough yet");
    engine.tick(3_600_001);
    let left: Vec<&str> = engine.series().map(|series| series.dedup_key).collect();
    assert_eq!(left, ["disk|a1|mount=/full"]);
}

#[test]
fn nan_samples_are_ignored() {
    let mut engine = RuleEngine::new(vec![threshold_rule("r", Op::Ne, 0.0)]);
    assert_eq!(
        engine.observe("a1", METRIC, &Labels::new(), f64::NAN, 0),
        []
    );
    assert_eq!(engine.series().count(), 0);
}

/// A moved agent (PostgreSQL cluster): the collector it left drops its
/// series without resolving anything, and a pending `for` restarts at the
/// collector it went to, from the first breaching sample seen there; an
/// incident already open is restored there and resolves on a clear sample.
#[test]
fn a_moved_agent_restarts_its_pending_for_at_the_new_collector() {
    let rule = disk_rule(|threshold| threshold.for_duration = Duration::from_secs(10));
    let mut left = RuleEngine::new(vec![rule.clone()]);
    let mut went_to = RuleEngine::new(vec![rule]);
    let mount = labels(&[("mount", "/")]);
    let opens = |transitions: &[Transition]| {
        transitions
            .iter()
            .filter(|transition| matches!(transition, Transition::Open { .. }))
            .count()
    };
    // Breaching for 8 s at the first collector: `for` is still pending.
    assert_eq!(opens(&left.observe("a1", METRIC, &mount, 95.0, 0)), 0);
    assert_eq!(opens(&left.observe("a1", METRIC, &mount, 95.0, 8_000)), 0);
    left.release_agent("a1");
    assert!(
        left.series().next().is_none(),
        "released series are dropped"
    );
    assert!(
        left.tick(60_000).is_empty(),
        "nothing fires for a released agent"
    );
    // The new collector counts `for` from its own first breaching sample.
    assert_eq!(
        opens(&went_to.observe("a1", METRIC, &mount, 95.0, 9_000)),
        0
    );
    assert_eq!(
        opens(&went_to.observe("a1", METRIC, &mount, 95.0, 17_000)),
        0
    );
    assert_eq!(
        opens(&went_to.observe("a1", METRIC, &mount, 95.0, 19_000)),
        1
    );

    // Open at the first collector, then moved: restored, it resolves on clear.
    let key = dedup_key("disk", "a1", &mount);
    let mut third = RuleEngine::new(vec![disk_rule(|_| {})]);
    assert!(
        third
            .restore([RestoredIncident {
                dedup_key: key.clone(),
                opened_ms: 0,
                flapping: false,
            }])
            .is_empty()
    );
    assert_eq!(opens(&third.observe("a1", METRIC, &mount, 95.0, 20_000)), 0);
    let resolved = third.observe("a1", METRIC, &mount, 10.0, 21_000);
    assert!(
        matches!(&resolved[..], [Transition::Resolve { dedup_key, .. }] if *dedup_key == key),
        "{resolved:?}"
    );
}
