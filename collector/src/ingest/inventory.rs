//! Maps proto inventory messages to store records, bounding their size and
//! cleaning every agent string of control characters.

use steward_proto::v1 as pb;

use super::validate::clean;
use crate::store::{DiskRecord, InterfaceRecord, InventoryUpdate};

/// Longest fact value kept; longer ones are cut (facts are for people, not blobs).
const MAX_FACT_VALUE: usize = 4096;

fn disk(disk: pb::Disk) -> DiskRecord {
    DiskRecord {
        device: clean(disk.device),
        model: (!disk.model.is_empty()).then(|| clean(disk.model)),
        size_bytes: disk.size_bytes,
        filesystem: clean(disk.filesystem),
        mount: clean(disk.mount),
    }
}

fn interface(interface: pb::NetworkInterface) -> InterfaceRecord {
    InterfaceRecord {
        name: clean(interface.name),
        mac: clean(interface.mac),
        ipv4: interface.ipv4.into_iter().map(clean).collect(),
        ipv6: interface.ipv6.into_iter().map(clean).collect(),
    }
}

fn bounded(value: String) -> String {
    let mut value = clean(value);
    if value.len() > MAX_FACT_VALUE {
        let mut end = MAX_FACT_VALUE;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    value
}

pub fn to_record(
    agent_id: &str,
    epoch: u64,
    received_ms: i64,
    update: pb::InventoryUpdate,
) -> InventoryUpdate {
    InventoryUpdate {
        agent_id: agent_id.to_string(),
        epoch,
        seq: update.seq,
        received_ms,
        full: update.full,
        facts_changed: update
            .facts_changed
            .into_iter()
            .map(|(key, value)| (clean(key), bounded(value)))
            .collect(),
        // Cleaned like the keys they name, so removing a fact stored cleaned still finds it.
        facts_removed: update.facts_removed.into_iter().map(clean).collect(),
        disks: (update.full || update.disks_changed)
            .then(|| update.disks.into_iter().map(disk).collect()),
        interfaces: (update.full || update.interfaces_changed)
            .then(|| update.interfaces.into_iter().map(interface).collect()),
        packages_replaced: update.packages_replaced,
        // A cleaned name no longer matches the agent's package fingerprint,
        // so such an agent resends its full list once per session: a small
        // price for names no package manager produces.
        packages_upserted: update
            .packages_upserted
            .into_iter()
            .map(|package| (clean(package.name), clean(package.version)))
            .collect(),
        packages_removed: update.packages_removed.into_iter().map(clean).collect(),
        packages_fingerprint: update.packages_fingerprint,
    }
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
        let record = to_record("a1", 1, 1000, update);
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
}
