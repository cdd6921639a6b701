//! Service-level targets per severity: time to acknowledge and time to resolve.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use steward_core::config_file::{self, ConfigError, ConfigSource};

use crate::rules::Severity;

/// `[sla.<severity>]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlaTarget {
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub ack: Option<Duration>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub resolve: Option<Duration>,
}

/// Targets for one severity; `None` means no target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlaTarget {
    pub ack: Option<Duration>,
    pub resolve: Option<Duration>,
}

/// Targets for every severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaPolicy {
    targets: BTreeMap<Severity, SlaTarget>,
}

impl Default for SlaPolicy {
    /// Common ITSM defaults; any severity can be overridden in `[sla.*]`.
    fn default() -> Self {
        let minutes = |m: u64| Some(Duration::from_secs(m * 60));
        let targets = BTreeMap::from([
            (
                Severity::Critical,
                SlaTarget {
                    ack: minutes(15),
                    resolve: minutes(4 * 60),
                },
            ),
            (
                Severity::Major,
                SlaTarget {
                    ack: minutes(30),
                    resolve: minutes(8 * 60),
                },
            ),
            (
                Severity::Minor,
                SlaTarget {
                    ack: minutes(4 * 60),
                    resolve: minutes(3 * 24 * 60),
                },
            ),
            (
                Severity::Warning,
                SlaTarget {
                    ack: minutes(24 * 60),
                    resolve: minutes(7 * 24 * 60),
                },
            ),
            (Severity::Info, SlaTarget::default()),
        ]);
        Self { targets }
    }
}

impl SlaPolicy {
    pub fn validate(
        source: &ConfigSource,
        raw: BTreeMap<String, RawSlaTarget>,
    ) -> Result<Self, ConfigError> {
        let mut policy = Self::default();
        for (name, target) in raw {
            let severity = Severity::from_name(&name).ok_or_else(|| {
                source.error(
                    &format!("sla.{name}"),
                    "unknown severity; expected critical, major, minor, warning or info",
                )
            })?;
            if let (Some(ack), Some(resolve)) = (target.ack, target.resolve)
                && ack > resolve
            {
                return Err(source.error(
                    &format!("sla.{name}.ack"),
                    "must not be longer than resolve",
                ));
            }
            let entry = policy.targets.entry(severity).or_default();
            if target.ack.is_some() {
                entry.ack = target.ack;
            }
            if target.resolve.is_some() {
                entry.resolve = target.resolve;
            }
        }
        Ok(policy)
    }

    pub fn target(&self, severity: Severity) -> SlaTarget {
        self.targets.get(&severity).copied().unwrap_or_default()
    }

    /// (ack due, resolve due) for an incident of `severity` opened at `opened_ms`.
    pub fn due(&self, severity: Severity, opened_ms: i64) -> (Option<i64>, Option<i64>) {
        let target = self.target(severity);
        let at = |duration: Option<Duration>| {
            duration.map(|duration| opened_ms + duration.as_millis() as i64)
        };
        (at(target.ack), at(target.resolve))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> ConfigSource {
        ConfigSource {
            path: "/c.toml".into(),
            text: String::new(),
        }
    }

    #[test]
    fn overrides_apply_per_severity_and_defaults_remain() {
        let raw = BTreeMap::from([(
            "critical".to_string(),
            RawSlaTarget {
                ack: Some(Duration::from_secs(60)),
                resolve: None,
            },
        )]);
        let policy = SlaPolicy::validate(&source(), raw).unwrap();
        assert_eq!(
            policy.due(Severity::Critical, 1_000),
            (Some(61_000), Some(1_000 + 4 * 3_600_000))
        );
        assert_eq!(policy.due(Severity::Info, 1_000), (None, None));
    }

    #[test]
    fn rejects_unknown_severity_and_ack_longer_than_resolve() {
        let unknown = BTreeMap::from([("urgent".to_string(), RawSlaTarget::default())]);
        assert_eq!(
            SlaPolicy::validate(&source(), unknown)
                .unwrap_err()
                .key
                .as_deref(),
            Some("sla.urgent")
        );
        let inverted = BTreeMap::from([(
            "major".to_string(),
            RawSlaTarget {
                ack: Some(Duration::from_secs(120)),
                resolve: Some(Duration::from_secs(60)),
            },
        )]);
        assert_eq!(
            SlaPolicy::validate(&source(), inverted)
                .unwrap_err()
                .key
                .as_deref(),
            Some("sla.major.ack")
        );
    }
}
