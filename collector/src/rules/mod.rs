//! Rules: turn samples into decisions to open or resolve incidents.
//!
//! This module owns the `[[rule]]` tables of `collector.toml` ([`config`]), the
//! per-series state machine ([`RuleEngine`]) and the stable identity of a
//! series ([`dedup_key`]). It decides; it does not act: the caller (ingest after
//! each committed batch, plus a ticker) hands the returned [`Transition`]s to
//! `incidents`, which alone changes incident state.
//!
//! `rules` must never do I/O (no files, database, network or logging) and must
//! never read the clock: every entry point takes `now_ms` from the caller. That
//! keeps it deterministic, so it is tested with tables and properties instead
//! of sleeps, and a replay of the same inputs gives the same decisions.
//!
//! Layout:
//! - [`config`]: `RawRule` (serde) validated into typed [`Rule`]s.
//! - [`key`]: the dedup key format and its parser.
//! - [`summary`]: `{placeholder}` rendering of incident summaries.
//! - [`eval`]: [`RuleEngine`], the per-series state machine.
//! - `flap`: flap detection history (private).

pub mod config;
pub mod eval;
mod flap;
pub mod key;
pub mod summary;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

pub use config::{
    AbsentRule, FlapDetection, Op, RawRule, Rule, RuleKind, Severity, ThresholdRule, validate_rules,
};
pub use eval::{RestoredIncident, RuleEngine, SeriesPhase, SeriesView};
pub use key::{SeriesIdentity, dedup_key};

/// A label set. Same shape as `store::Labels`; ordered so a series' identity
/// (and its dedup key) does not depend on the order labels arrived in.
pub use crate::domain::Labels;

/// A decision for `incidents` to carry out.
///
/// Per dedup key, `Open` and `Resolve` strictly alternate, starting with `Open`
/// (or with the incidents given to [`RuleEngine::restore`]). `FlappingStarted`
/// and `FlappingStopped` also alternate, and only ever appear between an
/// `Open` and its `Resolve`; a `Resolve` also ends flapping.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Transition {
    Open {
        dedup_key: String,
        rule: String,
        metric: String,
        agent_id: String,
        /// The series' labels; for `absent` rules, the rule's `match` labels.
        labels: Labels,
        /// The sample that opened it; `None` for `absent` rules (there is no sample).
        value: Option<f64>,
        severity: Severity,
        /// Rendered from the rule's template when the incident opened.
        summary: String,
        runbook: Option<String>,
        /// When the condition began: the start of the `for` wait, or the last
        /// sample before the silence for `absent` rules.
        since_ms: i64,
    },
    Resolve {
        dedup_key: String,
        /// The latest value of the series, when one is known.
        value: Option<f64>,
        reason: ResolveReason,
    },
    FlappingStarted {
        dedup_key: String,
        /// Share of possible state changes that were changes, 0–100.
        percent: f64,
    },
    FlappingStopped {
        dedup_key: String,
        percent: f64,
    },
}

impl Transition {
    pub fn dedup_key(&self) -> &str {
        match self {
            Transition::Open { dedup_key, .. }
            | Transition::Resolve { dedup_key, .. }
            | Transition::FlappingStarted { dedup_key, .. }
            | Transition::FlappingStopped { dedup_key, .. } => dedup_key,
        }
    }
}

/// Why an incident was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResolveReason {
    /// The value went back past `clear` (or `threshold`) and stayed there for
    /// `keep_firing_for`.
    Cleared,
    /// An `absent` rule saw data again.
    DataResumed,
    /// The agent is expected to be offline, so its silence is not a problem.
    ExpectedOffline,
    /// The rule was removed, or changed what it selects (metric, `match`, kind),
    /// so nothing could ever resolve this incident otherwise.
    RuleRemoved,
    /// The caller asked the engine to forget the agent (decommissioned).
    AgentForgotten,
}

impl ResolveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolveReason::Cleared => "cleared",
            ResolveReason::DataResumed => "data_resumed",
            ResolveReason::ExpectedOffline => "expected_offline",
            ResolveReason::RuleRemoved => "rule_removed",
            ResolveReason::AgentForgotten => "agent_forgotten",
        }
    }
}

impl std::fmt::Display for ResolveReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
