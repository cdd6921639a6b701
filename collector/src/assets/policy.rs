//! The `[assets]` table of `collector.toml`: how long before a silent asset
//! is stale or missing, when hardware is due for replacement, and how long
//! security updates may stay pending.
//!
//! [`RawAssetPolicy`] is the table as written (every key optional);
//! [`AssetPolicy::validate`] turns it into the typed policy the pure checks
//! take, refusing contradictions with an error naming the file, line and key.
//! This file reads no files: the caller parses `collector.toml`.

use std::time::Duration;

use serde::Deserialize;
use steward_core::config_file::{self, ConfigError, ConfigSource};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Default `stale_after`: agents report every few seconds, so a whole day of
/// silence means something is wrong, yet a weekend reboot loop is not.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(DAY.as_secs());
/// Default `missing_after`: a week of silence.
pub const DEFAULT_MISSING_AFTER: Duration = Duration::from_secs(7 * DAY.as_secs());
/// Default `stale_after_offline` for assets tagged `expected_offline`
/// (laptops, lab machines): two weeks.
pub const DEFAULT_STALE_AFTER_OFFLINE: Duration = Duration::from_secs(14 * DAY.as_secs());
/// Default `missing_after_offline`: a month.
pub const DEFAULT_MISSING_AFTER_OFFLINE: Duration = Duration::from_secs(30 * DAY.as_secs());
/// Default `replace_after`: five years of 365.25 days, the same length
/// humantime gives `"5y"`.
pub const DEFAULT_REPLACE_AFTER: Duration = Duration::from_secs(5 * 31_557_600);
/// Default `security_pending_days`.
pub const DEFAULT_SECURITY_PENDING_DAYS: u32 = 7;

/// Upper bound on `security_pending_days`; a larger value is a typo, not a policy.
const MAX_SECURITY_PENDING_DAYS: u32 = 3650;

/// The `[assets]` table exactly as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssetPolicy {
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub stale_after: Option<Duration>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub missing_after: Option<Duration>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub stale_after_offline: Option<Duration>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub missing_after_offline: Option<Duration>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub replace_after: Option<Duration>,
    pub security_pending_days: Option<u32>,
}

/// Validated asset policy.
///
/// Invariants (checked by [`AssetPolicy::validate`]): every duration is
/// positive, `stale_after < missing_after`, `stale_after_offline <
/// missing_after_offline`, and the offline periods are not shorter than the
/// normal ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetPolicy {
    pub stale_after: Duration,
    pub missing_after: Duration,
    pub stale_after_offline: Duration,
    pub missing_after_offline: Duration,
    pub replace_after: Duration,
    pub security_pending_days: u32,
}

impl Default for AssetPolicy {
    fn default() -> Self {
        Self {
            stale_after: DEFAULT_STALE_AFTER,
            missing_after: DEFAULT_MISSING_AFTER,
            stale_after_offline: DEFAULT_STALE_AFTER_OFFLINE,
            missing_after_offline: DEFAULT_MISSING_AFTER_OFFLINE,
            replace_after: DEFAULT_REPLACE_AFTER,
            security_pending_days: DEFAULT_SECURITY_PENDING_DAYS,
        }
    }
}

impl AssetPolicy {
    /// Fills defaults and checks the invariants; errors name `assets.<key>`.
    pub fn validate(source: &ConfigSource, raw: RawAssetPolicy) -> Result<Self, ConfigError> {
        let policy = Self {
            stale_after: raw.stale_after.unwrap_or(DEFAULT_STALE_AFTER),
            missing_after: raw.missing_after.unwrap_or(DEFAULT_MISSING_AFTER),
            stale_after_offline: raw
                .stale_after_offline
                .unwrap_or(DEFAULT_STALE_AFTER_OFFLINE),
            missing_after_offline: raw
                .missing_after_offline
                .unwrap_or(DEFAULT_MISSING_AFTER_OFFLINE),
            replace_after: raw.replace_after.unwrap_or(DEFAULT_REPLACE_AFTER),
            security_pending_days: raw
                .security_pending_days
                .unwrap_or(DEFAULT_SECURITY_PENDING_DAYS),
        };
        let error = |key: &str, message: String| source.error(&format!("assets.{key}"), message);
        for (key, value) in [
            ("stale_after", policy.stale_after),
            ("missing_after", policy.missing_after),
            ("stale_after_offline", policy.stale_after_offline),
            ("missing_after_offline", policy.missing_after_offline),
            ("replace_after", policy.replace_after),
        ] {
            if value.is_zero() {
                return Err(error(key, "must be longer than zero".into()));
            }
        }
        if policy.missing_after <= policy.stale_after {
            return Err(error(
                "missing_after",
                format!(
                    "must be longer than stale_after ({}); an asset goes stale before it goes missing",
                    humantime::format_duration(policy.stale_after)
                ),
            ));
        }
        if policy.stale_after_offline < policy.stale_after {
            return Err(error(
                "stale_after_offline",
                format!(
                    "must not be shorter than stale_after ({}); assets expected offline get more time, not less",
                    humantime::format_duration(policy.stale_after)
                ),
            ));
        }
        if policy.missing_after_offline <= policy.stale_after_offline {
            return Err(error(
                "missing_after_offline",
                format!(
                    "must be longer than stale_after_offline ({})",
                    humantime::format_duration(policy.stale_after_offline)
                ),
            ));
        }
        if policy.missing_after_offline < policy.missing_after {
            return Err(error(
                "missing_after_offline",
                format!(
                    "must not be shorter than missing_after ({})",
                    humantime::format_duration(policy.missing_after)
                ),
            ));
        }
        if policy.security_pending_days > MAX_SECURITY_PENDING_DAYS {
            return Err(error(
                "security_pending_days",
                format!("must be at most {MAX_SECURITY_PENDING_DAYS}"),
            ));
        }
        Ok(policy)
    }

    /// `(stale_after, missing_after)` for an asset, longer when it is tagged
    /// `expected_offline`.
    pub fn silence_thresholds(&self, expected_offline: bool) -> (Duration, Duration) {
        if expected_offline {
            (self.stale_after_offline, self.missing_after_offline)
        } else {
            (self.stale_after, self.missing_after)
        }
    }
}

/// Milliseconds in `duration`, saturating (a policy of centuries is not an error).
pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        assets: RawAssetPolicy,
    }

    fn load(text: &str) -> Result<AssetPolicy, ConfigError> {
        let source = ConfigSource {
            path: PathBuf::from("/etc/steward/collector.toml"),
            text: text.to_string(),
        };
        let file: File = source.parse()?;
        AssetPolicy::validate(&source, file.assets)
    }

    #[test]
    fn empty_table_gives_the_documented_defaults() {
        let policy = load("[assets]\n").unwrap();
        assert_eq!(policy, AssetPolicy::default());
        assert_eq!(policy.stale_after, Duration::from_secs(86_400));
        assert_eq!(policy.missing_after, Duration::from_secs(7 * 86_400));
        assert_eq!(policy.security_pending_days, 7);
        assert_eq!(load("").unwrap(), AssetPolicy::default());
    }

    #[test]
    fn human_durations_parse() {
        let policy = load(
            "[assets]\nstale_after = \"2d\"\nmissing_after = \"10d\"\nstale_after_offline = \"3w\"\n\
             missing_after_offline = \"60d\"\nreplace_after = \"4y\"\nsecurity_pending_days = 3\n",
        )
        .unwrap();
        assert_eq!(policy.stale_after, Duration::from_secs(2 * 86_400));
        assert_eq!(policy.missing_after, Duration::from_secs(10 * 86_400));
        assert_eq!(policy.stale_after_offline, Duration::from_secs(21 * 86_400));
        assert_eq!(policy.replace_after, Duration::from_secs(4 * 31_557_600));
        assert_eq!(policy.security_pending_days, 3);
        assert_eq!(
            policy.silence_thresholds(true).1,
            Duration::from_secs(60 * 86_400)
        );
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let cases = [
            (
                "[assets]\nstale_after = \"soon\"\n",
                "assets.stale_after",
                2,
                "invalid duration",
            ),
            ("[assets]\nbogus = 1\n", "assets.bogus", 2, "unknown field"),
            (
                "[assets]\nstale_after = \"0s\"\n",
                "assets.stale_after",
                2,
                "longer than zero",
            ),
            (
                "[assets]\nstale_after = \"2d\"\nmissing_after = \"1d\"\n",
                "assets.missing_after",
                3,
                "longer than stale_after",
            ),
            (
                "[assets]\nstale_after = \"20d\"\nmissing_after = \"40d\"\n",
                "assets.stale_after_offline",
                0,
                "not be shorter than stale_after",
            ),
            (
                "[assets]\nstale_after_offline = \"30d\"\n",
                "assets.missing_after_offline",
                0,
                "longer than stale_after_offline",
            ),
            (
                "[assets]\nmissing_after = \"60d\"\n",
                "assets.missing_after_offline",
                0,
                "not be shorter than missing_after",
            ),
            (
                "[assets]\nsecurity_pending_days = 99999\n",
                "assets.security_pending_days",
                2,
                "at most",
            ),
            (
                "[assets]\nsecurity_pending_days = -1\n",
                "assets.security_pending_days",
                2,
                "",
            ),
        ];
        for (text, key, line, message) in cases {
            let error = load(text).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{text}: {error}");
            // Line 0 means the key is defaulted, so there is no line to name.
            let expected_line = (line > 0).then_some(line);
            assert_eq!(error.line, expected_line, "{text}: {error}");
            assert!(error.message.contains(message), "{text}: {error}");
            assert!(
                error.to_string().starts_with("/etc/steward/collector.toml"),
                "{error}"
            );
        }
    }
}
