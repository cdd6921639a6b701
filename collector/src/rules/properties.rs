//! Property tests: invariants of the rule engine that must hold for every
//! rule configuration and every sequence of samples, ticks, restarts and reloads.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;

use super::config::{AbsentRule, FlapDetection, Op, Rule, RuleKind, Severity, ThresholdRule};
use super::eval::{RestoredIncident, RuleEngine};
use super::key::{SeriesIdentity, dedup_key};
use super::{Labels, Transition};

const METRIC: &str = "m.x";

fn config() -> ProptestConfig {
    ProptestConfig {
        // Failures are reported in the test output; persisting them would
        // write files outside this module's directory.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop::sample::select(Op::ALL.to_vec())
}

/// A threshold rule as `validate_rules` would accept it: `clear`, when set,
/// is on the non-breaching side of `threshold`.
fn threshold_rule(name: &'static str, allow_eq: bool) -> impl Strategy<Value = Rule> {
    (
        op().prop_filter("ordered op", move |op| {
            allow_eq || !matches!(op, Op::Eq | Op::Ne)
        }),
        0i32..10,
        prop::option::of(0i32..4),
        prop::sample::select(vec![0u64, 10, 30]),
        prop::sample::select(vec![0u64, 20]),
        prop::option::of((prop::sample::select(vec![20.0, 50.0, 80.0]), 60u64..600)),
    )
        .prop_map(move |(op, threshold, clear_gap, for_s, keep_s, flap)| {
            let threshold = f64::from(threshold);
            let clear = match op {
                Op::Gt | Op::Ge => clear_gap.map(|gap| threshold - f64::from(gap)),
                Op::Lt | Op::Le => clear_gap.map(|gap| threshold + f64::from(gap)),
                Op::Eq | Op::Ne => None,
            };
            Rule {
                name: name.to_string(),
                metric: METRIC.to_string(),
                matchers: Labels::new(),
                severity: Severity::Warning,
                summary: "{value}".to_string(),
                runbook: None,
                kind: RuleKind::Threshold(ThresholdRule {
                    op,
                    threshold,
                    clear,
                    for_duration: Duration::from_secs(for_s),
                    keep_firing_for: Duration::from_secs(keep_s),
                    flap: flap.map(|(percent, window)| FlapDetection {
                        window: Duration::from_secs(window),
                        threshold_percent: percent,
                    }),
                }),
            }
        })
}

fn absent_rule() -> impl Strategy<Value = Rule> {
    (prop::option::of(10u64..60), prop::option::of(1u32..4))
        .prop_filter("absent needs for or intervals", |(after, intervals)| {
            after.is_some() || intervals.is_some()
        })
        .prop_map(|(after, intervals)| Rule {
            name: "silent".to_string(),
            metric: METRIC.to_string(),
            matchers: Labels::new(),
            severity: Severity::Major,
            summary: "{silence}".to_string(),
            runbook: None,
            kind: RuleKind::Absent(AbsentRule {
                after: after.map(Duration::from_secs),
                intervals,
            }),
        })
}

fn rule_set() -> impl Strategy<Value = Vec<Rule>> {
    (
        threshold_rule("a", true),
        threshold_rule("b", true),
        absent_rule(),
    )
        .prop_map(|(a, b, silent)| vec![a, b, silent])
}

#[derive(Debug, Clone)]
enum Action {
    Sample {
        agent: u8,
        label: u8,
        value: i32,
    },
    Advance(i64),
    Tick,
    Absence,
    /// Start a new engine restored from the incidents the checker holds open.
    Restart,
    /// Reload with rule `b` dropped (`false`) or with the same rules (`true`).
    Reload(bool),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0u8..2, 0u8..2, -1i32..12)
            .prop_map(|(agent, label, value)| Action::Sample { agent, label, value }),
        3 => (1i64..40_000).prop_map(Action::Advance),
        2 => Just(Action::Tick),
        1 => Just(Action::Absence),
        1 => Just(Action::Restart),
        1 => any::<bool>().prop_map(Action::Reload),
    ]
}

/// Plays the part of `incidents`: applies transitions, refusing any the
/// documented contract forbids.
#[derive(Debug, Default)]
struct Checker {
    /// dedup key → flapping, for every open incident.
    open: HashMap<String, bool>,
}

impl Checker {
    fn apply(&mut self, transitions: &[Transition]) -> Result<(), TestCaseError> {
        for transition in transitions {
            let key = transition.dedup_key().to_string();
            match transition {
                Transition::Open { .. } => {
                    prop_assert!(!self.open.contains_key(&key), "second Open for {key}");
                    self.open.insert(key, false);
                }
                Transition::Resolve { .. } => {
                    prop_assert!(
                        self.open.remove(&key).is_some(),
                        "Resolve without Open for {key}"
                    );
                }
                Transition::FlappingStarted { .. } => {
                    let flapping = self.open.get_mut(&key);
                    prop_assert!(flapping.is_some(), "FlappingStarted while closed: {key}");
                    if let Some(flapping) = flapping {
                        prop_assert!(!*flapping, "FlappingStarted twice: {key}");
                        *flapping = true;
                    }
                }
                Transition::FlappingStopped { .. } => {
                    let flapping = self.open.get_mut(&key);
                    prop_assert!(flapping.is_some(), "FlappingStopped while closed: {key}");
                    if let Some(flapping) = flapping {
                        prop_assert!(*flapping, "FlappingStopped while not flapping: {key}");
                        *flapping = false;
                    }
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(config())]

    /// At most one open incident per dedup key: Open and Resolve strictly
    /// alternate per key (and flapping marks only open incidents), through
    /// ticks, absence checks, restarts and reloads.
    #[test]
    fn open_and_resolve_alternate_per_key(
        rules in rule_set(),
        actions in prop::collection::vec(action(), 1..200),
    ) {
        let mut engine = RuleEngine::new(rules.clone());
        let mut checker = Checker::default();
        let mut now_ms = 1_000_000i64;
        for action in actions {
            let transitions = match action {
                Action::Sample { agent, label, value } => {
                    let labels = Labels::from([("l".to_string(), label.to_string())]);
                    engine.observe(&format!("agent{agent}"), METRIC, &labels, f64::from(value), now_ms)
                }
                Action::Advance(millis) => {
                    now_ms += millis;
                    Vec::new()
                }
                Action::Tick => engine.tick(now_ms),
                Action::Absence => engine.evaluate_absence(now_ms),
                Action::Restart => {
                    engine = RuleEngine::new(engine.rules().cloned().collect());
                    engine.restore(checker.open.iter().map(|(key, flapping)| RestoredIncident {
                        dedup_key: key.clone(),
                        opened_ms: now_ms,
                        flapping: *flapping,
                    }))
                }
                Action::Reload(keep_all) => engine.replace_rules(
                    rules
                        .iter()
                        .filter(|rule| keep_all || rule.name != "b")
                        .cloned()
                        .collect(),
                ),
            };
            checker.apply(&transitions)?;
        }
        // The engine agrees with the checker about what is open.
        let mut engine_open: Vec<&str> = engine
            .series()
            .filter(|series| series.phase.is_open())
            .map(|series| series.dedup_key)
            .collect();
        engine_open.sort_unstable();
        let mut checker_open: Vec<&str> = checker.open.keys().map(String::as_str).collect();
        checker_open.sort_unstable();
        prop_assert_eq!(engine_open, checker_open);
    }

    /// An incident never resolves while the value stays beyond `clear`
    /// (whatever `for`, `keep_firing_for` and flap detection say), and it
    /// does open: the breach is never lost in the hysteresis band.
    #[test]
    fn never_resolves_while_beyond_clear(
        rule in threshold_rule("r", false),
        steps in prop::collection::vec((-50.0f64..50.0, 0i64..20_000, any::<bool>()), 1..100),
    ) {
        let RuleKind::Threshold(threshold) = &rule.kind else {
            unreachable!("threshold_rule makes threshold rules");
        };
        let threshold = threshold.clone();
        let mut engine = RuleEngine::new(vec![rule]);
        let labels = Labels::new();
        // Breach first, then stay beyond `clear`: map each offset onto the
        // breaching side of `clear` (strictly past it, so `>=` holds too).
        let clear = threshold.clear.unwrap_or(threshold.threshold);
        let beyond = |offset: f64| match threshold.op {
            Op::Gt | Op::Ge => clear + 0.5 + offset.abs(),
            _ => clear - 0.5 - offset.abs(),
        };
        let breach = match threshold.op {
            Op::Gt | Op::Ge => threshold.threshold + 1.0,
            _ => threshold.threshold - 1.0,
        };
        let mut now_ms = 0;
        let mut all = engine.observe("a1", METRIC, &labels, breach, now_ms);
        for (offset, advance, tick) in steps {
            now_ms += advance;
            all.extend(engine.observe("a1", METRIC, &labels, beyond(offset), now_ms));
            if tick {
                all.extend(engine.tick(now_ms));
            }
        }
        all.extend(engine.tick(now_ms + millis(threshold.for_duration)));
        prop_assert!(
            !all.iter().any(|t| matches!(t, Transition::Resolve { .. })),
            "resolved while beyond clear: {:?}", all
        );
        prop_assert!(
            all.iter().any(|t| matches!(t, Transition::Open { .. })),
            "never opened: {:?}", all
        );
    }

    /// With `for = 0`, a breaching sample on a series without an open
    /// incident opens one in the same `observe` call, and a sample on a
    /// series with one never opens another.
    #[test]
    fn with_for_zero_a_breach_opens_in_the_same_call(
        rule in threshold_rule("r", true),
        steps in prop::collection::vec((-1i32..12, 0i64..20_000), 1..100),
    ) {
        let mut rule = rule;
        let RuleKind::Threshold(threshold) = &mut rule.kind else {
            unreachable!("threshold_rule makes threshold rules");
        };
        threshold.for_duration = Duration::ZERO;
        let threshold = threshold.clone();
        let mut engine = RuleEngine::new(vec![rule]);
        let labels = Labels::new();
        let key = dedup_key("r", "a1", &labels);
        let mut now_ms = 0;
        for (value, advance) in steps {
            now_ms += advance;
            let value = f64::from(value);
            let was_open = engine
                .series_by_key(&key)
                .is_some_and(|series| series.phase.is_open());
            let transitions = engine.observe("a1", METRIC, &labels, value, now_ms);
            let opened = transitions.iter().any(|t| matches!(t, Transition::Open { .. }));
            if was_open {
                prop_assert!(!opened, "opened twice at {}", now_ms);
            } else {
                prop_assert_eq!(opened, threshold.breaches(value), "value {} at {}", value, now_ms);
            }
        }
    }

    /// `SeriesIdentity::parse` inverts `dedup_key` for any text at all, so
    /// distinct series never share a key.
    #[test]
    fn dedup_key_round_trips(
        rule in any::<String>(),
        agent in any::<String>(),
        labels in prop::collection::btree_map(any::<String>(), any::<String>(), 0..4),
    ) {
        let key = dedup_key(&rule, &agent, &labels);
        let parsed = SeriesIdentity::parse(&key);
        prop_assert_eq!(parsed, Some(SeriesIdentity { rule, agent_id: agent, labels }));
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
