//! Hardware/software inventory: what the host *is* (OS, CPU, memory, DMI
//! identity, disks, interfaces, installed packages), as opposed to what it is
//! *doing* (the samples of the other probes).
//!
//! An inventory is collected on its own, slow schedule (minutes to hours), never
//! on the 10 s sample path: a full collect reads the package database and may
//! start a package-manager process. The agent keeps the last inventory it sent
//! and ships only [`diff()`]s; the collector rebuilds the current state with
//! [`apply`] and can check its copy of the package list against
//! [`packages_fingerprint`].
//!
//! What each file owns:
//! - `mod.rs` (this file): the [`Inventory`] type and its parts, the fact keys
//!   ([`fact`]), [`InventoryError`] and [`collect`], which wires the readers
//!   below together and is the only place that decides what to do when one of
//!   them fails (log and leave the fact out).
//! - [`os_release`]: `/etc/os-release` parsing.
//! - [`cpu`]: `/proc/cpuinfo` parsing (model, physical cores, logical CPUs).
//! - [`dmi`]: the machine's hardware identity (vendor, product, serials, UUID)
//!   from `/sys/class/dmi/id`, and [`dmi::HardwareIdentity`], which the macOS
//!   and Windows readers fill in too.
//! - [`host`]: machine id, hostname and FQDN (from `/etc/hosts`, no DNS).
//! - [`devices`]: disks and network interfaces via sysinfo, drive models
//!   from sysfs.
//! - [`packages`]: installed packages (dpkg status, `rpm -qa`, `pacman -Q`,
//!   `pkgutil --pkgs`) and [`packages_fingerprint`].
//! - [`mod@diff`]: [`InventoryDiff`], [`diff()`] and [`apply`].
//! - [`macos`], [`windows`]: thin process invocations (`system_profiler`,
//!   PowerShell) whose output is parsed by plain functions tested on Linux.
//! - `command`: the only place that starts processes; a deadline, no stdin,
//!   `LC_ALL=C`.
//!
//! Every reader takes a root directory so tests can point it at a fixture tree
//! (`agent/tests/fixtures/inventory/`) and an agent in a container can point it
//! at the host's filesystem mounted elsewhere. Facts the kernel reports
//! directly (hostname, kernel version, memory, boot time, disks, interfaces)
//! come from sysinfo and always describe the running kernel, whatever the root.
//!
//! This module never touches the network (no DNS lookup for the FQDN, no
//! package-mirror refresh) and never writes anything.

mod command;
pub mod cpu;
pub mod devices;
pub mod diff;
pub mod dmi;
pub mod host;
pub mod macos;
pub mod os_release;
pub mod packages;
pub mod windows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysinfo::System;
use tracing::{debug, warn};

pub use diff::{InventoryChange, InventoryDiff, apply, diff};
pub use packages::packages_fingerprint;

/// The keys of [`Inventory::facts`]. A key is present only when its value is
/// known; an absent key means "could not be determined", never "empty".
pub mod fact {
    pub const HOSTNAME: &str = "hostname";
    pub const FQDN: &str = "fqdn";
    pub const OS_NAME: &str = "os_name";
    pub const OS_VERSION: &str = "os_version";
    /// The os-release `ID` (`debian`, `ubuntu`, `rocky`, `arch`, ...).
    pub const OS_ID: &str = "os_id";
    pub const KERNEL: &str = "kernel";
    pub const ARCH: &str = "arch";
    pub const CPU_MODEL: &str = "cpu_model";
    /// Physical cores across all sockets.
    pub const CPU_CORES: &str = "cpu_cores";
    /// Logical CPUs (hardware threads).
    pub const CPU_THREADS: &str = "cpu_threads";
    pub const MEMORY_TOTAL_BYTES: &str = "memory_total_bytes";
    pub const MACHINE_ID: &str = "machine_id";
    pub const DMI_SYS_VENDOR: &str = "dmi_sys_vendor";
    pub const DMI_PRODUCT_NAME: &str = "dmi_product_name";
    pub const DMI_PRODUCT_SERIAL: &str = "dmi_product_serial";
    pub const DMI_PRODUCT_UUID: &str = "dmi_product_uuid";
    pub const DMI_BOARD_SERIAL: &str = "dmi_board_serial";
    /// Unix seconds.
    pub const BOOT_TIME: &str = "boot_time";
    pub const AGENT_VERSION: &str = "agent_version";
    /// Always equal to `Inventory::packages.len()` when present.
    pub const PACKAGE_COUNT: &str = "package_count";
    /// `dpkg`, `rpm`, `pacman` or `pkgutil`.
    pub const PACKAGE_MANAGER: &str = "package_manager";
}

/// Everything the agent knows about what the host is.
///
/// Invariant: every list is sorted (disks by mount point, interfaces by name,
/// addresses as strings) so two collects of an unchanged host compare equal
/// and [`diff()`] reports nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Flat facts keyed by the constants in [`fact`].
    pub facts: BTreeMap<String, String>,
    pub disks: Vec<DiskInfo>,
    pub interfaces: Vec<InterfaceInfo>,
    /// Package name → version. dpkg packages installed for two architectures
    /// appear as `name:arch` (and only then); a name installed in several
    /// versions (RHEL kernels) has its versions joined with `", "`.
    pub packages: BTreeMap<String, String>,
}

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DiskInfo {
    /// As the kernel names it (`/dev/sda1`, `/dev/mapper/vg-root`, `overlay`).
    pub device: String,
    /// The drive's model from sysfs; `None` for virtual devices and when the
    /// file cannot be read.
    pub model: Option<String>,
    pub size_bytes: u64,
    pub filesystem: String,
    pub mount: String,
}

/// One network interface other than loopback.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InterfaceInfo {
    pub name: String,
    /// Lower-case `aa:bb:cc:dd:ee:ff`; `None` for interfaces without a
    /// hardware address (tun, WireGuard), which report all zeroes.
    pub mac: Option<String>,
    /// `address/prefix`, sorted.
    pub ipv4: Vec<String>,
    /// `address/prefix`, sorted.
    pub ipv6: Vec<String>,
}

/// Why one inventory reader failed. [`collect`] logs these and leaves the
/// affected facts out; the individual readers return them so callers and
/// tests can tell "missing" from "broken".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {timeout:?}")]
    TimedOut { program: String, timeout: Duration },
    #[error("{program} failed ({status}): {stderr}")]
    CommandFailed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("cannot parse {what}: {detail}")]
    Parse { what: &'static str, detail: String },
}

/// Collects the full inventory of the host whose filesystem is at `root`
/// (`/` normally). Blocking, and can take a second or more on hosts where a
/// package-manager process has to run: call it from `spawn_blocking`.
///
/// Never fails as a whole: a reader that fails is logged and its facts are
/// left out, because a partial inventory is still worth shipping. That
/// includes the package list: when it cannot be read, `packages` is empty and
/// the `package_manager` and `package_count` facts are absent. A caller that
/// diffs against the previous inventory should treat that combination as
/// "unknown" and keep the old list, or the diff will say every package was
/// removed.
pub fn collect(root: &Path) -> Inventory {
    let mut inventory = Inventory::default();
    let facts = &mut inventory.facts;
    let mut put = |key: &str, value: String| {
        let value = value.trim().to_string();
        if !value.is_empty() {
            facts.insert(key.to_string(), value);
        }
    };

    put(fact::AGENT_VERSION, crate::VERSION.to_string());

    // The kernel's current name beats /etc/hostname, which is only what the
    // host will be called after the next boot.
    let hostname = System::host_name()
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| host::read_hostname(root));
    if let Some(hostname) = hostname {
        if let Some(fqdn) = host::fqdn(root, &hostname) {
            put(fact::FQDN, fqdn);
        }
        put(fact::HOSTNAME, hostname);
    }

    match os_release::read(root) {
        Ok(os) => {
            for (key, value) in os.facts() {
                put(key, value.to_string());
            }
        }
        // macOS and Windows have no os-release; sysinfo knows their names.
        Err(error) => {
            debug!(message = "No os-release; using sysinfo's OS name.", %error);
            if let Ok(name) = System::name() {
                put(fact::OS_NAME, name);
            }
            if let Ok(version) = System::os_version() {
                put(fact::OS_VERSION, version);
            }
            put(fact::OS_ID, System::distribution_id());
        }
    }
    if let Ok(kernel) = System::kernel_version() {
        put(fact::KERNEL, kernel);
    }
    put(fact::ARCH, System::cpu_arch());
    if let Ok(boot_time) = System::boot_time() {
        put(fact::BOOT_TIME, boot_time.to_string());
    }

    let cpuinfo = cpu::read(root)
        .inspect_err(|error| debug!(message = "Cannot read cpuinfo.", %error))
        .unwrap_or_default();
    let mut system = System::new().ok();
    if let Some(system) = system.as_mut() {
        system.refresh_memory();
        // Only the list (names, brands); usage would need two refreshes.
        system.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    }
    let sysinfo_cpus = system.as_ref().map(|system| system.cpus());
    let model = cpuinfo.model.clone().or_else(|| {
        sysinfo_cpus
            .and_then(|cpus| cpus.first())
            .map(|cpu| cpu.brand().to_string())
    });
    if let Some(model) = model {
        put(fact::CPU_MODEL, model);
    }
    let threads = Some(cpuinfo.logical_cpus)
        .filter(|&count| count > 0)
        .or_else(|| sysinfo_cpus.map(<[_]>::len).filter(|&count| count > 0));
    if let Some(threads) = threads {
        put(fact::CPU_THREADS, threads.to_string());
    }
    let cores = cpuinfo
        .physical_cores
        .or_else(|| System::physical_core_count().ok());
    if let Some(cores) = cores {
        put(fact::CPU_CORES, cores.to_string());
    }
    if let Some(system) = system.as_ref().filter(|system| system.total_memory() > 0) {
        put(fact::MEMORY_TOTAL_BYTES, system.total_memory().to_string());
    }

    if let Some(machine_id) = host::read_machine_id(root) {
        put(fact::MACHINE_ID, machine_id);
    }

    let identity = if cfg!(target_os = "macos") {
        macos::read_hardware()
            .inspect_err(|error| debug!(message = "Cannot read the hardware identity.", %error))
            .unwrap_or_default()
    } else if cfg!(target_os = "windows") {
        windows::read_hardware()
            .inspect_err(|error| debug!(message = "Cannot read the hardware identity.", %error))
            .unwrap_or_default()
    } else {
        dmi::read(root)
    };
    for (key, value) in identity.facts() {
        put(key, value.to_string());
    }

    match packages::read_installed(root) {
        Ok(Some(installed)) => {
            put(fact::PACKAGE_MANAGER, installed.manager.name().to_string());
            put(fact::PACKAGE_COUNT, installed.packages.len().to_string());
            inventory.packages = installed.packages;
        }
        Ok(None) => debug!(message = "No known package manager on this host."),
        Err(error) => warn!(message = "Cannot list installed packages.", %error),
    }

    inventory.disks = devices::disks(root);
    inventory.interfaces = devices::interfaces();
    inventory
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn collects_a_sane_inventory_of_this_machine() {
        let inventory = collect(Path::new("/"));
        let facts = &inventory.facts;
        let number = |key: &str| -> u64 {
            facts
                .get(key)
                .unwrap_or_else(|| panic!("missing {key}: {facts:?}"))
                .parse()
                .unwrap_or_else(|error| panic!("{key} is not a number: {error}"))
        };
        assert!(!facts[fact::HOSTNAME].is_empty());
        assert!(number(fact::MEMORY_TOTAL_BYTES) > 0);
        assert!(number(fact::CPU_THREADS) >= 1);
        assert!(number(fact::CPU_CORES) >= 1);
        assert!(number(fact::CPU_CORES) <= number(fact::CPU_THREADS));
        assert!(number(fact::BOOT_TIME) > 1_500_000_000);
        assert_eq!(facts[fact::OS_ID], "debian");
        assert_eq!(facts[fact::PACKAGE_MANAGER], "dpkg");
        assert_eq!(facts[fact::AGENT_VERSION], crate::VERSION);
        assert!(facts.contains_key(fact::KERNEL));
        assert!(facts.contains_key(fact::MACHINE_ID));
        let package_count = number(fact::PACKAGE_COUNT);
        assert!(package_count > 50, "{package_count}");
        assert_eq!(package_count, inventory.packages.len() as u64);
        assert!(inventory.packages.contains_key("dpkg"));
        assert!(
            inventory.disks.iter().any(|disk| disk.mount == "/"),
            "{:?}",
            inventory.disks
        );
        assert!(
            inventory.interfaces.iter().all(|iface| iface.name != "lo"),
            "{:?}",
            inventory.interfaces
        );
        // Every fact key is one of the documented ones.
        let known = [
            fact::HOSTNAME,
            fact::FQDN,
            fact::OS_NAME,
            fact::OS_VERSION,
            fact::OS_ID,
            fact::KERNEL,
            fact::ARCH,
            fact::CPU_MODEL,
            fact::CPU_CORES,
            fact::CPU_THREADS,
            fact::MEMORY_TOTAL_BYTES,
            fact::MACHINE_ID,
            fact::DMI_SYS_VENDOR,
            fact::DMI_PRODUCT_NAME,
            fact::DMI_PRODUCT_SERIAL,
            fact::DMI_PRODUCT_UUID,
            fact::DMI_BOARD_SERIAL,
            fact::BOOT_TIME,
            fact::AGENT_VERSION,
            fact::PACKAGE_COUNT,
            fact::PACKAGE_MANAGER,
        ];
        for key in facts.keys() {
            assert!(known.contains(&key.as_str()), "undocumented fact {key}");
        }
    }

    #[test]
    fn two_collects_of_an_unchanged_host_do_not_differ_in_packages_or_hardware() {
        let first = collect(Path::new("/"));
        let second = collect(Path::new("/"));
        assert_eq!(first.packages, second.packages);
        assert_eq!(first.interfaces, second.interfaces);
        for key in [
            fact::HOSTNAME,
            fact::MACHINE_ID,
            fact::CPU_MODEL,
            fact::OS_ID,
        ] {
            assert_eq!(first.facts.get(key), second.facts.get(key), "{key}");
        }
    }

    /// Not a benchmark: prints the median of five full collects so the cost
    /// of the slow path stays visible (`cargo test -- --nocapture`).
    #[test]
    fn reports_how_long_a_full_collect_takes() {
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                let start = Instant::now();
                let inventory = collect(Path::new("/"));
                let elapsed = start.elapsed();
                assert!(!inventory.packages.is_empty());
                elapsed
            })
            .collect();
        times.sort();
        println!("inventory collect: median {:?} of {times:?}", times[2]);
        assert!(times[2] < Duration::from_secs(30));
    }

    #[test]
    fn inventory_survives_a_serde_round_trip() {
        let inventory = Inventory {
            facts: BTreeMap::from([(fact::HOSTNAME.to_string(), "web01".to_string())]),
            disks: vec![DiskInfo {
                device: "/dev/sda1".into(),
                model: Some("Samsung SSD 870".into()),
                size_bytes: 512,
                filesystem: "ext4".into(),
                mount: "/".into(),
            }],
            interfaces: vec![InterfaceInfo {
                name: "eth0".into(),
                mac: None,
                ipv4: vec!["192.0.2.2/24".into()],
                ipv6: vec![],
            }],
            packages: BTreeMap::from([("bash".to_string(), "5.2".to_string())]),
        };
        // toml is the serde format this crate already depends on; any format
        // would do, the point is that Serialize and Deserialize agree.
        let table = toml::Table::try_from(&inventory).unwrap();
        assert_eq!(table.try_into::<Inventory>().unwrap(), inventory);
    }
}
