//! Arch Linux and derivatives, through `pacman -Qu`.
//!
//! `pacman -Qu` compares the local database with the sync databases already
//! on disk, so it works offline; `checkupdates` would download fresh ones,
//! which a probe must not do every round. The counts are therefore as
//! current as the last `pacman -Sy`, which `lists_age_days` reports.
//!
//! Arch publishes no security classification in its package metadata
//! (advisories live on security.archlinux.org), so `security` is always
//! `None`: unknown, never a reassuring 0.

use std::path::PathBuf;
use std::time::SystemTime;

use super::{
    BoxFuture, CommandRunner, PatchBackend, PatchError, PatchReport, age_days, mtime,
    newest_boot_kernel, newest_modules_kernel, newest_mtime_below, running_linux_kernel,
};

const NAME: &str = "pacman";

#[derive(Debug, Clone)]
pub struct PacmanBackend {
    root: PathBuf,
}

impl Default for PacmanBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl PacmanBackend {
    pub fn new() -> Self {
        Self {
            root: PathBuf::from("/"),
        }
    }

    /// Arch has no reboot flag, but a kernel upgrade deletes the running
    /// kernel's module directory: if it is gone, only a reboot brings back
    /// loadable modules.
    fn reboot_required(&self, running: Option<&str>) -> Option<bool> {
        let modules = self.root.join("usr/lib/modules");
        let running = running?;
        modules.is_dir().then(|| !modules.join(running).is_dir())
    }

    fn file_facts(&self, now: SystemTime) -> (Option<f64>, Option<f64>) {
        // A package directory is added or removed here on every change.
        let last_update = mtime(&self.root.join("var/lib/pacman/local"));
        let lists = newest_mtime_below(&self.root.join("var/lib/pacman/sync"), 0, &|name| {
            name.ends_with(".db")
        });
        (
            last_update.map(|time| age_days(time, now)),
            lists.map(|time| age_days(time, now)),
        )
    }
}

impl PatchBackend for PacmanBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn report<'a>(
        &'a self,
        runner: &'a CommandRunner,
    ) -> BoxFuture<'a, Result<PatchReport, PatchError>> {
        Box::pin(async move {
            let output = runner.run("pacman", &["-Qu"]).await?;
            // Exit 1 with nothing printed means "no updates"; with an error
            // message it is a failure.
            let output = if output.code == Some(1) && output.stderr.trim().is_empty() {
                output
            } else {
                output.accept(&[0])?
            };
            let pending = parse_pacman_updates(&output.stdout)
                .iter()
                .filter(|update| !update.ignored)
                .count();
            let running_kernel = running_linux_kernel(&self.root);
            let (last_update_age_days, lists_age_days) = self.file_facts(SystemTime::now());
            Ok(PatchReport {
                pending: u32::try_from(pending).unwrap_or(u32::MAX),
                security: None,
                reboot_required: self.reboot_required(running_kernel.as_deref()),
                last_update_age_days,
                lists_age_days,
                newest_installed_kernel: newest_modules_kernel(&self.root)
                    .or_else(|| newest_boot_kernel(&self.root)),
                running_kernel,
                backend: NAME,
            })
        })
    }
}

/// One line of `pacman -Qu` / `checkupdates`: `linux 6.6.1.arch1-1 -> 6.6.2.arch1-1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacmanUpdate {
    pub name: String,
    pub installed: String,
    pub available: String,
    /// Listed in `IgnorePkg`/`IgnoreGroup`: `pacman -Syu` will skip it.
    pub ignored: bool,
}

/// Parses `pacman -Qu` (or `checkupdates`) output.
pub fn parse_pacman_updates(text: &str) -> Vec<PacmanUpdate> {
    text.lines()
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                [name, installed, "->", available, rest @ ..] => Some(PacmanUpdate {
                    name: name.to_string(),
                    installed: installed.to_string(),
                    available: available.to_string(),
                    ignored: rest.contains(&"[ignored]"),
                }),
                _ => None,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::patch::fixture;

    #[test]
    fn pacman_qu_fixture() {
        let text = std::fs::read_to_string(fixture("pacman-Qu.txt")).unwrap();
        let updates = parse_pacman_updates(&text);
        assert_eq!(updates.len(), 8);
        assert_eq!(
            updates[0],
            PacmanUpdate {
                name: "curl".into(),
                installed: "8.10.1-1".into(),
                available: "8.11.0-1".into(),
                ignored: false,
            }
        );
        let ignored: Vec<&str> = updates
            .iter()
            .filter(|u| u.ignored)
            .map(|u| u.name.as_str())
            .collect();
        assert_eq!(ignored, ["linux"]);
    }

    #[test]
    fn empty_and_foreign_lines() {
        assert!(parse_pacman_updates("").is_empty());
        assert!(
            parse_pacman_updates("error: failed to init transaction (unable to lock database)\n")
                .is_empty()
        );
    }

    #[test]
    fn a_missing_running_kernel_module_directory_means_reboot() {
        let dir = tempfile::tempdir().unwrap();
        let backend = PacmanBackend {
            root: dir.path().to_path_buf(),
        };
        // No modules tree at all (a container): cannot tell.
        assert_eq!(backend.reboot_required(Some("6.6.1-arch1-1")), None);
        let modules = dir.path().join("usr/lib/modules");
        std::fs::create_dir_all(modules.join("6.6.2-arch1-1")).unwrap();
        std::fs::write(modules.join("6.6.2-arch1-1/vmlinuz"), "").unwrap();
        assert_eq!(backend.reboot_required(Some("6.6.1-arch1-1")), Some(true));
        assert_eq!(backend.reboot_required(Some("6.6.2-arch1-1")), Some(false));
        assert_eq!(backend.reboot_required(None), None);
        assert_eq!(
            newest_modules_kernel(dir.path()).as_deref(),
            Some("6.6.2-arch1-1")
        );
    }
}
