//! SUSE Linux Enterprise and openSUSE, through `zypper --xmlout`.
//!
//! `list-updates` gives the pending packages and `list-patches --category
//! security` the security patches, both with `--no-refresh` so the probe
//! never contacts the repositories. The XML is simple and machine-written, so
//! it is scanned for `<update .../>` start tags instead of pulling in an XML
//! crate.
//!
//! SUSE classifies patches, not packages: `security` counts needed security
//! patches (one patch may update several packages) and is capped at
//! `pending` so the two stay comparable.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::SystemTime;

use super::{
    BoxFuture, CommandRunner, PatchBackend, PatchError, PatchReport, age_days, newest_boot_kernel,
    newest_modules_kernel, newest_mtime, newest_mtime_below, running_linux_kernel,
};

const NAME: &str = "zypper";
/// Global options for every call: no prompts, no repository refresh, XML.
const GLOBAL: [&str; 3] = ["--non-interactive", "--no-refresh", "--xmlout"];
/// zypper's "informational" exit codes: 100 updates/patches needed, 101
/// security patches needed, 102/103 reboot or restart after installing.
const OK_CODES: [i32; 5] = [0, 100, 101, 102, 103];

#[derive(Debug, Clone)]
pub struct ZypperBackend {
    root: PathBuf,
}

impl Default for ZypperBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl ZypperBackend {
    pub fn new() -> Self {
        Self {
            root: PathBuf::from("/"),
        }
    }

    async fn zypper(&self, runner: &CommandRunner, command: &[&str]) -> Result<String, PatchError> {
        let args: Vec<&str> = GLOBAL.iter().chain(command).copied().collect();
        Ok(runner.run("zypper", &args).await?.accept(&OK_CODES)?.stdout)
    }

    /// libzypp drops this flag file when an installed update asks for a
    /// reboot; `zypper needs-rebooting` reads the same file.
    fn reboot_required(&self) -> bool {
        ["run/reboot-needed", "var/run/reboot-needed"]
            .iter()
            .any(|flag| self.root.join(flag).exists())
    }

    fn file_facts(&self, now: SystemTime) -> (Option<f64>, Option<f64>) {
        let root = &self.root;
        let changed: Vec<PathBuf> = [
            "var/lib/rpm/Packages.db",
            "var/lib/rpm/rpmdb.sqlite",
            "usr/lib/sysimage/rpm/Packages.db",
            "usr/lib/sysimage/rpm/rpmdb.sqlite",
            "var/log/zypp/history",
        ]
        .iter()
        .map(|path| root.join(path))
        .collect();
        let last_update = newest_mtime(changed.iter().map(PathBuf::as_path));
        let lists = newest_mtime_below(&root.join("var/cache/zypp/raw"), 3, &|name| {
            name == "repomd.xml"
        });
        (
            last_update.map(|time| age_days(time, now)),
            lists.map(|time| age_days(time, now)),
        )
    }
}

impl PatchBackend for ZypperBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn report<'a>(
        &'a self,
        runner: &'a CommandRunner,
    ) -> BoxFuture<'a, Result<PatchReport, PatchError>> {
        Box::pin(async move {
            let updates = parse_zypper_updates(&self.zypper(runner, &["list-updates"]).await?);
            let pending: HashSet<(&str, &str)> = updates
                .iter()
                .filter(|update| update.kind == "package")
                .map(|update| (update.name.as_str(), update.arch.as_str()))
                .collect();
            let pending = count(pending.iter());
            let security = match self
                .zypper(runner, &["list-patches", "--category", "security"])
                .await
            {
                Ok(xml) => Some(
                    count(
                        parse_zypper_updates(&xml)
                            .iter()
                            .filter(|patch| patch.is_needed_security_patch()),
                    )
                    .min(pending),
                ),
                Err(error) => {
                    tracing::warn!(message = "Cannot list security patches.", %error);
                    None
                }
            };
            let (last_update_age_days, lists_age_days) = self.file_facts(SystemTime::now());
            Ok(PatchReport {
                pending,
                security,
                reboot_required: Some(self.reboot_required()),
                last_update_age_days,
                lists_age_days,
                running_kernel: running_linux_kernel(&self.root),
                newest_installed_kernel: newest_modules_kernel(&self.root)
                    .or_else(|| newest_boot_kernel(&self.root)),
                backend: NAME,
            })
        })
    }
}

fn count(iter: impl Iterator) -> u32 {
    u32::try_from(iter.count()).unwrap_or(u32::MAX)
}

/// One `<update>` element of `list-updates` or `list-patches` output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZypperUpdate {
    /// `package` or `patch`.
    pub kind: String,
    pub name: String,
    pub edition: String,
    pub arch: String,
    /// Patches only: `security`, `recommended`, `optional`, ...
    pub category: Option<String>,
    pub severity: Option<String>,
    /// Patches only: `needed`, `applied`, `not-needed`.
    pub status: Option<String>,
}

impl ZypperUpdate {
    pub fn is_needed_security_patch(&self) -> bool {
        self.kind == "patch"
            && self.category.as_deref() == Some("security")
            // `list-patches` shows needed patches unless `--all` is given;
            // be explicit in case a caller passes it.
            && self.status.as_deref().is_none_or(|status| status == "needed")
    }
}

/// Collects every `<update ...>` start tag of zypper's XML output
/// (`<update-status>` and `<update-list>` are different tags). Attribute
/// values are unescaped; text content (summaries, descriptions) is skipped.
///
/// Updates inside `<blocked-update-list>` are left out: package locks keep
/// them from being installed, like held packages on Debian.
pub fn parse_zypper_updates(xml: &str) -> Vec<ZypperUpdate> {
    const BLOCKED_START: &str = "<blocked-update-list";
    const BLOCKED_END: &str = "</blocked-update-list>";
    let mut updates = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        if rest.starts_with(BLOCKED_START) {
            match rest.find(BLOCKED_END) {
                Some(end) => rest = &rest[end + BLOCKED_END.len()..],
                None => break,
            }
            continue;
        }
        let Some(tag) = rest
            .strip_prefix("<update")
            .filter(|tag| tag.starts_with(|c: char| c.is_ascii_whitespace()))
        else {
            rest = &rest[1..];
            continue;
        };
        // zypper escapes `>` in attribute values, so the first one ends the tag.
        let Some(end) = tag.find('>') else {
            break;
        };
        let mut update = ZypperUpdate::default();
        for (key, value) in attributes(&tag[..end]) {
            match key {
                "kind" => update.kind = value,
                "name" => update.name = value,
                "edition" => update.edition = value,
                "arch" => update.arch = value,
                "category" => update.category = Some(value),
                "severity" => update.severity = Some(value),
                "status" => update.status = Some(value),
                _ => {}
            }
        }
        rest = &tag[end..];
        if !update.name.is_empty() {
            updates.push(update);
        }
    }
    updates
}

/// `key="value"` pairs of a start tag's inside, values unescaped. Stops at
/// the first malformed attribute.
fn attributes(mut tag: &str) -> Vec<(&str, String)> {
    let mut pairs = Vec::new();
    loop {
        tag = tag.trim_start().trim_start_matches('/').trim_start();
        let Some((key, after)) = tag.split_once('=') else {
            break;
        };
        let after = after.trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            break;
        };
        let Some((value, remainder)) = after[1..].split_once(quote) else {
            break;
        };
        pairs.push((key.trim(), unescape(value)));
        tag = remainder;
    }
    pairs
}

fn unescape(value: &str) -> String {
    if !value.contains('&') {
        return value.to_string();
    }
    value
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::patch::fixture;

    #[test]
    fn list_updates_fixture() {
        let xml = std::fs::read_to_string(fixture("zypper-list-updates.xml")).unwrap();
        let updates = parse_zypper_updates(&xml);
        let names: Vec<&str> = updates.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "libopenssl3",
                "openssl-3",
                "curl",
                "libcurl4",
                "kernel-default",
                "timezone"
            ]
        );
        assert!(updates.iter().all(|u| u.kind == "package"));
        assert_eq!(updates[0].edition, "3.1.4-150600.5.15.1");
        assert_eq!(updates[0].arch, "x86_64");
    }

    #[test]
    fn list_patches_fixture() {
        let xml = std::fs::read_to_string(fixture("zypper-list-patches.xml")).unwrap();
        let patches = parse_zypper_updates(&xml);
        assert_eq!(patches.len(), 4);
        let security: Vec<&str> = patches
            .iter()
            .filter(|p| p.is_needed_security_patch())
            .map(|p| p.name.as_str())
            .collect();
        // Captured with `list-patches --all`: the applied patch, the
        // recommended one and the blocked one must not count.
        assert_eq!(
            security,
            [
                "SUSE-SLE-Module-Basesystem-15-SP6-2024-3092",
                "SUSE-SLE-Module-Basesystem-15-SP6-2024-3105"
            ]
        );
        assert_eq!(patches[0].severity.as_deref(), Some("important"));
    }

    #[test]
    fn empty_and_odd_documents() {
        let empty = "<?xml version='1.0'?>\n<stream>\n<update-status version=\"0.6\">\n<update-list/>\n</update-status>\n</stream>\n";
        assert!(parse_zypper_updates(empty).is_empty());
        assert!(parse_zypper_updates("").is_empty());
        assert!(parse_zypper_updates("<update name=\"unterminated").is_empty());
        let escaped = r#"<update kind="package" name="a&amp;b" edition="1&lt;2" arch='noarch'/>"#;
        let update = &parse_zypper_updates(escaped)[0];
        assert_eq!(
            (
                update.name.as_str(),
                update.edition.as_str(),
                update.arch.as_str()
            ),
            ("a&b", "1<2", "noarch")
        );
    }

    #[test]
    fn reboot_flag_file() {
        let dir = tempfile::tempdir().unwrap();
        let backend = ZypperBackend {
            root: dir.path().to_path_buf(),
        };
        assert!(!backend.reboot_required());
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        std::fs::write(dir.path().join("run/reboot-needed"), "").unwrap();
        assert!(backend.reboot_required());
        assert_eq!(backend.file_facts(SystemTime::now()), (None, None));
    }
}
