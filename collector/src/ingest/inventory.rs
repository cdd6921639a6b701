//! Maps proto inventory messages to store records, bounding their size and
//! cleaning every agent string of control characters.
//!
//! What is over a limit is dropped or cut, never the whole update: the
//! update shares the batches' sequence space, so refusing it would make the
//! agent resend it forever. Entries whose name is an identity (fact keys,
//! package names and versions) are dropped when too long rather than cut, so
//! two of them never become one; descriptive text (fact values, disk and
//! interface fields, the agent version) is cut.

use std::collections::{BTreeMap, BTreeSet};

use steward_proto::v1 as pb;

use super::validate::clean;
use crate::store::{DiskRecord, InterfaceRecord, InventorySnapshot, InventoryUpdate};

/// Bounds on what an agent may say about its host (`[limits]` in collector.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryLimits {
    /// Facts held per agent (in a hello, an update, and in total).
    pub max_facts: usize,
    pub max_fact_key_bytes: usize,
    pub max_fact_value_bytes: usize,
    pub max_disks: usize,
    pub max_interfaces: usize,
    /// IPv4 plus IPv6 addresses per interface.
    pub max_addresses_per_interface: usize,
    /// Packages held per agent (in one update and in total).
    pub max_packages: usize,
    /// Longest package name, and longest package version.
    pub max_package_field_bytes: usize,
    /// Longest disk or interface field (device, model, mount, name, address).
    pub max_text_bytes: usize,
    pub max_agent_version_bytes: usize,
}

impl Default for InventoryLimits {
    fn default() -> Self {
        Self {
            max_facts: 256,
            max_fact_key_bytes: 128,
            max_fact_value_bytes: 4096,
            max_disks: 256,
            max_interfaces: 1024,
            max_addresses_per_interface: 64,
            max_packages: 20_000,
            max_package_field_bytes: 512,
            max_text_bytes: 1024,
            max_agent_version_bytes: 128,
        }
    }
}

/// What bounding removed, for the counters and the (throttled) log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Entries dropped: over a count limit, or an identity too long.
    pub dropped: u64,
    /// Strings cut to their limit.
    pub truncated: u64,
}

impl Trimmed {
    pub fn is_empty(&self) -> bool {
        self.dropped == 0 && self.truncated == 0
    }
}

/// `value` cleaned and cut to at most `max` bytes on a character boundary.
pub fn bounded_text(value: String, max: usize, trimmed: &mut Trimmed) -> String {
    let mut value = clean(value);
    if value.len() > max {
        let mut end = max;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
        trimmed.truncated += 1;
    }
    value
}

/// Facts cleaned and bounded; beyond `max_facts` the first keys in sorted
/// order are kept, so the same oversized set always keeps the same facts.
pub fn bounded_facts(
    facts: impl IntoIterator<Item = (String, String)>,
    limits: &InventoryLimits,
    trimmed: &mut Trimmed,
) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    for (key, value) in facts {
        let key = clean(key);
        if key.len() > limits.max_fact_key_bytes {
            trimmed.dropped += 1;
            continue;
        }
        kept.insert(key, value);
    }
    // Counted first, so a fact dropped for the count is not also counted as cut.
    keep_first(kept, limits.max_facts, trimmed)
        .into_iter()
        .map(|(key, value)| {
            (
                key,
                bounded_text(value, limits.max_fact_value_bytes, trimmed),
            )
        })
        .collect()
}

fn keep_first<V>(
    map: BTreeMap<String, V>,
    max: usize,
    trimmed: &mut Trimmed,
) -> BTreeMap<String, V> {
    if map.len() <= max {
        return map;
    }
    trimmed.dropped += (map.len() - max) as u64;
    map.into_iter().take(max).collect()
}

fn bounded_list<T>(mut items: Vec<T>, max: usize, trimmed: &mut Trimmed) -> Vec<T> {
    if items.len() > max {
        trimmed.dropped += (items.len() - max) as u64;
        items.truncate(max);
    }
    items
}

fn disk(disk: pb::Disk, limits: &InventoryLimits, trimmed: &mut Trimmed) -> DiskRecord {
    let max = limits.max_text_bytes;
    DiskRecord {
        device: bounded_text(disk.device, max, trimmed),
        model: (!disk.model.is_empty()).then(|| bounded_text(disk.model, max, trimmed)),
        size_bytes: disk.size_bytes,
        filesystem: bounded_text(disk.filesystem, max, trimmed),
        mount: bounded_text(disk.mount, max, trimmed),
    }
}

fn interface(
    interface: pb::NetworkInterface,
    limits: &InventoryLimits,
    trimmed: &mut Trimmed,
) -> InterfaceRecord {
    let max = limits.max_text_bytes;
    let ipv4 = bounded_list(interface.ipv4, limits.max_addresses_per_interface, trimmed);
    let room = limits.max_addresses_per_interface - ipv4.len();
    let ipv6 = bounded_list(interface.ipv6, room, trimmed);
    InterfaceRecord {
        name: bounded_text(interface.name, max, trimmed),
        mac: bounded_text(interface.mac, max, trimmed),
        ipv4: ipv4
            .into_iter()
            .map(|address| bounded_text(address, max, trimmed))
            .collect(),
        ipv6: ipv6
            .into_iter()
            .map(|address| bounded_text(address, max, trimmed))
            .collect(),
    }
}

/// The hello's agent version and facts, bounded like an update's.
pub fn bound_hello(mut hello: pb::Hello, limits: &InventoryLimits) -> (pb::Hello, Trimmed) {
    let mut trimmed = Trimmed::default();
    hello.agent_version = bounded_text(
        std::mem::take(&mut hello.agent_version),
        limits.max_agent_version_bytes,
        &mut trimmed,
    );
    if let Some(inventory) = hello.inventory.as_mut() {
        // Only the facts of a hello are used; disks and interfaces arrive in updates.
        inventory.facts = bounded_facts(std::mem::take(&mut inventory.facts), limits, &mut trimmed)
            .into_iter()
            .collect();
        inventory.disks = Vec::new();
        inventory.interfaces = Vec::new();
    }
    (hello, trimmed)
}

pub fn to_record(
    agent_id: &str,
    epoch: u64,
    received_ms: i64,
    update: pb::InventoryUpdate,
    limits: &InventoryLimits,
) -> (InventoryUpdate, Trimmed) {
    let mut trimmed = Trimmed::default();
    let facts_changed = bounded_facts(update.facts_changed, limits, &mut trimmed);
    // Cleaned like the keys they name, so removing a fact stored cleaned still finds it.
    let facts_removed: Vec<String> =
        bounded_list(update.facts_removed, limits.max_facts, &mut trimmed)
            .into_iter()
            .map(clean)
            .collect();
    let disks = (update.full || update.disks_changed).then(|| {
        bounded_list(update.disks, limits.max_disks, &mut trimmed)
            .into_iter()
            .map(|item| disk(item, limits, &mut trimmed))
            .collect()
    });
    let interfaces = (update.full || update.interfaces_changed).then(|| {
        bounded_list(update.interfaces, limits.max_interfaces, &mut trimmed)
            .into_iter()
            .map(|item| interface(item, limits, &mut trimmed))
            .collect()
    });
    // A cleaned name no longer matches the agent's package fingerprint, so
    // such an agent resends its full list once per session: a small price
    // for names no package manager produces. The same goes for packages
    // dropped here.
    let max_field = limits.max_package_field_bytes;
    let mut packages_upserted = BTreeMap::new();
    for package in update.packages_upserted {
        if package.name.len() > max_field || package.version.len() > max_field {
            trimmed.dropped += 1;
            continue;
        }
        packages_upserted.insert(clean(package.name), clean(package.version));
    }
    let packages_upserted = keep_first(packages_upserted, limits.max_packages, &mut trimmed);
    let packages_removed = bounded_list(update.packages_removed, limits.max_packages, &mut trimmed)
        .into_iter()
        .map(clean)
        .collect();
    let record = InventoryUpdate {
        agent_id: agent_id.to_string(),
        epoch,
        seq: update.seq,
        received_ms,
        full: update.full,
        facts_changed,
        facts_removed,
        disks,
        interfaces,
        packages_replaced: update.packages_replaced,
        packages_upserted,
        packages_removed,
        packages_fingerprint: update.packages_fingerprint,
    };
    (record, trimmed)
}

/// Whether a diff could take the stored facts past `max_facts`, so the
/// caller must look at what is stored (see [`cap_new_facts`]).
pub fn diff_may_exceed_facts(
    update: &InventoryUpdate,
    stored: &InventorySnapshot,
    limits: &InventoryLimits,
) -> bool {
    !update.full && stored.facts.len() + update.facts_changed.len() > limits.max_facts
}

/// Drops the facts of a diff that are new to `stored` and would take the
/// total past `max_facts`; changes to facts already held always apply.
pub fn cap_new_facts(
    update: &mut InventoryUpdate,
    stored: &BTreeMap<String, String>,
    limits: &InventoryLimits,
    trimmed: &mut Trimmed,
) {
    cap_new_entries(
        &mut update.facts_changed,
        &update.facts_removed,
        stored,
        limits.max_facts,
        trimmed,
    );
}

/// Keeps every change to an entry `stored` holds (and does not remove), and
/// new entries only while the total stays within `max`; counts the rest.
fn cap_new_entries(
    changed: &mut BTreeMap<String, String>,
    removed: &[String],
    stored: &BTreeMap<String, String>,
    max: usize,
    trimmed: &mut Trimmed,
) {
    let removed: BTreeSet<&String> = removed
        .iter()
        .filter(|key| stored.contains_key(*key))
        .collect();
    let mut room = max.saturating_sub(stored.len().saturating_sub(removed.len()));
    changed.retain(|key, _| {
        if stored.contains_key(key) && !removed.contains(key) {
            return true;
        }
        if room > 0 {
            room -= 1;
            true
        } else {
            trimmed.dropped += 1;
            false
        }
    });
}

/// Whether a package diff could take the stored list past `max_packages`,
/// so the caller must read the stored list (see [`cap_new_packages`]).
pub fn diff_may_exceed_packages(
    update: &InventoryUpdate,
    stored_count: u64,
    limits: &InventoryLimits,
) -> bool {
    !update.packages_replaced
        && stored_count as usize + update.packages_upserted.len() > limits.max_packages
}

/// Drops the packages of a diff that are new to `stored` and would take the
/// list past `max_packages`; version changes of held packages always apply.
pub fn cap_new_packages(
    update: &mut InventoryUpdate,
    stored: &BTreeMap<String, String>,
    limits: &InventoryLimits,
    trimmed: &mut Trimmed,
) {
    cap_new_entries(
        &mut update.packages_upserted,
        &update.packages_removed,
        stored,
        limits.max_packages,
        trimmed,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inventory_string_loses_control_characters() {
        let update = pb::InventoryUpdate {
            seq: 1,
            full: true,
            facts_changed: [("os\x1b".to_string(), "Debian\n13\x07".to_string())].into(),
            facts_removed: vec!["old\x00fact".into()],
            disks: vec![pb::Disk {
                device: "/dev/sda\x1b[31m".into(),
                model: "Disk\tModel".into(),
                size_bytes: 1,
                filesystem: "ext4\x7f".into(),
                mount: "/\r".into(),
            }],
            interfaces: vec![pb::NetworkInterface {
                name: "eth0\x1b".into(),
                mac: "00:11\n".into(),
                ipv4: vec!["10.0.0.1\x00".into()],
                ipv6: vec!["::1\u{85}".into()],
            }],
            packages_upserted: vec![pb::Package {
                name: "curl\x1b[2J".into(),
                version: "8.0\n".into(),
            }],
            packages_removed: vec!["wget\x08".into()],
            ..Default::default()
        };
        let (record, trimmed) = to_record("a1", 1, 1000, update, &InventoryLimits::default());
        assert!(trimmed.is_empty(), "{trimmed:?}");
        assert_eq!(record.facts_changed["os"], "Debian 13");
        assert_eq!(record.facts_removed, ["oldfact"]);
        let disks = record.disks.unwrap();
        assert_eq!(
            (
                disks[0].device.as_str(),
                disks[0].model.as_deref(),
                disks[0].filesystem.as_str(),
                disks[0].mount.as_str()
            ),
            ("/dev/sda[31m", Some("Disk Model"), "ext4", "/ ")
        );
        let interfaces = record.interfaces.unwrap();
        assert_eq!(
            (interfaces[0].name.as_str(), interfaces[0].mac.as_str()),
            ("eth0", "00:11 ")
        );
        assert_eq!(
            (interfaces[0].ipv4.as_slice(), interfaces[0].ipv6.as_slice()),
            (&["10.0.0.1".to_string()][..], &["::1".to_string()][..])
        );
        assert_eq!(record.packages_upserted["curl[2J"], "8.0 ");
        assert_eq!(record.packages_removed, ["wget"]);
    }

    fn small() -> InventoryLimits {
        InventoryLimits {
            max_facts: 2,
            max_fact_key_bytes: 8,
            max_fact_value_bytes: 4,
            max_disks: 1,
            max_interfaces: 1,
            max_addresses_per_interface: 2,
            max_packages: 2,
            max_package_field_bytes: 8,
            max_text_bytes: 8,
            max_agent_version_bytes: 5,
        }
    }

    #[test]
    fn an_oversized_update_is_cut_to_its_limits_and_counted() {
        let address = |text: &str| text.to_string();
        let update = pb::InventoryUpdate {
            seq: 1,
            full: true,
            packages_replaced: true,
            facts_changed: [
                ("b".to_string(), "ok".to_string()),
                ("a".to_string(), "long value".to_string()),
                ("c".to_string(), "over the count".to_string()),
                ("key-too-long".to_string(), "x".to_string()),
            ]
            .into(),
            disks: vec![
                pb::Disk {
                    device: "/dev/sda-with-a-long-name".into(),
                    ..Default::default()
                },
                pb::Disk::default(),
            ],
            interfaces: vec![
                pb::NetworkInterface {
                    name: "eth0".into(),
                    ipv4: vec![address("10.0.0.1"), address("10.0.0.2")],
                    ipv6: vec![address("::1")],
                    ..Default::default()
                },
                pb::NetworkInterface::default(),
            ],
            packages_upserted: ["zsh", "bash", "curl", "name-far-too-long"]
                .into_iter()
                .map(|name| pb::Package {
                    name: name.into(),
                    version: "1".into(),
                })
                .collect(),
            ..Default::default()
        };
        let (record, trimmed) = to_record("a1", 1, 1000, update, &small());
        assert_eq!(
            record.facts_changed,
            BTreeMap::from([("a".into(), "long".into()), ("b".into(), "ok".into())])
        );
        let disks = record.disks.unwrap();
        assert_eq!((disks.len(), disks[0].device.as_str()), (1, "/dev/sda"));
        let interfaces = record.interfaces.unwrap();
        assert_eq!(interfaces.len(), 1);
        assert_eq!((interfaces[0].ipv4.len(), interfaces[0].ipv6.len()), (2, 0));
        assert_eq!(
            record.packages_upserted.keys().collect::<Vec<_>>(),
            ["bash", "curl"]
        );
        // Dropped: a long fact key, fact "c", a disk, an interface, an IPv6
        // address, a long package name, package "zsh". Cut: a fact value, a device.
        assert_eq!(
            trimmed,
            Trimmed {
                dropped: 7,
                truncated: 2
            }
        );
    }

    #[test]
    fn hello_version_and_facts_are_bounded() {
        let hello = pb::Hello {
            agent_version: "0.1.0-with-a-long-suffix".into(),
            inventory: Some(pb::Inventory {
                facts: [
                    ("os".to_string(), "Debian".to_string()),
                    ("arch".to_string(), "x86".to_string()),
                    ("kernel".to_string(), "6".to_string()),
                ]
                .into(),
                disks: vec![pb::Disk::default()],
                interfaces: vec![],
            }),
            ..Default::default()
        };
        let (hello, trimmed) = bound_hello(hello, &small());
        assert_eq!(hello.agent_version, "0.1.0");
        let inventory = hello.inventory.unwrap();
        let mut keys: Vec<_> = inventory.facts.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["arch", "kernel"]);
        assert_eq!(inventory.facts["arch"], "x86");
        assert!(inventory.disks.is_empty());
        assert_eq!(
            trimmed,
            Trimmed {
                dropped: 1,
                truncated: 1
            }
        );
    }

    #[test]
    fn diffs_cannot_grow_facts_or_packages_past_the_limit() {
        let limits = small();
        let stored_facts = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let mut update = InventoryUpdate {
            facts_changed: BTreeMap::from([
                ("a".to_string(), "2".to_string()),
                ("b".to_string(), "1".to_string()),
                ("c".to_string(), "1".to_string()),
            ]),
            ..Default::default()
        };
        let mut trimmed = Trimmed::default();
        let snapshot = InventorySnapshot {
            facts: stored_facts.clone(),
            disks: vec![],
            interfaces: vec![],
            package_count: 0,
            packages_fingerprint: 0,
            updated_ms: 0,
        };
        assert!(diff_may_exceed_facts(&update, &snapshot, &limits));
        cap_new_facts(&mut update, &stored_facts, &limits, &mut trimmed);
        // "a" is a change to a held fact; only one new fact fits.
        assert_eq!(update.facts_changed.keys().collect::<Vec<_>>(), ["a", "b"]);

        let stored_packages = BTreeMap::from([
            ("bash".to_string(), "1".to_string()),
            ("curl".to_string(), "1".to_string()),
        ]);
        let mut update = InventoryUpdate {
            packages_upserted: BTreeMap::from([
                ("bash".to_string(), "2".to_string()),
                ("vim".to_string(), "1".to_string()),
                ("zsh".to_string(), "1".to_string()),
            ]),
            packages_removed: vec!["curl".into()],
            ..Default::default()
        };
        assert!(diff_may_exceed_packages(&update, 2, &limits));
        cap_new_packages(&mut update, &stored_packages, &limits, &mut trimmed);
        // curl goes, so one new package fits beside bash.
        assert_eq!(
            update.packages_upserted.keys().collect::<Vec<_>>(),
            ["bash", "vim"]
        );
        assert_eq!(
            trimmed,
            Trimmed {
                dropped: 2,
                truncated: 0
            }
        );
    }
}
