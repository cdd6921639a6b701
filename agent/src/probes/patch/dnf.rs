//! RHEL, CentOS, Rocky, Alma, Oracle, Amazon Linux and Fedora, through `dnf`
//! (dnf4 or dnf5) or `yum` (EL7).
//!
//! Runs `check-update` for pending packages, `updateinfo list --security` for
//! security ones, and `needs-restarting -r` for the reboot flag, all with
//! `-C` (cache only): the probe must not refresh metadata from the mirrors on
//! every round. `dnf-makecache.timer` keeps that cache fresh on a default
//! install; [`PatchReport::lists_age_days`] shows when it did last.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::SystemTime;

use super::{
    BoxFuture, CommandRunner, PatchBackend, PatchError, PatchReport, age_days, newest_boot_kernel,
    newest_modules_kernel, newest_mtime, newest_mtime_below, running_linux_kernel,
};

/// `dnf` or `yum`; both speak the same commands and output formats here.
#[derive(Debug, Clone)]
pub struct DnfBackend {
    program: &'static str,
    root: PathBuf,
}

impl DnfBackend {
    /// `program` is `"dnf"` or `"yum"`, whichever the host has.
    pub fn new(program: &'static str) -> Self {
        Self {
            program,
            root: PathBuf::from("/"),
        }
    }

    async fn security_advisories(
        &self,
        runner: &CommandRunner,
    ) -> Result<Vec<SecurityAdvisory>, PatchError> {
        let output = runner
            .run(
                self.program,
                &["-C", "-q", "updateinfo", "list", "--security"],
            )
            .await?
            .accept(&[0])?;
        Ok(parse_dnf_updateinfo_security(&output.stdout))
    }

    async fn reboot_required(&self, runner: &CommandRunner) -> Option<bool> {
        // dnf4/yum ship a standalone `needs-restarting` (dnf-utils,
        // yum-utils); dnf5 has it as a plugin subcommand.
        let output = match runner.run("needs-restarting", &["-r"]).await {
            Ok(output) => output,
            Err(_) => runner
                .run(self.program, &["needs-restarting", "-r"])
                .await
                .ok()?,
        };
        parse_needs_restarting(&output.stdout)
    }

    fn file_facts(&self, now: SystemTime) -> (Option<f64>, Option<f64>) {
        let root = &self.root;
        // The rpm database changes on every install, upgrade and removal; it
        // moved to /usr/lib/sysimage on Fedora 36+.
        let rpmdb: Vec<PathBuf> = [
            "var/lib/rpm/rpmdb.sqlite",
            "var/lib/rpm/Packages",
            "usr/lib/sysimage/rpm/rpmdb.sqlite",
        ]
        .iter()
        .map(|path| root.join(path))
        .collect();
        let last_update = newest_mtime(rpmdb.iter().map(PathBuf::as_path));
        let is_metadata = |name: &str| name == "repomd.xml" || name == "last_makecache";
        let lists = ["var/cache/dnf", "var/cache/libdnf5", "var/cache/yum"]
            .iter()
            .filter_map(|dir| newest_mtime_below(&root.join(dir), 3, &is_metadata))
            .max();
        (
            last_update.map(|time| age_days(time, now)),
            lists.map(|time| age_days(time, now)),
        )
    }
}

impl PatchBackend for DnfBackend {
    fn name(&self) -> &'static str {
        self.program
    }

    fn report<'a>(
        &'a self,
        runner: &'a CommandRunner,
    ) -> BoxFuture<'a, Result<PatchReport, PatchError>> {
        Box::pin(async move {
            // Exit code 100 means "updates are available", not failure.
            let updates = runner
                .run(self.program, &["-C", "-q", "check-update"])
                .await?
                .accept(&[0, 100])?;
            let updates = parse_dnf_check_update(&updates.stdout);
            let pending: HashSet<(&str, &str)> = updates
                .iter()
                .map(|update| (update.name.as_str(), update.arch.as_str()))
                .collect();
            // Advisory data is optional metadata (some third-party repos have
            // none); without it the security count is unknown, not zero.
            let security = match self.security_advisories(runner).await {
                Ok(advisories) => Some(count_security_updates(&updates, &advisories)),
                Err(error) => {
                    tracing::warn!(message = "Cannot list security advisories.", %error, program = self.program);
                    None
                }
            };
            let (last_update_age_days, lists_age_days) = self.file_facts(SystemTime::now());
            Ok(PatchReport {
                pending: count(pending.iter()),
                security,
                reboot_required: self.reboot_required(runner).await,
                last_update_age_days,
                lists_age_days,
                running_kernel: running_linux_kernel(&self.root),
                newest_installed_kernel: newest_modules_kernel(&self.root)
                    .or_else(|| newest_boot_kernel(&self.root)),
                backend: self.program,
            })
        })
    }
}

fn count(iter: impl Iterator) -> u32 {
    u32::try_from(iter.count()).unwrap_or(u32::MAX)
}

/// One row of `dnf check-update`: `openssl-libs.x86_64  1:3.0.7-25.el9_3  baseos`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnfUpdate {
    pub name: String,
    pub arch: String,
    pub version: String,
    pub repo: String,
}

/// Parses `dnf check-update` / `yum check-update` (and dnf5's
/// `check-upgrade`). Rows whose name is too long for the column continue on
/// the next, indented, line. The "Obsoleting Packages" section lists
/// replacements already counted above, so parsing stops there.
pub fn parse_dnf_check_update(text: &str) -> Vec<DnfUpdate> {
    let mut updates = Vec::new();
    let mut row: Vec<&str> = Vec::new();
    let mut flush = |row: &mut Vec<&str>| {
        if let [name_arch, version, repo] = row.as_slice()
            && let Some((name, arch)) = name_arch.rsplit_once('.')
            && !name.is_empty()
            && !arch.is_empty()
            && version.contains(|c: char| c.is_ascii_digit())
        {
            updates.push(DnfUpdate {
                name: name.to_string(),
                arch: arch.to_string(),
                version: version.to_string(),
                repo: repo.to_string(),
            });
        }
        row.clear();
    };
    for line in text.lines() {
        if line
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("obsoleting")
        {
            break;
        }
        if line.starts_with([' ', '\t']) {
            row.extend(line.split_whitespace());
        } else {
            flush(&mut row);
            row.extend(line.split_whitespace());
        }
    }
    flush(&mut row);
    updates
}

/// How many of `updates` a security advisory fixes. Packages are matched by
/// name and arch (one advisory often lists several builds), and only packages
/// `check-update` offers count, so security never exceeds pending.
pub fn count_security_updates(updates: &[DnfUpdate], advisories: &[SecurityAdvisory]) -> u32 {
    let fixed: HashSet<(String, String)> = advisories
        .iter()
        .filter_map(|advisory| split_nevra(&advisory.package))
        .collect();
    count(
        updates
            .iter()
            .filter(|update| fixed.contains(&(update.name.clone(), update.arch.clone())))
            .map(|update| (update.name.as_str(), update.arch.as_str()))
            .collect::<HashSet<_>>()
            .iter(),
    )
}

/// One security advisory row of `updateinfo list --security`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityAdvisory {
    pub id: String,
    /// `Important`, `Moderate`, ...; `None` when the advisory has none.
    pub severity: Option<String>,
    /// The fixed package, as `name-[epoch:]version-release.arch`.
    pub package: String,
}

/// Parses `dnf updateinfo list --security` in both layouts:
/// dnf4/yum `RHSA-2023:7549 Important/Sec. kernel-5.14.0-362.13.1.el9_3.x86_64`
/// and dnf5 `FEDORA-2026-... security Moderate tar-2:1.35-9.fc44.x86_64 2026-09-09 04:47:08`.
pub fn parse_dnf_updateinfo_security(text: &str) -> Vec<SecurityAdvisory> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (id, severity, package) = match fields.as_slice() {
                [id, kind, package] if kind.ends_with("/Sec.") => {
                    let severity = kind.trim_end_matches("/Sec.");
                    (
                        id,
                        (!severity.is_empty() && severity != "Unknown").then_some(severity),
                        package,
                    )
                }
                [id, "security", package] => (id, None, package),
                [id, "security", severity, package, ..] => (id, Some(*severity), package),
                _ => return None,
            };
            split_nevra(package)?;
            Some(SecurityAdvisory {
                id: id.to_string(),
                severity: severity.map(str::to_string),
                package: package.to_string(),
            })
        })
        .collect()
}

/// `kernel-core-5.14.0-362.13.1.el9_3.x86_64` → (`kernel-core`, `x86_64`):
/// the arch follows the last dot, and version and release are the last two
/// hyphen-separated parts before it.
pub fn split_nevra(nevra: &str) -> Option<(String, String)> {
    let (rest, arch) = nevra.rsplit_once('.')?;
    let mut parts = rest.rsplitn(3, '-');
    let (_release, _version, name) = (parts.next()?, parts.next()?, parts.next()?);
    (!name.is_empty() && !arch.is_empty()).then(|| (name.to_string(), arch.to_string()))
}

/// Reads `needs-restarting -r`'s verdict from its text rather than its exit
/// code: exit 1 means "reboot needed" but also "no such command" on a dnf
/// without the plugin.
pub fn parse_needs_restarting(stdout: &str) -> Option<bool> {
    if stdout.contains("Reboot is required") {
        Some(true)
    } else if stdout.contains("Reboot should not be necessary")
        || stdout.contains("No core libraries or services have been updated")
    {
        Some(false)
    } else {
        None
    }
}

// The commands always query the running system, so only tests (checking the
// file-based facts against a scratch tree) need another root.
#[cfg(test)]
impl DnfBackend {
    fn with_root(program: &'static str, root: PathBuf) -> Self {
        Self { program, root }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::patch::fixture;

    #[test]
    fn check_update_fixture() {
        let text = std::fs::read_to_string(fixture("dnf-check-update.txt")).unwrap();
        let updates = parse_dnf_check_update(&text);
        let names: Vec<String> = updates
            .iter()
            .map(|u| format!("{}.{}", u.name, u.arch))
            .collect();
        assert_eq!(
            names,
            [
                "NetworkManager.x86_64",
                "NetworkManager-libnm.x86_64",
                "kernel.x86_64",
                "kernel-core.x86_64",
                "kernel-modules.x86_64",
                "kernel-modules-core.x86_64",
                "openssl.x86_64",
                "openssl-libs.x86_64",
                "python3-perf.x86_64",
                "selinux-policy-targeted.noarch",
                "tzdata.noarch",
            ]
        );
        // The wrapped row keeps its version and repository.
        let wrapped = updates
            .iter()
            .find(|u| u.name == "selinux-policy-targeted")
            .unwrap();
        assert_eq!(
            (wrapped.version.as_str(), wrapped.repo.as_str()),
            ("38.1.23-1.el9_3.2", "baseos")
        );
        assert_eq!(
            updates
                .iter()
                .find(|u| u.name == "openssl")
                .unwrap()
                .version,
            "1:3.0.7-25.el9_3"
        );
    }

    #[test]
    fn check_update_edge_cases() {
        let cases: [(&str, usize); 5] = [
            ("", 0),
            (
                "Last metadata expiration check: 0:01:02 ago on Tue 21 Nov 2023 09:14:03 AM UTC.\n",
                0,
            ),
            (
                "Updating and loading repositories:\nRepositories loaded.\ncurl.x86_64 8.6.0-8.fc40 updates\n",
                1,
            ),
            (
                "foo.noarch 1.0-1 repo\nObsoleting Packages\nbar.noarch 2.0-1 repo\n    foo.noarch 1.0-1 @System\n",
                1,
            ),
            (
                "Security: kernel-core-5.14.0-362.8.1.el9_3.x86_64 is an installed security update\n",
                0,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_dnf_check_update(text).len(), want, "{text:?}");
        }
    }

    #[test]
    fn updateinfo_security_fixture_dnf4() {
        let text = std::fs::read_to_string(fixture("dnf-updateinfo-security.txt")).unwrap();
        let advisories = parse_dnf_updateinfo_security(&text);
        assert_eq!(advisories.len(), 7);
        assert_eq!(
            advisories[0],
            SecurityAdvisory {
                id: "RHSA-2023:7549".into(),
                severity: Some("Important".into()),
                package: "kernel-5.14.0-362.13.1.el9_3.x86_64".into(),
            }
        );
        let packages: HashSet<(String, String)> = advisories
            .iter()
            .filter_map(|a| split_nevra(&a.package))
            .collect();
        assert_eq!(packages.len(), 7);
    }

    #[test]
    fn security_count_is_advisory_packages_that_check_update_offers() {
        let updates = parse_dnf_check_update(
            &std::fs::read_to_string(fixture("dnf-check-update.txt")).unwrap(),
        );
        let advisories = parse_dnf_updateinfo_security(
            &std::fs::read_to_string(fixture("dnf-updateinfo-security.txt")).unwrap(),
        );
        // kernel, kernel-core, kernel-modules, kernel-modules-core,
        // python3-perf, openssl, openssl-libs.
        assert_eq!(count_security_updates(&updates, &advisories), 7);
        assert_eq!(count_security_updates(&updates[..2], &advisories), 0);
        assert_eq!(count_security_updates(&[], &advisories), 0);
    }

    #[test]
    fn updateinfo_security_fixture_dnf5() {
        let text = std::fs::read_to_string(fixture("dnf5-updateinfo-security.txt")).unwrap();
        let advisories = parse_dnf_updateinfo_security(&text);
        let got: Vec<(&str, Option<&str>, &str)> = advisories
            .iter()
            .map(|a| (a.id.as_str(), a.severity.as_deref(), a.package.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "FEDORA-2024-1b3ce8d6ce",
                    Some("Moderate"),
                    "curl-8.6.0-8.fc40.x86_64"
                ),
                (
                    "FEDORA-2024-1b3ce8d6ce",
                    Some("Moderate"),
                    "libcurl-8.6.0-8.fc40.x86_64"
                ),
                (
                    "FEDORA-2024-9b7a2a1e3f",
                    Some("Important"),
                    "openssl-libs-1:3.2.2-3.fc40.x86_64"
                ),
            ]
        );
    }

    #[test]
    fn nevra_names_and_arches() {
        let cases = [
            (
                "kernel-core-5.14.0-362.13.1.el9_3.x86_64",
                Some(("kernel-core", "x86_64")),
            ),
            (
                "openssl-libs-1:3.2.2-3.fc40.x86_64",
                Some(("openssl-libs", "x86_64")),
            ),
            ("tzdata-2023c-1.el9.noarch", Some(("tzdata", "noarch"))),
            ("noversion.x86_64", None),
            ("Important/Sec.", None),
        ];
        for (nevra, want) in cases {
            let got = split_nevra(nevra);
            assert_eq!(
                got.as_ref().map(|(n, a)| (n.as_str(), a.as_str())),
                want,
                "{nevra}"
            );
        }
    }

    #[test]
    fn needs_restarting_verdicts() {
        let cases = [
            (
                "Core libraries or services have been updated since boot-up:\n  * kernel\n\n\
                 Reboot is required to fully utilize these updates.\n\
                 More information: https://access.redhat.com/solutions/27943\n",
                Some(true),
            ),
            (
                "No core libraries or services have been updated since boot-up.\n\
                 Reboot should not be necessary.\n",
                Some(false),
            ),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_needs_restarting(text), want, "{text:?}");
        }
    }

    #[test]
    fn file_facts_on_a_host_without_dnf_are_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let backend = DnfBackend::with_root("dnf", dir.path().to_path_buf());
        assert_eq!(backend.file_facts(SystemTime::now()), (None, None));
        let cache = dir
            .path()
            .join("var/cache/dnf/baseos-0123456789abcdef/repodata");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cache.join("repomd.xml"), "<repomd/>").unwrap();
        assert!(backend.file_facts(SystemTime::now()).1.is_some());
    }
}
