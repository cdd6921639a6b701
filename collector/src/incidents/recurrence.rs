//! `[problems]`: when recurring incidents become a problem record.
//!
//! ```toml
//! [problems]
//! recurrences = 3      # incidents of one rule ... (0 turns problems off)
//! within = "7d"        # ... opened within this window
//! scope = "asset"      # per agent (default), or "rule": across all agents
//! ```

use std::time::Duration;

use serde::Deserialize;
use steward_core::config_file::{self, ConfigError, ConfigSource};

use crate::domain::Recurrence;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProblemPolicy {
    #[serde(default = "default_recurrences")]
    pub recurrences: u32,
    #[serde(default = "default_within", deserialize_with = "config_file::duration")]
    pub within: Duration,
    #[serde(default = "default_scope")]
    pub scope: String,
}

fn default_recurrences() -> u32 {
    3
}
fn default_within() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_scope() -> String {
    "asset".into()
}

impl Default for RawProblemPolicy {
    fn default() -> Self {
        Self {
            recurrences: default_recurrences(),
            within: default_within(),
            scope: default_scope(),
        }
    }
}

impl RawProblemPolicy {
    /// `None` when `recurrences = 0` (no problems are opened).
    pub fn validate(self, source: &ConfigSource) -> Result<Option<Recurrence>, ConfigError> {
        let across_agents = match self.scope.as_str() {
            "asset" => false,
            "rule" => true,
            other => {
                return Err(source.error(
                    "problems.scope",
                    format!("unknown scope {other:?}; expected \"asset\" or \"rule\""),
                ));
            }
        };
        if self.within.is_zero() && self.recurrences > 0 {
            return Err(source.error("problems.within", "must be more than 0s"));
        }
        Ok((self.recurrences > 0).then_some(Recurrence {
            count: self.recurrences,
            within_ms: self.within.as_millis() as i64,
            across_agents,
        }))
    }
}
