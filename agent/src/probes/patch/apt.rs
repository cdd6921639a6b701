//! Debian/Ubuntu patch level, read from dpkg's and apt's own files.
//!
//! Fast path (no subprocess, no network, no lock): the installed set comes
//! from `/var/lib/dpkg/status`, the available versions from the
//! `*_Packages[.lz4]` indexes in `/var/lib/apt/lists/`, and each index's origin
//! from the `*_InRelease`/`*_Release` file of the same repository. A package is
//! pending when some index offers a version newer than the installed one, and
//! a security update when such a version comes from a security suite. Only
//! the lists of sources configured in `/etc/apt/sources.list{,.d/}` count, as
//! in apt: a disabled repository's lists stay on disk until the next update.
//! Reading
//! the files takes a fraction of a second where `apt-get -s upgrade` takes
//! seconds and ~80 MB, because images often disable apt's binary cache.
//!
//! Fallback: when an index uses a compression this module cannot read (gzip,
//! xz, zstd), `apt-get -s upgrade` is run and its `Inst` lines are counted.
//!
//! What it must never do: run `apt-get update` or anything that takes apt's
//! lock. The counts are as fresh as the host's last `apt-get update`, which
//! [`PatchReport::lists_age_days`] reports.
//!
//! Simplifications, chosen to match `apt-get upgrade` closely without
//! reimplementing apt's policy engine:
//! - pinning in `/etc/apt/preferences*` and phased updates are ignored;
//! - repositories marked `NotAutomatic: yes` (experimental, backports) are
//!   ignored, as apt ignores them for packages installed from elsewhere;
//! - held packages (`hold` in dpkg's status) are not counted: nothing will
//!   upgrade them until an administrator releases the hold;
//! - "security" follows Ubuntu's `apt_check.py`: any version newer than the
//!   installed one in a security suite, even if a later point release carries
//!   the same fix. `apt-get -s` (the fallback) only names the origins of the
//!   final candidate, so it can count fewer.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::{
    BoxFuture, CommandRunner, PatchBackend, PatchError, PatchReport, age_days,
    compare_debian_versions, mtime, newest_boot_kernel, newest_mtime, running_linux_kernel,
};

const NAME: &str = "apt";

/// Reads the patch level of the Debian-family system rooted at `root`.
#[derive(Debug, Clone)]
pub struct AptBackend {
    /// `/` in production; a fixture tree in tests. Every path is below it.
    root: PathBuf,
}

/// The fast path's outcome: a report, or the index it could not read (and so
/// the reason to fall back to `apt-get`).
#[derive(Debug, Clone, PartialEq)]
pub enum FastPath {
    Report(PatchReport),
    UnreadableIndex(PathBuf),
}

impl Default for AptBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl AptBackend {
    pub fn new() -> Self {
        Self::with_root("/")
    }

    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dpkg_status(&self) -> PathBuf {
        self.root.join("var/lib/dpkg/status")
    }

    fn lists_dir(&self) -> PathBuf {
        self.root.join("var/lib/apt/lists")
    }

    /// The whole report from files alone. Blocking (it reads ~50 MB on a
    /// full Debian mirror list); call it off the async runtime. Gives up with
    /// [`PatchError::DeadlinePassed`] once `deadline` has passed.
    pub fn read_fast(&self, now: SystemTime, deadline: Instant) -> Result<FastPath, PatchError> {
        let installed = self.read_installed()?;
        let indexes = self.package_indexes()?;
        if let Some(index) = indexes
            .iter()
            .find(|index| index.compression == Compression::Unsupported)
        {
            return Ok(FastPath::UnreadableIndex(index.path.clone()));
        }
        let counts = count_upgrades(&installed, &indexes, deadline)?;
        Ok(FastPath::Report(self.report_with(counts, &installed, now)))
    }

    /// The report from `apt-get -s upgrade`, for hosts whose lists the fast
    /// path cannot read. Only meaningful for the running system (`/`).
    pub async fn read_via_apt_get(
        &self,
        runner: &CommandRunner,
    ) -> Result<PatchReport, PatchError> {
        let output = runner
            .run(
                "apt-get",
                // NoLocking: a simulation must not contend with (or wait for)
                // unattended-upgrades holding the dpkg lock.
                &["-s", "-o", "Debug::NoLocking=true", "upgrade"],
            )
            .await?
            .accept(&[0])?;
        let simulated = parse_apt_get_simulation(&output.stdout);
        let counts = UpgradeCounts {
            pending: count(simulated.iter().filter(|install| install.is_upgrade())),
            security: count(
                simulated
                    .iter()
                    .filter(|install| install.is_upgrade() && install.is_security()),
            ),
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let installed = this.read_installed()?;
            Ok(this.report_with(counts, &installed, SystemTime::now()))
        })
        .await
        .map_err(|error| PatchError::Task(error.to_string()))?
    }

    fn read_installed(&self) -> Result<Vec<InstalledPackage>, PatchError> {
        let path = self.dpkg_status();
        let bytes = std::fs::read(&path).map_err(|source| PatchError::Read { path, source })?;
        Ok(parse_dpkg_status(&String::from_utf8_lossy(&bytes)))
    }

    /// The configured `deb` sources: `sources.list`, `sources.list.d/*.list`
    /// and `sources.list.d/*.sources`. Unreadable files are skipped (their
    /// repositories then do not count), as apt would fail on them anyway.
    fn sources(&self) -> Vec<SourceEntry> {
        let etc = self.root.join("etc/apt");
        let mut sources = Vec::new();
        if let Ok(text) = std::fs::read_to_string(etc.join("sources.list")) {
            sources.extend(parse_sources_list(&text));
        }
        let mut parts: Vec<PathBuf> = std::fs::read_dir(etc.join("sources.list.d"))
            .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
            .unwrap_or_default();
        parts.sort();
        for path in parts {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            // apt reads only these two extensions; `*.list.disabled`,
            // `*.dpkg-old` and the like are ignored.
            match path.extension().and_then(|extension| extension.to_str()) {
                Some("list") => sources.extend(parse_sources_list(&text)),
                Some("sources") => sources.extend(parse_deb822_sources(&text)),
                _ => {}
            }
        }
        sources
    }

    /// The lists files that belong to configured sources. apt ignores the
    /// rest (left behind by a removed or disabled repository until the next
    /// `apt-get update` cleans them up), and so must this count.
    fn active_list_files(&self) -> Result<Vec<String>, PatchError> {
        let dir = self.lists_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(PatchError::Read { path: dir, source }),
        };
        let sources: Vec<ListFiles> = self.sources().iter().map(SourceEntry::list_files).collect();
        let mut names: Vec<String> = entries
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| sources.iter().any(|source| source.contains(name)))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The `*_Packages` indexes of configured sources, with their
    /// repository's security/automatic flags. A missing lists directory means
    /// no indexes (a freshly built image), not an error.
    fn package_indexes(&self) -> Result<Vec<PackageIndex>, PatchError> {
        let dir = self.lists_dir();
        let names = self.active_list_files()?;
        let releases: Vec<(&str, ReleaseInfo)> = names
            .iter()
            .filter_map(|name| {
                let prefix = name
                    .strip_suffix("InRelease")
                    .or_else(|| name.strip_suffix("Release"))?;
                // Read failures leave the origin unknown; the file name still
                // classifies the index below.
                let text = std::fs::read(dir.join(name)).ok()?;
                Some((prefix, parse_release(&String::from_utf8_lossy(&text))))
            })
            .collect();
        let mut indexes = Vec::new();
        for name in &names {
            let Some(compression) = packages_index_compression(name) else {
                continue;
            };
            // The index belongs to the release whose file name is its longest
            // prefix (`..._dists_bookworm_` is not a prefix of
            // `..._dists_bookworm-updates_...`, thanks to the separator).
            let release = releases
                .iter()
                .filter(|(prefix, _)| name.starts_with(prefix))
                .max_by_key(|(prefix, _)| prefix.len())
                .map(|(_, release)| release);
            let security = match release {
                Some(release) => release.is_security(),
                None => name.contains("security"),
            };
            let automatic = release.is_none_or(|release| !release.not_automatic);
            indexes.push(PackageIndex {
                path: dir.join(name),
                compression,
                security,
                automatic,
            });
        }
        indexes.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(indexes)
    }

    fn report_with(
        &self,
        counts: UpgradeCounts,
        installed: &[InstalledPackage],
        now: SystemTime,
    ) -> PatchReport {
        let lists_dir = self.lists_dir();
        let release_files: Vec<PathBuf> = self
            .active_list_files()
            .unwrap_or_default()
            .into_iter()
            .filter(|name| name.ends_with("_InRelease") || name.ends_with("_Release"))
            .map(|name| lists_dir.join(name))
            .collect();
        PatchReport {
            pending: counts.pending,
            security: Some(counts.security),
            reboot_required: Some(self.reboot_required()),
            // dpkg rewrites its status file on every install, upgrade and
            // removal: the best "last changed" signal that needs no log parsing
            // (history.log dates are local time without a zone).
            last_update_age_days: mtime(&self.dpkg_status()).map(|time| age_days(time, now)),
            // apt sets a list file's mtime from the mirror's Last-Modified, so
            // this is the age of the newest metadata the host has: if it is
            // old, `apt-get update` has not run (or found nothing) since.
            lists_age_days: newest_mtime(release_files.iter().map(PathBuf::as_path))
                .map(|time| age_days(time, now)),
            running_kernel: running_linux_kernel(&self.root),
            newest_installed_kernel: newest_kernel_from_dpkg(installed)
                .or_else(|| newest_boot_kernel(&self.root)),
            backend: NAME,
        }
    }

    /// Debian's update-notifier and unattended-upgrades create the flag file;
    /// without it nothing on a Debian-family host claims a reboot is due.
    fn reboot_required(&self) -> bool {
        ["var/run/reboot-required", "run/reboot-required"]
            .iter()
            .any(|flag| self.root.join(flag).exists())
    }
}

impl PatchBackend for AptBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn report<'a>(
        &'a self,
        runner: &'a CommandRunner,
    ) -> BoxFuture<'a, Result<PatchReport, PatchError>> {
        Box::pin(async move {
            let this = self.clone();
            let deadline = runner.deadline();
            let fast =
                tokio::task::spawn_blocking(move || this.read_fast(SystemTime::now(), deadline))
                    .await
                    .map_err(|error| PatchError::Task(error.to_string()))??;
            match fast {
                FastPath::Report(report) => Ok(report),
                FastPath::UnreadableIndex(path) if self.root == Path::new("/") => {
                    tracing::debug!(
                        message = "Apt lists are not readable in-process; running apt-get -s.",
                        index = %path.display()
                    );
                    self.read_via_apt_get(runner).await
                }
                FastPath::UnreadableIndex(path) => Err(PatchError::Read {
                    path,
                    source: io::Error::new(io::ErrorKind::Unsupported, "unsupported compression"),
                }),
            }
        })
    }
}

// ---- dpkg status ----

/// One package dpkg considers installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackage {
    pub name: String,
    pub arch: String,
    pub version: String,
    /// Marked `hold`: apt will not upgrade it.
    pub held: bool,
}

/// Parses `/var/lib/dpkg/status`, keeping packages whose files are on disk
/// (every state except `not-installed` and `config-files`).
pub fn parse_dpkg_status(text: &str) -> Vec<InstalledPackage> {
    let mut packages = Vec::new();
    for stanza in stanzas(text) {
        let (mut name, mut arch, mut version, mut status) = (None, None, None, None);
        for line in stanza.lines() {
            if let Some((key, value)) = line.split_once(": ") {
                match key {
                    "Package" => name = Some(value.trim()),
                    "Architecture" => arch = Some(value.trim()),
                    "Version" => version = Some(value.trim()),
                    "Status" => status = Some(value.trim()),
                    _ => {}
                }
            }
        }
        let (Some(name), Some(arch), Some(version), Some(status)) = (name, arch, version, status)
        else {
            continue;
        };
        // "want flag state", e.g. "install ok installed", "hold ok installed",
        // "deinstall ok config-files".
        let mut words = status.split_whitespace();
        let want = words.next().unwrap_or_default();
        let state = words.nth(1).unwrap_or_default();
        if matches!(state, "not-installed" | "config-files" | "") {
            continue;
        }
        packages.push(InstalledPackage {
            name: name.to_string(),
            arch: arch.to_string(),
            version: version.to_string(),
            held: want == "hold",
        });
    }
    packages
}

/// Splits deb822 text into paragraphs separated by blank lines.
fn stanzas(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n")
        .filter(|stanza| !stanza.trim().is_empty())
}

/// The newest kernel release among installed `linux-image-<release>`
/// packages, e.g. `6.1.0-28-amd64`, comparable to `uname -r`. Meta packages
/// (`linux-image-amd64`) and debug symbols are skipped; Ubuntu's
/// `linux-image-unsigned-*` and Debian's `*-unsigned` name the same release.
pub fn newest_kernel_from_dpkg(installed: &[InstalledPackage]) -> Option<String> {
    installed
        .iter()
        .filter_map(|package| {
            let release = package.name.strip_prefix("linux-image-")?;
            let release = release.strip_prefix("unsigned-").unwrap_or(release);
            if release.ends_with("-dbg") || release.ends_with("-dbgsym") {
                return None;
            }
            let release = release.strip_suffix("-unsigned").unwrap_or(release);
            release
                .starts_with(|c: char| c.is_ascii_digit())
                .then_some((release, package.version.as_str()))
        })
        .max_by(|(release_a, version_a), (release_b, version_b)| {
            compare_debian_versions(version_a, version_b)
                .then_with(|| compare_debian_versions(release_a, release_b))
        })
        .map(|(release, _)| release.to_string())
}

// ---- Sources ----

/// One `deb` line (or one URI × suite of a deb822 stanza).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    pub uri: String,
    /// A distribution (`bookworm-security`), or a path ending in `/` for a
    /// flat repository.
    pub suite: String,
    pub components: Vec<String>,
}

impl SourceEntry {
    /// Where this source's files live in `/var/lib/apt/lists/`.
    pub fn list_files(&self) -> ListFiles {
        let base = if self.uri.ends_with('/') {
            self.uri.clone()
        } else {
            format!("{}/", self.uri)
        };
        if self.suite.ends_with('/') {
            // Flat repository: `example.org_repo_._InRelease`,
            // `example.org_repo_._Packages`.
            let prefix = uri_to_file_name(&format!("{base}{}", self.suite));
            return ListFiles {
                release_prefix: prefix.clone(),
                index_prefixes: vec![prefix],
            };
        }
        let release = format!("{base}dists/{}/", self.suite);
        ListFiles {
            release_prefix: uri_to_file_name(&release),
            index_prefixes: self
                .components
                .iter()
                .map(|component| uri_to_file_name(&format!("{release}{component}/")))
                .collect(),
        }
    }
}

/// File-name prefixes of one source in `/var/lib/apt/lists/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFiles {
    /// `<prefix>InRelease` / `<prefix>Release`, e.g. `..._dists_bookworm_`.
    pub release_prefix: String,
    /// One per component, e.g. `..._dists_bookworm_main_`.
    pub index_prefixes: Vec<String>,
}

impl ListFiles {
    pub fn contains(&self, name: &str) -> bool {
        let is_release = name
            .strip_prefix(self.release_prefix.as_str())
            .is_some_and(|rest| rest == "InRelease" || rest == "Release");
        is_release
            || self
                .index_prefixes
                .iter()
                .any(|prefix| name.starts_with(prefix.as_str()))
    }
}

/// apt's `URItoFileName`: drop the scheme and any credentials, percent-escape
/// the characters apt escapes (lower-case hex), then turn `/` into `_`.
/// `https://deb.nodesource.com/node_20.x/dists/nodistro/` becomes
/// `deb.nodesource.com_node%5f20.x_dists_nodistro_`.
///
/// Written out rather than done with `percent-encoding`: apt's set of escaped
/// characters is its own (it includes `_` and `~`), and the crate writes
/// upper-case hex where apt's file names have lower case.
pub fn uri_to_file_name(uri: &str) -> String {
    let without_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let without_scheme = match uri.split_once(':') {
        // `file:/srv/repo`, `cdrom:[...]/`: no `//` after the scheme.
        Some((scheme, rest)) if !uri.contains("://") && !scheme.contains('/') => {
            rest.trim_start_matches('/')
        }
        _ => without_scheme,
    };
    let (host, path) = without_scheme
        .split_once('/')
        .unwrap_or((without_scheme, ""));
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    let mut name = String::with_capacity(uri.len());
    for byte in format!("{host}/{path}").bytes() {
        if byte <= 0x20 || byte >= 0x7F || br#"\|{}[]<>"^~_=!@#$%^&*"#.contains(&byte) {
            name.push_str(&format!("%{byte:02x}"));
        } else if byte == b'/' {
            name.push('_');
        } else {
            name.push(char::from(byte));
        }
    }
    name
}

/// Parses one-line-style sources (`sources.list`, `*.list`): `deb [options]
/// uri suite [component...]`. `deb-src` and comments are skipped.
pub fn parse_sources_list(text: &str) -> Vec<SourceEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or_default().trim();
            let rest = line.strip_prefix("deb")?;
            if !rest.starts_with([' ', '\t']) {
                return None; // deb-src
            }
            let mut rest = rest.trim_start();
            if let Some(options) = rest.strip_prefix('[') {
                rest = options.split_once(']')?.1.trim_start();
            }
            let mut words = rest.split_whitespace();
            let uri = words.next()?.to_string();
            let suite = words.next()?.to_string();
            Some(SourceEntry {
                uri,
                suite,
                components: words.map(str::to_string).collect(),
            })
        })
        .collect()
}

/// Parses deb822-style sources (`*.sources`): one stanza per source group,
/// with `Types`, `URIs`, `Suites`, `Components` and optional `Enabled: no`.
/// Continuation lines (an inline `Signed-By` key) and comments are skipped.
pub fn parse_deb822_sources(text: &str) -> Vec<SourceEntry> {
    let mut entries = Vec::new();
    let text = text.replace("\r\n", "\n");
    for stanza in stanzas(&text) {
        let mut fields: HashMap<String, String> = HashMap::new();
        let mut current: Option<String> = None;
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                // Continuation: only lists (URIs, Suites, ...) matter here.
                if let Some(value) = current.as_ref().and_then(|key| fields.get_mut(key)) {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                let key = key.trim().to_ascii_lowercase();
                fields.insert(key.clone(), value.trim().to_string());
                current = Some(key);
            }
        }
        let list = |key: &str| -> Vec<String> {
            fields
                .get(key)
                .map(|value| value.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let enabled = fields
            .get("enabled")
            .is_none_or(|value| !value.eq_ignore_ascii_case("no"));
        if !enabled || !list("types").iter().any(|kind| kind == "deb") {
            continue;
        }
        let components = list("components");
        for uri in list("uris") {
            for suite in list("suites") {
                entries.push(SourceEntry {
                    uri: uri.clone(),
                    suite,
                    components: components.clone(),
                });
            }
        }
    }
    entries
}

// ---- Release files ----

/// The fields of a `Release`/`InRelease` file that say where an index comes
/// from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseInfo {
    pub origin: Option<String>,
    pub label: Option<String>,
    pub suite: Option<String>,
    pub codename: Option<String>,
    /// Experimental and backports: apt never picks their versions on its own.
    pub not_automatic: bool,
}

impl ReleaseInfo {
    /// Debian (`bookworm-security`, label `Debian-Security`) and Ubuntu
    /// (`jammy-security`) both name the security suite so.
    pub fn is_security(&self) -> bool {
        let suite_is_security = [&self.suite, &self.codename]
            .into_iter()
            .flatten()
            .any(|name| name.ends_with("-security"));
        let label_is_security = self
            .label
            .as_deref()
            .is_some_and(|label| label.to_ascii_lowercase().contains("security"));
        suite_is_security || label_is_security
    }
}

/// Parses the header of a (clear-signed) Release file; the hash lists and
/// the signature are ignored.
pub fn parse_release(text: &str) -> ReleaseInfo {
    let mut release = ReleaseInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        let value = value.trim();
        let slot = match key {
            "Origin" => &mut release.origin,
            "Label" => &mut release.label,
            "Suite" => &mut release.suite,
            "Codename" => &mut release.codename,
            "NotAutomatic" => {
                release.not_automatic = value.eq_ignore_ascii_case("yes");
                continue;
            }
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.to_string());
        }
    }
    release
}

// ---- Packages indexes ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Lz4,
    /// gzip, xz, zstd, bzip2, lzma: readable by apt, not by this module.
    Unsupported,
}

#[derive(Debug, Clone)]
struct PackageIndex {
    path: PathBuf,
    compression: Compression,
    /// From a security suite: a newer version here is a security update.
    security: bool,
    /// False for `NotAutomatic` suites, whose versions apt does not offer.
    automatic: bool,
}

/// Whether a lists file name is a binary `Packages` index, and how it is
/// compressed. `Sources`, `Translation-*`, `Contents-*`, `dep11` and
/// `.diff_Index` files are not.
fn packages_index_compression(name: &str) -> Option<Compression> {
    let (_, suffix) = name.rsplit_once("_Packages")?;
    match suffix {
        "" => Some(Compression::None),
        ".lz4" => Some(Compression::Lz4),
        ".gz" | ".xz" | ".zst" | ".bz2" | ".lzma" => Some(Compression::Unsupported),
        _ => None,
    }
}

/// Calls `visit(package, architecture, version)` for every paragraph of a
/// `Packages` index, streaming (the Debian main index is ~50 MB). Stops early
/// when `visit` breaks. Returns the number of paragraphs seen.
pub fn for_each_package_version(
    mut reader: impl BufRead,
    mut visit: impl FnMut(&str, &str, &str) -> ControlFlow<()>,
) -> io::Result<u64> {
    let mut line = Vec::with_capacity(256);
    let (mut name, mut arch, mut version) = (String::new(), String::new(), String::new());
    let mut paragraphs = 0;
    let mut flush = |name: &mut String, arch: &mut String, version: &mut String| {
        let mut flow = ControlFlow::Continue(());
        if !name.is_empty() {
            paragraphs += 1;
            if !arch.is_empty() && !version.is_empty() {
                flow = visit(name, arch, version);
            }
        }
        name.clear();
        arch.clear();
        version.clear();
        flow
    };
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        let content = line.trim_ascii_end();
        if read == 0 || content.is_empty() {
            if flush(&mut name, &mut arch, &mut version).is_break() || read == 0 {
                break;
            }
            continue;
        }
        let field = |prefix: &[u8]| {
            content
                .strip_prefix(prefix)
                .and_then(|value| std::str::from_utf8(value).ok())
        };
        if let Some(value) = field(b"Package: ") {
            name.push_str(value.trim());
        } else if let Some(value) = field(b"Architecture: ") {
            arch.push_str(value.trim());
        } else if let Some(value) = field(b"Version: ") {
            version.push_str(value.trim());
        }
    }
    Ok(paragraphs)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct UpgradeCounts {
    pending: u32,
    security: u32,
}

fn count(iter: impl Iterator) -> u32 {
    u32::try_from(iter.count()).unwrap_or(u32::MAX)
}

/// Compares every installed package against every automatic index.
fn count_upgrades(
    installed: &[InstalledPackage],
    indexes: &[PackageIndex],
    deadline: Instant,
) -> Result<UpgradeCounts, PatchError> {
    // Architecture `all` is installed and offered under the native
    // architecture's name too (a package may switch between the two), and
    // dpkg itself is always native.
    let native = installed
        .iter()
        .find(|package| package.name == "dpkg")
        .map(|package| package.arch.as_str());
    let normalise = |arch: &'_ str| -> String {
        match (arch, native) {
            ("all", Some(native)) => native.to_string(),
            _ => arch.to_string(),
        }
    };
    let installed_arch: Vec<String> = installed
        .iter()
        .map(|package| normalise(&package.arch))
        .collect();
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (id, package) in installed.iter().enumerate() {
        by_name.entry(package.name.as_str()).or_default().push(id);
    }
    let mut newer = vec![false; installed.len()];
    let mut security_newer = vec![false; installed.len()];
    let mut timed_out = false;

    for index in indexes.iter().filter(|index| index.automatic) {
        if Instant::now() > deadline {
            return Err(PatchError::DeadlinePassed);
        }
        let reader = open_index(&index.path, index.compression)?;
        let mut seen = 0u32;
        let visit = |name: &str, arch: &str, version: &str| {
            seen = seen.wrapping_add(1);
            // The deadline is checked every few thousand paragraphs, so a
            // huge index on a slow disk cannot overrun the scan by much.
            if seen.is_multiple_of(4096) && Instant::now() > deadline {
                timed_out = true;
                return ControlFlow::Break(());
            }
            let Some(ids) = by_name.get(name) else {
                return ControlFlow::Continue(());
            };
            let arch = normalise(arch);
            for &id in ids {
                if installed_arch[id] == arch
                    && compare_debian_versions(version, &installed[id].version)
                        == std::cmp::Ordering::Greater
                {
                    newer[id] = true;
                    security_newer[id] |= index.security;
                }
            }
            ControlFlow::Continue(())
        };
        for_each_package_version(reader, visit).map_err(|source| PatchError::Read {
            path: index.path.clone(),
            source,
        })?;
        if timed_out {
            return Err(PatchError::DeadlinePassed);
        }
    }
    let countable = |id: &usize| !installed[*id].held;
    Ok(UpgradeCounts {
        pending: count(
            (0..installed.len())
                .filter(countable)
                .filter(|&id| newer[id]),
        ),
        security: count(
            (0..installed.len())
                .filter(countable)
                .filter(|&id| newer[id] && security_newer[id]),
        ),
    })
}

fn open_index(path: &Path, compression: Compression) -> Result<Box<dyn BufRead>, PatchError> {
    let file = File::open(path).map_err(|source| PatchError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    const BUFFER: usize = 256 * 1024;
    Ok(match compression {
        Compression::None => Box::new(BufReader::with_capacity(BUFFER, file)),
        Compression::Lz4 => Box::new(BufReader::with_capacity(
            BUFFER,
            Lz4Frames::new(BufReader::with_capacity(BUFFER, file)),
        )),
        Compression::Unsupported => {
            return Err(PatchError::Read {
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::Unsupported, "unsupported compression"),
            });
        }
    })
}

/// Decompresses LZ4 frames (one or several, concatenated), the format apt
/// writes when it keeps its lists compressed (`Acquire::GzipIndexes`, as in
/// Debian's Docker images, where `*_Packages.lz4` is the only copy).
///
/// Streaming, because the Debian main index is ~50 MB decompressed: the
/// decoder holds one block and the 64 KiB window later blocks refer back to.
/// No cap on the total: memory stays bounded by the block size, and the scan's
/// deadline bounds the time a huge index can take.
///
/// The wrapper exists because `lz4_flex` decodes one frame at a time: its
/// reader returns end-of-input at the end of each frame, and it stops at a
/// skippable frame with an error carrying the frame's length. apt writes a
/// single frame, but the format (and the `lz4` tool) allow both.
///
/// Each frame gets a fresh decoder: `lz4_flex` sizes its buffers for the
/// first frame's block size and only ever grows them, so a later frame with
/// smaller blocks tripped its internal assertion (a panic wherever debug
/// assertions are on; found by `fuzz/`). The cost: a zero-length stored block
/// inside a frame, which no LZ4 encoder writes, looks like the frame's end,
/// and the bytes after it fail as a bad frame header, like any damaged list.
pub struct Lz4Frames<R: Read> {
    /// `None` only after a finished frame's decoder failed to hand back the
    /// reader, which cannot happen; reads then end.
    decoder: Option<Lz4Decoder<R>>,
}

type Lz4Decoder<R> = lz4_flex::frame::FrameDecoder<CountingReader<R>>;

impl<R: Read> Lz4Frames<R> {
    pub fn new(inner: R) -> Self {
        Self {
            decoder: Some(Lz4Decoder::new(CountingReader { inner, consumed: 0 })),
        }
    }
}

impl<R: Read> Read for Lz4Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let before = decoder.get_ref().consumed;
            match decoder.read(buf) {
                // A frame ended: the next one starts on a fresh decoder. Only
                // a call that read nothing from the file has reached its end;
                // every frame end consumes at least its 4-byte end mark, so
                // this loop always makes progress.
                Ok(0) if decoder.get_ref().consumed != before => {
                    self.decoder = self
                        .decoder
                        .take()
                        .map(|finished| Lz4Decoder::new(finished.into_inner()));
                }
                Err(error) => {
                    let Some(length) = skippable_frame_length(&error) else {
                        return Err(error);
                    };
                    // The decoder has consumed the frame's magic and length
                    // and is between frames, so skipping the payload on the
                    // inner reader leaves it at the next frame.
                    let inner = decoder.get_mut();
                    let skipped = io::copy(&mut inner.take(u64::from(length)), &mut io::sink())?;
                    if skipped != u64::from(length) {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                read => return read,
            }
        }
    }
}

fn skippable_frame_length(error: &io::Error) -> Option<u32> {
    match error.get_ref()?.downcast_ref::<lz4_flex::frame::Error>()? {
        lz4_flex::frame::Error::SkippableFrame(length) => Some(*length),
        _ => None,
    }
}

/// Counts the compressed bytes read, so [`Lz4Frames`] can tell the end of a
/// frame from the end of the file.
struct CountingReader<R> {
    inner: R,
    consumed: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.consumed += read as u64;
        Ok(read)
    }
}

// ---- apt-get -s output ----

/// One `Inst` line of `apt-get -s upgrade`/`dist-upgrade`:
/// `Inst libssl3 [3.0.11-1~deb12u1] (3.0.11-1~deb12u2 Debian-Security:12/stable-security [amd64])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedInstall {
    pub name: String,
    /// The version being replaced; `None` for a newly installed package.
    pub installed: Option<String>,
    pub candidate: String,
    /// `Archive:Version/Suite` of every source carrying the candidate.
    pub origins: Vec<String>,
    pub arch: String,
}

impl SimulatedInstall {
    pub fn is_upgrade(&self) -> bool {
        self.installed.is_some()
    }

    pub fn is_security(&self) -> bool {
        self.origins
            .iter()
            .any(|origin| origin.contains("-security"))
    }
}

/// Parses the `Inst` lines of `apt-get -s` output; everything else (`Conf`,
/// `Remv`, the human summary) is ignored.
pub fn parse_apt_get_simulation(text: &str) -> Vec<SimulatedInstall> {
    text.lines().filter_map(parse_inst_line).collect()
}

fn parse_inst_line(line: &str) -> Option<SimulatedInstall> {
    let rest = line.strip_prefix("Inst ")?;
    let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let mut rest = rest.trim_start();
    let mut installed = None;
    if let Some(bracketed) = rest.strip_prefix('[') {
        let (old, after) = bracketed.split_once(']')?;
        installed = Some(old.to_string());
        rest = after.trim_start();
    }
    let inner = rest.strip_prefix('(')?;
    let (inner, _) = inner.split_once(')')?;
    let (candidate, rest) = inner.split_once(' ').unwrap_or((inner, ""));
    let (origins, arch) = match rest.rsplit_once('[') {
        Some((origins, arch)) => (origins, arch.trim_end_matches(']')),
        None => (rest, ""),
    };
    Some(SimulatedInstall {
        name: name.to_string(),
        installed,
        candidate: candidate.to_string(),
        origins: origins
            .split(", ")
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(str::to_string)
            .collect(),
        arch: arch.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::probes::patch::{fixture, scan};

    fn far_deadline() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn fixture_report() -> PatchReport {
        let backend = AptBackend::with_root(fixture("apt-root"));
        match backend
            .read_fast(SystemTime::now(), far_deadline())
            .unwrap()
        {
            FastPath::Report(report) => report,
            other => panic!("expected a report, got {other:?}"),
        }
    }

    /// The expected numbers were checked with real apt on the same tree:
    /// `apt list --upgradable -o Dir::State::Lists=... -o
    /// Dir::State::status=...` lists 12 packages, one of them (bash) held.
    #[test]
    fn fast_path_counts_the_fixture_like_apt() {
        let report = fixture_report();
        assert_eq!(report.backend, "apt");
        // base-files dpkg libssl3 openssl openssh-client libnghttp2-14
        // libcups2 tzdata python3-jwt libgnutls30 linux-image-amd64; bash is
        // held; coreutils is only newer in NotAutomatic backports;
        // google-cloud-cli is only newer in the lists of a source that was
        // disabled (renamed to `*.list.disabled-by-farm`), as on this host.
        assert_eq!(report.pending, 11);
        // libnghttp2-14 libcups2 python3-jwt libgnutls30 linux-image-amd64
        // have their candidate in bookworm-security; openssh-client has a
        // newer-than-installed version there (deb12u9) under a later point
        // release (deb12u10).
        assert_eq!(report.security, Some(6));
        assert_eq!(report.reboot_required, Some(false));
        assert_eq!(report.running_kernel.as_deref(), Some("6.1.0-42-amd64"));
        assert_eq!(
            report.newest_installed_kernel.as_deref(),
            Some("6.1.0-47-amd64")
        );
        assert!(report.last_update_age_days.is_some_and(|age| age >= 0.0));
        assert!(report.lists_age_days.is_some_and(|age| age >= 0.0));
    }

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    /// Regression guard: lists left behind by a disabled source inflated the
    /// count on this host from 80 to 96.
    #[test]
    fn only_lists_of_configured_sources_count() {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&fixture("apt-root"), dir.path());
        let backend = AptBackend::with_root(dir.path());
        let pending = |backend: &AptBackend| match backend
            .read_fast(SystemTime::now(), far_deadline())
            .unwrap()
        {
            FastPath::Report(report) => report.pending,
            other => panic!("{other:?}"),
        };
        assert_eq!(pending(&backend), 11);
        std::fs::write(
            dir.path().join("etc/apt/sources.list.d/google-cloud-sdk.list"),
            "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n",
        )
        .unwrap();
        assert_eq!(pending(&backend), 12);
        std::fs::remove_dir_all(dir.path().join("etc/apt")).unwrap();
        assert_eq!(pending(&backend), 0, "no sources, no candidates");
    }

    #[test]
    fn uri_to_file_name_matches_apt() {
        let cases = [
            (
                "http://deb.debian.org/debian/dists/bookworm/",
                "deb.debian.org_debian_dists_bookworm_",
            ),
            (
                "https://deb.nodesource.com/node_20.x/dists/nodistro/main/",
                "deb.nodesource.com_node%5f20.x_dists_nodistro_main_",
            ),
            (
                "http://user:secret@mirror.example:8080/debian/dists/sid/",
                "mirror.example:8080_debian_dists_sid_",
            ),
            ("http://example.org/repo/./", "example.org_repo_._"),
            (
                "http://example.org/a~b/dists/x/",
                "example.org_a%7eb_dists_x_",
            ),
        ];
        for (uri, want) in cases {
            assert_eq!(uri_to_file_name(uri), want, "{uri}");
        }
    }

    #[test]
    fn one_line_sources() {
        let text = "# comment\n\
                    deb http://deb.debian.org/debian bookworm main contrib # trailing\n\
                    deb-src http://deb.debian.org/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://example.org/apt stable main\n\
                    deb http://example.org/flat ./\n\
                    debian is not a keyword\n";
        let got = parse_sources_list(text);
        let simple: Vec<(&str, &str, usize)> = got
            .iter()
            .map(|entry| {
                (
                    entry.uri.as_str(),
                    entry.suite.as_str(),
                    entry.components.len(),
                )
            })
            .collect();
        assert_eq!(
            simple,
            [
                ("http://deb.debian.org/debian", "bookworm", 2),
                ("https://example.org/apt", "stable", 1),
                ("http://example.org/flat", "./", 0),
            ]
        );
        let flat = got[2].list_files();
        assert!(flat.contains("example.org_flat_._Packages"));
        assert!(flat.contains("example.org_flat_._InRelease"));
    }

    #[test]
    fn deb822_sources() {
        let text = std::fs::read_to_string(fixture(
            "apt-root/etc/apt/sources.list.d/debian.sources",
        ))
        .unwrap()
            + "\nTypes: deb deb-src\nURIs: http://a.example/debian http://b.example/debian\nSuites: sid\n\
               Components: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBF\n\n\
               Types: deb\nURIs: http://disabled.example/debian\nSuites: sid\nComponents: main\nEnabled: no\n\n\
               Types: deb-src\nURIs: http://src.example/debian\nSuites: sid\nComponents: main\n";
        let got: Vec<(String, String)> = parse_deb822_sources(&text)
            .into_iter()
            .map(|entry| (entry.uri, entry.suite))
            .collect();
        let want = [
            ("http://deb.debian.org/debian", "bookworm"),
            ("http://deb.debian.org/debian", "bookworm-updates"),
            ("http://deb.debian.org/debian-security", "bookworm-security"),
            ("http://a.example/debian", "sid"),
            ("http://b.example/debian", "sid"),
        ]
        .map(|(uri, suite)| (uri.to_string(), suite.to_string()));
        assert_eq!(got, want);
    }

    #[test]
    fn list_files_of_a_source_exclude_other_suites_and_components() {
        let source = SourceEntry {
            uri: "http://deb.debian.org/debian".into(),
            suite: "bookworm".into(),
            components: vec!["main".into()],
        };
        let files = source.list_files();
        assert!(files.contains("deb.debian.org_debian_dists_bookworm_InRelease"));
        assert!(
            files.contains("deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4")
        );
        assert!(
            !files.contains("deb.debian.org_debian_dists_bookworm_contrib_binary-amd64_Packages")
        );
        assert!(!files.contains("deb.debian.org_debian_dists_bookworm-updates_InRelease"));
        assert!(
            !files.contains(
                "deb.debian.org_debian_dists_bookworm-updates_main_binary-amd64_Packages"
            )
        );
    }

    #[test]
    fn reboot_flag_file_is_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let backend = AptBackend::with_root(dir.path());
        assert!(!backend.reboot_required());
        std::fs::create_dir_all(dir.path().join("var/run")).unwrap();
        std::fs::write(
            dir.path().join("var/run/reboot-required"),
            "*** System restart required ***\n",
        )
        .unwrap();
        assert!(backend.reboot_required());
    }

    #[test]
    fn a_host_without_lists_reports_zero_pending_and_unknown_freshness() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/lib/dpkg")).unwrap();
        std::fs::copy(
            fixture("apt-root/var/lib/dpkg/status"),
            dir.path().join("var/lib/dpkg/status"),
        )
        .unwrap();
        let backend = AptBackend::with_root(dir.path());
        let FastPath::Report(report) = backend
            .read_fast(SystemTime::now(), far_deadline())
            .unwrap()
        else {
            panic!("expected a report");
        };
        assert_eq!((report.pending, report.security), (0, Some(0)));
        assert_eq!(report.lists_age_days, None);
        assert_eq!(report.running_kernel, None);
    }

    #[test]
    fn a_missing_dpkg_status_is_a_read_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let error = AptBackend::with_root(dir.path())
            .read_fast(SystemTime::now(), far_deadline())
            .unwrap_err();
        assert!(
            matches!(&error, PatchError::Read { path, .. } if path.ends_with("var/lib/dpkg/status")),
            "{error:?}"
        );
    }

    #[test]
    fn gzip_lists_make_the_fast_path_hand_over_to_apt_get() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/lib/dpkg")).unwrap();
        std::fs::create_dir_all(dir.path().join("var/lib/apt/lists")).unwrap();
        std::fs::copy(
            fixture("apt-root/var/lib/dpkg/status"),
            dir.path().join("var/lib/dpkg/status"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("etc/apt")).unwrap();
        std::fs::write(
            dir.path().join("etc/apt/sources.list"),
            "deb http://deb.debian.org/debian bookworm main\n",
        )
        .unwrap();
        let index = dir.path().join(
            "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.gz",
        );
        std::fs::write(&index, [0x1f, 0x8b]).unwrap();
        let outcome = AptBackend::with_root(dir.path())
            .read_fast(SystemTime::now(), far_deadline())
            .unwrap();
        assert_eq!(outcome, FastPath::UnreadableIndex(index));
    }

    #[test]
    fn a_passed_deadline_stops_the_fast_path() {
        let backend = AptBackend::with_root(fixture("apt-root"));
        let past = Instant::now() - Duration::from_millis(1);
        let error = backend.read_fast(SystemTime::now(), past).unwrap_err();
        assert!(matches!(error, PatchError::DeadlinePassed), "{error:?}");
    }

    #[test]
    fn dpkg_status_keeps_installed_and_held_packages_only() {
        let text = std::fs::read_to_string(fixture("apt-root/var/lib/dpkg/status")).unwrap();
        let installed = parse_dpkg_status(&text);
        let find = |name: &str| installed.iter().find(|package| package.name == name);
        assert_eq!(
            find("openssh-client"),
            Some(&InstalledPackage {
                name: "openssh-client".into(),
                arch: "amd64".into(),
                version: "1:9.2p1-2+deb12u6".into(),
                held: false,
            })
        );
        assert!(find("bash").is_some_and(|bash| bash.held));
        assert_eq!(
            find("tzdata").map(|tzdata| tzdata.arch.as_str()),
            Some("all")
        );
        // Removed, configuration files left: not installed.
        assert_eq!(find("linux-image-6.1.0-37-amd64"), None);
        assert_eq!(installed.len(), 17);
    }

    #[test]
    fn newest_kernel_comes_from_installed_image_packages() {
        let package = |name: &str, version: &str| InstalledPackage {
            name: name.into(),
            arch: "amd64".into(),
            version: version.into(),
            held: false,
        };
        let cases: [(&[InstalledPackage], Option<&str>); 4] = [
            (
                &[
                    package("linux-image-6.1.0-9-amd64", "6.1.27-1"),
                    package("linux-image-6.1.0-28-amd64", "6.1.119-1"),
                    package("linux-image-amd64", "6.1.200-1"),
                    package("linux-image-6.1.0-30-amd64-dbg", "6.1.124-1"),
                ],
                Some("6.1.0-28-amd64"),
            ),
            (
                &[
                    package("linux-image-unsigned-5.15.0-91-generic", "5.15.0-91.101"),
                    package("linux-image-5.15.0-88-generic", "5.15.0-88.98"),
                ],
                Some("5.15.0-91-generic"),
            ),
            (
                &[package("linux-image-6.1.0-21-amd64-unsigned", "6.1.90-1")],
                Some("6.1.0-21-amd64"),
            ),
            (
                &[
                    package("bash", "5.2"),
                    package("linux-image-cloud-amd64", "6.1.1-1"),
                ],
                None,
            ),
        ];
        for (installed, want) in cases {
            assert_eq!(
                newest_kernel_from_dpkg(installed).as_deref(),
                want,
                "{installed:?}"
            );
        }
    }

    #[test]
    fn release_files_classify_security_suites() {
        let read = |name: &str| {
            parse_release(
                &std::fs::read_to_string(fixture(&format!("apt-root/var/lib/apt/lists/{name}")))
                    .unwrap(),
            )
        };
        let security = read("deb.debian.org_debian-security_dists_bookworm-security_InRelease");
        assert_eq!(security.label.as_deref(), Some("Debian-Security"));
        assert_eq!(security.suite.as_deref(), Some("oldstable-security"));
        assert!(security.is_security());
        let main = read("deb.debian.org_debian_dists_bookworm_InRelease");
        assert_eq!(main.codename.as_deref(), Some("bookworm"));
        assert!(!main.is_security() && !main.not_automatic);
        assert!(!read("deb.debian.org_debian_dists_bookworm-updates_InRelease").is_security());
        let backports = read("deb.debian.org_debian_dists_bookworm-backports_Release");
        assert!(backports.not_automatic && !backports.is_security());
        let ubuntu = parse_release(
            "Origin: Ubuntu\nLabel: Ubuntu\nSuite: jammy-security\nCodename: jammy\n",
        );
        assert!(ubuntu.is_security());
    }

    #[test]
    fn only_binary_packages_indexes_are_read() {
        let cases = [
            (
                "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
                Some(Compression::None),
            ),
            (
                "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4",
                Some(Compression::Lz4),
            ),
            (
                "archive.ubuntu.com_ubuntu_dists_jammy_main_binary-amd64_Packages.gz",
                Some(Compression::Unsupported),
            ),
            (
                "example.org_repo_._Packages.zst",
                Some(Compression::Unsupported),
            ),
            (
                "deb.debian.org_debian_dists_bookworm_main_i18n_Translation-en",
                None,
            ),
            (
                "deb.debian.org_debian_dists_bookworm_main_source_Sources.lz4",
                None,
            ),
            (
                "deb.debian.org_debian_dists_bookworm_main_dep11_Components-amd64.yml.gz",
                None,
            ),
            (
                "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.diff_Index",
                None,
            ),
            ("deb.debian.org_debian_dists_bookworm_InRelease", None),
        ];
        for (name, want) in cases {
            assert_eq!(packages_index_compression(name), want, "{name}");
        }
    }

    #[test]
    fn packages_index_visits_every_paragraph_with_its_fields() {
        let text = "Package: a\nVersion: 1.0\nArchitecture: amd64\nDescription: x\n multi-line\n\n\
                    Package: b\nSource: b-src\nArchitecture: all\nVersion: 2:3~rc1\n\n\n\
                    Package: no-version\nArchitecture: amd64\n\n\
                    Package: c\r\nVersion: 9\r\nArchitecture: i386\r\n";
        let mut seen = Vec::new();
        let paragraphs = for_each_package_version(text.as_bytes(), |name, arch, version| {
            seen.push(format!("{name} {arch} {version}"));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(paragraphs, 4);
        assert_eq!(seen, ["a amd64 1.0", "b all 2:3~rc1", "c i386 9"]);
    }

    #[test]
    fn packages_index_visit_can_stop_early() {
        let text = "Package: a\nVersion: 1\nArchitecture: all\n\nPackage: b\nVersion: 1\nArchitecture: all\n";
        let mut calls = 0;
        for_each_package_version(text.as_bytes(), |_, _, _| {
            calls += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(calls, 1);
    }

    /// The lz4 index in the fixture (`lz4 -1`, as apt writes it) is read whole.
    #[test]
    fn lz4_index_in_the_fixture_is_read_whole() {
        let path = fixture(
            "apt-root/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4",
        );
        let reader = open_index(&path, Compression::Lz4).unwrap();
        let mut names = Vec::new();
        for_each_package_version(reader, |name, _, _| {
            names.push(name.to_string());
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(names.len(), 19);
        assert_eq!(names.last().map(String::as_str), Some("linux-image-amd64"));
    }

    fn decode_lz4(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Lz4Frames::new(bytes).read_to_end(&mut out)?;
        Ok(out)
    }

    /// The fixture was written by `lz4 -B4 -BD` (64 KiB linked blocks, content
    /// checksum): later blocks copy from earlier ones, across the window.
    #[test]
    fn lz4_decodes_linked_blocks_written_by_the_lz4_tool() {
        let plain = std::fs::read(fixture("lz4/Packages-sample")).unwrap();
        let compressed = std::fs::read(fixture("lz4/Packages-sample.B4D.lz4")).unwrap();
        assert!(
            plain.len() > 2 * 64 * 1024,
            "the sample must span several blocks"
        );
        assert_eq!(decode_lz4(&compressed).unwrap(), plain);
    }

    /// Block checksums, a content size and a second frame after the first:
    /// `lz4 -BX --content-size` output, concatenated with a skippable frame.
    #[test]
    fn lz4_decodes_checksummed_concatenated_and_skippable_frames() {
        let first = std::fs::read(fixture("lz4/hello.BX-content-size.lz4")).unwrap();
        let second = std::fs::read(fixture("lz4/Packages-sample.B4D.lz4")).unwrap();
        let mut stream = first.clone();
        stream.extend_from_slice(&[0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 9, 9, 9]);
        stream.extend_from_slice(&second);
        let decoded = decode_lz4(&stream).unwrap();
        let plain = std::fs::read(fixture("lz4/Packages-sample")).unwrap();
        let hello = b"hello hello hello hello hello lz4\n";
        assert_eq!(&decoded[..hello.len()], hello);
        assert_eq!(&decoded[hello.len()..], plain);
    }

    #[test]
    fn lz4_stored_blocks_and_empty_input() {
        // Frame: FLG (version 01, independent blocks), BD (64 KiB), HC, one
        // uncompressed block "abc", end mark.
        let frame = [
            0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82, 3, 0, 0, 0x80, b'a', b'b', b'c', 0, 0, 0, 0,
        ];
        assert_eq!(decode_lz4(&frame).unwrap(), b"abc");
        assert_eq!(decode_lz4(&[]).unwrap(), b"");
    }

    /// Regression (found by `fuzz/`, target `apt_lz4`): a legacy frame
    /// (8 MiB blocks) followed by a frame with 64 KiB linked blocks tripped
    /// the decoder's assertion, which it keeps sized for the first frame.
    #[test]
    fn lz4_frames_with_different_block_sizes_do_not_trip_the_decoder() {
        let legacy_then_linked = [
            0x02, 0x21, 0x4C, 0x18, 0, 0, 0, 0, 0x04, 0x22, 0x4D, 0x18, 0x64, 0x40, 0xA7, 1, 0, 0,
            0, 0, 1, 0, 0, 0, 0, 0, 0x6E, 0x3A,
        ];
        let _ = decode_lz4(&legacy_then_linked);
        // A frame of 4 MiB blocks, then one of 64 KiB linked blocks: both decode.
        let big = [0x04, 0x22, 0x4D, 0x18, 0x60, 0x70, 0x73, 3, 0, 0, 0x80];
        let small = [0x04, 0x22, 0x4D, 0x18, 0x40, 0x40, 0xC0, 3, 0, 0, 0x80];
        let mut stream = Vec::new();
        for (header, text) in [(&big, b"abc"), (&small, b"def")] {
            // Header, then one stored block of 3 bytes, then the end mark.
            stream.extend_from_slice(header);
            stream.extend_from_slice(text);
            stream.extend_from_slice(&[0, 0, 0, 0]);
        }
        assert_eq!(decode_lz4(&stream).unwrap(), b"abcdef");
    }

    #[test]
    fn lz4_rejects_other_formats_with_an_error() {
        let gzip = [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0];
        let error = decode_lz4(&gzip).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    /// Damaged input must give an error (or garbage), never a panic or a
    /// huge allocation: flip each byte of a real frame, and truncate it.
    #[test]
    fn lz4_damaged_input_never_panics() {
        let compressed = std::fs::read(fixture("lz4/hello.BX-content-size.lz4")).unwrap();
        for index in 0..compressed.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut damaged = compressed.clone();
                damaged[index] ^= flip;
                let _ = decode_lz4(&damaged);
            }
            let _ = decode_lz4(&compressed[..index]);
        }
        let big = std::fs::read(fixture("lz4/Packages-sample.B4D.lz4")).unwrap();
        for index in (0..big.len()).step_by(1009) {
            let mut damaged = big.clone();
            damaged[index] ^= 0x5A;
            let _ = decode_lz4(&damaged);
        }
    }

    #[test]
    fn apt_get_simulation_fixture_from_this_host() {
        // Captured on this Debian 12 host: `apt-get -s upgrade`, lists from
        // the 2026-05-20 snapshot, 80 upgrades.
        let text = std::fs::read_to_string(fixture("apt-get-s-upgrade.txt")).unwrap();
        let installs = parse_apt_get_simulation(&text);
        assert_eq!(installs.len(), 80);
        assert!(installs.iter().all(SimulatedInstall::is_upgrade));
        assert_eq!(
            installs
                .iter()
                .filter(|install| install.is_security())
                .count(),
            20
        );
        let cups = installs
            .iter()
            .find(|install| install.name == "libcups2")
            .unwrap();
        assert_eq!(
            cups,
            &SimulatedInstall {
                name: "libcups2".into(),
                installed: Some("2.4.2-3+deb12u8".into()),
                candidate: "2.4.2-3+deb12u9".into(),
                origins: vec![
                    "Debian:12.14/oldstable".into(),
                    "Debian-Security:12/oldstable-security".into()
                ],
                arch: "amd64".into(),
            }
        );
    }

    #[test]
    fn inst_line_variants() {
        let cases = [
            (
                "Inst libperl5.36 [5.36.0-7+deb12u2] (5.36.0-7+deb12u3 Debian:12.14/oldstable [amd64]) [perl:amd64 ]",
                Some((
                    "libperl5.36",
                    Some("5.36.0-7+deb12u2"),
                    "5.36.0-7+deb12u3",
                    1,
                    "amd64",
                    false,
                )),
            ),
            (
                "Inst linux-image-6.1.0-47-amd64 (6.1.170-3 Debian:12.14/oldstable [amd64])",
                Some((
                    "linux-image-6.1.0-47-amd64",
                    None,
                    "6.1.170-3",
                    1,
                    "amd64",
                    false,
                )),
            ),
            (
                "Inst libc6 [2.35-0ubuntu3.4] (2.35-0ubuntu3.5 Ubuntu:22.04/jammy-updates, Ubuntu:22.04/jammy-security [amd64])",
                Some((
                    "libc6",
                    Some("2.35-0ubuntu3.4"),
                    "2.35-0ubuntu3.5",
                    2,
                    "amd64",
                    true,
                )),
            ),
            (
                "Inst libc6:i386 [2.36-9+deb12u4] (2.36-9+deb12u7 Debian-Security:12/stable-security [i386])",
                Some((
                    "libc6:i386",
                    Some("2.36-9+deb12u4"),
                    "2.36-9+deb12u7",
                    1,
                    "i386",
                    true,
                )),
            ),
            (
                "Conf bash (5.2.15-2+b13 Debian:12.14/oldstable [amd64])",
                None,
            ),
            ("Inst broken [1.0", None),
        ];
        for (line, want) in cases {
            let got = parse_inst_line(line);
            let got = got.as_ref().map(|install| {
                (
                    install.name.as_str(),
                    install.installed.as_deref(),
                    install.candidate.as_str(),
                    install.origins.len(),
                    install.arch.as_str(),
                    install.is_security(),
                )
            });
            assert_eq!(got, want, "{line}");
        }
    }

    /// The live check: on a Debian-family host the real backend reads `/`
    /// quickly and sanely; elsewhere detection must have chosen another
    /// backend (so this test can never pass by doing nothing).
    #[tokio::test(flavor = "multi_thread")]
    async fn live_scan_of_this_host() {
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let debian_host = cfg!(target_os = "linux")
            && crate::probes::patch::linux_family(&os_release)
                == Some(crate::probes::patch::LinuxFamily::Debian)
            && Path::new("/var/lib/dpkg/status").is_file();
        let detected = crate::probes::patch::detect();
        if !debian_host {
            assert_ne!(detected.map(|backend| backend.name()), Some("apt"));
            return;
        }
        let backend = detected.expect("a Debian host has a backend");
        assert_eq!(backend.name(), "apt");
        let started = Instant::now();
        let report = scan(backend.as_ref(), Duration::from_secs(60))
            .await
            .unwrap();
        let elapsed = started.elapsed();
        // Generous for an unoptimised test build on 2 cores; the release
        // build measures well under a second.
        assert!(
            elapsed < Duration::from_secs(20),
            "live apt scan took {elapsed:?}"
        );
        assert_eq!(report.backend, "apt");
        assert!(
            report
                .security
                .is_some_and(|security| security <= report.pending),
            "{report:?}"
        );
        assert_eq!(
            report.reboot_required,
            Some(Path::new("/var/run/reboot-required").exists())
        );
        let osrelease = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(report.running_kernel.as_deref(), Some(osrelease.trim()));
        assert!(
            report.last_update_age_days.is_some_and(|age| age >= 0.0),
            "{report:?}"
        );
        let has_lists = std::fs::read_dir("/var/lib/apt/lists")
            .map(|entries| {
                entries
                    .flatten()
                    .any(|entry| entry.file_name().to_string_lossy().ends_with("InRelease"))
            })
            .unwrap_or(false);
        assert_eq!(report.lists_age_days.is_some(), has_lists, "{report:?}");
    }

    /// Cross-check against apt itself on a Debian host: `apt-get -s upgrade`
    /// never finds more upgrades (it keeps back what needs new packages) or
    /// more security updates (it names the candidate's origins only).
    #[tokio::test(flavor = "multi_thread")]
    async fn fast_path_agrees_with_apt_get_on_this_host() {
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let debian_host = cfg!(target_os = "linux")
            && crate::probes::patch::linux_family(&os_release)
                == Some(crate::probes::patch::LinuxFamily::Debian)
            && Path::new("/var/lib/dpkg/status").is_file();
        if !debian_host {
            assert_ne!(
                crate::probes::patch::detect().map(|backend| backend.name()),
                Some("apt")
            );
            return;
        }
        let backend = AptBackend::new();
        let runner = CommandRunner::at_normal_priority(Duration::from_secs(120));
        let slow = backend.read_via_apt_get(&runner).await.unwrap();
        assert!(
            slow.security
                .is_some_and(|security| security <= slow.pending),
            "{slow:?}"
        );
        let fast = match backend
            .read_fast(SystemTime::now(), far_deadline())
            .unwrap()
        {
            FastPath::Report(fast) => fast,
            // Lists in a format only apt reads: the fallback above is then
            // what the agent reports, and it has been checked.
            FastPath::UnreadableIndex(_) => return,
        };
        assert!(
            fast.pending >= slow.pending,
            "fast {fast:?} vs apt-get {slow:?}"
        );
        assert!(
            fast.security >= slow.security,
            "fast {fast:?} vs apt-get {slow:?}"
        );
        assert_eq!(fast.running_kernel, slow.running_kernel);
        assert_eq!(fast.newest_installed_kernel, slow.newest_installed_kernel);
    }
}
