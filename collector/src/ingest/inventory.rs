//! Maps proto inventory messages to store records, bounding their size.

use steward_proto::v1 as pb;

use crate::store::{DiskRecord, InterfaceRecord, InventoryUpdate};

/// Longest fact value kept; longer ones are cut (facts are for people, not blobs).
const MAX_FACT_VALUE: usize = 4096;

fn disk(disk: pb::Disk) -> DiskRecord {
    DiskRecord {
        device: disk.device,
        model: (!disk.model.is_empty()).then_some(disk.model),
        size_bytes: disk.size_bytes,
        filesystem: disk.filesystem,
        mount: disk.mount,
    }
}

fn interface(interface: pb::NetworkInterface) -> InterfaceRecord {
    InterfaceRecord {
        name: interface.name,
        mac: interface.mac,
        ipv4: interface.ipv4,
        ipv6: interface.ipv6,
    }
}

fn bounded(mut value: String) -> String {
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
            .map(|(key, value)| (key, bounded(value)))
            .collect(),
        facts_removed: update.facts_removed,
        disks: (update.full || update.disks_changed)
            .then(|| update.disks.into_iter().map(disk).collect()),
        interfaces: (update.full || update.interfaces_changed)
            .then(|| update.interfaces.into_iter().map(interface).collect()),
        packages_replaced: update.packages_replaced,
        packages_upserted: update
            .packages_upserted
            .into_iter()
            .map(|package| (package.name, package.version))
            .collect(),
        packages_removed: update.packages_removed,
        packages_fingerprint: update.packages_fingerprint,
    }
}
