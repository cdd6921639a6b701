//! Change records (ITIL change management): planned work with a window over
//! some assets, its risk, who does it and how it went.

use serde::Serialize;

/// How risky a change is judged to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeRisk {
    Low,
    Medium,
    High,
}

impl ChangeRisk {
    pub const ALL: [ChangeRisk; 3] = [Self::Low, Self::Medium, Self::High];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|risk| risk.as_str() == text)
    }
}

/// How a change ended, as its implementer records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOutcome {
    Successful,
    Failed,
    RolledBack,
}

impl ChangeOutcome {
    pub const ALL: [ChangeOutcome; 3] = [Self::Successful, Self::Failed, Self::RolledBack];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Successful => "successful",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }
}

/// A change as stored. Its maintenance window (`window_id`) covers the same
/// assets and times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeRecord {
    pub id: i64,
    pub title: String,
    pub description: Option<String>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub asset_ids: Vec<String>,
    pub tags: Vec<String>,
    pub risk: ChangeRisk,
    pub implementer: Option<String>,
    /// `None` while planned or in progress.
    pub outcome: Option<ChangeOutcome>,
    pub window_id: Option<i64>,
    pub created_by: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl ChangeRecord {
    /// `C-12`.
    pub fn reference(&self) -> String {
        format!("C-{}", self.id)
    }

    pub fn is_active(&self, now_ms: i64) -> bool {
        self.starts_ms <= now_ms && now_ms < self.ends_ms
    }

    /// Whether the change affects an asset with this id and these tags.
    pub fn affects(&self, asset_id: &str, tags: &[String]) -> bool {
        self.asset_ids.iter().any(|id| id == asset_id)
            || self.tags.iter().any(|tag| tags.contains(tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for risk in ChangeRisk::ALL {
            assert_eq!(ChangeRisk::parse(risk.as_str()), Some(risk));
        }
        for outcome in ChangeOutcome::ALL {
            assert_eq!(ChangeOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(ChangeRisk::parse("extreme"), None);
        assert_eq!(ChangeOutcome::parse("done"), None);
    }
}
