//! The rule engine: per-series state machines that turn samples and the
//! passing of time into [`Transition`]s.
//!
//! A series is `(rule, agent id, labels)`; for `absent` rules the labels are
//! the rule's `match` labels, so one silent host is one incident, not one per
//! CPU or mount. Threshold series move through [`SeriesPhase`]:
//!
//! ```text
//!   Ok --breach--> Pending --`for` elapsed--> Firing --clear--> Clearing --`keep_firing_for`--> Ok
//!    \___________ for = 0 _________________/^    ^______breach again_____/       (Resolve)
//!                                       (Open)
//! ```
//!
//! "Breach" and "clear" are one hysteresis-aware condition (`breaching`): a
//! breach of `threshold` sets it and only a value back past `clear` unsets it,
//! so a value in between keeps whatever state the series is in. Flapping is a
//! flag beside the phase; while it is set an open incident is held open, so a
//! flapping series pages once instead of on every swing.
//!
//! Nothing here reads the clock or does I/O: `now_ms` is the caller's clock
//! (the collector's, not the agent's, so a skewed agent clock cannot open or
//! resolve anything) and the decisions are returned, not carried out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use super::config::{AbsentRule, Rule, RuleKind, ThresholdRule};
use super::flap::FlapHistory;
use super::key::{SeriesIdentity, dedup_key};
use super::summary::{SummaryContext, render};
use super::{Labels, ResolveReason, Transition};

/// A threshold series with no incident that has sent nothing for this long is
/// forgotten by [`RuleEngine::tick`], so series that disappear (unmounted
/// disks, removed interfaces) do not accumulate forever. Losing its state is
/// harmless: it was `Ok`, and a returning series starts `Ok` again.
pub const IDLE_SERIES_FORGET_AFTER: Duration = Duration::from_secs(3600);

/// How many recent arrival gaps an `absent` series keeps to learn its interval.
const LEARNED_GAPS: usize = 8;

/// Where one series stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesPhase {
    /// No incident; not breaching (absent rules: data is arriving).
    Ok,
    /// Breaching since `since_ms`, waiting out `for`; no incident yet.
    Pending { since_ms: i64 },
    /// Incident open since `since_ms`.
    Firing { since_ms: i64 },
    /// Incident still open, but cleared since `since_ms`; resolves once
    /// `keep_firing_for` has passed without a new breach.
    Clearing { since_ms: i64 },
}

impl SeriesPhase {
    /// Whether an incident is open for the series.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            SeriesPhase::Firing { .. } | SeriesPhase::Clearing { .. }
        )
    }
}

/// An incident the database holds open, given back after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredIncident {
    pub dedup_key: String,
    pub opened_ms: i64,
    /// Whether the incident was marked flapping when the collector stopped.
    pub flapping: bool,
}

/// A read-only look at one series, for the API and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesView<'a> {
    pub dedup_key: &'a str,
    pub rule: &'a str,
    pub agent_id: &'a str,
    pub labels: &'a Labels,
    pub phase: SeriesPhase,
    pub flapping: bool,
    pub last_value: Option<f64>,
    pub last_seen_ms: Option<i64>,
}

#[derive(Debug, Clone)]
struct SeriesState {
    /// Computed once when the series is first seen; the incident's identity.
    dedup_key: String,
    phase: SeriesPhase,
    /// When the open incident opened; meaningful only while `phase.is_open()`
    /// (a `Clearing` series returns to `Firing` with its original time).
    opened_ms: i64,
    /// The hysteresis-aware threshold condition (see the module docs). Drives
    /// both the phase and flap detection. Unused by `absent` rules.
    breaching: bool,
    /// Invariant: while set on an open incident, a `FlappingStarted` has been
    /// emitted (or restored) for it and the incident is held open.
    flapping: bool,
    /// The latest flap percentage, reported when a held-back
    /// `FlappingStarted` is emitted with a later `Open`.
    flap_percent: f64,
    last_value: Option<f64>,
    last_seen_ms: Option<i64>,
    /// Only for rules with flap detection.
    flap: Option<FlapHistory>,
    /// Only for `absent` rules: recent positive gaps between arrivals.
    gaps: VecDeque<i64>,
}

impl SeriesState {
    fn new(dedup_key: String) -> Self {
        Self {
            dedup_key,
            phase: SeriesPhase::Ok,
            opened_ms: 0,
            breaching: false,
            flapping: false,
            flap_percent: 0.0,
            last_value: None,
            last_seen_ms: None,
            flap: None,
            gaps: VecDeque::new(),
        }
    }
}

/// Agent id → label set → state. Nested so `observe` finds a known series by
/// borrowed `&str` and `&Labels` and allocates only for a new one.
type SeriesMap = HashMap<String, HashMap<Labels, SeriesState>>;

#[derive(Debug)]
struct RuleSlot {
    rule: Rule,
    series: SeriesMap,
}

/// Rules plus the state of every series they have seen.
pub struct RuleEngine {
    slots: Vec<RuleSlot>,
    /// Metric name → indices into `slots`, so a sample only visits the rules
    /// that can match it (the per-sample cost does not grow with the rule count).
    by_metric: HashMap<String, Vec<usize>>,
    /// Rule name → index into `slots`; names are unique (later duplicates are dropped).
    by_name: HashMap<String, usize>,
    /// The caller's display names for agents, used in summaries.
    host_names: HashMap<String, String>,
    /// Agents expected to be offline (laptops, machines in maintenance):
    /// their silence opens no `absent` incident.
    expected_offline: HashSet<String>,
}

impl fmt::Debug for RuleEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleEngine")
            .field("rules", &self.slots.len())
            .field(
                "series",
                &self
                    .slots
                    .iter()
                    .map(|slot| slot.series.values().map(HashMap::len).sum::<usize>())
                    .sum::<usize>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for RuleEngine {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

/// What one evaluation did to a threshold series, turned into transitions by
/// [`emit_threshold`] in the order `incidents` must apply them.
#[derive(Debug, Default)]
struct Step {
    was_open: bool,
    /// `Some(since)` when an incident opened; `since` is when the breach began.
    opened: Option<i64>,
    resolved: bool,
    flap_started: Option<f64>,
    flap_stopped: Option<f64>,
}

impl RuleEngine {
    /// An engine with `rules` and no series. Rule names should be unique
    /// ([`super::validate_rules`] guarantees it); a later duplicate is ignored.
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut engine = Self {
            slots: Vec::new(),
            by_metric: HashMap::new(),
            by_name: HashMap::new(),
            host_names: HashMap::new(),
            expected_offline: HashSet::new(),
        };
        let mut names = HashSet::new();
        engine.slots = rules
            .into_iter()
            .filter(|rule| names.insert(rule.name.clone()))
            .map(|rule| RuleSlot {
                rule,
                series: HashMap::new(),
            })
            .collect();
        engine.reindex();
        engine
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.slots.iter().map(|slot| &slot.rule)
    }

    /// Sets the name summaries use for `{host}`; without one, the `host` label
    /// or else the agent id is used. Call it when an agent says hello.
    pub fn set_host_name(&mut self, agent_id: &str, host_name: &str) {
        self.host_names
            .insert(agent_id.to_owned(), host_name.to_owned());
    }

    /// Sets the agents exempt from `absent` rules (replacing the previous
    /// set); applies from the next [`Self::evaluate_absence`].
    pub fn set_expected_offline(&mut self, agent_ids: impl IntoIterator<Item = String>) {
        self.expected_offline = agent_ids.into_iter().collect();
    }

    /// Evaluates one sample against every rule for its metric. Call it after
    /// the sample's batch has committed, with the collector's clock.
    ///
    /// With `for = 0` a breaching sample opens its incident in this call;
    /// otherwise the first sample (or [`Self::tick`]) after `for` has passed
    /// does. NaN samples are ignored (ingest refuses them; they compare to nothing).
    pub fn observe(
        &mut self,
        agent_id: &str,
        metric: &str,
        labels: &Labels,
        value: f64,
        now_ms: i64,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        if value.is_nan() {
            return out;
        }
        let Some(indices) = self.by_metric.get(metric) else {
            return out;
        };
        for &index in indices {
            let Some(RuleSlot { rule, series }) = self.slots.get_mut(index) else {
                continue;
            };
            if !rule.selects(labels) {
                continue;
            }
            match &rule.kind {
                RuleKind::Threshold(threshold) => {
                    with_series(series, &rule.name, agent_id, labels, |state| {
                        let step = threshold_sample(threshold, state, value, now_ms);
                        emit_threshold(
                            &mut out,
                            step,
                            state,
                            rule,
                            agent_id,
                            labels,
                            &self.host_names,
                        );
                    });
                }
                RuleKind::Absent(_) => {
                    with_series(series, &rule.name, agent_id, &rule.matchers, |state| {
                        if absent_sample(state, value, now_ms) {
                            out.push(Transition::Resolve {
                                dedup_key: state.dedup_key.clone(),
                                value: Some(value),
                                reason: ResolveReason::DataResumed,
                            });
                        }
                    });
                }
            }
        }
        out
    }

    /// Advances threshold series with the passing of time alone: opens
    /// `Pending` series whose `for` has elapsed and resolves `Clearing`
    /// series whose `keep_firing_for` has. Call it every few seconds; the
    /// result is sorted by dedup key so it is deterministic.
    ///
    /// Also forgets idle `Ok` series (see [`IDLE_SERIES_FORGET_AFTER`]).
    /// Does not evaluate `absent` rules: see [`Self::evaluate_absence`].
    pub fn tick(&mut self, now_ms: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        for RuleSlot { rule, series } in &mut self.slots {
            let RuleKind::Threshold(threshold) = &rule.kind else {
                continue;
            };
            let idle_ms = millis(IDLE_SERIES_FORGET_AFTER).max(
                threshold
                    .flap
                    .as_ref()
                    .map_or(0, |flap| millis(flap.window)),
            );
            for (agent_id, by_labels) in series.iter_mut() {
                for (labels, state) in by_labels.iter_mut() {
                    let mut step = Step {
                        was_open: state.phase.is_open(),
                        ..Step::default()
                    };
                    advance(threshold, state, now_ms, &mut step);
                    emit_threshold(
                        &mut out,
                        step,
                        state,
                        rule,
                        agent_id,
                        labels,
                        &self.host_names,
                    );
                }
                by_labels.retain(|_, state| {
                    !(state.phase == SeriesPhase::Ok
                        && !state.flapping
                        && state
                            .last_seen_ms
                            .is_some_and(|seen| now_ms.saturating_sub(seen) > idle_ms))
                });
            }
            series.retain(|_, by_labels| !by_labels.is_empty());
        }
        sort_by_key(&mut out);
        out
    }

    /// Opens `absent` incidents for series silent for longer than their rule
    /// allows, and resolves those of agents now expected offline (their
    /// silence is no longer a problem). Data resuming is handled by
    /// [`Self::observe`]. Sorted by dedup key.
    ///
    /// Only series seen at least once (or seeded with [`Self::seed_last_seen`])
    /// can go absent: the engine cannot miss what it never knew about.
    pub fn evaluate_absence(&mut self, now_ms: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        for RuleSlot { rule, series } in &mut self.slots {
            let RuleKind::Absent(absent) = &rule.kind else {
                continue;
            };
            for (agent_id, by_labels) in series.iter_mut() {
                let exempt = self.expected_offline.contains(agent_id);
                for (labels, state) in by_labels.iter_mut() {
                    if exempt {
                        if state.phase.is_open() {
                            state.phase = SeriesPhase::Ok;
                            out.push(Transition::Resolve {
                                dedup_key: state.dedup_key.clone(),
                                value: state.last_value,
                                reason: ResolveReason::ExpectedOffline,
                            });
                        }
                        continue;
                    }
                    if state.phase != SeriesPhase::Ok {
                        continue;
                    }
                    let Some(last_seen) = state.last_seen_ms else {
                        continue;
                    };
                    let Some(limit) = silence_limit_ms(absent, learned_interval_ms(&state.gaps))
                    else {
                        continue;
                    };
                    let silence = now_ms.saturating_sub(last_seen);
                    if silence >= limit {
                        state.phase = SeriesPhase::Firing { since_ms: now_ms };
                        state.opened_ms = now_ms;
                        out.push(open_transition(
                            rule,
                            agent_id,
                            labels,
                            state,
                            &self.host_names,
                            last_seen,
                            Some(silence),
                        ));
                    }
                }
            }
        }
        sort_by_key(&mut out);
        out
    }

    /// Records that a series was last heard from at `seen_ms` without
    /// evaluating a value, so `absent` rules can notice hosts that went
    /// silent while the collector was down. Call it at startup with the
    /// store's latest sample per series; it never moves `last_seen` back.
    /// Seed only agents still expected to report (registered, seen within
    /// retention): a seeded series that never reports again opens an incident.
    pub fn seed_last_seen(&mut self, agent_id: &str, metric: &str, labels: &Labels, seen_ms: i64) {
        let Some(indices) = self.by_metric.get(metric) else {
            return;
        };
        for &index in indices {
            let Some(RuleSlot { rule, series }) = self.slots.get_mut(index) else {
                continue;
            };
            if !matches!(rule.kind, RuleKind::Absent(_)) || !rule.selects(labels) {
                continue;
            }
            with_series(series, &rule.name, agent_id, &rule.matchers, |state| {
                state.last_seen_ms =
                    Some(state.last_seen_ms.map_or(seen_ms, |seen| seen.max(seen_ms)));
            });
        }
    }

    /// Seeds firing state from the incidents the database holds open, so a
    /// restart does not open them a second time. Call it before the first
    /// `observe`. An incident no current rule could produce (its rule was
    /// removed or now selects other series, or its key does not parse) is
    /// returned as a `Resolve` with [`ResolveReason::RuleRemoved`], since
    /// nothing else would ever close it. Restoring an open key again is a no-op.
    ///
    /// A restored threshold series counts as breaching until a sample says
    /// otherwise; a restored `absent` series stays open until data arrives.
    pub fn restore(&mut self, open: impl IntoIterator<Item = RestoredIncident>) -> Vec<Transition> {
        let mut out = Vec::new();
        for incident in open {
            let slot = SeriesIdentity::parse(&incident.dedup_key).and_then(|identity| {
                let index = *self.by_name.get(&identity.rule)?;
                let slot = self.slots.get_mut(index)?;
                let belongs = match slot.rule.kind {
                    RuleKind::Threshold(_) => slot.rule.selects(&identity.labels),
                    RuleKind::Absent(_) => identity.labels == slot.rule.matchers,
                };
                belongs.then_some((slot, identity))
            });
            let Some((RuleSlot { rule, series }, identity)) = slot else {
                out.push(Transition::Resolve {
                    dedup_key: incident.dedup_key,
                    value: None,
                    reason: ResolveReason::RuleRemoved,
                });
                continue;
            };
            let is_threshold = matches!(rule.kind, RuleKind::Threshold(_));
            let has_flap = matches!(&rule.kind, RuleKind::Threshold(t) if t.flap.is_some());
            with_series(
                series,
                &rule.name,
                &identity.agent_id,
                &identity.labels,
                |state| {
                    if state.phase.is_open() {
                        return;
                    }
                    state.phase = SeriesPhase::Firing {
                        since_ms: incident.opened_ms,
                    };
                    state.opened_ms = incident.opened_ms;
                    state.breaching = is_threshold;
                    state.flapping = incident.flapping && has_flap;
                },
            );
            if incident.flapping && !has_flap {
                // The rule no longer detects flapping, so nothing would ever
                // end the flag `incidents` still carries.
                out.push(Transition::FlappingStopped {
                    dedup_key: incident.dedup_key,
                    percent: 0.0,
                });
            }
        }
        out
    }

    /// Swaps in a new rule set (SIGHUP). A series keeps its state, and its
    /// open incident, when a rule of the same name still selects the same
    /// series (same kind, metric and `match`); changed thresholds, `for`,
    /// severity and so on apply from the next evaluation (an open incident
    /// keeps the severity and summary it opened with). Open incidents of a
    /// rule that is gone, or now selects different series, are resolved with
    /// [`ResolveReason::RuleRemoved`] and their series forgotten: keeping them
    /// open would leave incidents nothing can ever close.
    pub fn replace_rules(&mut self, rules: Vec<Rule>) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut previous: HashMap<String, RuleSlot> = self
            .slots
            .drain(..)
            .map(|slot| (slot.rule.name.clone(), slot))
            .collect();
        let mut names = HashSet::new();
        for rule in rules {
            if !names.insert(rule.name.clone()) {
                continue;
            }
            let series = match previous.remove(&rule.name) {
                Some(old) if old.rule.same_series_as(&rule) => {
                    let mut series = old.series;
                    adapt_to_rule(&rule, &mut series, &mut out);
                    series
                }
                Some(old) => {
                    resolve_all(old.series, ResolveReason::RuleRemoved, &mut out);
                    HashMap::new()
                }
                None => HashMap::new(),
            };
            self.slots.push(RuleSlot { rule, series });
        }
        for (_, old) in previous {
            resolve_all(old.series, ResolveReason::RuleRemoved, &mut out);
        }
        self.reindex();
        sort_by_key(&mut out);
        out
    }

    /// Forgets every series of an agent (decommissioned), resolving its open
    /// incidents with [`ResolveReason::AgentForgotten`]. Without this, an
    /// `absent` incident for a retired host would stay open forever.
    pub fn forget_agent(&mut self, agent_id: &str) -> Vec<Transition> {
        let mut out = Vec::new();
        for slot in &mut self.slots {
            if let Some(by_labels) = slot.series.remove(agent_id) {
                resolve_all(
                    HashMap::from([(agent_id.to_owned(), by_labels)]),
                    ResolveReason::AgentForgotten,
                    &mut out,
                );
            }
        }
        self.host_names.remove(agent_id);
        sort_by_key(&mut out);
        out
    }

    /// Drops every series of an agent without resolving anything: another
    /// collector now receives its samples and evaluates it (PostgreSQL
    /// cluster). Its open incidents stay open for that collector to resolve;
    /// a pending `for` is dropped, and restarts where the agent went.
    pub fn release_agent(&mut self, agent_id: &str) {
        for slot in &mut self.slots {
            slot.series.remove(agent_id);
        }
    }

    /// Every series the engine holds state for, in no particular order.
    pub fn series(&self) -> impl Iterator<Item = SeriesView<'_>> {
        self.slots.iter().flat_map(|slot| {
            slot.series.iter().flat_map(move |(agent_id, by_labels)| {
                by_labels
                    .iter()
                    .map(move |(labels, state)| view(&slot.rule, agent_id, labels, state))
            })
        })
    }

    /// The series with this dedup key, if the engine holds state for it.
    pub fn series_by_key(&self, dedup_key: &str) -> Option<SeriesView<'_>> {
        let identity = SeriesIdentity::parse(dedup_key)?;
        let slot = self.slots.get(*self.by_name.get(&identity.rule)?)?;
        let (agent_id, by_labels) = slot.series.get_key_value(&identity.agent_id)?;
        let (labels, state) = by_labels.get_key_value(&identity.labels)?;
        Some(view(&slot.rule, agent_id, labels, state))
    }

    fn reindex(&mut self) {
        self.by_metric.clear();
        self.by_name.clear();
        for (index, slot) in self.slots.iter().enumerate() {
            self.by_metric
                .entry(slot.rule.metric.clone())
                .or_default()
                .push(index);
            self.by_name.insert(slot.rule.name.clone(), index);
        }
    }
}

fn view<'a>(
    rule: &'a Rule,
    agent_id: &'a str,
    labels: &'a Labels,
    state: &'a SeriesState,
) -> SeriesView<'a> {
    SeriesView {
        dedup_key: &state.dedup_key,
        rule: &rule.name,
        agent_id,
        labels,
        phase: state.phase,
        flapping: state.flapping,
        last_value: state.last_value,
        last_seen_ms: state.last_seen_ms,
    }
}

/// Runs `step` on the series' state, creating it first if it is new. Written
/// as a callback because handing out `&mut` to a possibly-new entry needs
/// either an owned key for every lookup (allocations per sample) or a second
/// lookup; this way a known series costs one hash per map level.
fn with_series<R>(
    series: &mut SeriesMap,
    rule: &str,
    agent_id: &str,
    labels: &Labels,
    step: impl FnOnce(&mut SeriesState) -> R,
) -> R {
    if let Some(by_labels) = series.get_mut(agent_id) {
        if let Some(state) = by_labels.get_mut(labels) {
            return step(state);
        }
        let mut state = SeriesState::new(dedup_key(rule, agent_id, labels));
        let result = step(&mut state);
        by_labels.insert(labels.clone(), state);
        return result;
    }
    let mut state = SeriesState::new(dedup_key(rule, agent_id, labels));
    let result = step(&mut state);
    series.insert(
        agent_id.to_owned(),
        HashMap::from([(labels.clone(), state)]),
    );
    result
}

/// Applies one threshold sample: updates the condition, flap history and phase.
fn threshold_sample(
    rule: &ThresholdRule,
    state: &mut SeriesState,
    value: f64,
    now_ms: i64,
) -> Step {
    let mut step = Step {
        was_open: state.phase.is_open(),
        ..Step::default()
    };
    state.last_value = Some(value);
    state.last_seen_ms = Some(now_ms);
    if state.breaching {
        state.breaching = !rule.clears(value);
    } else {
        state.breaching = rule.breaches(value);
    }
    if let Some(flap) = &rule.flap {
        let history = state.flap.get_or_insert_with(FlapHistory::default);
        history.record(now_ms, state.breaching, millis(flap.window));
        if let Some(percent) = history.percent() {
            state.flap_percent = percent;
            if !state.flapping && percent > flap.threshold_percent {
                state.flapping = true;
                step.flap_started = Some(percent);
            } else if state.flapping && percent < flap.threshold_percent / 2.0 {
                state.flapping = false;
                step.flap_stopped = Some(percent);
            }
        }
    }
    advance(rule, state, now_ms, &mut step);
    step
}

/// Moves the phase along after the condition or flapping changed, or time
/// passed. Shared by `observe` and `tick` so both follow the same machine.
fn advance(rule: &ThresholdRule, state: &mut SeriesState, now_ms: i64, step: &mut Step) {
    let for_ms = millis(rule.for_duration);
    let keep_ms = millis(rule.keep_firing_for);
    let held_open = state.breaching || state.flapping;
    state.phase = match state.phase {
        SeriesPhase::Ok if state.breaching && for_ms == 0 => {
            step.opened = Some(now_ms);
            state.opened_ms = now_ms;
            SeriesPhase::Firing { since_ms: now_ms }
        }
        SeriesPhase::Ok if state.breaching => SeriesPhase::Pending { since_ms: now_ms },
        SeriesPhase::Ok => SeriesPhase::Ok,
        SeriesPhase::Pending { .. } if !state.breaching => SeriesPhase::Ok,
        SeriesPhase::Pending { since_ms } if now_ms.saturating_sub(since_ms) >= for_ms => {
            step.opened = Some(since_ms);
            state.opened_ms = now_ms;
            SeriesPhase::Firing { since_ms: now_ms }
        }
        pending @ SeriesPhase::Pending { .. } => pending,
        firing @ SeriesPhase::Firing { .. } if held_open => firing,
        SeriesPhase::Firing { .. } if keep_ms == 0 => {
            step.resolved = true;
            SeriesPhase::Ok
        }
        SeriesPhase::Firing { .. } => SeriesPhase::Clearing { since_ms: now_ms },
        SeriesPhase::Clearing { .. } if held_open => SeriesPhase::Firing {
            since_ms: state.opened_ms,
        },
        SeriesPhase::Clearing { since_ms } if now_ms.saturating_sub(since_ms) >= keep_ms => {
            step.resolved = true;
            SeriesPhase::Ok
        }
        clearing @ SeriesPhase::Clearing { .. } => clearing,
    };
}

/// Turns a [`Step`] into transitions, in the order they must be applied:
/// flapping ends before a resolve, and starts only once an incident is open.
fn emit_threshold(
    out: &mut Vec<Transition>,
    step: Step,
    state: &SeriesState,
    rule: &Rule,
    agent_id: &str,
    labels: &Labels,
    host_names: &HashMap<String, String>,
) {
    if step.was_open
        && let Some(percent) = step.flap_stopped
    {
        out.push(Transition::FlappingStopped {
            dedup_key: state.dedup_key.clone(),
            percent,
        });
    }
    if let Some(since_ms) = step.opened {
        out.push(open_transition(
            rule, agent_id, labels, state, host_names, since_ms, None,
        ));
        // Flapping noticed before the incident existed is announced now.
        if state.flapping {
            out.push(Transition::FlappingStarted {
                dedup_key: state.dedup_key.clone(),
                percent: state.flap_percent,
            });
        }
    } else if step.was_open
        && let Some(percent) = step.flap_started
    {
        out.push(Transition::FlappingStarted {
            dedup_key: state.dedup_key.clone(),
            percent,
        });
    }
    if step.resolved {
        out.push(Transition::Resolve {
            dedup_key: state.dedup_key.clone(),
            value: state.last_value,
            reason: ResolveReason::Cleared,
        });
    }
}

fn open_transition(
    rule: &Rule,
    agent_id: &str,
    labels: &Labels,
    state: &SeriesState,
    host_names: &HashMap<String, String>,
    since_ms: i64,
    silence_ms: Option<i64>,
) -> Transition {
    let host = host_names
        .get(agent_id)
        .or_else(|| labels.get("host"))
        .map_or(agent_id, String::as_str);
    let (op, threshold, value) = match &rule.kind {
        RuleKind::Threshold(threshold) => (
            Some(threshold.op),
            Some(threshold.threshold),
            state.last_value,
        ),
        RuleKind::Absent(_) => (None, None, None),
    };
    let summary = render(
        &rule.summary,
        &SummaryContext {
            rule: &rule.name,
            metric: &rule.metric,
            agent_id,
            host,
            labels,
            severity: rule.severity,
            value,
            op,
            threshold,
            silence_ms,
        },
    );
    Transition::Open {
        dedup_key: state.dedup_key.clone(),
        rule: rule.name.clone(),
        metric: rule.metric.clone(),
        agent_id: agent_id.to_owned(),
        labels: labels.clone(),
        value,
        severity: rule.severity,
        summary,
        runbook: rule.runbook.clone(),
        since_ms,
    }
}

/// Notes an arrival on an `absent` series; true when it ended an incident.
fn absent_sample(state: &mut SeriesState, value: f64, now_ms: i64) -> bool {
    if let Some(previous) = state.last_seen_ms
        && now_ms > previous
    {
        // Samples of one batch arrive together (gap 0); only real gaps teach
        // the interval.
        if state.gaps.len() == LEARNED_GAPS {
            state.gaps.pop_front();
        }
        state.gaps.push_back(now_ms - previous);
    }
    state.last_seen_ms = Some(state.last_seen_ms.map_or(now_ms, |seen| seen.max(now_ms)));
    state.last_value = Some(value);
    if state.phase.is_open() {
        state.phase = SeriesPhase::Ok;
        return true;
    }
    false
}

/// The series' sample interval: the median of recent gaps, which ignores
/// both the long gap of an outage and the short ones of a backlog flushing.
fn learned_interval_ms(gaps: &VecDeque<i64>) -> Option<i64> {
    if gaps.is_empty() {
        return None;
    }
    let mut sorted: Vec<i64> = gaps.iter().copied().collect();
    sorted.sort_unstable();
    Some(sorted[sorted.len() / 2])
}

/// How long a series may be silent before it counts as absent; `None` while
/// the rule depends only on an interval not yet learned.
fn silence_limit_ms(rule: &AbsentRule, learned_interval_ms: Option<i64>) -> Option<i64> {
    let by_intervals = rule
        .intervals
        .zip(learned_interval_ms)
        .map(|(count, interval)| interval.saturating_mul(i64::from(count)));
    let fixed = rule.after.map(millis);
    match (fixed, by_intervals) {
        (Some(fixed), Some(by_intervals)) => Some(fixed.max(by_intervals)),
        (fixed, by_intervals) => fixed.or(by_intervals),
    }
}

/// Brings kept series in line with a changed rule: if it no longer detects
/// flapping, clear the flag (announcing it on open incidents) so a held
/// incident can resolve on the next tick.
fn adapt_to_rule(rule: &Rule, series: &mut SeriesMap, out: &mut Vec<Transition>) {
    let detects_flapping = matches!(&rule.kind, RuleKind::Threshold(t) if t.flap.is_some());
    if detects_flapping {
        return;
    }
    for state in series.values_mut().flat_map(HashMap::values_mut) {
        state.flap = None;
        if state.flapping {
            state.flapping = false;
            if state.phase.is_open() {
                out.push(Transition::FlappingStopped {
                    dedup_key: state.dedup_key.clone(),
                    percent: state.flap_percent,
                });
            }
        }
    }
}

fn resolve_all(series: SeriesMap, reason: ResolveReason, out: &mut Vec<Transition>) {
    for state in series.into_values().flat_map(HashMap::into_values) {
        if state.phase.is_open() {
            out.push(Transition::Resolve {
                dedup_key: state.dedup_key,
                value: state.last_value,
                reason,
            });
        }
    }
}

/// Stable, so the transitions of one key keep their relative order.
fn sort_by_key(out: &mut [Transition]) {
    out.sort_by(|a, b| a.dedup_key().cmp(b.dedup_key()));
}

/// A config duration in milliseconds; absurdly long ones saturate.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
