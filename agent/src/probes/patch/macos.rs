//! macOS, through `softwareupdate --list --no-scan`.
//!
//! `--no-scan` lists what the system's own background check last found, so
//! the probe never asks Apple's servers (a scan can take minutes). The age of
//! that check is the modification time of the Software Update preferences,
//! which macOS rewrites after each successful scan.
//!
//! What is left unknown, on purpose:
//! - `security`: Apple does not classify updates; most macOS point releases
//!   are security releases without saying so in their names, so any count
//!   would be a guess.
//! - `reboot_required`: macOS has no "reboot pending" state to read; that an
//!   available update will need a restart (`Action: restart`) is parsed into
//!   [`SoftwareUpdateItem::restart`] but is not the same thing.

use std::path::Path;
use std::time::SystemTime;

use super::{BoxFuture, CommandRunner, PatchBackend, PatchError, PatchReport, age_days, mtime};

const NAME: &str = "softwareupdate";
const PROGRAM: &str = "/usr/sbin/softwareupdate";

#[derive(Debug, Clone, Default)]
pub struct SoftwareUpdateBackend;

impl SoftwareUpdateBackend {
    pub fn new() -> Self {
        Self
    }
}

impl PatchBackend for SoftwareUpdateBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn report<'a>(
        &'a self,
        runner: &'a CommandRunner,
    ) -> BoxFuture<'a, Result<PatchReport, PatchError>> {
        Box::pin(async move {
            let listed = runner.run(PROGRAM, &["--list", "--no-scan"]).await?;
            // Releases before `--no-scan` existed reject it; scan then.
            let listed = if listed.code == Some(0) {
                listed
            } else {
                runner.run(PROGRAM, &["--list"]).await?.accept(&[0])?
            };
            let items = parse_softwareupdate_list(&listed.stdout);
            let now = SystemTime::now();
            let age = |path: &str| mtime(Path::new(path)).map(|time| age_days(time, now));
            Ok(PatchReport {
                pending: u32::try_from(items.len()).unwrap_or(u32::MAX),
                security: None,
                reboot_required: None,
                last_update_age_days: age("/Library/Receipts/InstallHistory.plist"),
                lists_age_days: age("/Library/Preferences/com.apple.SoftwareUpdate.plist"),
                running_kernel: sysinfo::System::kernel_version().ok(),
                newest_installed_kernel: None,
                backend: NAME,
            })
        })
    }
}

/// One update in `softwareupdate --list` output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoftwareUpdateItem {
    /// What `softwareupdate --install` takes, e.g. `macOS Sonoma 14.7.1-23H222`.
    pub label: String,
    pub title: String,
    pub version: Option<String>,
    pub recommended: bool,
    /// Installing it restarts the Mac (`Action: restart` / `[restart]`).
    pub restart: bool,
}

/// Parses both layouts of `softwareupdate --list` (detail lines are
/// indented with a tab in the real output):
///
/// macOS 10.15 and later:
/// ```text
/// * Label: macOS Sonoma 14.7.1-23H222
///     Title: macOS Sonoma 14.7.1, Version: 14.7.1, Size: 1517653KiB, Recommended: YES, Action: restart,
/// ```
/// earlier releases:
/// ```text
///    * Security Update 2019-002 High Sierra-10.13.6
///     Security Update 2019-002 High Sierra (10.13.6), 1938452K [recommended] [restart]
/// ```
pub fn parse_softwareupdate_list(text: &str) -> Vec<SoftwareUpdateItem> {
    let mut items: Vec<SoftwareUpdateItem> = Vec::new();
    let mut expecting_detail = false;
    for line in text.lines() {
        let trimmed = line.trim();
        let bullet = trimmed
            .strip_prefix("* ")
            .or_else(|| trimmed.strip_prefix("- "));
        if let Some(label) = bullet.and_then(|rest| rest.strip_prefix("Label:")) {
            items.push(SoftwareUpdateItem {
                label: label.trim().to_string(),
                ..SoftwareUpdateItem::default()
            });
            expecting_detail = true;
        } else if let Some(detail) = trimmed.strip_prefix("Title:") {
            if let Some(item) = items.last_mut().filter(|_| expecting_detail) {
                fill_from_fields(item, &format!("Title:{detail}"));
            }
            expecting_detail = false;
        } else if let Some(label) = bullet.filter(|_| line.starts_with([' ', '\t'])) {
            // Old layout: an indented bullet, then an indented detail line.
            items.push(SoftwareUpdateItem {
                label: label.trim().to_string(),
                ..SoftwareUpdateItem::default()
            });
            expecting_detail = true;
        } else if expecting_detail && line.starts_with([' ', '\t']) && !trimmed.is_empty() {
            if let Some(item) = items.last_mut() {
                fill_from_old_detail(item, trimmed);
            }
            expecting_detail = false;
        }
    }
    for item in &mut items {
        if item.title.is_empty() {
            item.title = item.label.clone();
        }
    }
    items
}

/// `Title: X, Version: Y, Size: Z, Recommended: YES, Action: restart,`
fn fill_from_fields(item: &mut SoftwareUpdateItem, detail: &str) {
    for field in detail.split(", ") {
        let Some((key, value)) = field.split_once(':') else {
            continue;
        };
        let value = value.trim().trim_end_matches(',').trim();
        match key.trim() {
            "Title" => item.title = value.to_string(),
            "Version" => item.version = Some(value.to_string()),
            "Recommended" => item.recommended = value.eq_ignore_ascii_case("YES"),
            "Action" => item.restart = value.eq_ignore_ascii_case("restart"),
            _ => {}
        }
    }
}

/// `Title (version), 1948743K [recommended] [restart]`, or the oldest
/// `Title, version, 34100K [recommended]`.
fn fill_from_old_detail(item: &mut SoftwareUpdateItem, detail: &str) {
    item.recommended = detail.contains("[recommended]");
    item.restart = detail.contains("[restart]");
    let head = detail.split(", ").next().unwrap_or(detail);
    match head.rsplit_once(" (") {
        Some((title, version)) if version.ends_with(')') => {
            item.title = title.trim().to_string();
            let version = version.trim_end_matches(')').trim();
            item.version = (!version.is_empty()).then(|| version.to_string());
        }
        _ => {
            item.title = head.trim().to_string();
            item.version = detail
                .split(", ")
                .nth(1)
                .map(|version| version.trim().to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::patch::fixture;

    #[test]
    fn current_layout_fixture() {
        let text = std::fs::read_to_string(fixture("softwareupdate-l.txt")).unwrap();
        let items = parse_softwareupdate_list(&text);
        assert_eq!(
            items,
            [
                SoftwareUpdateItem {
                    label: "macOS Sonoma 14.7.1-23H222".into(),
                    title: "macOS Sonoma 14.7.1".into(),
                    version: Some("14.7.1".into()),
                    recommended: true,
                    restart: true,
                },
                SoftwareUpdateItem {
                    label: "Safari18.1SonomaAuto-18.1".into(),
                    title: "Safari".into(),
                    version: Some("18.1".into()),
                    recommended: true,
                    restart: false,
                },
                SoftwareUpdateItem {
                    label: "Command Line Tools for Xcode-16.1".into(),
                    title: "Command Line Tools for Xcode".into(),
                    version: Some("16.1".into()),
                    recommended: false,
                    restart: false,
                },
            ]
        );
    }

    #[test]
    fn legacy_layout_fixture() {
        let text = std::fs::read_to_string(fixture("softwareupdate-l-legacy.txt")).unwrap();
        let items = parse_softwareupdate_list(&text);
        let got: Vec<(&str, &str, Option<&str>, bool, bool)> = items
            .iter()
            .map(|i| {
                (
                    i.label.as_str(),
                    i.title.as_str(),
                    i.version.as_deref(),
                    i.recommended,
                    i.restart,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "Security Update 2019-002 High Sierra-10.13.6",
                    "Security Update 2019-002 High Sierra",
                    Some("10.13.6"),
                    true,
                    true
                ),
                (
                    "Safari12.1.1HighSierraAuto-12.1.1",
                    "Safari",
                    Some("12.1.1"),
                    true,
                    false
                ),
            ]
        );
    }

    #[test]
    fn nothing_available() {
        // `softwareupdate` prints this to stderr; stdout keeps the banner only.
        let text = "Software Update Tool\n\nFinding available software\n";
        assert!(parse_softwareupdate_list(text).is_empty());
        assert!(parse_softwareupdate_list("No new software available.\n").is_empty());
    }
}
