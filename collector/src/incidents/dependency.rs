//! Dependencies between checks (Zabbix trigger dependencies, Alertmanager
//! inhibition): hosts, chosen by name or asset tag, whose alerts are caused
//! by a parent check, e.g. every host behind a site's gateway.
//!
//! ```toml
//! [[dependency]]
//! hosts = ["web-1", "web-2"]      # host names or agent ids
//! tags = ["site:a"]               # and/or assets carrying any of these tags
//! depends_on = { rule = "gw-down", labels = { target = "gw-site-a:443" } }
//! hold = "30s"                    # wait this long for the parent before paging
//! ```
//!
//! Children and parent usually breach together (the core switch dies: every
//! host behind it loses ping at once), often children first. So a child
//! incident whose parent is not open yet waits `hold` before it pages, like
//! Alertmanager's inhibition with `group_wait`: if the parent opens meanwhile,
//! the child is suppressed by it and never pages.
//!
//! Pure: this file only says which parent checks an incident depends on and
//! how long it waits for them; the store links the incident to an open parent
//! incident when it opens, or holds its page.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use steward_core::config_file::{ConfigError, ConfigSource};

use crate::domain::ParentCheck;
use crate::rules::Rule;

/// One `[[dependency]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDependency {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub depends_on: RawParentCheck,
    /// How long a child's page waits for the parent to open; 0: not at all.
    #[serde(
        default = "default_hold",
        deserialize_with = "steward_core::config_file::duration"
    )]
    pub hold: Duration,
}

/// Default `hold`: long enough for a parent probed on a similar interval.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(30);

fn default_hold() -> Duration {
    DEFAULT_HOLD
}

/// `depends_on = { rule, labels }` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParentCheck {
    pub rule: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A validated dependency: `hosts` or `tags` is not empty and the parent
/// rule exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// Host names or agent ids.
    pub hosts: Vec<String>,
    /// Asset tags; any one suffices.
    pub tags: Vec<String>,
    pub parent: ParentCheck,
    /// How long a child's page waits for the parent's incident to open.
    pub hold: Duration,
}

impl Dependency {
    /// Whether alerts of this agent (with its host name and asset tags) depend on the parent.
    pub fn covers(&self, agent_id: &str, host: &str, tags: &BTreeSet<String>) -> bool {
        self.hosts
            .iter()
            .any(|name| name == host || name == agent_id)
            || self.tags.iter().any(|tag| tags.contains(tag))
    }
}

/// Validates `[[dependency]]` tables against the rule set.
pub fn validate_dependencies(
    source: &ConfigSource,
    raw: Vec<RawDependency>,
    rules: &[Rule],
) -> Result<Vec<Dependency>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let key = |field: &str| format!("dependency[{index}].{field}");
            if raw.hosts.is_empty() && raw.tags.is_empty() {
                return Err(source.error(
                    &key("hosts"),
                    "a dependency needs `hosts` or `tags` (whose alerts depend on the parent)",
                ));
            }
            if !rules.iter().any(|rule| rule.name == raw.depends_on.rule) {
                return Err(source.error(
                    &key("depends_on.rule"),
                    format!("unknown rule {:?}", raw.depends_on.rule),
                ));
            }
            Ok(Dependency {
                hosts: raw.hosts,
                tags: raw.tags,
                parent: ParentCheck {
                    rule: raw.depends_on.rule,
                    labels: raw.depends_on.labels.into_iter().collect(),
                },
                hold: raw.hold,
            })
        })
        .collect()
}

/// The parent checks alerts of this agent depend on, each once, and how
/// long its pages wait for one of them to open (the longest `hold`).
pub fn parents_with_hold(
    dependencies: &[Dependency],
    agent_id: &str,
    host: &str,
    tags: &BTreeSet<String>,
) -> (Vec<ParentCheck>, Duration) {
    let mut parents: Vec<ParentCheck> = Vec::new();
    let mut hold = Duration::ZERO;
    for dependency in dependencies {
        if !dependency.covers(agent_id, host, tags) {
            continue;
        }
        hold = hold.max(dependency.hold);
        if !parents.contains(&dependency.parent) {
            parents.push(dependency.parent.clone());
        }
    }
    (parents, hold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Labels;

    fn parent(rule: &str, labels: &[(&str, &str)]) -> ParentCheck {
        ParentCheck {
            rule: rule.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn hosts_ids_and_tags_select_children() {
        let dependencies = vec![
            Dependency {
                hosts: vec!["web-1".into(), "agent-9".into()],
                tags: vec![],
                parent: parent("gw-down", &[("target", "gw-a")]),
                hold: Duration::ZERO,
            },
            Dependency {
                hosts: vec![],
                tags: vec!["site:a".into()],
                parent: parent("gw-down", &[("target", "gw-a")]),
                hold: Duration::from_secs(30),
            },
            Dependency {
                hosts: vec![],
                tags: vec!["rack:7".into()],
                parent: parent("pdu-down", &[]),
                hold: Duration::from_secs(5),
            },
        ];
        let tags = |list: &[&str]| list.iter().map(|t| t.to_string()).collect::<BTreeSet<_>>();
        let cases = [
            ("a1", "web-1", tags(&[]), vec!["gw-down"]),
            ("agent-9", "db-1", tags(&[]), vec!["gw-down"]),
            ("a2", "web-2", tags(&["site:a"]), vec!["gw-down"]),
            (
                "a3",
                "x",
                tags(&["site:a", "rack:7"]),
                vec!["gw-down", "pdu-down"],
            ),
            ("a4", "x", tags(&["site:b"]), vec![]),
        ];
        for (agent, host, tags, expected) in cases {
            let rules: Vec<String> = parents_with_hold(&dependencies, agent, host, &tags)
                .0
                .into_iter()
                .map(|parent| parent.rule)
                .collect();
            assert_eq!(rules, expected, "{agent} {host}");
        }
        let hold = |agent, host, list: &[&str]| {
            parents_with_hold(&dependencies, agent, host, &tags(list)).1
        };
        assert_eq!(hold("a1", "web-1", &[]), Duration::ZERO);
        assert_eq!(
            hold("a3", "x", &["site:a", "rack:7"]),
            Duration::from_secs(30)
        );
        assert_eq!(hold("a3", "x", &["rack:7"]), Duration::from_secs(5));
    }

    #[test]
    fn parent_check_matches_labels_and_pseudo_labels() {
        let labels: Labels = [("target".to_string(), "gw-a".to_string())].into();
        let check = parent("gw-down", &[("target", "gw-a")]);
        assert!(check.matches("gw-down", &labels, "h", "a"));
        assert!(!check.matches("other", &labels, "h", "a"));
        assert!(!check.matches("gw-down", &Labels::new(), "h", "a"));
        let by_host = parent("agent-down", &[("host", "gw-1")]);
        assert!(by_host.matches("agent-down", &Labels::new(), "gw-1", "a"));
        assert!(!by_host.matches("agent-down", &Labels::new(), "gw-2", "a"));
    }
}
