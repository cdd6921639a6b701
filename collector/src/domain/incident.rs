//! Incidents: their lifecycle states, what can happen to them, and the record.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::{Labels, Severity, UnknownName};

/// Where an incident stands. `flapping` is not a state: it is a flag shown
/// over an unresolved one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentState {
    Open,
    Acknowledged,
    Resolved,
}

impl IncidentState {
    pub const ALL: [IncidentState; 3] = [Self::Open, Self::Acknowledged, Self::Resolved];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }

    pub fn is_resolved(self) -> bool {
        self == Self::Resolved
    }
}

impl FromStr for IncidentState {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownName {
                what: "incident state",
                text: text.to_string(),
            })
    }
}

impl fmt::Display for IncidentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for IncidentState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Something that happened to an incident: announced to observers, written
/// to the journal, and (the first four) delivered to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentEvent {
    Opened,
    Acknowledged,
    Resolved,
    FlappingStarted,
    FlappingStopped,
    SlaBreached,
    /// A suppressed incident (opened while its parent check's incident was
    /// open) was released because the parent resolved while it still
    /// breaches: it now pages as if it had just opened.
    Released,
    /// An escalation level fired without an acknowledgement. `level` is the
    /// 0-based index into the policy's levels; `round` counts repeats of the
    /// whole policy (0 for the first pass). Both are needed so a repeated
    /// page is a new delivery rather than a duplicate of the first one.
    Escalated {
        level: usize,
        round: u32,
    },
}

impl IncidentEvent {
    const SIMPLE: [IncidentEvent; 7] = [
        Self::Opened,
        Self::Acknowledged,
        Self::Resolved,
        Self::FlappingStarted,
        Self::FlappingStopped,
        Self::SlaBreached,
        Self::Released,
    ];

    /// The name in webhook bodies and logs: `opened`, `acknowledged`,
    /// `resolved`, `flapping_started`, `flapping_stopped`, `sla_breached` or
    /// `escalated` (or `released`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
            Self::FlappingStarted => "flapping_started",
            Self::FlappingStopped => "flapping_stopped",
            Self::SlaBreached => "sla_breached",
            Self::Released => "released",
            Self::Escalated { .. } => "escalated",
        }
    }

    /// The stored form (journal, outbox, idempotency keys): the name, except
    /// `escalated.{level}.{round}`, so each page of an escalation is its own
    /// delivery. Never contains `:`.
    pub fn key(self) -> Cow<'static, str> {
        match self {
            Self::Escalated { level, round } => Cow::Owned(format!("escalated.{level}.{round}")),
            other => Cow::Borrowed(other.name()),
        }
    }

    /// Parses [`IncidentEvent::key`].
    pub fn from_key(text: &str) -> Result<Self, UnknownName> {
        let unknown = || UnknownName {
            what: "incident event",
            text: text.to_string(),
        };
        if let Some(event) = Self::SIMPLE.into_iter().find(|event| event.name() == text) {
            return Ok(event);
        }
        let mut parts = text
            .strip_prefix("escalated.")
            .ok_or_else(unknown)?
            .split('.');
        let level = parts.next().and_then(|part| part.parse().ok());
        let round = parts.next().and_then(|part| part.parse().ok());
        match (level, round, parts.next()) {
            (Some(level), Some(round), None) => Ok(Self::Escalated { level, round }),
            _ => Err(unknown()),
        }
    }
}

/// Serialized as its [`key`](IncidentEvent::key).
impl Serialize for IncidentEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.key())
    }
}

impl fmt::Display for IncidentEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An incident as stored. Changed only by the `incidents` module, through
/// the store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentRecord {
    pub id: i64,
    pub dedup_key: String,
    pub rule: String,
    pub metric: String,
    pub agent_id: String,
    pub host: String,
    pub labels: Labels,
    pub severity: Severity,
    pub state: IncidentState,
    pub flapping: bool,
    pub summary: String,
    pub runbook: Option<String>,
    pub value: Option<f64>,
    pub last_value: Option<f64>,
    pub since_ms: i64,
    pub opened_at_ms: i64,
    pub acknowledged_at_ms: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub resolved_at_ms: Option<i64>,
    pub resolved_by: Option<String>,
    pub resolve_reason: Option<String>,
    pub ack_due_at_ms: Option<i64>,
    pub resolve_due_at_ms: Option<i64>,
    pub ack_breached: bool,
    pub resolve_breached: bool,
    pub previous_id: Option<i64>,
    /// Opened while the incident of a check it depends on was open: pages no
    /// one. Still set after resolution if it was never released (never paged).
    pub suppressed: bool,
    /// The parent incident that suppressed it.
    pub caused_by: Option<i64>,
    /// The problem record this incident is linked to.
    pub problem_id: Option<i64>,
    /// The change record during (or after) which it opened.
    pub change_id: Option<i64>,
    /// Waiting until then for a parent check's incident to open before it
    /// pages (suppressed meanwhile); `None` once decided.
    pub held_until_ms: Option<i64>,
}

impl IncidentRecord {
    /// Whether its SLA is breached at `now_ms`: as the SLA timer recorded,
    /// done after its due time (as the incident's view says), or due by now
    /// and not done, which the timer has not marked yet.
    pub fn sla_breached_at(&self, now_ms: i64) -> bool {
        // A resolved incident is not waiting for anything any more.
        let waiting = self.state != IncidentState::Resolved;
        let missed = |done: Option<i64>, due: Option<i64>| match (done, due) {
            (Some(done), Some(due)) => done > due,
            (None, Some(due)) => waiting && due <= now_ms,
            (_, None) => false,
        };
        self.ack_breached
            || self.resolve_breached
            || missed(self.acknowledged_at_ms, self.ack_due_at_ms)
            || missed(self.resolved_at_ms, self.resolve_due_at_ms)
    }

    /// A critical open disk incident on `web-1`, for tests.
    #[cfg(test)]
    pub fn example(opened_ms: i64) -> IncidentRecord {
        IncidentRecord {
            id: 42,
            dedup_key: "disk_full|agent-1|disk.used_percent|mount=/".into(),
            rule: "disk_full".into(),
            metric: "disk.used_percent".into(),
            agent_id: "agent-1".into(),
            host: "web-1".into(),
            labels: [("mount".to_string(), "/".to_string())].into(),
            severity: Severity::Critical,
            state: IncidentState::Open,
            flapping: false,
            summary: "disk_full on web-1: disk.used_percent is 97.5 (> 95)".into(),
            runbook: Some("https://runbooks.example.com/disk".into()),
            value: Some(97.5),
            last_value: Some(97.5),
            since_ms: opened_ms - 60_000,
            opened_at_ms: opened_ms,
            acknowledged_at_ms: None,
            acknowledged_by: None,
            resolved_at_ms: None,
            resolved_by: None,
            resolve_reason: None,
            ack_due_at_ms: None,
            resolve_due_at_ms: None,
            ack_breached: false,
            resolve_breached: false,
            previous_id: None,
            suppressed: false,
            caused_by: None,
            problem_id: None,
            change_id: None,
            held_until_ms: None,
        }
    }
}

/// A check another asset's alerts depend on: the unresolved incident of
/// `rule` whose labels include all of `labels` (`host` and `agent_id` match
/// the incident's own fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ParentCheck {
    pub rule: String,
    pub labels: Labels,
}

impl ParentCheck {
    /// `rule{name="value",…}`, as timelines show it.
    pub fn describe(&self) -> String {
        if self.labels.is_empty() {
            return self.rule.clone();
        }
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(name, value)| format!("{name}=\"{value}\""))
            .collect();
        format!("{}{{{}}}", self.rule, labels.join(","))
    }

    /// Whether an incident of `rule` with `labels` on `host`/`agent_id` is this check's.
    pub fn matches(&self, rule: &str, labels: &Labels, host: &str, agent_id: &str) -> bool {
        self.rule == rule
            && self.labels.iter().all(|(name, value)| {
                labels
                    .get(name)
                    .map(String::as_str)
                    .or(match name.as_str() {
                        "host" => Some(host),
                        "agent_id" => Some(agent_id),
                        _ => None,
                    })
                    == Some(value.as_str())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sla_counts_as_breached_once_a_due_time_has_passed_unmarked() {
        let incident = IncidentRecord {
            ack_due_at_ms: Some(1_000),
            resolve_due_at_ms: Some(5_000),
            ..IncidentRecord::example(0)
        };
        assert!(!incident.sla_breached_at(999));
        assert!(
            incident.sla_breached_at(1_000),
            "due is breached, as the SLA timer marks it"
        );
        let acknowledged = IncidentRecord {
            state: IncidentState::Acknowledged,
            acknowledged_at_ms: Some(900),
            ..incident.clone()
        };
        assert!(!acknowledged.sla_breached_at(4_999));
        assert!(acknowledged.sla_breached_at(5_001));
        let resolved_in_time = IncidentRecord {
            state: IncidentState::Resolved,
            resolved_at_ms: Some(950),
            ..acknowledged.clone()
        };
        assert!(!resolved_in_time.sla_breached_at(9_999));
        let resolved_unacknowledged = IncidentRecord {
            state: IncidentState::Resolved,
            resolved_at_ms: Some(950),
            ..incident.clone()
        };
        assert!(
            !resolved_unacknowledged.sla_breached_at(9_999),
            "resolved in time, nothing left to acknowledge"
        );
        let acknowledged_late = IncidentRecord {
            state: IncidentState::Acknowledged,
            acknowledged_at_ms: Some(1_500),
            ..incident.clone()
        };
        assert!(
            acknowledged_late.sla_breached_at(1_600),
            "late, though the timer never marked it"
        );
        let marked = IncidentRecord {
            ack_breached: true,
            ..IncidentRecord::example(0)
        };
        assert!(marked.sla_breached_at(0));
    }

    #[test]
    fn event_keys_round_trip() {
        let events = IncidentEvent::SIMPLE.into_iter().chain([
            IncidentEvent::Escalated { level: 0, round: 0 },
            IncidentEvent::Escalated {
                level: 3,
                round: 12,
            },
        ]);
        for event in events {
            assert_eq!(
                IncidentEvent::from_key(&event.key()),
                Ok(event),
                "{event:?}"
            );
        }
        assert_eq!(
            IncidentEvent::Escalated { level: 1, round: 2 }.key(),
            "escalated.1.2"
        );
        assert_eq!(
            IncidentEvent::Escalated { level: 1, round: 2 }.name(),
            "escalated"
        );
    }

    #[test]
    fn unknown_or_malformed_event_keys_are_errors() {
        for text in [
            "",
            "opened ",
            "escalated",
            "escalated.1",
            "escalated.x.1",
            "escalated.1.2.3",
            "closed",
        ] {
            assert!(IncidentEvent::from_key(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn states_round_trip_and_unknown_is_an_error() {
        for state in IncidentState::ALL {
            assert_eq!(state.as_str().parse::<IncidentState>(), Ok(state));
        }
        assert!("closed".parse::<IncidentState>().is_err());
    }
}
