//! Installed packages: which package manager the host uses, name → version
//! for every installed package, and a stable fingerprint of that list.
//!
//! dpkg's status file is read directly (fast, no process). rpm keeps its
//! database in SQLite/BerkeleyDB, which this crate cannot read, so `rpm -qa`
//! runs; pacman has `pacman -Q`, macOS `pkgutil --pkgs`. Every parser is a
//! plain function over the command's text output, tested with fixtures.
//!
//! A name installed in several versions at once (RHEL keeps three kernels;
//! rpm lists `gpg-pubkey` once per key) keeps all of them, sorted and joined
//! with `", "`, so that the map stays name → version without losing any.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use super::{InventoryError, command};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    Dpkg,
    Rpm,
    Pacman,
    Pkgutil,
}

impl PackageManager {
    /// The value of the `package_manager` fact.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dpkg => "dpkg",
            Self::Rpm => "rpm",
            Self::Pacman => "pacman",
            Self::Pkgutil => "pkgutil",
        }
    }
}

/// Which package manager owns the system under `root`, judged by its
/// database on disk. dpkg is checked first because Debian hosts can have the
/// `rpm` tool (and its directory) installed, while the reverse is rare.
pub fn detect(root: &Path) -> Option<PackageManager> {
    if cfg!(target_os = "macos") {
        return Some(PackageManager::Pkgutil);
    }
    if root.join("var/lib/dpkg/status").is_file() {
        Some(PackageManager::Dpkg)
    } else if root.join("var/lib/rpm").is_dir() || root.join("usr/lib/sysimage/rpm").is_dir() {
        // Fedora 36+ and openSUSE moved the database to /usr/lib/sysimage.
        Some(PackageManager::Rpm)
    } else if root.join("var/lib/pacman/local").is_dir() {
        Some(PackageManager::Pacman)
    } else {
        None
    }
}

/// What [`read_installed`] found: who manages the packages, and which are
/// installed (name → version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackages {
    pub manager: PackageManager,
    pub packages: BTreeMap<String, String>,
}

/// The installed packages of the system under `root`, or `None` when no
/// known package manager is present (Windows, Alpine, ...).
pub fn read_installed(root: &Path) -> Result<Option<InstalledPackages>, InventoryError> {
    let Some(manager) = detect(root) else {
        return Ok(None);
    };
    let is_host_root = root == Path::new("/");
    let packages = match manager {
        PackageManager::Dpkg => read_dpkg(root)?,
        PackageManager::Rpm => {
            let mut args: Vec<OsString> = Vec::new();
            if !is_host_root {
                args.extend(["--root".into(), root.as_os_str().to_owned()]);
            }
            args.extend([
                "-qa".into(),
                "--queryformat".into(),
                "%{NAME}\t%{VERSION}-%{RELEASE}\n".into(),
            ]);
            parse_rpm_query(&command::run("rpm", &args, command::DEFAULT_TIMEOUT)?)
        }
        PackageManager::Pacman => {
            let mut args: Vec<OsString> = Vec::new();
            if !is_host_root {
                args.extend(["--dbpath".into(), root.join("var/lib/pacman").into()]);
            }
            args.push("-Q".into());
            parse_pacman_query(&command::run("pacman", &args, command::DEFAULT_TIMEOUT)?)
        }
        PackageManager::Pkgutil => parse_pkgutil_pkgs(&command::run(
            "pkgutil",
            &["--pkgs"],
            command::DEFAULT_TIMEOUT,
        )?),
    };
    Ok(Some(InstalledPackages { manager, packages }))
}

/// Installed packages from `var/lib/dpkg/status` under `root`.
pub fn read_dpkg(root: &Path) -> Result<BTreeMap<String, String>, InventoryError> {
    let path = root.join("var/lib/dpkg/status");
    // Lossy: a stray non-UTF-8 byte in some maintainer's name must not lose
    // the whole list.
    let bytes = std::fs::read(&path).map_err(|source| InventoryError::Read { path, source })?;
    Ok(parse_dpkg_status(&String::from_utf8_lossy(&bytes)))
}

/// Parses dpkg's status file (deb822 paragraphs). Only installed packages
/// count: the status word (third word of `Status:`) must be `installed`, so
/// held packages (`hold ok installed`) are included and removed-but-configured
/// (`deinstall ok config-files`) or half-installed ones are not. A name
/// installed for two architectures (multiarch `libc6:amd64` and
/// `libc6:i386`) is keyed `name:arch`; otherwise the plain name is used.
pub fn parse_dpkg_status(text: &str) -> BTreeMap<String, String> {
    #[derive(Default)]
    struct Paragraph<'a> {
        package: Option<&'a str>,
        version: Option<&'a str>,
        architecture: Option<&'a str>,
        installed: bool,
    }
    impl<'a> Paragraph<'a> {
        /// `(name, architecture, version)` if this package is installed.
        fn installed(&self) -> Option<(&'a str, &'a str, &'a str)> {
            match (self.installed, self.package, self.version) {
                (true, Some(name), Some(version)) => {
                    Some((name, self.architecture.unwrap_or(""), version))
                }
                _ => None,
            }
        }
    }
    let mut installed: Vec<(&str, &str, &str)> = Vec::new();

    let mut paragraph = Paragraph::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            installed.extend(std::mem::take(&mut paragraph).installed());
            continue;
        }
        // Continuation lines (descriptions, conffiles) start with whitespace.
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        // Field names are case-insensitive in deb822.
        match field.to_ascii_lowercase().as_str() {
            "package" => paragraph.package = Some(value),
            "version" => paragraph.version = Some(value),
            "architecture" => paragraph.architecture = Some(value),
            "status" => paragraph.installed = value.split_whitespace().nth(2) == Some("installed"),
            _ => {}
        }
    }
    installed.extend(paragraph.installed());

    let mut architectures: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, _, _) in &installed {
        *architectures.entry(name).or_default() += 1;
    }
    let mut packages = BTreeMap::new();
    for (name, arch, version) in installed {
        let key = if architectures[name] > 1 && !arch.is_empty() {
            format!("{name}:{arch}")
        } else {
            name.to_string()
        };
        add_version(&mut packages, key, version);
    }
    packages
}

/// Parses `rpm -qa --queryformat '%{NAME}\t%{VERSION}-%{RELEASE}\n'`.
pub fn parse_rpm_query(text: &str) -> BTreeMap<String, String> {
    let mut packages = BTreeMap::new();
    for line in text.lines() {
        if let Some((name, version)) = line.split_once('\t') {
            let (name, version) = (name.trim(), version.trim());
            if !name.is_empty() {
                add_version(&mut packages, name.to_string(), version);
            }
        }
    }
    packages
}

/// Parses `pacman -Q`: one `name version` per line.
pub fn parse_pacman_query(text: &str) -> BTreeMap<String, String> {
    let mut packages = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some(name), Some(version), None) = (words.next(), words.next(), words.next()) {
            add_version(&mut packages, name.to_string(), version);
        }
    }
    packages
}

/// Parses `pkgutil --pkgs`: one receipt id per line. pkgutil lists no
/// versions (getting them costs one `pkgutil --pkg-info` process per
/// receipt), so the version is empty.
pub fn parse_pkgutil_pkgs(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| (id.to_string(), String::new()))
        .collect()
}

/// Records `version` for `name`, joining several versions of one name.
fn add_version(packages: &mut BTreeMap<String, String>, name: String, version: &str) {
    let entry = packages.entry(name).or_default();
    if entry.is_empty() {
        *entry = version.to_string();
        return;
    }
    let mut versions: Vec<&str> = entry.split(", ").chain([version]).collect();
    versions.sort_unstable();
    versions.dedup();
    *entry = versions.join(", ");
}

pub use steward_core::inventory::packages_fingerprint;

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory")
    }

    fn fixture(name: &str) -> String {
        let path = fixtures().join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_installed_packages_from_the_dpkg_status_excerpt() {
        let packages = read_dpkg(&fixtures().join("root")).unwrap();
        assert_eq!(
            packages,
            map(&[
                ("base-files", "12.4+deb12u11"),
                ("bash", "5.2.15-2+b8"),
                ("ca-certificates", "20230311+deb12u1"),
                // Installed for two architectures: both keyed by arch.
                ("libc6:amd64", "2.36-9+deb12u14"),
                ("libc6:i386", "2.36-9+deb12u14"),
                ("libssl3", "3.0.19-1~deb12u2"),
                // Held with apt-mark hold: still installed.
                ("openssl", "3.0.19-1~deb12u2"),
                ("tzdata", "2025b-0+deb12u2"),
                ("zlib1g", "1:1.2.13.dfsg-1"),
            ])
        );
    }

    #[test]
    fn skips_packages_that_are_not_installed() {
        let text = "Package: removed\nStatus: deinstall ok config-files\nVersion: 1\n\n\
                    Package: purged\nStatus: purge ok not-installed\n\n\
                    Package: half\nStatus: install reinstreq half-installed\nVersion: 2\n\n\
                    Package: unpacked\nStatus: install ok unpacked\nVersion: 3\n\n\
                    Package: ok\nStatus: install ok installed\nVersion: 4\nArchitecture: all\n";
        assert_eq!(parse_dpkg_status(text), map(&[("ok", "4")]));
    }

    #[test]
    fn a_second_architecture_only_matters_when_installed() {
        let text = "Package: libfoo\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\n\
                    Package: libfoo\nStatus: deinstall ok config-files\nArchitecture: i386\nVersion: 1\n";
        assert_eq!(parse_dpkg_status(text), map(&[("libfoo", "1")]));
    }

    #[test]
    fn parses_rpm_query_output() {
        let packages = parse_rpm_query(&fixture("packages/rpm-qa-rocky9.txt"));
        assert_eq!(packages["bash"], "5.1.8-9.el9");
        assert_eq!(packages["openssl-libs"], "3.0.7-27.el9");
        // Three kernels installed side by side keep all three versions.
        assert_eq!(
            packages["kernel-core"],
            "5.14.0-362.24.1.el9_3, 5.14.0-427.13.1.el9_4, 5.14.0-427.18.1.el9_4"
        );
        // glibc for x86_64 and i686 at the same version counts once.
        assert_eq!(packages["glibc"], "2.34-100.el9_4.2");
        let lines = fixture("packages/rpm-qa-rocky9.txt").lines().count();
        assert!(packages.len() < lines, "duplicates were merged");
    }

    #[test]
    fn parses_pacman_query_output() {
        let packages = parse_pacman_query(&fixture("packages/pacman-Q-arch.txt"));
        assert_eq!(packages["linux"], "6.9.7.arch1-1");
        assert_eq!(packages["glibc"], "2.39+r52+gf8e4623421-1");
        assert_eq!(packages["python"], "3.12.4-1");
        assert_eq!(
            packages.len(),
            fixture("packages/pacman-Q-arch.txt").lines().count()
        );
    }

    #[test]
    fn parses_pkgutil_receipts_without_versions() {
        let packages = parse_pkgutil_pkgs(&fixture("macos/pkgutil-pkgs.txt"));
        assert_eq!(packages["com.apple.pkg.CLTools_Executables"], "");
        assert!(packages.contains_key("com.microsoft.package.Microsoft_Word.app"));
        assert!(packages.values().all(String::is_empty));
    }

    #[test]
    fn ignores_malformed_lines() {
        assert_eq!(
            parse_rpm_query("no tab here\n\t1.0\nok\t1-1\n"),
            map(&[("ok", "1-1")])
        );
        assert_eq!(
            parse_pacman_query("error: database not found\nok 1-1\nonlyname\n"),
            map(&[("ok", "1-1")])
        );
    }

    #[test]
    fn detects_the_package_manager_from_its_database() {
        assert_eq!(detect(&fixtures().join("root")), Some(PackageManager::Dpkg));
        let root = tempfile::tempdir().unwrap();
        assert_eq!(detect(root.path()), None);
        assert!(read_installed(root.path()).unwrap().is_none());
        std::fs::create_dir_all(root.path().join("var/lib/pacman/local")).unwrap();
        assert_eq!(detect(root.path()), Some(PackageManager::Pacman));
        std::fs::create_dir_all(root.path().join("usr/lib/sysimage/rpm")).unwrap();
        assert_eq!(detect(root.path()), Some(PackageManager::Rpm));
    }

    #[test]
    fn rpm_missing_on_an_rpm_root_is_an_error_not_an_empty_list() {
        // This Debian machine has no rpm binary; an empty list would look
        // like "every package was removed".
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("var/lib/rpm")).unwrap();
        let error = read_installed(root.path()).unwrap_err();
        assert!(matches!(error, InventoryError::Spawn { .. }), "{error}");
    }
}
