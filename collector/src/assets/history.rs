//! Asset history: one [`AssetEvent`] per changed field, whoever changed it.
//!
//! [`diff_assets`] compares two versions of a record field by field (through
//! `Asset::field_values`, so no field is forgotten) and classifies each
//! change ([`EventKind`]) so the API can show "memory upgraded" or "renamed"
//! without parsing values. It deliberately skips fields that change on
//! their own or are recorded elsewhere; see [`NOT_RECORDED`].

use serde::{Deserialize, Serialize};

use super::lifecycle::Actor;
use super::model::{Asset, changed_fields};

/// Fields whose changes are not history:
/// - `last_seen_ms` and `patch.last_update_age_days` move with the clock;
/// - `security_pending_since_ms` is derived from `patch.security`, which is
///   recorded;
/// - `package_count` follows the package list, whose changes the store's
///   inventory events already record one package at a time.
pub const NOT_RECORDED: &[&str] = &[
    "last_seen_ms",
    "patch.last_update_age_days",
    "security_pending_since_ms",
    "package_count",
];

/// What kind of change an event is, for filtering and wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The asset record was created.
    Created,
    /// Hostname or FQDN.
    Renamed,
    /// CPU, memory, disks, vendor/model/serial, architecture.
    Hardware,
    /// OS and kernel.
    Software,
    /// MACs and addresses.
    Network,
    /// Pending updates, reboot flag, kernels.
    Patch,
    /// Lifecycle state.
    Status,
    /// Agent ids, DMI UUID, machine-id, first-seen time.
    Identity,
    /// Owner, location, tags and the other operator fields.
    Edited,
    /// Another record was merged into this one.
    Merged,
    /// An agent was split off into its own record.
    Split,
}

impl EventKind {
    /// The kind of a change to `field` (a name from `Asset::field_values`).
    pub fn of_field(field: &str) -> Self {
        match field {
            "hostname" | "fqdn" => EventKind::Renamed,
            "os" | "os_id" | "os_version" | "kernel" => EventKind::Software,
            "arch" | "cpu_model" | "cpu_cores" | "cpu_threads" | "memory_total_bytes"
            | "serial" | "vendor" | "model" | "disks" => EventKind::Hardware,
            "macs" | "ips" => EventKind::Network,
            "status" => EventKind::Status,
            "id" | "agent_ids" | "dmi_uuid" | "machine_id" | "first_seen_ms" => EventKind::Identity,
            field if field.starts_with("patch.") => EventKind::Patch,
            _ => EventKind::Edited,
        }
    }
}

/// One change to one asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetEvent {
    pub ts_ms: i64,
    /// Who made the change: `agent`, `operator` or `system`.
    pub source: Actor,
    pub kind: EventKind,
    /// Dotted field name (`memory_total_bytes`, `patch.pending`,
    /// `disposal.method`); for `created`/`merged`/`split`, the field the
    /// event is about (`id`, `agent_ids`).
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Events for every recorded field that differs between `before` and
/// `after`, in field order.
pub fn diff_assets(before: &Asset, after: &Asset, source: Actor, ts_ms: i64) -> Vec<AssetEvent> {
    changed_fields(before, after)
        .into_iter()
        .filter(|change| !NOT_RECORDED.contains(&change.field))
        .map(|change| AssetEvent {
            ts_ms,
            source,
            kind: EventKind::of_field(change.field),
            field: change.field.to_string(),
            before: change.before,
            after: change.after,
        })
        .collect()
}

/// The event that opens an asset's history.
pub fn created(asset: &Asset, source: Actor, ts_ms: i64) -> AssetEvent {
    AssetEvent {
        ts_ms,
        source,
        kind: EventKind::Created,
        field: "id".into(),
        before: None,
        after: Some(asset.id.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::lifecycle::Lifecycle;
    use crate::assets::model::tests::{interface, server, server_facts};

    fn one_change(
        edit: impl FnOnce(&mut Asset),
    ) -> Vec<(EventKind, String, Option<String>, Option<String>)> {
        let before = server("a1", "agent-1");
        let mut after = before.clone();
        edit(&mut after);
        diff_assets(&before, &after, Actor::Agent, 42)
            .into_iter()
            .map(|event| {
                assert_eq!(event.ts_ms, 42);
                assert_eq!(event.source, Actor::Agent);
                (event.kind, event.field, event.before, event.after)
            })
            .collect()
    }

    fn changed(
        kind: EventKind,
        field: &str,
        before: &str,
        after: &str,
    ) -> Vec<(EventKind, String, Option<String>, Option<String>)> {
        vec![(kind, field.into(), Some(before.into()), Some(after.into()))]
    }

    #[test]
    fn inventory_changes_become_classified_events() {
        let with_fact = |key: &'static str, value: &'static str| {
            move |asset: &mut Asset| {
                let mut facts = server_facts();
                facts.insert(key.into(), value.into());
                asset.apply_inventory(&facts, &[], &[]);
            }
        };
        assert_eq!(
            one_change(with_fact("memory_total_bytes", "137438953472")),
            changed(
                EventKind::Hardware,
                "memory_total_bytes",
                "68719476736",
                "137438953472"
            )
        );
        assert_eq!(
            one_change(with_fact("kernel", "6.1.0-21-amd64")),
            changed(
                EventKind::Software,
                "kernel",
                "6.1.0-18-amd64",
                "6.1.0-21-amd64"
            )
        );
        assert_eq!(
            one_change(with_fact("hostname", "web-02")),
            changed(EventKind::Renamed, "hostname", "web-01", "web-02")
        );
        assert_eq!(
            one_change(|asset| {
                asset.apply_inventory(
                    &server_facts(),
                    &[],
                    &[interface("eno1", "b0:7b:25:00:00:01", &["10.0.0.6/24"])],
                );
            }),
            changed(EventKind::Network, "ips", "10.0.0.5/24", "10.0.0.6/24")
        );
    }

    #[test]
    fn status_and_operator_edits_are_recorded() {
        let events = one_change(|asset| {
            asset.status = Lifecycle::InRepair;
            asset.owner = Some("team-web".into());
            asset.tags.insert("pci".into());
        });
        assert_eq!(
            events,
            vec![
                (
                    EventKind::Status,
                    "status".into(),
                    Some("active".into()),
                    Some("in_repair".into())
                ),
                (
                    EventKind::Edited,
                    "owner".into(),
                    None,
                    Some("team-web".into())
                ),
                (EventKind::Edited, "tags".into(), None, Some("pci".into())),
            ]
        );
    }

    #[test]
    fn clock_driven_and_package_fields_are_not_history() {
        let events = one_change(|asset| {
            asset.last_seen_ms += 60_000;
            asset.package_count = Some(900);
            asset.apply_patch_metric("patch.last_update_age_days", 3.0, 0);
            asset.apply_patch_metric("patch.security", 2.0, 5);
        });
        // Only the security count itself; its derived start time is not repeated.
        assert_eq!(
            events,
            vec![(
                EventKind::Patch,
                "patch.security".into(),
                None,
                Some("2".into())
            )]
        );
    }

    #[test]
    fn unchanged_asset_has_no_events() {
        let asset = server("a1", "agent-1");
        assert!(diff_assets(&asset, &asset, Actor::System, 0).is_empty());
        let event = created(&asset, Actor::Agent, 7);
        assert_eq!(event.kind, EventKind::Created);
        assert_eq!(event.after.as_deref(), Some("a1"));
    }

    #[test]
    fn events_serialize_with_lowercase_sources() {
        let before = server("a1", "agent-1");
        let mut after = before.clone();
        after.notes = Some("rack 4".into());
        let event = &diff_assets(&before, &after, Actor::Operator, 1)[0];
        let json = serde_json::to_value(event).unwrap();
        assert_eq!(json["source"], "operator");
        assert_eq!(json["kind"], "edited");
        assert_eq!(json["field"], "notes");
    }
}
