//! Problem records (ITIL problem management): the cause behind recurring
//! incidents, with its root cause, workaround and the change that fixes it.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::UnknownName;

/// `open → known_error → resolved` (a known error has a documented
/// workaround; `resolved` is final).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ProblemState {
    Open,
    KnownError,
    Resolved,
}

impl ProblemState {
    pub const ALL: [ProblemState; 3] = [Self::Open, Self::KnownError, Self::Resolved];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::KnownError => "known_error",
            Self::Resolved => "resolved",
        }
    }

    /// Whether a problem may move from `self` to `next` (forward only).
    pub fn may_become(self, next: ProblemState) -> bool {
        matches!(
            (self, next),
            (Self::Open, Self::KnownError | Self::Resolved) | (Self::KnownError, Self::Resolved)
        ) || self == next && self != Self::Resolved
    }
}

impl FromStr for ProblemState {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownName {
                what: "problem state",
                text: text.to_string(),
            })
    }
}

impl fmt::Display for ProblemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProblemState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// When recurring incidents become a problem: `count` incidents of one rule
/// (on one agent, or on any when `across_agents`) opened within `within_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recurrence {
    pub count: u32,
    pub within_ms: i64,
    pub across_agents: bool,
}

/// A problem as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProblemRecord {
    pub id: i64,
    pub rule: String,
    /// `None` for a problem of the rule across agents.
    pub agent_id: Option<String>,
    pub host: Option<String>,
    pub title: String,
    pub state: ProblemState,
    pub root_cause: Option<String>,
    pub workaround: Option<String>,
    pub change_id: Option<i64>,
    pub opened_ms: i64,
    pub updated_ms: i64,
    pub updated_by: Option<String>,
    pub resolved_ms: Option<i64>,
}

impl ProblemRecord {
    /// `P-7`.
    pub fn reference(&self) -> String {
        format!("P-{}", self.id)
    }

    /// The workaround to show in notifications: only a known error's.
    pub fn known_workaround(&self) -> Option<&str> {
        (self.state == ProblemState::KnownError)
            .then_some(self.workaround.as_deref())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_move_forward_only() {
        use ProblemState::*;
        let allowed = [
            (Open, KnownError),
            (Open, Resolved),
            (KnownError, Resolved),
            (Open, Open),
            (KnownError, KnownError),
        ];
        for from in ProblemState::ALL {
            for to in ProblemState::ALL {
                assert_eq!(
                    from.may_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
            assert_eq!(from.as_str().parse::<ProblemState>(), Ok(from));
        }
        assert!("closed".parse::<ProblemState>().is_err());
    }
}
