//! The asset record: one machine as the organisation knows it, whichever
//! agents have reported for it.
//!
//! Fields come from two sources that never overwrite each other: the
//! inventory-derived fields ([`Asset::apply_inventory`],
//! [`Asset::apply_patch_metric`]) and the operator fields (`owner` through
//! `disposal`, changed only through `edit` and `lifecycle`).
//! [`Asset::field_values`] renders every field as text in one place, so
//! history diffs and change lists cannot forget one.
//!
//! The bottom of `assets`: this module imports only the `identifiers` leaf
//! from its siblings. The types and rules its fields need ([`Lifecycle`],
//! [`EXPECTED_OFFLINE_TAG`], [`security_pending_since`]) live here, and the
//! modules that reason about records (`identity`, `lifecycle`, `compliance`,
//! ...) import from it, never the other way round.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::identifiers::{
    clean_machine_id, clean_serial, clean_uuid, is_virtual_interface, normalize_mac,
};
use crate::store::{DiskRecord, InterfaceRecord};

/// The API schema of a [`DiskRecord`], which `store` owns and does not
/// describe: documentation only, kept equal to the record's JSON by a test.
#[derive(ToSchema)]
#[schema(as = Disk)]
#[allow(dead_code)] // Read only by the OpenAPI derive.
pub struct DiskSchema {
    /// e.g. `/dev/sda1`.
    device: String,
    model: Option<String>,
    size_bytes: u64,
    filesystem: String,
    mount: String,
}

/// The tag that gives an asset the longer `*_offline` silence thresholds.
pub const EXPECTED_OFFLINE_TAG: &str = "expected_offline";

/// Where an asset is in its life. Who may move it between these states, and
/// when the system does so on its own, is decided in `lifecycle`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Bought or returned, not deployed.
    InStock,
    /// In service and reporting.
    Active,
    /// Out of service for repair; silence is expected.
    InRepair,
    /// In service but silent longer than `stale_after` (set by the system).
    Stale,
    /// In service but silent longer than `missing_after` (set by the system).
    Missing,
    /// Out of service for good; awaiting disposal or kept for reference.
    Retired,
    /// Gone (sold, recycled, destroyed). Terminal.
    Disposed,
}

impl Lifecycle {
    pub const ALL: [Lifecycle; 7] = [
        Lifecycle::InStock,
        Lifecycle::Active,
        Lifecycle::InRepair,
        Lifecycle::Stale,
        Lifecycle::Missing,
        Lifecycle::Retired,
        Lifecycle::Disposed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::InStock => "in_stock",
            Lifecycle::Active => "active",
            Lifecycle::InRepair => "in_repair",
            Lifecycle::Stale => "stale",
            Lifecycle::Missing => "missing",
            Lifecycle::Retired => "retired",
            Lifecycle::Disposed => "disposed",
        }
    }

    pub fn from_name(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// States the system moves between on its own, from silence and reports.
    pub fn is_automatic(self) -> bool {
        matches!(
            self,
            Lifecycle::Active | Lifecycle::Stale | Lifecycle::Missing
        )
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Patch state, from the agent's `patch.*` metrics and kernel facts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PatchState {
    /// `patch.pending`: updates available.
    pub pending: Option<u64>,
    /// `patch.security`: of which security updates.
    pub security: Option<u64>,
    /// `patch.reboot_required`.
    pub reboot_required: Option<bool>,
    /// `patch.last_update_age_days`.
    pub last_update_age_days: Option<f64>,
    /// Fact `running_kernel`.
    pub running_kernel: Option<String>,
    /// Fact `newest_installed_kernel`.
    pub newest_installed_kernel: Option<String>,
}

/// How an asset left the organisation. Required to dispose of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Disposal {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// What happened: "recycled", "sold", "destroyed", ...
    pub method: String,
    /// Who took it.
    #[serde(default)]
    pub vendor: Option<String>,
    /// Data-destruction or recycling certificate reference.
    #[serde(default)]
    pub certificate: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = AssetRecord)]
pub struct Asset {
    /// Stable id chosen by the store; never changes, survives merges as the
    /// kept asset's id.
    pub id: String,
    /// Agents that have reported as this machine, the one reporting now
    /// first, no duplicates. Empty only for assets an operator entered
    /// before any agent ran on them.
    pub agent_ids: Vec<String>,
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
    /// Display text: OS name and version.
    pub os: Option<String>,
    /// os-release `ID` (`debian`, `ubuntu`, `rhel`), `windows`, `macos`.
    pub os_id: Option<String>,
    pub os_version: Option<String>,
    pub kernel: Option<String>,
    pub arch: Option<String>,
    pub cpu_model: Option<String>,
    pub cpu_cores: Option<u32>,
    pub cpu_threads: Option<u32>,
    pub memory_total_bytes: Option<u64>,
    /// DMI product serial, else the board serial; placeholders removed.
    pub serial: Option<String>,
    pub vendor: Option<String>,
    /// Product name (`PowerEdge R650`, `ThinkPad T14 Gen 3`).
    pub model: Option<String>,
    /// DMI product UUID, lower case; placeholders (all-zero etc.) removed.
    pub dmi_uuid: Option<String>,
    /// `/etc/machine-id`, lower case.
    pub machine_id: Option<String>,
    /// Hardware MACs, `aa:bb:cc:dd:ee:ff`, sorted, without virtual
    /// interfaces (containers, bridges, tunnels) whose MACs churn.
    pub macs: Vec<String>,
    /// Addresses as reported, sorted, without loopback, IPv6 link-local and
    /// virtual interfaces.
    pub ips: Vec<String>,
    /// Mounted filesystems, sorted by mount point.
    #[schema(value_type = Vec<DiskSchema>)]
    pub disks: Vec<DiskRecord>,
    pub patch: PatchState,
    /// Since when `patch.security` has been above zero; `None` while it is
    /// zero or unknown. Maintained by [`Asset::apply_patch_metric`].
    #[serde(default)]
    pub security_pending_since_ms: Option<i64>,
    pub package_count: Option<u64>,
    pub status: Lifecycle,
    pub first_seen_ms: i64,
    /// Last report from any of `agent_ids`; never moves backwards.
    pub last_seen_ms: i64,
    // Operator fields.
    pub owner: Option<String>,
    pub location: Option<String>,
    pub tags: BTreeSet<String>,
    pub role: Option<String>,
    pub criticality: Option<String>,
    /// `YYYY-MM-DD`, validated on edit.
    pub purchase_date: Option<String>,
    /// `YYYY-MM-DD`, validated on edit; the last day covered.
    pub warranty_end: Option<String>,
    pub notes: Option<String>,
    /// Set exactly when `status` is `disposed`.
    pub disposal: Option<Disposal>,
}

/// One field whose text changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// Dotted field name as in [`Asset::field_values`] (`hostname`, `patch.pending`).
    pub field: &'static str,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Asset {
    /// A record with no facts yet.
    pub fn new(id: impl Into<String>, status: Lifecycle, now_ms: i64) -> Self {
        Self {
            id: id.into(),
            agent_ids: Vec::new(),
            hostname: None,
            fqdn: None,
            os: None,
            os_id: None,
            os_version: None,
            kernel: None,
            arch: None,
            cpu_model: None,
            cpu_cores: None,
            cpu_threads: None,
            memory_total_bytes: None,
            serial: None,
            vendor: None,
            model: None,
            dmi_uuid: None,
            machine_id: None,
            macs: Vec::new(),
            ips: Vec::new(),
            disks: Vec::new(),
            patch: PatchState::default(),
            security_pending_since_ms: None,
            package_count: None,
            status,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            owner: None,
            location: None,
            tags: BTreeSet::new(),
            role: None,
            criticality: None,
            purchase_date: None,
            warranty_end: None,
            notes: None,
            disposal: None,
        }
    }

    /// A record for a machine first seen through `agent_id`, `active`.
    pub fn discovered(id: impl Into<String>, agent_id: impl Into<String>, now_ms: i64) -> Self {
        let mut asset = Self::new(id, Lifecycle::Active, now_ms);
        asset.agent_ids.push(agent_id.into());
        asset
    }

    /// Whether the asset carries the `expected_offline` tag.
    pub fn expected_offline(&self) -> bool {
        self.tags.contains(EXPECTED_OFFLINE_TAG)
    }

    /// Records a report from `agent_id` at `seen_ms`: the agent becomes the
    /// current one (first in `agent_ids`) and `last_seen_ms` moves forward.
    /// Follow with `lifecycle::automatic_status` to clear stale/missing.
    pub fn mark_seen(&mut self, agent_id: &str, seen_ms: i64) {
        self.agent_ids.retain(|known| known != agent_id);
        self.agent_ids.insert(0, agent_id.to_string());
        self.last_seen_ms = self.last_seen_ms.max(seen_ms);
    }

    /// Updates the inventory-derived fields from an agent's inventory and
    /// returns what changed.
    ///
    /// A fact that is absent, blank or unparsable leaves its field alone: an
    /// agent that cannot read a value this time (permissions, a failed
    /// command) must not erase what is known. Likewise an empty disk or
    /// interface list leaves disks, or MACs and IPs, unchanged. Facts not
    /// kept on the asset (`boot_time`, `agent_version`, ...) are ignored, and
    /// so are packages, which the store records itself.
    pub fn apply_inventory(
        &mut self,
        facts: &BTreeMap<String, String>,
        disks: &[DiskRecord],
        interfaces: &[InterfaceRecord],
    ) -> Vec<FieldChange> {
        let before = self.clone();
        let fact = |key: &str| {
            facts
                .get(key)
                .map(|value| value.trim())
                .filter(|value| !value.is_empty())
                .map(str::to_string)
        };
        let set = |field: &mut Option<String>, value: Option<String>| {
            if value.is_some() {
                *field = value;
            }
        };
        set(&mut self.hostname, fact("hostname"));
        set(&mut self.fqdn, fact("fqdn"));
        set(&mut self.os_id, fact("os_id"));
        set(&mut self.os_version, fact("os_version"));
        set(
            &mut self.os,
            os_display(fact("os_name").as_deref(), fact("os_version").as_deref()),
        );
        set(&mut self.kernel, fact("kernel"));
        set(&mut self.arch, fact("arch"));
        set(&mut self.cpu_model, fact("cpu_model"));
        set(&mut self.vendor, fact("dmi_sys_vendor"));
        set(&mut self.model, fact("dmi_product_name"));
        set(
            &mut self.serial,
            fact("dmi_product_serial")
                .as_deref()
                .and_then(clean_serial)
                .or_else(|| fact("dmi_board_serial").as_deref().and_then(clean_serial)),
        );
        set(
            &mut self.dmi_uuid,
            fact("dmi_product_uuid").as_deref().and_then(clean_uuid),
        );
        set(
            &mut self.machine_id,
            fact("machine_id").as_deref().and_then(clean_machine_id),
        );
        set(&mut self.patch.running_kernel, fact("running_kernel"));
        set(
            &mut self.patch.newest_installed_kernel,
            fact("newest_installed_kernel"),
        );
        let number = |key: &str| fact(key).and_then(|text| text.parse::<u64>().ok());
        if let Some(cores) = number("cpu_cores").and_then(|n| u32::try_from(n).ok()) {
            self.cpu_cores = Some(cores);
        }
        if let Some(threads) = number("cpu_threads").and_then(|n| u32::try_from(n).ok()) {
            self.cpu_threads = Some(threads);
        }
        if let Some(memory) = number("memory_total_bytes") {
            self.memory_total_bytes = Some(memory);
        }
        if let Some(count) = number("package_count") {
            self.package_count = Some(count);
        }
        if !disks.is_empty() {
            let mut disks = disks.to_vec();
            disks.sort_by(|a, b| a.mount.cmp(&b.mount).then_with(|| a.device.cmp(&b.device)));
            self.disks = disks;
        }
        if !interfaces.is_empty() {
            self.macs = macs_of(interfaces);
            self.ips = ips_of(interfaces);
        }
        changed_fields(&before, self)
    }

    /// Applies one `patch.*` sample; returns false for any other metric (and
    /// for values that cannot be counts, such as NaN or negatives).
    /// `patch.security` also maintains `security_pending_since_ms`.
    pub fn apply_patch_metric(&mut self, metric: &str, value: f64, now_ms: i64) -> bool {
        let count = (value.is_finite() && value >= 0.0).then(|| value.round() as u64);
        match (metric, count) {
            ("patch.pending", Some(count)) => self.patch.pending = Some(count),
            ("patch.security", Some(count)) => {
                self.patch.security = Some(count);
                self.security_pending_since_ms =
                    security_pending_since(self.security_pending_since_ms, count, now_ms);
            }
            ("patch.reboot_required", Some(_)) => self.patch.reboot_required = Some(value != 0.0),
            ("patch.last_update_age_days", Some(_)) => {
                self.patch.last_update_age_days = Some(value);
            }
            _ => return false,
        }
        true
    }

    /// Every field as `(dotted name, text)`, in declaration order; `None`
    /// for unknown values and empty lists. The single place that knows how
    /// a field reads in history and change lists.
    pub fn field_values(&self) -> Vec<(&'static str, Option<String>)> {
        // Destructured so that adding a field without rendering it fails to compile.
        let Asset {
            id,
            agent_ids,
            hostname,
            fqdn,
            os,
            os_id,
            os_version,
            kernel,
            arch,
            cpu_model,
            cpu_cores,
            cpu_threads,
            memory_total_bytes,
            serial,
            vendor,
            model,
            dmi_uuid,
            machine_id,
            macs,
            ips,
            disks,
            patch,
            security_pending_since_ms,
            package_count,
            status,
            first_seen_ms,
            last_seen_ms,
            owner,
            location,
            tags,
            role,
            criticality,
            purchase_date,
            warranty_end,
            notes,
            disposal,
        } = self;
        let PatchState {
            pending,
            security,
            reboot_required,
            last_update_age_days,
            running_kernel,
            newest_installed_kernel,
        } = patch;
        fn text<T: ToString>(value: &Option<T>) -> Option<String> {
            value.as_ref().map(ToString::to_string)
        }
        fn list<'a>(items: impl IntoIterator<Item = &'a String>) -> Option<String> {
            let joined = items.into_iter().cloned().collect::<Vec<_>>().join(", ");
            (!joined.is_empty()).then_some(joined)
        }
        let rendered_disks = disks
            .iter()
            .map(|disk| {
                let model = disk
                    .model
                    .as_deref()
                    .map(|model| format!(" {model}"))
                    .unwrap_or_default();
                format!(
                    "{} on {} ({}, {} bytes){model}",
                    disk.device, disk.mount, disk.filesystem, disk.size_bytes
                )
            })
            .collect::<Vec<_>>();
        let disposal_part =
            |part: fn(&Disposal) -> Option<String>| disposal.as_ref().and_then(part);
        vec![
            ("id", Some(id.clone())),
            ("agent_ids", list(agent_ids)),
            ("hostname", hostname.clone()),
            ("fqdn", fqdn.clone()),
            ("os", os.clone()),
            ("os_id", os_id.clone()),
            ("os_version", os_version.clone()),
            ("kernel", kernel.clone()),
            ("arch", arch.clone()),
            ("cpu_model", cpu_model.clone()),
            ("cpu_cores", text(cpu_cores)),
            ("cpu_threads", text(cpu_threads)),
            ("memory_total_bytes", text(memory_total_bytes)),
            ("serial", serial.clone()),
            ("vendor", vendor.clone()),
            ("model", model.clone()),
            ("dmi_uuid", dmi_uuid.clone()),
            ("machine_id", machine_id.clone()),
            ("macs", list(macs)),
            ("ips", list(ips)),
            ("disks", list(&rendered_disks)),
            ("patch.pending", text(pending)),
            ("patch.security", text(security)),
            ("patch.reboot_required", text(reboot_required)),
            ("patch.last_update_age_days", text(last_update_age_days)),
            ("patch.running_kernel", running_kernel.clone()),
            (
                "patch.newest_installed_kernel",
                newest_installed_kernel.clone(),
            ),
            ("security_pending_since_ms", text(security_pending_since_ms)),
            ("package_count", text(package_count)),
            ("status", Some(status.to_string())),
            ("first_seen_ms", Some(first_seen_ms.to_string())),
            ("last_seen_ms", Some(last_seen_ms.to_string())),
            ("owner", owner.clone()),
            ("location", location.clone()),
            ("tags", list(tags)),
            ("role", role.clone()),
            ("criticality", criticality.clone()),
            ("purchase_date", purchase_date.clone()),
            ("warranty_end", warranty_end.clone()),
            ("notes", notes.clone()),
            ("disposal.date", disposal_part(|d| Some(d.date.clone()))),
            ("disposal.method", disposal_part(|d| Some(d.method.clone()))),
            ("disposal.vendor", disposal_part(|d| d.vendor.clone())),
            (
                "disposal.certificate",
                disposal_part(|d| d.certificate.clone()),
            ),
        ]
    }

    /// Copies the inventory-derived fields from `newer` (the record seen
    /// more recently), keeping this record's value where `newer` knows
    /// nothing. Used when merging two records of one machine.
    pub fn take_inventory_from(&mut self, newer: &Asset) {
        fn pick<T: Clone>(mine: &mut Option<T>, theirs: &Option<T>) {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        }
        fn pick_list<T: Clone>(mine: &mut Vec<T>, theirs: &[T]) {
            if !theirs.is_empty() {
                *mine = theirs.to_vec();
            }
        }
        pick(&mut self.hostname, &newer.hostname);
        pick(&mut self.fqdn, &newer.fqdn);
        pick(&mut self.os, &newer.os);
        pick(&mut self.os_id, &newer.os_id);
        pick(&mut self.os_version, &newer.os_version);
        pick(&mut self.kernel, &newer.kernel);
        pick(&mut self.arch, &newer.arch);
        pick(&mut self.cpu_model, &newer.cpu_model);
        pick(&mut self.cpu_cores, &newer.cpu_cores);
        pick(&mut self.cpu_threads, &newer.cpu_threads);
        pick(&mut self.memory_total_bytes, &newer.memory_total_bytes);
        pick(&mut self.serial, &newer.serial);
        pick(&mut self.vendor, &newer.vendor);
        pick(&mut self.model, &newer.model);
        pick(&mut self.dmi_uuid, &newer.dmi_uuid);
        pick(&mut self.machine_id, &newer.machine_id);
        pick_list(&mut self.macs, &newer.macs);
        pick_list(&mut self.ips, &newer.ips);
        pick_list(&mut self.disks, &newer.disks);
        self.patch = newer.patch.clone();
        self.security_pending_since_ms = newer.security_pending_since_ms;
        pick(&mut self.package_count, &newer.package_count);
    }
}

/// Fields whose text differs between `before` and `after`, in field order.
pub fn changed_fields(before: &Asset, after: &Asset) -> Vec<FieldChange> {
    before
        .field_values()
        .into_iter()
        .zip(after.field_values())
        .filter(|((_, old), (_, new))| old != new)
        .map(|((field, before), (_, after))| FieldChange {
            field,
            before,
            after,
        })
        .collect()
}

/// The new `security_pending_since_ms` after a `patch.security` report of
/// `security` updates: the first report above zero starts the clock, later
/// ones keep it, a zero stops it.
pub fn security_pending_since(previous: Option<i64>, security: u64, now_ms: i64) -> Option<i64> {
    if security == 0 {
        None
    } else {
        Some(previous.unwrap_or(now_ms))
    }
}

/// "Debian GNU/Linux 12", without repeating a version the name already has.
fn os_display(name: Option<&str>, version: Option<&str>) -> Option<String> {
    match (name, version) {
        (Some(name), Some(version)) if !name.contains(version) => Some(format!("{name} {version}")),
        (Some(name), _) => Some(name.to_string()),
        (None, Some(version)) => Some(version.to_string()),
        (None, None) => None,
    }
}

fn macs_of(interfaces: &[InterfaceRecord]) -> Vec<String> {
    let macs: BTreeSet<String> = interfaces
        .iter()
        .filter(|interface| !is_virtual_interface(&interface.name))
        .filter_map(|interface| normalize_mac(&interface.mac))
        .collect();
    macs.into_iter().collect()
}

fn ips_of(interfaces: &[InterfaceRecord]) -> Vec<String> {
    let ips: BTreeSet<String> = interfaces
        .iter()
        .filter(|interface| !is_virtual_interface(&interface.name))
        .flat_map(|interface| interface.ipv4.iter().chain(&interface.ipv6))
        .map(|ip| ip.trim().to_ascii_lowercase())
        .filter(|ip| {
            !ip.is_empty()
                && !ip.starts_with("127.")
                && ip != "::1"
                && !ip.starts_with("::1/")
                && !ip.starts_with("fe80:")
        })
        .collect();
    ips.into_iter().collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn facts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    pub(crate) fn interface(name: &str, mac: &str, ipv4: &[&str]) -> InterfaceRecord {
        InterfaceRecord {
            name: name.into(),
            mac: mac.into(),
            ipv4: ipv4.iter().map(|ip| ip.to_string()).collect(),
            ipv6: Vec::new(),
        }
    }

    pub(crate) fn disk(mount: &str, size_bytes: u64) -> DiskRecord {
        DiskRecord {
            device: format!("/dev/disk{}", mount.len()),
            model: None,
            size_bytes,
            filesystem: "ext4".into(),
            mount: mount.into(),
        }
    }

    /// A Dell server as its agent reports it.
    pub(crate) fn server_facts() -> BTreeMap<String, String> {
        facts(&[
            ("hostname", "web-01"),
            ("fqdn", "web-01.example.com"),
            ("os_name", "Debian GNU/Linux"),
            ("os_version", "12"),
            ("os_id", "debian"),
            ("kernel", "6.1.0-18-amd64"),
            ("arch", "x86_64"),
            ("cpu_model", "Intel(R) Xeon(R) Silver 4314"),
            ("cpu_cores", "16"),
            ("cpu_threads", "32"),
            ("memory_total_bytes", "68719476736"),
            ("machine_id", "0123456789ABCDEF0123456789abcdef"),
            ("dmi_sys_vendor", "Dell Inc."),
            ("dmi_product_name", "PowerEdge R650"),
            ("dmi_product_serial", "7QXK2M3"),
            ("dmi_product_uuid", "4C4C4544-0051-5810-804B-B7C04F324D33"),
            ("dmi_board_serial", ".7QXK2M3.CNFCP0098B00JQ."),
            ("boot_time", "1700000000"),
            ("agent_version", "0.4.0"),
            ("package_count", "812"),
            ("running_kernel", "6.1.0-18-amd64"),
            ("newest_installed_kernel", "6.1.0-18-amd64"),
        ])
    }

    pub(crate) fn server_interfaces() -> Vec<InterfaceRecord> {
        vec![
            interface("eno1", "B0:7B:25:00:00:01", &["10.0.0.5/24"]),
            interface("docker0", "02:42:ac:11:00:01", &["172.17.0.1/16"]),
            interface("veth1234", "9e:00:00:00:00:02", &[]),
        ]
    }

    pub(crate) fn server(id: &str, agent_id: &str) -> Asset {
        let mut asset = Asset::discovered(id, agent_id, 1_000);
        asset.apply_inventory(
            &server_facts(),
            &[disk("/", 500_000_000_000)],
            &server_interfaces(),
        );
        asset
    }

    #[test]
    fn inventory_fills_the_record_with_cleaned_values() {
        let asset = server("a1", "agent-1");
        assert_eq!(asset.hostname.as_deref(), Some("web-01"));
        assert_eq!(asset.os.as_deref(), Some("Debian GNU/Linux 12"));
        assert_eq!(asset.cpu_cores, Some(16));
        assert_eq!(asset.memory_total_bytes, Some(68_719_476_736));
        assert_eq!(asset.serial.as_deref(), Some("7QXK2M3"));
        assert_eq!(
            asset.dmi_uuid.as_deref(),
            Some("4c4c4544-0051-5810-804b-b7c04f324d33")
        );
        assert_eq!(
            asset.machine_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        // docker0 and veth are virtual: their MACs churn and are not
        // identity, and their addresses are the same on every host.
        assert_eq!(asset.macs, ["b0:7b:25:00:00:01"]);
        assert_eq!(asset.ips, ["10.0.0.5/24"]);
        assert_eq!(asset.package_count, Some(812));
        assert_eq!(
            asset.patch.running_kernel.as_deref(),
            Some("6.1.0-18-amd64")
        );
    }

    #[test]
    fn junk_serial_falls_back_to_the_board_serial() {
        let mut asset = Asset::discovered("a1", "agent-1", 0);
        asset.apply_inventory(
            &facts(&[
                ("dmi_product_serial", "To be filled by O.E.M."),
                ("dmi_board_serial", "BSN12345"),
                ("dmi_product_uuid", "00000000-0000-0000-0000-000000000000"),
            ]),
            &[],
            &[],
        );
        assert_eq!(asset.serial.as_deref(), Some("BSN12345"));
        assert_eq!(asset.dmi_uuid, None);
    }

    #[test]
    fn missing_facts_do_not_erase_known_values() {
        let mut asset = server("a1", "agent-1");
        let changes = asset.apply_inventory(&facts(&[("hostname", "web-01")]), &[], &[]);
        assert_eq!(changes, []);
        assert_eq!(asset.serial.as_deref(), Some("7QXK2M3"));
        assert_eq!(asset.macs.len(), 1);
    }

    #[test]
    fn changes_list_every_changed_field() {
        let mut asset = server("a1", "agent-1");
        let mut facts = server_facts();
        facts.insert("memory_total_bytes".into(), "137438953472".into());
        facts.insert("hostname".into(), "web-02".into());
        let changes = asset.apply_inventory(&facts, &[], &[]);
        let fields: Vec<_> = changes.iter().map(|change| change.field).collect();
        assert_eq!(fields, ["hostname", "memory_total_bytes"]);
        assert_eq!(changes[0].before.as_deref(), Some("web-01"));
        assert_eq!(changes[0].after.as_deref(), Some("web-02"));
    }

    #[test]
    fn mark_seen_makes_the_agent_current_and_never_goes_back() {
        let mut asset = Asset::discovered("a1", "agent-1", 5_000);
        asset.mark_seen("agent-2", 6_000);
        asset.mark_seen("agent-1", 4_000);
        assert_eq!(asset.agent_ids, ["agent-1", "agent-2"]);
        assert_eq!(asset.last_seen_ms, 6_000);
    }

    #[test]
    fn patch_metrics_update_the_patch_state() {
        let mut asset = Asset::discovered("a1", "agent-1", 0);
        assert!(asset.apply_patch_metric("patch.pending", 12.0, 10));
        assert!(asset.apply_patch_metric("patch.security", 3.0, 10));
        assert!(asset.apply_patch_metric("patch.reboot_required", 1.0, 10));
        assert!(asset.apply_patch_metric("patch.last_update_age_days", 2.5, 10));
        assert!(!asset.apply_patch_metric("patch.pending", f64::NAN, 10));
        assert!(!asset.apply_patch_metric("cpu.usage", 1.0, 10));
        assert_eq!(asset.patch.pending, Some(12));
        assert_eq!(asset.patch.reboot_required, Some(true));
        assert_eq!(asset.security_pending_since_ms, Some(10));
        asset.apply_patch_metric("patch.security", 0.0, 20);
        assert_eq!(asset.security_pending_since_ms, None);
    }

    /// Guards `field_values` against a field added to `Asset` (or
    /// `PatchState`, `Disposal`) but left out of history.
    #[test]
    fn field_values_cover_every_serialized_field() {
        let mut asset = server("a1", "agent-1");
        asset.disposal = Some(Disposal {
            date: "2025-01-01".into(),
            method: "sold".into(),
            vendor: None,
            certificate: None,
        });
        let json = serde_json::to_value(&asset).unwrap();
        let mut serialized = Vec::new();
        for (key, value) in json.as_object().unwrap() {
            match value.as_object() {
                Some(nested) => {
                    serialized.extend(nested.keys().map(|inner| format!("{key}.{inner}")))
                }
                None => serialized.push(key.clone()),
            }
        }
        let mut rendered: Vec<String> = asset
            .field_values()
            .into_iter()
            .map(|(field, _)| field.to_string())
            .collect();
        serialized.sort();
        rendered.sort();
        assert_eq!(serialized, rendered);
    }

    #[test]
    fn round_trips_through_json() {
        let asset = server("a1", "agent-1");
        let json = serde_json::to_string(&asset).unwrap();
        let back: Asset = serde_json::from_str(&json).unwrap();
        assert_eq!(back, asset);
        assert!(json.contains("\"status\":\"active\""), "{json}");
    }
}
