//! Disks and network interfaces, from sysinfo, plus the drive model from
//! sysfs (sysinfo does not know it).
//!
//! Output is sorted and de-duplicated so that an unchanged host produces an
//! identical list every time; otherwise every collect would ship a diff.

use std::collections::BTreeMap;
use std::path::Path;

use sysinfo::{Disks, Networks};
use tracing::debug;

use super::{DiskInfo, InterfaceInfo};

/// Mounted filesystems, one entry per mount point, sorted by mount point.
/// Drive models are read from `sys/block` under `root`.
pub fn disks(root: &Path) -> Vec<DiskInfo> {
    let disks = match Disks::new_with_refreshed_list() {
        Ok(disks) => disks,
        Err(error) => {
            debug!(message = "Cannot list disks.", %error);
            return Vec::new();
        }
    };
    // Bind mounts list one filesystem several times; the first entry for a
    // mount point wins, as in the disk probe.
    let mut by_mount = BTreeMap::new();
    for disk in disks.iter() {
        let mount = disk.mount_point().to_string_lossy().into_owned();
        by_mount.entry(mount.clone()).or_insert_with(|| {
            let device = disk.name().to_string_lossy().into_owned();
            DiskInfo {
                model: disk_model(root, &device),
                device,
                size_bytes: disk.total_space(),
                filesystem: disk.file_system().to_string_lossy().into_owned(),
                mount,
            }
        });
    }
    by_mount.into_values().collect()
}

/// Network interfaces other than loopback, sorted by name, each with its
/// addresses sorted.
pub fn interfaces() -> Vec<InterfaceInfo> {
    let networks = match Networks::new_with_refreshed_list() {
        Ok(networks) => networks,
        Err(error) => {
            debug!(message = "Cannot list network interfaces.", %error);
            return Vec::new();
        }
    };
    let mut interfaces: Vec<InterfaceInfo> = networks
        .iter()
        .filter_map(|(name, data)| {
            let addresses: Vec<_> = data.ip_networks().iter().map(|net| net.addr).collect();
            let name = name.to_string_lossy().into_owned();
            // Loopback carries no inventory information (its addresses are
            // the same on every host), so it is left out.
            let loopback = name == "lo"
                || (!addresses.is_empty() && addresses.iter().all(|addr| addr.is_loopback()));
            if loopback {
                return None;
            }
            let mac = data.mac_address();
            let (mut ipv4, mut ipv6) = (Vec::new(), Vec::new());
            for net in data.ip_networks() {
                let text = format!("{}/{}", net.addr, net.prefix);
                if net.addr.is_ipv4() {
                    ipv4.push(text);
                } else {
                    ipv6.push(text);
                }
            }
            ipv4.sort();
            ipv6.sort();
            Some(InterfaceInfo {
                name,
                mac: (!mac.is_unspecified()).then(|| mac.to_string()),
                ipv4,
                ipv6,
            })
        })
        .collect();
    interfaces.sort();
    interfaces
}

/// The model of the drive behind `device` (`/dev/sda1`, `nvme0n1p2`), from
/// `sys/block/<disk>/device/model` under `root`. Partitions are mapped to
/// their disk by name. Device-mapper, network and virtual filesystems, and
/// virtio disks (which have no model file) give `None`.
pub fn disk_model(root: &Path, device: &str) -> Option<String> {
    let name = device.strip_prefix("/dev/").unwrap_or(device);
    if name.is_empty() || name.contains('/') {
        return None;
    }
    block_device_candidates(name).into_iter().find_map(|disk| {
        let text =
            std::fs::read_to_string(root.join("sys/block").join(disk).join("device/model")).ok()?;
        let model = text.trim();
        (!model.is_empty()).then(|| model.to_string())
    })
}

/// `name` itself, then the disk a partition called `name` would belong to:
/// `sda1` → `sda`; `nvme0n1p2`, `mmcblk0p1` → `nvme0n1`, `mmcblk0` (a `p`
/// separates the partition number when the disk name ends in a digit).
fn block_device_candidates(name: &str) -> Vec<&str> {
    let mut candidates = vec![name];
    let without_number = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if without_number.len() < name.len() && !without_number.is_empty() {
        let disk = match without_number.strip_suffix('p') {
            Some(disk) if disk.ends_with(|c: char| c.is_ascii_digit()) => disk,
            _ => without_number,
        };
        candidates.push(disk);
    }
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory/root")
    }

    #[test]
    fn finds_the_model_of_disks_and_their_partitions() {
        let root = fixture_root();
        let cases = [
            ("/dev/sda", Some("Samsung SSD 870")),
            ("/dev/sda1", Some("Samsung SSD 870")),
            ("sda2", Some("Samsung SSD 870")),
            ("/dev/nvme0n1p2", Some("SAMSUNG MZVL2512HCJQ-00B00")),
            ("/dev/nvme0n1", Some("SAMSUNG MZVL2512HCJQ-00B00")),
            // virtio: sysfs has the device but no model file.
            ("/dev/vda", None),
            ("/dev/mapper/vg-root", None),
            ("overlay", None),
            ("", None),
        ];
        for (device, expected) in cases {
            assert_eq!(disk_model(&root, device).as_deref(), expected, "{device}");
        }
    }

    #[test]
    fn maps_partitions_to_disks_by_name() {
        let cases: [(&str, &[&str]); 6] = [
            ("sda", &["sda"]),
            ("sda1", &["sda1", "sda"]),
            ("nvme0n1p2", &["nvme0n1p2", "nvme0n1"]),
            ("mmcblk0p1", &["mmcblk0p1", "mmcblk0"]),
            ("nvme0n1", &["nvme0n1", "nvme0n"]),
            ("loop0", &["loop0", "loop"]),
        ];
        for (name, expected) in cases {
            assert_eq!(block_device_candidates(name), expected, "{name}");
        }
    }

    #[test]
    fn this_machine_has_a_root_disk_and_no_loopback_interface() {
        let disks = disks(Path::new("/"));
        let root = disks.iter().find(|disk| disk.mount == "/").unwrap();
        assert!(root.size_bytes > 0, "{root:?}");
        assert!(!root.filesystem.is_empty(), "{root:?}");
        let mut mounts: Vec<_> = disks.iter().map(|disk| &disk.mount).collect();
        let sorted = mounts.clone();
        mounts.sort();
        mounts.dedup();
        assert_eq!(mounts, sorted, "sorted and unique");

        let interfaces = interfaces();
        assert!(interfaces.iter().all(|iface| iface.name != "lo"));
        for iface in &interfaces {
            assert!(
                iface
                    .ipv4
                    .iter()
                    .all(|ip| ip.contains('.') && ip.contains('/'))
            );
            assert!(
                iface
                    .ipv6
                    .iter()
                    .all(|ip| ip.contains(':') && ip.contains('/'))
            );
        }
    }
}
