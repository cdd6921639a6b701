//! Maps the agent's batches to wire messages: encoded once when a batch is
//! pushed (the spool stores these bytes), decoded when the shipper sends it.
//!
//! The proto is also the on-disk payload format because its compatibility
//! rules (fields never renumbered) already promise that a newer agent reads
//! what an older one spooled. With the shipper, this is the only agent module
//! that sees proto types.

use prost::Message;
use steward_proto::v1 as pb;

use crate::probes::Sample;
use crate::probes::inventory::InventoryChange;
use crate::probes::inventory::{DiskInfo, InterfaceInfo};
use crate::spool::{Record, RecordKind};

/// A sample batch without its seq (the spool numbers it).
pub fn encode_samples(samples: &[Sample]) -> Vec<u8> {
    pb::SampleBatch {
        seq: 0,
        samples: samples
            .iter()
            .map(|sample| pb::Sample {
                metric: sample.metric.to_string(),
                labels: sample
                    .labels
                    .iter()
                    .map(|(key, value)| pb::Label {
                        key: (*key).to_string(),
                        value: value.clone(),
                    })
                    .collect(),
                value: sample.value,
                timestamp_ms: sample.timestamp_ms,
            })
            .collect(),
    }
    .encode_to_vec()
}

/// An inventory change without its seq, always with its package list (see
/// [`to_message`] for when the list is left out).
pub fn encode_inventory(change: &InventoryChange) -> Vec<u8> {
    inventory_to_proto(change).encode_to_vec()
}

/// The message for a spooled record, numbered by the record's seq. A full
/// inventory whose package list the collector already holds (same
/// fingerprint) travels without the list.
pub fn to_message(
    record: &Record,
    collector_packages_fingerprint: u64,
) -> Result<pb::AgentMessage, prost::DecodeError> {
    let kind = match record.kind {
        RecordKind::Samples => {
            let mut batch = pb::SampleBatch::decode(record.payload.as_slice())?;
            batch.seq = record.seq;
            pb::agent_message::Kind::Batch(batch)
        }
        RecordKind::Inventory => {
            let mut update = pb::InventoryUpdate::decode(record.payload.as_slice())?;
            update.seq = record.seq;
            omit_known_packages(&mut update, collector_packages_fingerprint);
            pb::agent_message::Kind::Inventory(update)
        }
    };
    Ok(pb::AgentMessage { kind: Some(kind) })
}

fn omit_known_packages(update: &mut pb::InventoryUpdate, collector_packages_fingerprint: u64) {
    if update.full && update.packages_fingerprint == collector_packages_fingerprint {
        update.packages_replaced = false;
        update.packages_upserted.clear();
    }
}

fn inventory_to_proto(change: &InventoryChange) -> pb::InventoryUpdate {
    let diff = &change.diff;
    let disk = |disk: &DiskInfo| pb::Disk {
        device: disk.device.clone(),
        model: disk.model.clone().unwrap_or_default(),
        size_bytes: disk.size_bytes,
        filesystem: disk.filesystem.clone(),
        mount: disk.mount.clone(),
    };
    let interface = |interface: &InterfaceInfo| pb::NetworkInterface {
        name: interface.name.clone(),
        mac: interface.mac.clone().unwrap_or_default(),
        ipv4: interface.ipv4.clone(),
        ipv6: interface.ipv6.clone(),
    };
    pb::InventoryUpdate {
        seq: 0,
        full: change.full,
        facts_changed: diff.facts_changed.clone().into_iter().collect(),
        facts_removed: diff.facts_removed.clone(),
        disks_changed: diff.disks.is_some(),
        disks: diff.disks.iter().flatten().map(disk).collect(),
        interfaces_changed: diff.interfaces.is_some(),
        interfaces: diff.interfaces.iter().flatten().map(interface).collect(),
        packages_replaced: change.full,
        packages_upserted: diff
            .packages_upserted
            .iter()
            .map(|(name, version)| pb::Package {
                name: name.clone(),
                version: version.clone(),
            })
            .collect(),
        packages_removed: diff.packages_removed.clone(),
        packages_fingerprint: change.packages_fingerprint,
        timestamp_ms: change.timestamp_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::inventory::InventoryDiff;

    fn change(full: bool) -> InventoryChange {
        InventoryChange {
            full,
            diff: InventoryDiff {
                packages_upserted: [("bash".to_string(), "5.2".to_string())].into(),
                ..Default::default()
            },
            packages_fingerprint: 42,
            timestamp_ms: 1,
        }
    }

    fn inventory_message(full: bool, collector_fingerprint: u64) -> pb::InventoryUpdate {
        let record = Record {
            epoch: 1,
            seq: 9,
            kind: RecordKind::Inventory,
            payload: encode_inventory(&change(full)),
        };
        match to_message(&record, collector_fingerprint).unwrap().kind {
            Some(pb::agent_message::Kind::Inventory(update)) => update,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_inventory_omits_packages_the_collector_already_holds() {
        let same = inventory_message(true, 42);
        assert_eq!(same.seq, 9);
        assert!(!same.packages_replaced);
        assert!(same.packages_upserted.is_empty());
        let different = inventory_message(true, 7);
        assert!(different.packages_replaced);
        assert_eq!(different.packages_upserted.len(), 1);
        let diff = inventory_message(false, 42);
        assert!(!diff.packages_replaced, "a diff never replaces the list");
        assert_eq!(diff.packages_upserted.len(), 1);
    }

    #[test]
    fn samples_travel_with_the_records_seq() {
        let record = Record {
            epoch: 1,
            seq: 5,
            kind: RecordKind::Samples,
            payload: encode_samples(&[
                Sample::new("cpu.usage_percent", 12.5, 1000).label("cpu", "total")
            ]),
        };
        let Some(pb::agent_message::Kind::Batch(batch)) = to_message(&record, 0).unwrap().kind
        else {
            panic!("not a sample batch");
        };
        assert_eq!(batch.seq, 5);
        assert_eq!(batch.samples[0].metric, "cpu.usage_percent");
        assert_eq!(batch.samples[0].labels[0].value, "total");
        assert_eq!(batch.samples[0].value, 12.5);
        assert_eq!(batch.samples[0].timestamp_ms, 1000);
    }

    #[test]
    fn a_damaged_payload_is_an_error_not_a_panic() {
        let record = Record {
            epoch: 1,
            seq: 5,
            kind: RecordKind::Samples,
            payload: vec![0xff; 7],
        };
        assert!(to_message(&record, 0).is_err());
    }
}
