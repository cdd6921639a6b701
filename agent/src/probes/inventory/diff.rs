//! What changed between two inventories, and how to replay that change.
//!
//! Pure functions over values: no I/O, no clock. The one invariant the rest
//! of Steward relies on is `apply(old, diff(old, new)) == new` for every pair
//! of inventories, checked below on tables and on random inventories.
//!
//! Facts and packages change one key at a time, so they travel as upserts
//! and removals. Disks and interfaces are short lists whose entries have no
//! stable identity (a renamed device is a different entry), so a change
//! ships the whole list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DiskInfo, InterfaceInfo, Inventory};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryDiff {
    /// Facts that are new or have a new value.
    pub facts_changed: BTreeMap<String, String>,
    /// Facts that disappeared (became unknown), sorted.
    pub facts_removed: Vec<String>,
    /// The complete new disk list, if it differs.
    pub disks: Option<Vec<DiskInfo>>,
    /// The complete new interface list, if it differs.
    pub interfaces: Option<Vec<InterfaceInfo>>,
    /// Packages that are new or have a new version.
    pub packages_upserted: BTreeMap<String, String>,
    /// Packages that were removed, sorted.
    pub packages_removed: Vec<String>,
}

impl InventoryDiff {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// The change from `old` to `new`, or `None` if they are identical.
pub fn diff(old: &Inventory, new: &Inventory) -> Option<InventoryDiff> {
    let (facts_changed, facts_removed) = diff_maps(&old.facts, &new.facts);
    let (packages_upserted, packages_removed) = diff_maps(&old.packages, &new.packages);
    let changes = InventoryDiff {
        facts_changed,
        facts_removed,
        disks: (old.disks != new.disks).then(|| new.disks.clone()),
        interfaces: (old.interfaces != new.interfaces).then(|| new.interfaces.clone()),
        packages_upserted,
        packages_removed,
    };
    (!changes.is_empty()).then_some(changes)
}

/// Replays `diff` onto `base`. Applying a diff to the inventory it was
/// computed from yields the newer inventory exactly.
pub fn apply(base: &mut Inventory, diff: &InventoryDiff) {
    apply_maps(&mut base.facts, &diff.facts_changed, &diff.facts_removed);
    apply_maps(
        &mut base.packages,
        &diff.packages_upserted,
        &diff.packages_removed,
    );
    if let Some(disks) = &diff.disks {
        base.disks.clone_from(disks);
    }
    if let Some(interfaces) = &diff.interfaces {
        base.interfaces.clone_from(interfaces);
    }
}

/// Upserts (new or changed values) and removals (keys only in `old`).
fn diff_maps(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let upserted = new
        .iter()
        .filter(|(key, value)| old.get(*key) != Some(*value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let removed = old
        .keys()
        .filter(|key| !new.contains_key(*key))
        .cloned()
        .collect();
    (upserted, removed)
}

fn apply_maps(
    base: &mut BTreeMap<String, String>,
    upserted: &BTreeMap<String, String>,
    removed: &[String],
) {
    for key in removed {
        base.remove(key);
    }
    for (key, value) in upserted {
        base.insert(key.clone(), value.clone());
    }
}

/// An inventory change: a full snapshot (expressed as a diff from nothing,
/// replacing everything) or a diff from the previous one.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryChange {
    pub full: bool,
    pub diff: InventoryDiff,
    /// Fingerprint of the package list after this change.
    pub packages_fingerprint: u64,
    pub timestamp_ms: i64,
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn disk(mount: &str, size_bytes: u64) -> DiskInfo {
        DiskInfo {
            device: "/dev/sda1".into(),
            model: None,
            size_bytes,
            filesystem: "ext4".into(),
            mount: mount.into(),
        }
    }

    fn iface(name: &str, ipv4: &[&str]) -> InterfaceInfo {
        InterfaceInfo {
            name: name.into(),
            mac: Some("02:00:00:00:00:01".into()),
            ipv4: ipv4.iter().map(|s| s.to_string()).collect(),
            ipv6: vec![],
        }
    }

    fn base() -> Inventory {
        Inventory {
            facts: map(&[("hostname", "web01"), ("kernel", "6.1.0-18-amd64")]),
            disks: vec![disk("/", 100)],
            interfaces: vec![iface("eth0", &["192.0.2.2/24"])],
            packages: map(&[("bash", "5.2"), ("openssl", "3.0.11")]),
        }
    }

    #[test]
    fn reports_each_kind_of_change() {
        struct Case {
            name: &'static str,
            change: fn(&mut Inventory),
            expected: InventoryDiff,
        }
        let cases = [
            Case {
                name: "fact changed",
                change: |inv| {
                    inv.facts.insert("kernel".into(), "6.1.0-21-amd64".into());
                },
                expected: InventoryDiff {
                    facts_changed: map(&[("kernel", "6.1.0-21-amd64")]),
                    ..Default::default()
                },
            },
            Case {
                name: "fact added and another removed",
                change: |inv| {
                    inv.facts.remove("hostname");
                    inv.facts.insert("fqdn".into(), "web01.example.com".into());
                },
                expected: InventoryDiff {
                    facts_changed: map(&[("fqdn", "web01.example.com")]),
                    facts_removed: vec!["hostname".into()],
                    ..Default::default()
                },
            },
            Case {
                name: "package upgraded, installed and removed",
                change: |inv| {
                    inv.packages.insert("openssl".into(), "3.0.13".into());
                    inv.packages.insert("curl".into(), "7.88".into());
                    inv.packages.remove("bash");
                },
                expected: InventoryDiff {
                    packages_upserted: map(&[("curl", "7.88"), ("openssl", "3.0.13")]),
                    packages_removed: vec!["bash".into()],
                    ..Default::default()
                },
            },
            Case {
                name: "disk grew: whole list",
                change: |inv| inv.disks = vec![disk("/", 200)],
                expected: InventoryDiff {
                    disks: Some(vec![disk("/", 200)]),
                    ..Default::default()
                },
            },
            Case {
                name: "all disks gone: an empty list, not None",
                change: |inv| inv.disks.clear(),
                expected: InventoryDiff {
                    disks: Some(vec![]),
                    ..Default::default()
                },
            },
            Case {
                name: "interface address changed: whole list",
                change: |inv| inv.interfaces[0].ipv4 = vec!["192.0.2.3/24".into()],
                expected: InventoryDiff {
                    interfaces: Some(vec![iface("eth0", &["192.0.2.3/24"])]),
                    ..Default::default()
                },
            },
        ];
        for case in cases {
            let old = base();
            let mut new = base();
            (case.change)(&mut new);
            let changes = diff(&old, &new);
            assert_eq!(changes.as_ref(), Some(&case.expected), "{}", case.name);
            let mut replayed = old.clone();
            apply(&mut replayed, &case.expected);
            assert_eq!(replayed, new, "{}", case.name);
        }
    }

    #[test]
    fn identical_inventories_have_no_diff() {
        assert_eq!(diff(&base(), &base()), None);
        assert_eq!(diff(&Inventory::default(), &Inventory::default()), None);
        assert!(InventoryDiff::default().is_empty());
    }

    #[test]
    fn from_nothing_the_diff_carries_everything() {
        let new = base();
        let changes = diff(&Inventory::default(), &new).unwrap();
        assert_eq!(changes.facts_changed, new.facts);
        assert_eq!(changes.packages_upserted, new.packages);
        assert_eq!(changes.disks.as_ref(), Some(&new.disks));
        let mut replayed = Inventory::default();
        apply(&mut replayed, &changes);
        assert_eq!(replayed, new);
    }

    /// A random inventory drawn from small pools so that two draws share
    /// many keys and values, which is where diffing can go wrong.
    fn random_inventory(rng: &mut StdRng) -> Inventory {
        fn pick_map(keys: &[&str], values: &[&str], rng: &mut StdRng) -> BTreeMap<String, String> {
            let mut picked = BTreeMap::new();
            for key in keys {
                if rng.random_bool(0.6) {
                    let value = values[rng.random_range(0..values.len())];
                    picked.insert(key.to_string(), value.to_string());
                }
            }
            picked
        }
        let facts = pick_map(
            &[
                "hostname",
                "kernel",
                "os_id",
                "cpu_cores",
                "dmi_product_uuid",
            ],
            &["a", "b", "", "6.1"],
            rng,
        );
        let packages = pick_map(
            &[
                "bash",
                "curl",
                "libc6:amd64",
                "libc6:i386",
                "zlib1g",
                "tzdata",
            ],
            &["1", "2", "1:1.2-1", "5.14, 5.15"],
            rng,
        );
        let disks = (0..rng.random_range(0..3))
            .map(|i| disk(["/", "/home", "/var"][i], rng.random_range(1..3)))
            .collect();
        let interfaces = (0..rng.random_range(0..3))
            .map(|i| {
                let ip = ["10.0.0.1/8", "10.0.0.2/8"][rng.random_range(0..2)];
                iface(["eth0", "eth1", "wlan0"][i], &[ip])
            })
            .collect();
        Inventory {
            facts,
            disks,
            interfaces,
            packages,
        }
    }

    #[test]
    fn apply_of_diff_reproduces_the_new_inventory_for_random_pairs() {
        for seed in 0..2_000u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let old = random_inventory(&mut rng);
            let new = random_inventory(&mut rng);
            let changes = diff(&old, &new);
            assert_eq!(changes.is_none(), old == new, "seed {seed}");
            let mut replayed = old.clone();
            if let Some(changes) = &changes {
                assert!(!changes.is_empty(), "seed {seed}");
                apply(&mut replayed, changes);
            }
            assert_eq!(
                replayed, new,
                "seed {seed}: {old:?} -> {new:?} via {changes:?}"
            );
            // Diffs chain: old → new → old again.
            if let Some(back) = diff(&new, &old) {
                apply(&mut replayed, &back);
            }
            assert_eq!(replayed, old, "seed {seed}: reverse");
        }
    }
}
