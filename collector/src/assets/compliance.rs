//! Compliance checks over one asset: pending security updates, reboot
//! required, end-of-life OS, outdated running kernel, silence, and
//! replacement due.
//!
//! [`compliance`] lists findings for people; [`compliance_samples`] gives
//! the same checks as numbers (`asset.*` metrics) for the rules engine, so
//! incidents on them open, notify and resolve like any other. Pure: the
//! caller passes `now_ms`.

use std::cmp::Ordering;

use serde::Serialize;

use super::dates::{self, DAY_MS};
use super::eol;
use super::lifecycle::due_for_replacement;
use super::model::Asset;
pub use super::model::security_pending_since;
use super::policy::{AssetPolicy, duration_ms};

pub const CHECK_SECURITY_UPDATES: &str = "security_updates_pending";
pub const CHECK_REBOOT_REQUIRED: &str = "reboot_required";
pub const CHECK_OS_EOL: &str = "os_end_of_life";
pub const CHECK_KERNEL_OUTDATED: &str = "kernel_outdated";
pub const CHECK_NOT_REPORTED: &str = "not_reported";
pub const CHECK_DUE_FOR_REPLACEMENT: &str = "due_for_replacement";

pub const METRIC_SECURITY_PENDING_DAYS: &str = "asset.security_pending_days";
pub const METRIC_REBOOT_REQUIRED: &str = "asset.reboot_required";
pub const METRIC_OS_EOL: &str = "asset.os_eol";
pub const METRIC_KERNEL_OUTDATED: &str = "asset.kernel_outdated";
pub const METRIC_DAYS_SINCE_SEEN: &str = "asset.days_since_seen";
pub const METRIC_DUE_FOR_REPLACEMENT: &str = "asset.due_for_replacement";

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Finding {
    /// One of the `CHECK_*` names.
    pub check: &'static str,
    /// For people: what is wrong, with the numbers.
    pub detail: String,
}

/// Whole and partial days security updates have been pending; 0 when none are.
pub fn security_pending_days(asset: &Asset, now_ms: i64) -> f64 {
    match (asset.patch.security, asset.security_pending_since_ms) {
        (Some(count), Some(since)) if count > 0 => days(now_ms.saturating_sub(since)),
        _ => 0.0,
    }
}

/// Compares version strings by their segments: runs of digits numerically,
/// runs of letters alphabetically (case-insensitive), a number above a word
/// (so `362.8.1.el9` is newer than `362.el9`, as rpm orders them), and
/// separators ignored. A prefix sorts first.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (left, right) = (segments(a), segments(b));
    for (x, y) in left.iter().zip(&right) {
        let order = match (x, y) {
            (Segment::Number(x), Segment::Number(y)) => x.cmp(y),
            (Segment::Word(x), Segment::Word(y)) => x.cmp(y),
            (Segment::Number(_), Segment::Word(_)) => Ordering::Greater,
            (Segment::Word(_), Segment::Number(_)) => Ordering::Less,
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    left.len().cmp(&right.len())
}

/// `(running, newest)` when the running kernel is older than the newest
/// installed one (a reboot would pick up fixes). When one version is a
/// prefix of the other (`6.1.0-18` and `6.1.0-18-amd64`: one source omits
/// the flavour) they are the same kernel.
pub fn kernel_outdated(asset: &Asset) -> Option<(&str, &str)> {
    let running = asset.patch.running_kernel.as_deref()?;
    let newest = asset.patch.newest_installed_kernel.as_deref()?;
    let (left, right) = (segments(running), segments(newest));
    let shorter = left.len().min(right.len());
    let same_prefix = left[..shorter] == right[..shorter];
    (!same_prefix && compare_versions(running, newest) == Ordering::Less)
        .then_some((running, newest))
}

/// Whether the asset's OS release is past end of life at `now_ms`, with the
/// date it ended.
pub fn os_end_of_life(asset: &Asset, now_ms: i64) -> Option<&'static str> {
    let release = eol::lookup(asset.os_id.as_deref()?, asset.os_version.as_deref()?)?;
    let eol_ms = dates::date_ms(release.eol)?;
    (now_ms >= eol_ms).then_some(release.eol)
}

/// Findings for an asset in service (`active`, `stale`, `missing`); assets
/// in stock, in repair, retired or disposed have none, since nobody is
/// expected to patch or hear from them.
pub fn compliance(asset: &Asset, now_ms: i64, policy: &AssetPolicy) -> Vec<Finding> {
    let mut findings = Vec::new();
    if !asset.status.is_automatic() {
        return findings;
    }
    let pending_days = security_pending_days(asset, now_ms);
    if pending_days > 0.0 && pending_days >= f64::from(policy.security_pending_days) {
        findings.push(Finding {
            check: CHECK_SECURITY_UPDATES,
            detail: format!(
                "{} security update(s) pending for {} day(s) (allowed: {})",
                asset.patch.security.unwrap_or(0),
                pending_days.floor(),
                policy.security_pending_days
            ),
        });
    }
    if asset.patch.reboot_required == Some(true) {
        findings.push(Finding {
            check: CHECK_REBOOT_REQUIRED,
            detail: "the host reports that a reboot is required".into(),
        });
    }
    if let Some(eol) = os_end_of_life(asset, now_ms) {
        findings.push(Finding {
            check: CHECK_OS_EOL,
            detail: format!(
                "{} reached end of life on {eol}",
                asset.os.as_deref().unwrap_or("the operating system")
            ),
        });
    }
    if let Some((running, newest)) = kernel_outdated(asset) {
        findings.push(Finding {
            check: CHECK_KERNEL_OUTDATED,
            detail: format!("running kernel {running}, newest installed {newest}"),
        });
    }
    let (stale_after, _) = policy.silence_thresholds(asset.expected_offline());
    let silent_ms = now_ms.saturating_sub(asset.last_seen_ms);
    if silent_ms >= duration_ms(stale_after) {
        findings.push(Finding {
            check: CHECK_NOT_REPORTED,
            detail: format!(
                "not reported for {} day(s) (allowed: {})",
                days(silent_ms).floor(),
                humantime::format_duration(stale_after)
            ),
        });
    }
    if let Some(due) = due_for_replacement(asset, now_ms, policy) {
        findings.push(Finding {
            check: CHECK_DUE_FOR_REPLACEMENT,
            detail: due.to_string(),
        });
    }
    findings
}

/// The checks as `asset.*` samples (flags are 1/0, ages in days). Assets
/// out of service report zeros, so incidents opened on them resolve when
/// an asset is retired or sent for repair rather than lingering or
/// tripping absence rules.
pub fn compliance_samples(
    asset: &Asset,
    now_ms: i64,
    policy: &AssetPolicy,
) -> Vec<(&'static str, f64)> {
    let in_service = asset.status.is_automatic();
    let flag = |on: bool| if on && in_service { 1.0 } else { 0.0 };
    let age = |value: f64| if in_service { value } else { 0.0 };
    vec![
        (
            METRIC_SECURITY_PENDING_DAYS,
            age(security_pending_days(asset, now_ms)),
        ),
        (
            METRIC_REBOOT_REQUIRED,
            flag(asset.patch.reboot_required == Some(true)),
        ),
        (METRIC_OS_EOL, flag(os_end_of_life(asset, now_ms).is_some())),
        (
            METRIC_KERNEL_OUTDATED,
            flag(kernel_outdated(asset).is_some()),
        ),
        (
            METRIC_DAYS_SINCE_SEEN,
            age(days(now_ms.saturating_sub(asset.last_seen_ms))),
        ),
        (
            METRIC_DUE_FOR_REPLACEMENT,
            flag(due_for_replacement(asset, now_ms, policy).is_some()),
        ),
    ]
}

fn days(ms: i64) -> f64 {
    ms.max(0) as f64 / DAY_MS as f64
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Number(u128),
    Word(String),
}

fn segments(version: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, segments: &mut Vec<Segment>| {
        if current.is_empty() {
            return;
        }
        let segment = match current.parse::<u128>() {
            Ok(number) => Segment::Number(number),
            Err(_) => Segment::Word(current.to_ascii_lowercase()),
        };
        segments.push(segment);
        current.clear();
    };
    for c in version.chars() {
        let same_kind = current
            .chars()
            .next()
            .is_none_or(|first| first.is_ascii_digit() == c.is_ascii_digit());
        if !c.is_ascii_alphanumeric() {
            flush(&mut current, &mut segments);
        } else {
            if !same_kind {
                flush(&mut current, &mut segments);
            }
            current.push(c);
        }
    }
    flush(&mut current, &mut segments);
    segments
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::lifecycle::Lifecycle;
    use crate::assets::model::tests::server;

    const NOW: i64 = 1_750_000_000_000; // 2025-06-15

    /// A healthy, current Debian 12 server seen a minute ago.
    fn healthy() -> Asset {
        let mut asset = server("a1", "agent-1");
        asset.last_seen_ms = NOW - 60_000;
        asset.apply_patch_metric("patch.security", 0.0, NOW);
        asset.apply_patch_metric("patch.reboot_required", 0.0, NOW);
        asset
    }

    fn checks(asset: &Asset) -> Vec<&'static str> {
        compliance(asset, NOW, &AssetPolicy::default())
            .into_iter()
            .map(|finding| finding.check)
            .collect()
    }

    fn sample(asset: &Asset, metric: &str) -> f64 {
        compliance_samples(asset, NOW, &AssetPolicy::default())
            .into_iter()
            .find(|(name, _)| *name == metric)
            .map(|(_, value)| value)
            .unwrap()
    }

    #[test]
    fn healthy_asset_has_no_findings() {
        let asset = healthy();
        assert_eq!(checks(&asset), Vec::<&str>::new());
        for (metric, value) in compliance_samples(&asset, NOW, &AssetPolicy::default()) {
            if metric == METRIC_DAYS_SINCE_SEEN {
                assert!((0.0..0.001).contains(&value), "{value}");
            } else {
                assert_eq!(value, 0.0, "{metric}");
            }
        }
    }

    #[test]
    fn security_updates_pending_longer_than_allowed() {
        let mut asset = healthy();
        asset.apply_patch_metric("patch.security", 3.0, NOW - 8 * DAY_MS);
        // A later report keeps the original start.
        asset.apply_patch_metric("patch.security", 4.0, NOW - DAY_MS);
        assert_eq!(checks(&asset), [CHECK_SECURITY_UPDATES]);
        assert_eq!(sample(&asset, METRIC_SECURITY_PENDING_DAYS), 8.0);
        let detail = &compliance(&asset, NOW, &AssetPolicy::default())[0].detail;
        assert!(
            detail.starts_with("4 security update(s) pending for 8 day(s)"),
            "{detail}"
        );

        let mut recent = healthy();
        recent.apply_patch_metric("patch.security", 3.0, NOW - 6 * DAY_MS);
        assert_eq!(checks(&recent), Vec::<&str>::new());
        assert_eq!(sample(&recent, METRIC_SECURITY_PENDING_DAYS), 6.0);
    }

    #[test]
    fn security_clock_starts_keeps_and_stops() {
        assert_eq!(security_pending_since(None, 0, 10), None);
        assert_eq!(security_pending_since(None, 2, 10), Some(10));
        assert_eq!(security_pending_since(Some(5), 3, 10), Some(5));
        assert_eq!(security_pending_since(Some(5), 0, 10), None);
    }

    #[test]
    fn reboot_required() {
        let mut asset = healthy();
        asset.apply_patch_metric("patch.reboot_required", 1.0, NOW);
        assert_eq!(checks(&asset), [CHECK_REBOOT_REQUIRED]);
        assert_eq!(sample(&asset, METRIC_REBOOT_REQUIRED), 1.0);
    }

    #[test]
    fn end_of_life_os() {
        let mut asset = healthy();
        asset.os_version = Some("10".into());
        asset.os = Some("Debian GNU/Linux 10".into());
        assert_eq!(checks(&asset), [CHECK_OS_EOL]);
        assert_eq!(sample(&asset, METRIC_OS_EOL), 1.0);
        let detail = &compliance(&asset, NOW, &AssetPolicy::default())[0].detail;
        assert_eq!(
            detail,
            "Debian GNU/Linux 10 reached end of life on 2024-06-30"
        );
        // Debian 11 is still supported on NOW, not after its date.
        asset.os_version = Some("11".into());
        assert_eq!(checks(&asset), Vec::<&str>::new());
        assert_eq!(
            os_end_of_life(&asset, dates::date_ms("2026-08-31").unwrap()),
            Some("2026-08-31")
        );
    }

    #[test]
    fn running_kernel_older_than_installed() {
        let mut asset = healthy();
        asset.patch.newest_installed_kernel = Some("6.1.0-21-amd64".into());
        assert_eq!(checks(&asset), [CHECK_KERNEL_OUTDATED]);
        assert_eq!(sample(&asset, METRIC_KERNEL_OUTDATED), 1.0);
    }

    #[test]
    fn versions_compare_by_numeric_segments() {
        use Ordering::*;
        let cases = [
            ("6.1.0-18-amd64", "6.1.0-21-amd64", Less),
            ("5.15.0-91-generic", "5.15.0-101-generic", Less),
            ("5.14.0-362.el9", "5.14.0-362.8.1.el9", Less),
            ("5.14.0-427.el9_4", "5.14.0-362.24.1.el9_3", Greater),
            ("6.10", "6.9", Greater),
            ("6.1.0", "6.1.0", Equal),
            ("6.1.0", "6.1.0-1", Less),
            ("6.1.0-ARCH", "6.1.0-arch", Equal),
        ];
        for (a, b, expected) in cases {
            assert_eq!(compare_versions(a, b), expected, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), expected.reverse(), "{b} vs {a}");
        }
        let mut asset = healthy();
        for (running, newest, outdated) in [
            ("6.1.0-18", "6.1.0-18-amd64", false),
            ("6.1.0-21-amd64", "6.1.0-18-amd64", false),
            ("6.1.0-18-amd64", "6.1.0-21-amd64", true),
        ] {
            asset.patch.running_kernel = Some(running.into());
            asset.patch.newest_installed_kernel = Some(newest.into());
            assert_eq!(
                kernel_outdated(&asset).is_some(),
                outdated,
                "{running} {newest}"
            );
        }
    }

    #[test]
    fn not_reported_for_too_long() {
        let mut asset = healthy();
        asset.last_seen_ms = NOW - 3 * DAY_MS;
        assert_eq!(checks(&asset), [CHECK_NOT_REPORTED]);
        assert_eq!(sample(&asset, METRIC_DAYS_SINCE_SEEN), 3.0);
        // Laptops get two weeks.
        asset.tags.insert("expected_offline".into());
        assert_eq!(checks(&asset), Vec::<&str>::new());
    }

    #[test]
    fn due_for_replacement_is_a_finding() {
        let mut asset = healthy();
        asset.warranty_end = Some("2025-01-31".into());
        assert_eq!(checks(&asset), [CHECK_DUE_FOR_REPLACEMENT]);
        assert_eq!(sample(&asset, METRIC_DUE_FOR_REPLACEMENT), 1.0);
    }

    #[test]
    fn assets_out_of_service_have_no_findings_and_zero_samples() {
        let mut asset = healthy();
        asset.apply_patch_metric("patch.reboot_required", 1.0, NOW);
        asset.last_seen_ms = NOW - 90 * DAY_MS;
        asset.os_version = Some("9".into());
        for status in [
            Lifecycle::InStock,
            Lifecycle::InRepair,
            Lifecycle::Retired,
            Lifecycle::Disposed,
        ] {
            asset.status = status;
            assert!(checks(&asset).is_empty(), "{status}");
            assert!(
                compliance_samples(&asset, NOW, &AssetPolicy::default())
                    .iter()
                    .all(|(_, value)| *value == 0.0),
                "{status}"
            );
        }
        asset.status = Lifecycle::Missing;
        assert_eq!(
            checks(&asset),
            [CHECK_REBOOT_REQUIRED, CHECK_OS_EOL, CHECK_NOT_REPORTED]
        );
    }

    #[test]
    fn samples_name_the_documented_metrics() {
        let names: Vec<_> = compliance_samples(&healthy(), NOW, &AssetPolicy::default())
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            names,
            [
                "asset.security_pending_days",
                "asset.reboot_required",
                "asset.os_eol",
                "asset.kernel_outdated",
                "asset.days_since_seen",
                "asset.due_for_replacement",
            ]
        );
    }
}
