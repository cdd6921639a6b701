//! Which channels, and which escalation policy, an incident is delivered to.
//!
//! Routes are tried in file order. The first route whose `match` holds is
//! used; if it says `continue = true`, later routes are tried too and their
//! channels added. With no routes configured at all, every incident goes to
//! every channel. With routes configured but none matching, the incident is
//! delivered nowhere; end the list with a route without `match` to catch the
//! rest.
//!
//! `match` semantics (all keys must hold; an empty or missing `match` always
//! holds):
//! - `severity = "major"`: exactly that severity;
//!   `severity = ">=major"`: that severity or worse;
//!   `severity = ["critical", "minor"]`: any of those.
//! - `rule = "disk_full"` or a list: the incident's rule is one of them.
//! - `tag = "prod"` or a list: the host carries at least one of the tags.
//! - any other key: the incident's label of that name equals the value (or
//!   one of the listed values). `host`, `agent_id` and `metric` match the
//!   incident's own fields unless a label of that name exists (see
//!   [`RouteInput::from_record`]).
//!
//! This module never fails: every name a route refers to was checked when
//! the configuration was validated.

use std::collections::BTreeMap;

use super::grouping::{GroupBy, Grouping};
use crate::domain::{IncidentRecord, Labels, Severity};

/// What routing looks at: the incident's classification, not its numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteInput {
    pub severity: Severity,
    pub rule: String,
    pub labels: Labels,
    /// Tags of the incident's host (from the asset inventory).
    pub tags: Vec<String>,
}

impl RouteInput {
    /// Builds the input for an incident. Its labels are extended with the
    /// pseudo-labels `host`, `agent_id` and `metric` (a real label of the same
    /// name wins).
    pub fn from_record(incident: &IncidentRecord, tags: Vec<String>) -> Self {
        let mut labels = incident.labels.clone();
        for (name, value) in [
            ("host", &incident.host),
            ("agent_id", &incident.agent_id),
            ("metric", &incident.metric),
        ] {
            labels
                .entry(name.to_string())
                .or_insert_with(|| value.clone());
        }
        Self {
            severity: incident.severity,
            rule: incident.rule.clone(),
            labels,
            tags,
        }
    }
}

/// One validated `[[route]]`. Channel and escalation names exist.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Route {
    pub matcher: RouteMatch,
    pub channels: Vec<String>,
    pub escalation: Option<String>,
    /// `continue = true`: keep trying later routes after this one matched.
    pub continue_matching: bool,
    /// Grouping and storm control; `None` pages every incident on its own.
    pub grouping: Option<Grouping>,
}

/// The validated `match` table. Empty fields do not constrain.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteMatch {
    pub severity: Option<SeverityMatch>,
    /// Any of these rule names; empty means any rule.
    pub rules: Vec<String>,
    /// Any of these host tags; empty means no tag needed.
    pub tags: Vec<String>,
    /// Label name → accepted values (any of them; never empty).
    pub labels: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeverityMatch {
    /// `">=major"`: this severity or worse.
    AtLeast(Severity),
    /// `"major"` or `["major", "minor"]`.
    AnyOf(Vec<Severity>),
}

impl SeverityMatch {
    /// Parses `"major"` or `">=major"`; `None` for anything else.
    pub fn parse_one(text: &str) -> Option<Self> {
        match text.trim().strip_prefix(">=") {
            Some(rest) => Severity::from_name(rest.trim()).map(SeverityMatch::AtLeast),
            None => Severity::from_name(text.trim())
                .map(|severity| SeverityMatch::AnyOf(vec![severity])),
        }
    }

    pub fn holds(&self, severity: Severity) -> bool {
        match self {
            SeverityMatch::AtLeast(minimum) => severity >= *minimum,
            SeverityMatch::AnyOf(accepted) => accepted.contains(&severity),
        }
    }
}

impl RouteMatch {
    pub fn holds(&self, input: &RouteInput) -> bool {
        self.severity
            .as_ref()
            .is_none_or(|severity| severity.holds(input.severity))
            && (self.rules.is_empty() || self.rules.contains(&input.rule))
            && (self.tags.is_empty() || self.tags.iter().any(|tag| input.tags.contains(tag)))
            && self.labels.iter().all(|(name, accepted)| {
                input
                    .labels
                    .get(name)
                    .is_some_and(|value| accepted.contains(value))
            })
    }
}

/// Where one incident goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteDecision {
    /// Channel names, each once, in the order routes listed them.
    pub channels: Vec<String>,
    /// For each of `channels`, the index of the route that listed it first
    /// (empty when no route is configured).
    pub channel_routes: Vec<usize>,
    /// The escalation policy of the first matching route that names one.
    pub escalation: Option<String>,
}

/// Decides where `input` goes (see the module docs for the rules).
/// `every_channel` names the channels that get everything when no route is
/// configured at all.
pub fn route<'a>(
    input: &RouteInput,
    routes: &[Route],
    every_channel: impl IntoIterator<Item = &'a str>,
) -> RouteDecision {
    let mut decision = RouteDecision::default();
    if routes.is_empty() {
        decision.channels = every_channel.into_iter().map(str::to_string).collect();
        return decision;
    }
    for (index, route) in routes.iter().enumerate() {
        if !route.matcher.holds(input) {
            continue;
        }
        for channel in &route.channels {
            if !decision.channels.contains(channel) {
                decision.channels.push(channel.clone());
                decision.channel_routes.push(index);
            }
        }
        if decision.escalation.is_none() {
            decision.escalation = route.escalation.clone();
        }
        if !route.continue_matching {
            break;
        }
    }
    decision
}

/// The group an incident of route `route` belongs to under `grouping`:
/// `route{N}` then `|key=value` for each `group_by` key.
pub fn group_key(grouping: &Grouping, route: usize, input: &RouteInput) -> String {
    let mut key = format!("route{route}");
    for part in &grouping.group_by {
        let (name, value) = match part {
            GroupBy::Rule => ("rule".to_string(), input.rule.clone()),
            GroupBy::Severity => ("severity".to_string(), input.severity.to_string()),
            GroupBy::Tag(name) => (
                format!("tag:{name}"),
                input
                    .tags
                    .iter()
                    .find_map(|tag| tag.strip_prefix(name.as_str())?.strip_prefix(':'))
                    .unwrap_or("")
                    .to_string(),
            ),
            GroupBy::Label(name) => (
                name.clone(),
                input.labels.get(name).cloned().unwrap_or_default(),
            ),
        };
        key.push_str(&format!("|{name}={value}"));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(severity: Severity, rule: &str, labels: &[(&str, &str)], tags: &[&str]) -> RouteInput {
        RouteInput {
            severity,
            rule: rule.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn to(channels: &[&str]) -> Vec<String> {
        channels.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn group_keys_name_the_group_by_values() {
        let grouping = Grouping {
            group_by: vec![GroupBy::Rule, GroupBy::Tag("site".into())],
            group_wait: std::time::Duration::ZERO,
            group_interval: std::time::Duration::from_secs(10),
            storm_threshold: None,
            storm_window: std::time::Duration::from_secs(60),
        };
        let incident = input(
            Severity::Major,
            "port-down",
            &[("target", "x")],
            &["site:a", "prod"],
        );
        assert_eq!(
            group_key(&grouping, 2, &incident),
            "route2|rule=port-down|tag:site=a"
        );
        let by_label = Grouping {
            group_by: vec![GroupBy::Label("target".into()), GroupBy::Severity],
            ..grouping
        };
        assert_eq!(
            group_key(&by_label, 0, &incident),
            "route0|target=x|severity=major"
        );
    }

    #[test]
    fn no_routes_means_every_channel() {
        let channels = ["a", "b"];
        let decision = route(&input(Severity::Info, "r", &[], &[]), &[], channels);
        assert_eq!(decision.channels, to(&["a", "b"]));
        assert_eq!(decision.escalation, None);
    }

    #[test]
    fn route_table() {
        let channels = ["pager", "slack", "db-team", "all"];
        let routes = vec![
            Route {
                matcher: RouteMatch {
                    severity: Some(SeverityMatch::AtLeast(Severity::Major)),
                    ..RouteMatch::default()
                },
                channels: to(&["pager"]),
                escalation: Some("ops".into()),
                continue_matching: true,
                grouping: None,
            },
            Route {
                matcher: RouteMatch {
                    labels: [("service".to_string(), to(&["mysql", "postgres"]))].into(),
                    ..RouteMatch::default()
                },
                channels: to(&["db-team"]),
                escalation: Some("db".into()),
                continue_matching: false,
                grouping: None,
            },
            Route {
                matcher: RouteMatch {
                    rules: to(&["disk_full"]),
                    tags: to(&["prod", "staging"]),
                    ..RouteMatch::default()
                },
                channels: to(&["slack", "pager"]),
                escalation: None,
                continue_matching: false,
                grouping: None,
            },
            Route {
                matcher: RouteMatch {
                    severity: Some(SeverityMatch::AnyOf(vec![Severity::Info, Severity::Minor])),
                    ..RouteMatch::default()
                },
                channels: to(&["all"]),
                escalation: None,
                continue_matching: false,
                grouping: None,
            },
        ];
        let cases = [
            // Major continues past the pager route, then the db route stops it.
            (
                input(Severity::Critical, "x", &[("service", "mysql")], &[]),
                to(&["pager", "db-team"]),
                Some("ops"),
            ),
            // Major, no db label: pager, then the disk route (pager once).
            (
                input(Severity::Major, "disk_full", &[], &["prod"]),
                to(&["pager", "slack"]),
                Some("ops"),
            ),
            // Below major: the first matching route wins and stops.
            (
                input(Severity::Minor, "x", &[("service", "postgres")], &[]),
                to(&["db-team"]),
                Some("db"),
            ),
            // Tag required: none of the listed tags → falls through.
            (
                input(Severity::Minor, "disk_full", &[], &["dev"]),
                to(&["all"]),
                None,
            ),
            // Label with another value does not match.
            (
                input(Severity::Info, "x", &[("service", "redis")], &[]),
                to(&["all"]),
                None,
            ),
            // Nothing matches: delivered nowhere.
            (input(Severity::Warning, "x", &[], &[]), to(&[]), None),
        ];
        for (input, channels_expected, escalation) in cases {
            let decision = route(&input, &routes, channels);
            assert_eq!(decision.channels, channels_expected, "{input:?}");
            assert_eq!(decision.escalation.as_deref(), escalation, "{input:?}");
        }
    }

    #[test]
    fn severity_match_parsing() {
        let cases = [
            ("major", Some(SeverityMatch::AnyOf(vec![Severity::Major]))),
            (">=minor", Some(SeverityMatch::AtLeast(Severity::Minor))),
            (
                ">= critical",
                Some(SeverityMatch::AtLeast(Severity::Critical)),
            ),
            (">major", None),
            ("urgent", None),
        ];
        for (text, expected) in cases {
            assert_eq!(SeverityMatch::parse_one(text), expected, "{text}");
        }
        let at_least = SeverityMatch::AtLeast(Severity::Minor);
        assert!(!at_least.holds(Severity::Warning));
        assert!(at_least.holds(Severity::Minor));
        assert!(at_least.holds(Severity::Critical));
    }

    #[test]
    fn record_pseudo_labels_do_not_override_real_labels() {
        let record = IncidentRecord {
            metric: "cpu.percent".into(),
            agent_id: "a1".into(),
            labels: [("metric".to_string(), "mine".to_string())].into(),
            severity: Severity::Minor,
            ..IncidentRecord::example(0)
        };
        let input = RouteInput::from_record(&record, vec!["prod".into()]);
        assert_eq!(input.labels["host"], "web-1");
        assert_eq!(input.labels["agent_id"], "a1");
        assert_eq!(input.labels["metric"], "mine");
        assert_eq!(input.severity, Severity::Minor);
    }
}
