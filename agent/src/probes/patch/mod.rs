//! OS patch level: how many updates are pending, how many of them are
//! security fixes, whether the host waits for a reboot, and how fresh the
//! package metadata behind those numbers is.
//!
//! What each file owns:
//! - `mod.rs` (this file): [`PatchReport`], [`PatchError`], the
//!   [`PatchBackend`] trait, [`detect`] (which backend fits this host),
//!   [`scan`] (runs a backend under a deadline) and [`to_samples`].
//! - [`runner`]: the only place that starts processes; low priority, no stdin,
//!   `LC_ALL=C`, killed when the scan is dropped.
//! - [`apt`]: Debian/Ubuntu. Reads dpkg's status and apt's lists directly (no
//!   subprocess; LZ4-compressed lists, as Docker-style Debian images keep
//!   them, are streamed through `lz4_flex`); `apt-get -s upgrade` only when
//!   the lists use a compression this crate cannot read.
//! - [`debversion`]: Debian version ordering, used by `apt` and for kernel
//!   names.
//! - [`dnf`] (RHEL/Fedora, dnf or yum), [`zypper`] (SUSE), [`pacman`] (Arch),
//!   [`macos`] (`softwareupdate`), [`windows`] (Windows Update Agent via
//!   PowerShell).
//!
//! Every backend keeps its process invocation thin and puts all parsing in
//! plain `pub fn parse_*(text: &str)` functions, which are tested on Linux
//! against fixtures in `agent/tests/fixtures/patch/`. All backends compile on
//! every OS (so Linux CI type-checks the macOS and Windows code); only
//! [`detect`] decides which one fits the host.
//!
//! This module never refreshes package metadata (no `apt-get update`, `dnf -C`,
//! `zypper --no-refresh`, `pacman -Qu`, `softwareupdate --no-scan`, Windows
//! Update searched offline): a probe must not hit the network or a mirror on
//! every round. The counts are therefore only as current as the host's own
//! last refresh, which is why [`PatchReport::lists_age_days`] exists.

pub mod apt;
pub mod debversion;
pub mod dnf;
pub mod macos;
pub mod pacman;
pub mod runner;
pub mod windows;
pub mod zypper;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use crate::probes::Sample;

pub use debversion::compare_debian_versions;
pub use runner::{CommandOutput, CommandRunner};

/// A boxed, sendable future; the trait returns one so backends can be used as
/// `dyn PatchBackend` without an extra crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One measurement of the host's patch level.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchReport {
    /// Installed packages (or updates, on macOS/Windows) with a newer version
    /// available from the configured sources.
    pub pending: u32,
    /// How many of `pending` are security fixes. `None` when the platform has
    /// no security classification (Arch, macOS), so that "0" is never a guess.
    pub security: Option<u32>,
    /// Whether the OS says it waits for a reboot; `None` when it cannot tell.
    pub reboot_required: Option<bool>,
    /// Days since the installed set last changed (dpkg/rpm/pacman database).
    pub last_update_age_days: Option<f64>,
    /// Days since the package metadata behind `pending` was refreshed. Large
    /// values mean `pending` is an undercount.
    pub lists_age_days: Option<f64>,
    /// Kernel release that is running (`uname -r`).
    pub running_kernel: Option<String>,
    /// Newest kernel release installed on disk, comparable to
    /// `running_kernel`; `None` when the host boots a kernel it does not
    /// manage (containers, some VMs).
    pub newest_installed_kernel: Option<String>,
    /// The backend that produced this report, e.g. `"apt"`; used as a label.
    pub backend: &'static str,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    #[error("patch scan did not finish within {0:?}")]
    Timeout(Duration),
    /// In-process work noticed the scan's deadline had passed; [`scan`]
    /// reports it as [`PatchError::Timeout`].
    #[error("patch scan passed its deadline")]
    DeadlinePassed,
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("{program} not found in PATH")]
    ProgramNotFound { program: String },
    #[error("{program} failed ({status}): {stderr}")]
    CommandFailed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unexpected output from {program}: {detail}")]
    Parse {
        program: &'static str,
        detail: String,
    },
    #[error("the patch scan task failed: {0}")]
    Task(String),
}

/// One way of asking an OS for its patch level.
pub trait PatchBackend: Send + Sync {
    /// Short stable name, also the `backend` label on samples.
    fn name(&self) -> &'static str;

    /// Measures the patch level. Any subprocess must be started through
    /// `runner`, so [`scan`] can bound it in time and kill it.
    fn report<'a>(
        &'a self,
        runner: &'a CommandRunner,
    ) -> BoxFuture<'a, Result<PatchReport, PatchError>>;
}

/// Runs `backend` and gives up after `timeout`. Subprocesses still running at
/// that point are killed (`kill_on_drop`); in-process file reading (the apt
/// fast path) checks the same deadline between files.
pub async fn scan(
    backend: &dyn PatchBackend,
    timeout: Duration,
) -> Result<PatchReport, PatchError> {
    let runner = CommandRunner::new(timeout);
    match tokio::time::timeout(timeout, backend.report(&runner)).await {
        Ok(Err(PatchError::DeadlinePassed)) | Err(_) => Err(PatchError::Timeout(timeout)),
        Ok(result) => result,
    }
}

/// Chooses the backend for this host, or `None` when no supported package
/// manager is present.
pub fn detect() -> Option<Box<dyn PatchBackend>> {
    if cfg!(target_os = "macos") {
        return Some(Box::new(macos::SoftwareUpdateBackend::new()));
    }
    if cfg!(windows) {
        return Some(Box::new(windows::WindowsUpdateBackend::new()));
    }
    if cfg!(target_os = "linux") {
        return detect_linux();
    }
    None
}

/// The package-manager families [`detect`] distinguishes on Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinuxFamily {
    Debian,
    RedHat,
    Suse,
    Arch,
}

/// Reads `ID` and then `ID_LIKE` from os-release(5) text: derivatives
/// (Ubuntu, Rocky, Manjaro, ...) name their parent in `ID_LIKE`.
pub fn linux_family(os_release: &str) -> Option<LinuxFamily> {
    let field = |key: &str| {
        os_release.lines().find_map(|line| {
            let value = line.trim().strip_prefix(key)?.strip_prefix('=')?;
            Some(value.trim().trim_matches(['"', '\'']).to_ascii_lowercase())
        })
    };
    let id = field("ID").unwrap_or_default();
    let like = field("ID_LIKE").unwrap_or_default();
    std::iter::once(id.as_str())
        .chain(like.split_whitespace())
        .find_map(|name| match name {
            "debian" | "ubuntu" | "raspbian" | "linuxmint" | "pop" => Some(LinuxFamily::Debian),
            "rhel" | "fedora" | "centos" | "rocky" | "almalinux" | "ol" | "amzn" => {
                Some(LinuxFamily::RedHat)
            }
            "suse" | "opensuse" | "sles" | "sled" | "opensuse-leap" | "opensuse-tumbleweed" => {
                Some(LinuxFamily::Suse)
            }
            "arch" | "manjaro" | "endeavouros" => Some(LinuxFamily::Arch),
            _ => None,
        })
}

fn detect_linux() -> Option<Box<dyn PatchBackend>> {
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let has_dpkg = Path::new("/var/lib/dpkg/status").is_file();
    let rpm_tool = || {
        ["dnf", "yum"]
            .into_iter()
            .find(|tool| runner::find_program(tool).is_some())
    };
    let apt = || -> Box<dyn PatchBackend> { Box::new(apt::AptBackend::new()) };
    let dnf = |tool| -> Box<dyn PatchBackend> { Box::new(dnf::DnfBackend::new(tool)) };
    let zypper = || -> Box<dyn PatchBackend> { Box::new(zypper::ZypperBackend::new()) };
    let pacman = || -> Box<dyn PatchBackend> { Box::new(pacman::PacmanBackend::new()) };
    let has = |tool: &str| runner::find_program(tool).is_some();

    // Trust os-release first, but only if its package manager is really here
    // (a Debian container with rpm installed must still be apt).
    let by_family = match linux_family(&os_release) {
        Some(LinuxFamily::Debian) if has_dpkg => Some(apt()),
        Some(LinuxFamily::RedHat) => rpm_tool().map(dnf),
        Some(LinuxFamily::Suse) if has("zypper") => Some(zypper()),
        Some(LinuxFamily::Arch) if has("pacman") => Some(pacman()),
        _ => None,
    };
    by_family.or_else(|| {
        if has_dpkg {
            Some(apt())
        } else if let Some(tool) = rpm_tool() {
            Some(dnf(tool))
        } else if has("zypper") {
            Some(zypper())
        } else if has("pacman") {
            Some(pacman())
        } else {
            None
        }
    })
}

/// The samples for one report. Unknown values are omitted rather than sent as
/// 0, so a rule never mistakes "cannot tell" for "all good".
pub fn to_samples(report: &PatchReport, now_ms: i64) -> Vec<Sample> {
    let sample =
        |metric, value| Sample::new(metric, value, now_ms).label("backend", report.backend);
    let mut samples = vec![sample("patch.pending", f64::from(report.pending))];
    if let Some(security) = report.security {
        samples.push(sample("patch.security", f64::from(security)));
    }
    if let Some(reboot) = report.reboot_required {
        samples.push(sample(
            "patch.reboot_required",
            if reboot { 1.0 } else { 0.0 },
        ));
    }
    if let Some(age) = report.last_update_age_days {
        samples.push(sample("patch.last_update_age_days", age));
    }
    if let Some(age) = report.lists_age_days {
        samples.push(sample("patch.lists_age_days", age));
    }
    samples
}

// ---- Small filesystem helpers shared by the backends. ----

/// Age of `time` at `now` in days; a timestamp in the future (clock skew)
/// counts as age 0 rather than a negative age.
pub(crate) fn age_days(time: SystemTime, now: SystemTime) -> f64 {
    now.duration_since(time)
        .map_or(0.0, |age| age.as_secs_f64() / 86_400.0)
}

pub(crate) fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

/// Newest modification time among `paths` that exist.
pub(crate) fn newest_mtime<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Option<SystemTime> {
    paths.into_iter().filter_map(mtime).max()
}

/// Newest modification time of files below `dir` (at most `depth` levels
/// down) whose name satisfies `wanted`. Unreadable directories are skipped:
/// this only ever feeds an informational age.
pub(crate) fn newest_mtime_below(
    dir: &Path,
    depth: usize,
    wanted: &dyn Fn(&str) -> bool,
) -> Option<SystemTime> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut newest = None;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let found = if file_type.is_dir() {
            if depth == 0 {
                None
            } else {
                newest_mtime_below(&path, depth - 1, wanted)
            }
        } else if wanted(&entry.file_name().to_string_lossy()) {
            mtime(&path)
        } else {
            None
        };
        newest = newest.max(found);
    }
    newest
}

/// The running kernel release as `uname -r` prints it, read from procfs so no
/// process is needed (Linux only; `None` elsewhere).
pub(crate) fn running_linux_kernel(root: &Path) -> Option<String> {
    let release = std::fs::read_to_string(root.join("proc/sys/kernel/osrelease")).ok()?;
    let release = release.trim();
    (!release.is_empty()).then(|| release.to_string())
}

/// Newest kernel among `/boot/vmlinuz-<release>` files. Kernel releases are
/// dotted/hyphenated numbers with suffixes, which Debian ordering ranks the
/// way people expect (`6.1.0-9` < `6.1.0-28`).
pub(crate) fn newest_boot_kernel(root: &Path) -> Option<String> {
    let entries = std::fs::read_dir(root.join("boot")).ok()?;
    let names: Vec<String> = entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    newest_kernel_from_boot_names(names.iter().map(String::as_str))
}

/// Pure part of `newest_boot_kernel`: picks the newest release out of
/// `/boot` file names, ignoring everything that is not a `vmlinuz-*` image.
pub fn newest_kernel_from_boot_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    names
        .into_iter()
        .filter_map(|name| name.strip_prefix("vmlinuz-"))
        .filter(|release| release.starts_with(|c: char| c.is_ascii_digit()))
        .max_by(|a, b| compare_debian_versions(a, b))
        .map(str::to_string)
}

/// Newest kernel among `/usr/lib/modules/<release>/` directories that still
/// hold a kernel image (`vmlinuz`), which is how Arch and recent Fedora
/// install kernels.
pub(crate) fn newest_modules_kernel(root: &Path) -> Option<String> {
    let entries = std::fs::read_dir(root.join("usr/lib/modules")).ok()?;
    entries
        .flatten()
        .filter(|entry| entry.path().join("vmlinuz").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .max_by(|a, b| compare_debian_versions(a, b))
}

/// Path of a fixture file, for tests of every backend.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/patch")
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> PatchReport {
        PatchReport {
            pending: 80,
            security: Some(23),
            reboot_required: Some(false),
            last_update_age_days: Some(1.5),
            lists_age_days: None,
            running_kernel: Some("6.1.0-21-amd64".into()),
            newest_installed_kernel: None,
            backend: "apt",
        }
    }

    #[test]
    fn samples_carry_the_backend_label_and_omit_unknown_values() {
        let samples = to_samples(&report(), 42);
        let got: Vec<(&str, f64)> = samples.iter().map(|s| (s.metric, s.value)).collect();
        assert_eq!(
            got,
            [
                ("patch.pending", 80.0),
                ("patch.security", 23.0),
                ("patch.reboot_required", 0.0),
                ("patch.last_update_age_days", 1.5),
            ]
        );
        for sample in &samples {
            assert_eq!(sample.labels, [("backend", "apt".to_string())]);
            assert_eq!(sample.timestamp_ms, 42);
        }
    }

    #[test]
    fn samples_report_reboot_as_one_and_skip_unclassified_security() {
        let report = PatchReport {
            security: None,
            reboot_required: Some(true),
            lists_age_days: Some(0.25),
            backend: "pacman",
            ..report()
        };
        let samples = to_samples(&report, 1);
        let value = |metric: &str| samples.iter().find(|s| s.metric == metric).map(|s| s.value);
        assert_eq!(value("patch.reboot_required"), Some(1.0));
        assert_eq!(value("patch.security"), None);
        assert_eq!(value("patch.lists_age_days"), Some(0.25));
        assert_eq!(samples[0].labels, [("backend", "pacman".to_string())]);
    }

    #[test]
    fn linux_family_follows_id_then_id_like() {
        let cases = [
            ("ID=debian\n", Some(LinuxFamily::Debian)),
            (
                "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n",
                Some(LinuxFamily::Debian),
            ),
            (
                "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n",
                Some(LinuxFamily::RedHat),
            ),
            ("ID=fedora\n", Some(LinuxFamily::RedHat)),
            (
                "ID=\"amzn\"\nID_LIKE=\"centos rhel fedora\"\n",
                Some(LinuxFamily::RedHat),
            ),
            (
                "ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n",
                Some(LinuxFamily::Suse),
            ),
            ("ID=\"sles\"\nID_LIKE=\"suse\"\n", Some(LinuxFamily::Suse)),
            ("ID=arch\n", Some(LinuxFamily::Arch)),
            ("ID=endeavouros\nID_LIKE=arch\n", Some(LinuxFamily::Arch)),
            ("ID=kali\nID_LIKE=debian\n", Some(LinuxFamily::Debian)),
            ("ID=alpine\n", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(linux_family(text), want, "{text:?}");
        }
    }

    #[test]
    fn ages_never_go_negative() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * 86_400);
        let then = SystemTime::UNIX_EPOCH + Duration::from_secs(7 * 86_400 + 43_200);
        assert_eq!(age_days(then, now), 2.5);
        assert_eq!(age_days(now + Duration::from_secs(60), now), 0.0);
    }

    #[test]
    fn newest_boot_kernel_ignores_other_files_and_orders_numerically() {
        let names = [
            "config-6.1.0-28-amd64",
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-28-amd64",
            "vmlinuz-6.1.0-21-amd64",
            "initrd.img-6.1.0-30-amd64",
            "vmlinuz",
        ];
        assert_eq!(
            newest_kernel_from_boot_names(names),
            Some("6.1.0-28-amd64".to_string())
        );
        assert_eq!(newest_kernel_from_boot_names([]), None);
    }

    #[test]
    fn empty_boot_directory_degrades_to_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("boot")).unwrap();
        assert_eq!(newest_boot_kernel(dir.path()), None);
        assert_eq!(newest_boot_kernel(&dir.path().join("missing")), None);
    }

    /// A backend whose command outlives the scan's timeout.
    struct SlowBackend;

    impl PatchBackend for SlowBackend {
        fn name(&self) -> &'static str {
            "slow"
        }

        fn report<'a>(
            &'a self,
            runner: &'a CommandRunner,
        ) -> BoxFuture<'a, Result<PatchReport, PatchError>> {
            Box::pin(async move {
                runner.run("sleep", &["5"]).await?;
                Err(PatchError::Parse {
                    program: "sleep",
                    detail: "should have timed out".into(),
                })
            })
        }
    }

    #[tokio::test]
    async fn scan_gives_up_at_the_timeout() {
        let timeout = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let error = scan(&SlowBackend, timeout).await.unwrap_err();
        assert!(
            matches!(error, PatchError::Timeout(t) if t == timeout),
            "{error:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// Guards the "skip nothing silently" rule: on a Debian-family host the
    /// detected backend must be apt, anywhere else it must not be.
    #[test]
    fn detect_matches_this_hosts_package_manager() {
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let debian_host = cfg!(target_os = "linux")
            && linux_family(&os_release) == Some(LinuxFamily::Debian)
            && Path::new("/var/lib/dpkg/status").is_file();
        let name = detect().map(|backend| backend.name());
        if debian_host {
            assert_eq!(name, Some("apt"));
        } else {
            assert_ne!(name, Some("apt"), "apt picked on a non-Debian host");
        }
    }
}
