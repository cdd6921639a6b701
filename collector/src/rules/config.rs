//! The `[[rule]]` tables of `collector.toml`: [`RawRule`] as written, validated
//! into typed [`Rule`]s by [`validate_rules`].
//!
//! Everything that can be wrong with a rule is caught here, with the file, line
//! and key (`rule[3].clear`, indices counted from 0 in file order), so the
//! engine never meets a rule it cannot evaluate. This file reads no files
//! itself: the caller parses `collector.toml` and passes the raw tables in.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use steward_core::config_file::{self, ConfigError, ConfigSource};

use super::Labels;
use super::summary::check_template;

/// Default `flap_window`: long enough to see several state changes at common
/// sample intervals (10–60 s), short enough that a fixed problem stops
/// counting as flapping within minutes.
pub const DEFAULT_FLAP_WINDOW: Duration = Duration::from_secs(600);

/// One `[[rule]]` table exactly as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    /// `"threshold"` (the default) or `"absent"`.
    #[serde(default)]
    pub kind: Option<String>,
    pub metric: String,
    #[serde(default, rename = "match")]
    pub matchers: Labels,
    #[serde(default)]
    pub op: Option<String>,
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub clear: Option<f64>,
    #[serde(
        default,
        rename = "for",
        deserialize_with = "config_file::optional_duration"
    )]
    pub for_duration: Option<Duration>,
    /// `absent` only: silence of this many observed sample intervals.
    #[serde(default)]
    pub intervals: Option<u32>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub keep_firing_for: Option<Duration>,
    pub severity: String,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub runbook: Option<String>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub flap_window: Option<Duration>,
    #[serde(default)]
    pub flap_threshold: Option<f64>,
}

/// A validated rule. Names are unique within one [`validate_rules`] result.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub metric: String,
    /// Labels a sample must carry with exactly these values; empty selects
    /// every series of `metric`.
    pub matchers: Labels,
    pub severity: Severity,
    /// A [`super::summary`] template; checked to be well-formed.
    pub summary: String,
    pub runbook: Option<String>,
    pub kind: RuleKind,
}

impl Rule {
    /// Whether a series with `labels` belongs to this rule.
    pub fn selects(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    }

    /// Whether `other` selects the same series the same way, so state kept
    /// for this rule's series is still meaningful under `other` (see
    /// [`super::RuleEngine::replace_rules`]).
    pub fn same_series_as(&self, other: &Rule) -> bool {
        self.name == other.name
            && self.metric == other.metric
            && self.matchers == other.matchers
            && std::mem::discriminant(&self.kind) == std::mem::discriminant(&other.kind)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Threshold(ThresholdRule),
    Absent(AbsentRule),
}

/// Fires when a value crosses `threshold` and stays there for `for_duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdRule {
    pub op: Op,
    pub threshold: f64,
    /// Where the value must return to before the incident resolves. On the
    /// non-breaching side of `threshold` (or equal), so the band between them
    /// keeps the current state instead of toggling it.
    pub clear: Option<f64>,
    pub for_duration: Duration,
    /// How long the value must stay cleared before the incident resolves.
    pub keep_firing_for: Duration,
    pub flap: Option<FlapDetection>,
}

impl ThresholdRule {
    /// Whether `value` is a breach of the threshold.
    pub fn breaches(&self, value: f64) -> bool {
        self.op.holds(value, self.threshold)
    }

    /// Whether a breaching series has come back far enough to count as clear.
    /// `clear` sits on the non-breaching side, so "back past it" is simply
    /// "the operator no longer holds against it".
    pub fn clears(&self, value: f64) -> bool {
        !self.op.holds(value, self.clear.unwrap_or(self.threshold))
    }
}

/// Icinga-style flap detection for one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FlapDetection {
    pub window: Duration,
    /// Flapping starts above this percentage of state changes and stops below
    /// half of it; the gap keeps the flag itself from flapping.
    pub threshold_percent: f64,
}

/// Fires when a series (per agent) has sent nothing for a while.
#[derive(Debug, Clone, PartialEq)]
pub struct AbsentRule {
    /// Fixed silence that counts as absence (`for`).
    pub after: Option<Duration>,
    /// Silence of this many observed sample intervals. With `after` too, the
    /// longer of the two applies; until an interval has been observed (two
    /// samples), only `after` applies.
    pub intervals: Option<u32>,
}

/// Comparison of a sample value against a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    /// Exact float equality; meant for integer-valued metrics (states, counts).
    Eq,
    Ne,
}

impl Op {
    pub const ALL: [Op; 6] = [Op::Gt, Op::Ge, Op::Lt, Op::Le, Op::Eq, Op::Ne];

    pub fn from_name(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// `value OP level`. NaN never holds, so a NaN sample cannot breach.
    pub fn holds(self, value: f64, level: f64) -> bool {
        if value.is_nan() {
            return false;
        }
        match self {
            Op::Gt => value > level,
            Op::Ge => value >= level,
            Op::Lt => value < level,
            Op::Le => value <= level,
            Op::Eq => value == level,
            Op::Ne => value != level,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub use crate::domain::Severity;

const DEFAULT_THRESHOLD_SUMMARY: &str = "{rule} on {host}: {metric} is {value} ({op} {threshold})";
const DEFAULT_ABSENT_SUMMARY: &str = "{rule} on {host}: no {metric} data for {silence}";

/// Validates every `[[rule]]` table, in order; the first problem is returned.
pub fn validate_rules(source: &ConfigSource, raw: Vec<RawRule>) -> Result<Vec<Rule>, ConfigError> {
    let mut first_index_of: HashMap<String, usize> = HashMap::new();
    let mut rules = Vec::with_capacity(raw.len());
    for (index, raw) in raw.into_iter().enumerate() {
        let rule = validate_rule(source, index, raw)?;
        if let Some(first) = first_index_of.get(&rule.name) {
            return Err(rule_error(
                source,
                index,
                "name",
                format!(
                    "duplicate rule name {:?} (also rule[{first}]); names identify incidents, so they must be unique",
                    rule.name
                ),
            ));
        }
        first_index_of.insert(rule.name.clone(), index);
        rules.push(rule);
    }
    Ok(rules)
}

fn validate_rule(source: &ConfigSource, index: usize, raw: RawRule) -> Result<Rule, ConfigError> {
    let error = |field: &str, message: String| rule_error(source, index, field, message);
    if raw.name.trim().is_empty() {
        return Err(error("name", "must not be empty".into()));
    }
    if raw.name.trim() != raw.name || raw.name.chars().any(char::is_control) {
        return Err(error(
            "name",
            "must not have surrounding spaces or control characters".into(),
        ));
    }
    if !is_metric_name(&raw.metric) {
        return Err(error(
            "metric",
            format!(
                "{:?} is not a metric name (dotted lower-case, e.g. \"disk.used_percent\")",
                raw.metric
            ),
        ));
    }
    if let Some(key) = raw.matchers.keys().find(|key| key.is_empty()) {
        return Err(error(
            "match",
            format!("label name {key:?} must not be empty"),
        ));
    }
    let severity = Severity::from_name(&raw.severity).ok_or_else(|| {
        error(
            "severity",
            format!(
                "unknown severity {:?}; expected one of critical, major, minor, warning, info",
                raw.severity
            ),
        )
    })?;
    if let Some(summary) = &raw.summary {
        check_template(summary).map_err(|message| error("summary", message))?;
    }
    if let Some(runbook) = &raw.runbook
        && runbook.trim().is_empty()
    {
        return Err(error(
            "runbook",
            "must not be empty (leave it out instead)".into(),
        ));
    }

    let (kind, default_summary) = match raw.kind.as_deref().unwrap_or("threshold") {
        "threshold" => (
            RuleKind::Threshold(validate_threshold(&error, &raw)?),
            DEFAULT_THRESHOLD_SUMMARY,
        ),
        "absent" => (
            RuleKind::Absent(validate_absent(&error, &raw)?),
            DEFAULT_ABSENT_SUMMARY,
        ),
        other => {
            return Err(error(
                "kind",
                format!("unknown kind {other:?}; expected \"threshold\" or \"absent\""),
            ));
        }
    };
    Ok(Rule {
        name: raw.name,
        metric: raw.metric,
        matchers: raw.matchers,
        severity,
        summary: raw.summary.unwrap_or_else(|| default_summary.to_string()),
        runbook: raw.runbook,
        kind,
    })
}

fn validate_threshold(
    error: &dyn Fn(&str, String) -> ConfigError,
    raw: &RawRule,
) -> Result<ThresholdRule, ConfigError> {
    if raw.intervals.is_some() {
        return Err(error(
            "intervals",
            "only applies to kind = \"absent\"".into(),
        ));
    }
    let op_name = raw
        .op
        .as_deref()
        .ok_or_else(|| error("op", "missing; expected one of > >= < <= == !=".into()))?;
    let op = Op::from_name(op_name).ok_or_else(|| {
        error(
            "op",
            format!("unknown operator {op_name:?}; expected one of > >= < <= == !="),
        )
    })?;
    let threshold = raw
        .threshold
        .ok_or_else(|| error("threshold", "missing".into()))?;
    if !threshold.is_finite() {
        return Err(error("threshold", "must be a finite number".into()));
    }
    if let Some(clear) = raw.clear {
        if !clear.is_finite() {
            return Err(error("clear", "must be a finite number".into()));
        }
        let wrong_side = match op {
            Op::Gt | Op::Ge => clear > threshold,
            Op::Lt | Op::Le => clear < threshold,
            Op::Eq | Op::Ne => {
                return Err(error(
                    "clear",
                    format!("has no meaning with op = \"{op}\" (there is no side to return to)"),
                ));
            }
        };
        if wrong_side {
            let expected = if matches!(op, Op::Gt | Op::Ge) {
                "<="
            } else {
                ">="
            };
            return Err(error(
                "clear",
                format!(
                    "{clear} is on the breaching side: with op = \"{op}\" it must be {expected} threshold ({threshold})"
                ),
            ));
        }
    }
    let flap = match (raw.flap_threshold, raw.flap_window) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(error(
                "flap_window",
                "has no effect without flap_threshold".into(),
            ));
        }
        (Some(percent), window) => {
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(error(
                    "flap_threshold",
                    format!("{percent} is not a percentage in (0, 100]"),
                ));
            }
            let window = window.unwrap_or(DEFAULT_FLAP_WINDOW);
            if window.is_zero() {
                return Err(error("flap_window", "must be longer than 0s".into()));
            }
            Some(FlapDetection {
                window,
                threshold_percent: percent,
            })
        }
    };
    Ok(ThresholdRule {
        op,
        threshold,
        clear: raw.clear,
        for_duration: raw.for_duration.unwrap_or(Duration::ZERO),
        keep_firing_for: raw.keep_firing_for.unwrap_or(Duration::ZERO),
        flap,
    })
}

fn validate_absent(
    error: &dyn Fn(&str, String) -> ConfigError,
    raw: &RawRule,
) -> Result<AbsentRule, ConfigError> {
    let not_for_absent = [
        ("op", raw.op.is_some()),
        ("threshold", raw.threshold.is_some()),
        ("clear", raw.clear.is_some()),
        ("keep_firing_for", raw.keep_firing_for.is_some()),
        ("flap_window", raw.flap_window.is_some()),
        ("flap_threshold", raw.flap_threshold.is_some()),
    ];
    if let Some((field, _)) = not_for_absent.iter().find(|(_, set)| *set) {
        return Err(error(
            field,
            "does not apply to kind = \"absent\" (it fires on silence, not on a value)".into(),
        ));
    }
    if raw.for_duration.is_some_and(|after| after.is_zero()) {
        return Err(error(
            "for",
            "must be longer than 0s for kind = \"absent\"".into(),
        ));
    }
    if raw.intervals == Some(0) {
        return Err(error("intervals", "must be at least 1".into()));
    }
    if raw.for_duration.is_none() && raw.intervals.is_none() {
        return Err(error(
            "for",
            "kind = \"absent\" needs `for` (a duration), `intervals` (a count of sample intervals) or both".into(),
        ));
    }
    Ok(AbsentRule {
        after: raw.for_duration,
        intervals: raw.intervals,
    })
}

/// The shape `ingest` accepts for metric names, checked here too so a rule
/// that could never match anything is refused instead of silently idle.
fn is_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_' || byte == b'.'
        })
        && !name.starts_with('.')
        && !name.ends_with('.')
}

/// An error about `field` of the `index`-th rule. `ConfigSource::error` cannot
/// find the line of an array-of-tables key on its own, so the line is looked
/// up here and filled in.
fn rule_error(source: &ConfigSource, index: usize, field: &str, message: String) -> ConfigError {
    let mut error = source.error(&format!("rule[{index}].{field}"), message);
    if let Some(line) = rule_field_line(&source.text, index, field) {
        error.line = Some(line);
    }
    error
}

/// The 1-based line that sets `field` in the `index`-th `[[rule]]` table, or
/// the table's header line when the field is not written (it was missing).
fn rule_field_line(text: &str, index: usize, field: &str) -> Option<usize> {
    let mut rules_seen = 0usize;
    let mut header_line = None;
    let mut inside = false;
    for (number, raw) in text.lines().enumerate() {
        let line = number + 1;
        let trimmed = raw.trim();
        if let Some(inner) = trimmed
            .strip_prefix("[[")
            .and_then(|rest| rest.split("]]").next())
        {
            inside = inner.trim() == "rule" && rules_seen == index;
            if inner.trim() == "rule" {
                rules_seen += 1;
            }
            if inside {
                header_line = Some(line);
            }
            continue;
        }
        if let Some(inner) = trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.split(']').next())
        {
            // `[rule.match]` continues the current rule; any other table ends it.
            let inner = inner.trim();
            if inside && inner == format!("rule.{field}") {
                return Some(line);
            }
            inside = inside && inner.starts_with("rule.");
            continue;
        }
        if inside
            && let Some((key, _)) = trimmed.split_once('=')
            && key.trim().trim_matches('"') == field
        {
            return Some(line);
        }
    }
    header_line
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        rule: Vec<RawRule>,
    }

    fn source(text: &str) -> ConfigSource {
        ConfigSource {
            path: PathBuf::from("/etc/steward/collector.toml"),
            text: text.to_string(),
        }
    }

    fn load(text: &str) -> Result<Vec<Rule>, ConfigError> {
        let source = source(text);
        let file: File = source.parse()?;
        validate_rules(&source, file.rule)
    }

    const DISK: &str = r#"
[[rule]]
name = "disk-almost-full"
metric = "disk.used_percent"
match = { mount = "/" }
op = ">"
threshold = 90
clear = 85
for = "2m"
keep_firing_for = "5m"
severity = "critical"
summary = "Disk {mount} on {host} at {value}%"
runbook = "https://wiki.example/runbooks/disk-full"
flap_threshold = 50

[[rule]]
name = "host-down"
kind = "absent"
metric = "host.uptime_seconds"
for = "3m"
intervals = 3
severity = "major"
"#;

    #[test]
    fn example_rules_validate_with_defaults() {
        let rules = load(DISK).unwrap();
        assert_eq!(rules.len(), 2);
        let disk = &rules[0];
        assert_eq!(disk.name, "disk-almost-full");
        assert_eq!(disk.severity, Severity::Critical);
        assert_eq!(disk.matchers.get("mount").map(String::as_str), Some("/"));
        let RuleKind::Threshold(threshold) = &disk.kind else {
            panic!("expected a threshold rule: {disk:?}");
        };
        assert_eq!(threshold.op, Op::Gt);
        assert_eq!(threshold.threshold, 90.0);
        assert_eq!(threshold.clear, Some(85.0));
        assert_eq!(threshold.for_duration, Duration::from_secs(120));
        assert_eq!(threshold.keep_firing_for, Duration::from_secs(300));
        assert_eq!(
            threshold.flap,
            Some(FlapDetection {
                window: DEFAULT_FLAP_WINDOW,
                threshold_percent: 50.0
            })
        );
        let down = &rules[1];
        assert_eq!(
            down.kind,
            RuleKind::Absent(AbsentRule {
                after: Some(Duration::from_secs(180)),
                intervals: Some(3),
            })
        );
        assert_eq!(down.summary, DEFAULT_ABSENT_SUMMARY);
    }

    #[test]
    fn errors_name_the_rule_key_and_line() {
        let rule = |body: &str| {
            format!(
                "[[rule]]\nname = \"ok\"\nmetric = \"cpu.usage_percent\"\nop = \">\"\nthreshold = 90\nseverity = \"info\"\n\n[[rule]]\n{body}\n"
            )
        };
        let threshold = |extra: &str| {
            rule(&format!(
                "name = \"r\"\nmetric = \"disk.used_percent\"\nop = \">\"\nthreshold = 90\nseverity = \"critical\"\n{extra}"
            ))
        };
        // (text, key, line, part of the message)
        let cases: Vec<(String, &str, usize, &str)> = vec![
            (
                threshold("clear = 95"),
                "rule[1].clear",
                14,
                "must be <= threshold",
            ),
            (
                rule(
                    "name = \"r\"\nmetric = \"m.x\"\nop = \"<\"\nthreshold = 10\nclear = 5\nseverity = \"info\"",
                ),
                "rule[1].clear",
                13,
                "must be >= threshold",
            ),
            (
                rule(
                    "name = \"r\"\nmetric = \"m.x\"\nop = \"==\"\nthreshold = 1\nclear = 0\nseverity = \"info\"",
                ),
                "rule[1].clear",
                13,
                "no meaning",
            ),
            (
                rule(
                    "name = \"r\"\nmetric = \"m.x\"\nop = \"=>\"\nthreshold = 1\nseverity = \"info\"",
                ),
                "rule[1].op",
                11,
                "unknown operator \"=>\"",
            ),
            (
                rule("name = \"r\"\nmetric = \"m.x\"\nthreshold = 1\nseverity = \"info\""),
                "rule[1].op",
                8,
                "missing",
            ),
            (
                rule(
                    "name = \"\"\nmetric = \"m.x\"\nop = \">\"\nthreshold = 1\nseverity = \"info\"",
                ),
                "rule[1].name",
                9,
                "must not be empty",
            ),
            (
                rule(
                    "name = \"ok\"\nmetric = \"m.x\"\nop = \">\"\nthreshold = 1\nseverity = \"info\"",
                ),
                "rule[1].name",
                9,
                "duplicate rule name \"ok\" (also rule[0])",
            ),
            (
                // Shape errors come from `ConfigSource::parse`, which names the
                // table but not its index; the line pins the rule down.
                threshold("severity_typo = 1"),
                "rule.severity_typo",
                14,
                "unknown field",
            ),
            (
                rule(
                    "name = \"r\"\nmetric = \"m.x\"\nop = \">\"\nthreshold = 1\nseverity = \"urgent\"",
                ),
                "rule[1].severity",
                13,
                "unknown severity",
            ),
            (
                rule(
                    "name = \"r\"\nmetric = \"Disk Used\"\nop = \">\"\nthreshold = 1\nseverity = \"info\"",
                ),
                "rule[1].metric",
                10,
                "not a metric name",
            ),
            (
                threshold("summary = \"Disk {mount on {host}\""),
                "rule[1].summary",
                14,
                "not a placeholder",
            ),
            (
                threshold("flap_window = \"5m\""),
                "rule[1].flap_window",
                14,
                "without flap_threshold",
            ),
            (
                threshold("flap_threshold = 150"),
                "rule[1].flap_threshold",
                14,
                "not a percentage",
            ),
            (
                threshold("intervals = 3"),
                "rule[1].intervals",
                14,
                "only applies",
            ),
            (
                threshold("kind = \"rate\""),
                "rule[1].kind",
                14,
                "unknown kind",
            ),
            (
                rule(
                    "name = \"r\"\nkind = \"absent\"\nmetric = \"agent.up\"\nseverity = \"major\"",
                ),
                "rule[1].for",
                8,
                "needs `for`",
            ),
            (
                rule(
                    "name = \"r\"\nkind = \"absent\"\nmetric = \"agent.up\"\nfor = \"3m\"\nthreshold = 1\nseverity = \"major\"",
                ),
                "rule[1].threshold",
                13,
                "does not apply",
            ),
            (
                rule(
                    "name = \"r\"\nkind = \"absent\"\nmetric = \"agent.up\"\nintervals = 0\nseverity = \"major\"",
                ),
                "rule[1].intervals",
                12,
                "at least 1",
            ),
            (
                threshold("for = \"soon\""),
                "rule.for",
                14,
                "invalid duration",
            ),
        ];
        for (text, key, line, message) in cases {
            let error = load(&text).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{error}\n{text}");
            assert_eq!(error.line, Some(line), "{error}\n{text}");
            assert!(error.message.contains(message), "{error}\n{text}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("/etc/steward/collector.toml:{line}: key `{key}`")),
                "{error}"
            );
        }
    }

    #[test]
    fn match_as_a_subtable_is_found_by_line() {
        let text = "[[rule]]\nname = \"r\"\nmetric = \"m.x\"\nop = \">\"\nthreshold = 1\nseverity = \"info\"\n[rule.match]\n\"\" = \"x\"\n";
        let error = load(text).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("rule[0].match"));
        assert_eq!(error.line, Some(7));
    }

    #[test]
    fn every_op_and_severity_name_round_trips() {
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.as_str()), Some(op));
        }
        for severity in Severity::ALL {
            assert_eq!(Severity::from_name(severity.as_str()), Some(severity));
        }
        assert!(Severity::Critical > Severity::Major);
        assert!(Severity::Major > Severity::Minor);
        assert!(Severity::Minor > Severity::Warning);
        assert!(Severity::Warning > Severity::Info);
    }

    #[test]
    fn clear_sides_and_operators() {
        // (op, threshold, value, breaches, clears with clear = None)
        let cases = [
            (Op::Gt, 90.0, 90.5, true),
            (Op::Gt, 90.0, 90.0, false),
            (Op::Ge, 90.0, 90.0, true),
            (Op::Ge, 90.0, 89.9, false),
            (Op::Lt, 10.0, 9.0, true),
            (Op::Lt, 10.0, 10.0, false),
            (Op::Le, 10.0, 10.0, true),
            (Op::Le, 10.0, 10.1, false),
            (Op::Eq, 2.0, 2.0, true),
            (Op::Eq, 2.0, 2.5, false),
            (Op::Ne, 0.0, 1.0, true),
            (Op::Ne, 0.0, 0.0, false),
            (Op::Ne, 0.0, f64::NAN, false),
        ];
        for (op, threshold, value, breaches) in cases {
            let rule = ThresholdRule {
                op,
                threshold,
                clear: None,
                for_duration: Duration::ZERO,
                keep_firing_for: Duration::ZERO,
                flap: None,
            };
            assert_eq!(rule.breaches(value), breaches, "{value} {op} {threshold}");
            if !value.is_nan() {
                assert_eq!(rule.clears(value), !breaches, "{value} {op} {threshold}");
            }
        }
    }
}
