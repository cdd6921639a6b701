//! Which asset an agent's report belongs to: identifier cleaning and
//! [`match_asset`].
//!
//! Agents are reinstalled, machines are renamed, VMs are cloned, and firmware
//! ships placeholder serials. Matching therefore weighs several identifiers
//! and refuses to guess: when the evidence is not clear it answers
//! [`Match::Ambiguous`] for an operator to settle with `merge`/`split`; it
//! never merges records silently on weak or contradicted evidence.
//!
//! The rules, in order:
//! 1. The same agent id is certain (confidence 1.0), whatever the hostname,
//!    unless the hardware contradicts it (a different DMI UUID: agent state
//!    copied to another machine, or a mainboard swap): then it is ambiguous.
//! 2. Otherwise each known asset is scored from the identifiers that agree:
//!    DMI UUID (0.7), serial (0.6), machine-id (0.6), a common MAC (0.5),
//!    hostname (0.2), combined as independent evidence `1 - Π(1 - w)`.
//!    DMI UUID + serial (a reinstall on the same hardware) scores 0.88.
//! 3. A *contradiction* rules an asset out: both DMI UUIDs valid and
//!    different, or both serials valid and different while the UUIDs do not
//!    agree. A cloned VM (same machine-id, new DMI UUID and MACs) is
//!    therefore a new asset, and the reason is recorded in [`Match::New`].
//! 4. Exactly one asset scoring at least [`CONFIDENT`] is
//!    [`Match::Existing`]. Several are ambiguous. Assets with some agreeing
//!    identifier but a lower score are ambiguous too: in particular the
//!    hostname alone never merges; it makes a weak candidate only when
//!    nothing contradicts it.
//!
//! Junk identifiers never count: empty values and firmware placeholders
//! ("To be filled by O.E.M.", "Default string", "0123456789", "None",
//! all-zero or all-F UUIDs), and any serial, UUID, machine-id, MAC or
//! hostname already held by two or more known assets (a placeholder this
//! list does not know, a golden image's machine-id, a shared dock's MAC).
//! Shared values still count as contradictions when they differ, so two
//! valid, different DMI UUIDs never match.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::identifiers::{
    clean_machine_id, clean_serial, clean_uuid, normalize_mac, short_hostname,
};
use super::model::{Asset, Lifecycle};
use crate::store::InterfaceRecord;

/// Lowest score that matches an asset without an operator.
pub const CONFIDENT: f64 = 0.75;
const WEIGHT_DMI_UUID: f64 = 0.7;
const WEIGHT_SERIAL: f64 = 0.6;
const WEIGHT_MACHINE_ID: f64 = 0.6;
const WEIGHT_MAC: f64 = 0.5;
const WEIGHT_HOSTNAME: f64 = 0.2;
/// A value held by this many known assets identifies none of them.
const SHARED_BY: usize = 2;

/// The identifiers matching compares, cleaned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identifiers {
    pub dmi_uuid: Option<String>,
    pub serial: Option<String>,
    pub machine_id: Option<String>,
    pub macs: BTreeSet<String>,
    /// Short name, lower case.
    pub hostname: Option<String>,
}

impl Identifiers {
    /// From an inventory, cleaned exactly as the asset record cleans it.
    pub fn from_inventory(
        facts: &BTreeMap<String, String>,
        interfaces: &[InterfaceRecord],
    ) -> Self {
        let mut probe = Asset::new(String::new(), Lifecycle::Active, 0);
        probe.apply_inventory(facts, &[], interfaces);
        Self::of_asset(&probe)
    }

    /// From a stored record (cleaned again, in case it predates a cleaning rule).
    pub fn of_asset(asset: &Asset) -> Self {
        Self {
            dmi_uuid: asset.dmi_uuid.as_deref().and_then(clean_uuid),
            serial: asset.serial.as_deref().and_then(clean_serial),
            machine_id: asset.machine_id.as_deref().and_then(clean_machine_id),
            macs: asset
                .macs
                .iter()
                .filter_map(|mac| normalize_mac(mac))
                .collect(),
            hostname: asset.hostname.as_deref().and_then(short_hostname),
        }
    }
}

/// The agent whose report is being placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub agent_id: String,
    pub ids: Identifiers,
}

/// An existing asset as matching sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAsset {
    pub asset_id: String,
    pub agent_ids: Vec<String>,
    /// Disposed assets are never matched silently.
    pub status: Lifecycle,
    pub ids: Identifiers,
}

impl KnownAsset {
    pub fn of(asset: &Asset) -> Self {
        Self {
            asset_id: asset.id.clone(),
            agent_ids: asset.agent_ids.clone(),
            status: asset.status,
            ids: Identifiers::of_asset(asset),
        }
    }
}

/// Where a report belongs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "match", rename_all = "snake_case")]
pub enum Match {
    /// Attach the agent to this asset.
    Existing {
        asset_id: String,
        /// In `[CONFIDENT, 1]`; 1 for the same agent id.
        confidence: f64,
        reasons: Vec<String>,
    },
    /// Create an asset. `reasons` says which assets were considered and why
    /// they were ruled out (a cloned VM names its original here).
    New { reasons: Vec<String> },
    /// An operator must decide; best candidate first. Until then the caller
    /// should keep the report on a new asset flagged for review, or hold it.
    Ambiguous { candidates: Vec<Candidate> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub asset_id: String,
    pub confidence: f64,
    pub reasons: Vec<String>,
}

/// Decides which of `known` (if any) `observed` is. Pure and
/// order-independent apart from ties, which are reported as ambiguous.
pub fn match_asset(observed: &Observed, known: &[KnownAsset]) -> Match {
    let shared = SharedValues::count(known);
    let evidence: Vec<Evidence> = known
        .iter()
        .map(|asset| compare(&observed.ids, &asset.ids, &shared))
        .collect();

    let by_agent: Vec<usize> = (0..known.len())
        .filter(|&index| known[index].agent_ids.contains(&observed.agent_id))
        .collect();
    if let [index] = by_agent[..] {
        let (asset, evidence) = (&known[index], &evidence[index]);
        if evidence.contradictions.is_empty() && asset.status != Lifecycle::Disposed {
            let mut reasons = vec!["same agent id".to_string()];
            reasons.extend(evidence.notes.iter().cloned());
            return Match::Existing {
                asset_id: asset.asset_id.clone(),
                confidence: 1.0,
                reasons,
            };
        }
    }
    if !by_agent.is_empty() {
        // The agent id says yes but the hardware (or a duplicate) says no.
        let candidates = by_agent
            .iter()
            .map(|&index| {
                let mut reasons = vec!["same agent id".to_string()];
                reasons.extend(evidence[index].contradictions.iter().cloned());
                if by_agent.len() > 1 {
                    reasons.push("the agent id is attached to several assets".into());
                }
                if known[index].status == Lifecycle::Disposed {
                    reasons.push("the asset is disposed".into());
                }
                Candidate {
                    asset_id: known[index].asset_id.clone(),
                    confidence: 0.5,
                    reasons,
                }
            })
            .collect();
        return Match::Ambiguous { candidates };
    }

    let mut strong = Vec::new();
    let mut weak = Vec::new();
    let mut ruled_out = Vec::new();
    for (asset, evidence) in known.iter().zip(&evidence) {
        if evidence.agreements.is_empty() {
            continue;
        }
        if !evidence.contradictions.is_empty() {
            ruled_out.push(evidence.ruled_out(&asset.asset_id));
            continue;
        }
        let mut reasons = evidence.agreements.clone();
        reasons.extend(evidence.notes.iter().cloned());
        if asset.status == Lifecycle::Disposed {
            reasons.push("the asset is disposed".into());
            weak.push(candidate(asset, evidence.confidence, reasons));
        } else if evidence.confidence >= CONFIDENT {
            strong.push(candidate(asset, evidence.confidence, reasons));
        } else {
            weak.push(candidate(asset, evidence.confidence, reasons));
        }
    }
    match strong.len() {
        1 => {
            let best = strong.remove(0);
            return Match::Existing {
                asset_id: best.asset_id,
                confidence: best.confidence,
                reasons: best.reasons,
            };
        }
        0 => {}
        _ => {
            return Match::Ambiguous {
                candidates: ranked(strong),
            };
        }
    }
    if weak.is_empty() {
        Match::New { reasons: ruled_out }
    } else {
        Match::Ambiguous {
            candidates: ranked(weak),
        }
    }
}

fn candidate(asset: &KnownAsset, confidence: f64, reasons: Vec<String>) -> Candidate {
    Candidate {
        asset_id: asset.asset_id.clone(),
        confidence,
        reasons,
    }
}

fn ranked(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    candidates.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then_with(|| a.asset_id.cmp(&b.asset_id))
    });
    candidates
}

/// What one comparison found.
#[derive(Debug, Default)]
struct Evidence {
    confidence: f64,
    agreements: Vec<String>,
    /// Any entry rules the asset out.
    contradictions: Vec<String>,
    /// Differences that do not rule it out (a reinstall changes machine-id).
    notes: Vec<String>,
}

impl Evidence {
    fn ruled_out(&self, asset_id: &str) -> String {
        let mut text = format!(
            "not asset {asset_id}: {} but {}",
            self.agreements.join(", "),
            self.contradictions.join(", ")
        );
        let cloned = self
            .agreements
            .iter()
            .any(|reason| reason == "same machine-id")
            && self
                .contradictions
                .iter()
                .any(|reason| reason.contains("DMI UUID"));
        if cloned {
            text.push_str("; looks like a cloned VM");
        }
        text
    }
}

fn compare(observed: &Identifiers, known: &Identifiers, shared: &SharedValues) -> Evidence {
    let mut evidence = Evidence::default();
    let mut unexplained = 1.0;
    let mut agree = |evidence: &mut Evidence, weight: f64, reason: String| {
        unexplained *= 1.0 - weight;
        evidence.agreements.push(reason);
    };

    let mut uuid_agrees = false;
    if let (Some(mine), Some(theirs)) = (&observed.dmi_uuid, &known.dmi_uuid) {
        if mine != theirs {
            evidence.contradictions.push(format!(
                "a different DMI UUID ({theirs} there, {mine} here)"
            ));
        } else if shared.is_shared(Kind::Uuid, mine) {
            evidence.notes.push(format!(
                "DMI UUID {mine} is shared by several assets, ignored"
            ));
        } else {
            uuid_agrees = true;
            agree(&mut evidence, WEIGHT_DMI_UUID, "same DMI UUID".into());
        }
    }
    if let (Some(mine), Some(theirs)) = (&observed.serial, &known.serial) {
        let either_shared =
            shared.is_shared(Kind::Serial, mine) || shared.is_shared(Kind::Serial, theirs);
        if either_shared {
            evidence
                .notes
                .push("serial shared by several assets, ignored".into());
        } else if mine.eq_ignore_ascii_case(theirs) {
            agree(&mut evidence, WEIGHT_SERIAL, "same serial".into());
        } else if uuid_agrees {
            evidence
                .notes
                .push(format!("serial changed from {theirs} to {mine}"));
        } else {
            evidence
                .contradictions
                .push(format!("a different serial ({theirs} there, {mine} here)"));
        }
    }
    if let (Some(mine), Some(theirs)) = (&observed.machine_id, &known.machine_id) {
        if mine != theirs {
            evidence.notes.push("different machine-id".into());
        } else if !shared.is_shared(Kind::MachineId, mine) {
            agree(&mut evidence, WEIGHT_MACHINE_ID, "same machine-id".into());
        }
    }
    if !observed.macs.is_empty() && !known.macs.is_empty() {
        let common: Vec<&String> = observed
            .macs
            .intersection(&known.macs)
            .filter(|mac| !shared.is_shared(Kind::Mac, mac))
            .collect();
        match common.first() {
            Some(mac) => agree(&mut evidence, WEIGHT_MAC, format!("same MAC {mac}")),
            None => evidence.notes.push("no MAC in common".into()),
        }
    }
    if let (Some(mine), Some(theirs)) = (&observed.hostname, &known.hostname) {
        if mine != theirs {
            evidence
                .notes
                .push(format!("hostname changed from {theirs} to {mine}"));
        } else if !shared.is_shared(Kind::Hostname, mine) {
            agree(&mut evidence, WEIGHT_HOSTNAME, "same hostname".into());
        }
    }
    evidence.confidence = 1.0 - unexplained;
    evidence
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Uuid,
    Serial,
    MachineId,
    Mac,
    Hostname,
}

/// How many known assets hold each identifier value.
struct SharedValues(HashMap<(Kind, String), usize>);

impl SharedValues {
    fn count(known: &[KnownAsset]) -> Self {
        let mut counts = HashMap::new();
        for asset in known {
            let ids = &asset.ids;
            let mut values: BTreeSet<(Kind, String)> = BTreeSet::new();
            let singles = [
                (Kind::Uuid, &ids.dmi_uuid),
                (Kind::Serial, &ids.serial),
                (Kind::MachineId, &ids.machine_id),
                (Kind::Hostname, &ids.hostname),
            ];
            for (kind, value) in singles {
                if let Some(value) = value {
                    let value = if kind == Kind::Serial {
                        value.to_ascii_lowercase()
                    } else {
                        value.clone()
                    };
                    values.insert((kind, value));
                }
            }
            values.extend(ids.macs.iter().map(|mac| (Kind::Mac, mac.clone())));
            for value in values {
                *counts.entry(value).or_insert(0) += 1;
            }
        }
        Self(counts)
    }

    fn is_shared(&self, kind: Kind, value: &str) -> bool {
        let value = if kind == Kind::Serial {
            value.to_ascii_lowercase()
        } else {
            value.to_string()
        };
        self.0.get(&(kind, value)).copied().unwrap_or(0) >= SHARED_BY
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const UUID_A: &str = "4c4c4544-0051-5810-804b-b7c04f324d33";
    const UUID_B: &str = "564d8f2a-1c3e-4b5a-9d7e-2f1a3b4c5d6e";
    const MID_A: &str = "0123456789abcdef0123456789abcdef";
    const MID_B: &str = "fedcba9876543210fedcba9876543210";

    #[derive(Clone, Copy, Default)]
    struct Ids<'a> {
        uuid: Option<&'a str>,
        serial: Option<&'a str>,
        machine_id: Option<&'a str>,
        macs: &'a [&'a str],
        hostname: Option<&'a str>,
    }

    fn ids(spec: Ids<'_>) -> Identifiers {
        Identifiers {
            dmi_uuid: spec.uuid.and_then(clean_uuid),
            serial: spec.serial.and_then(clean_serial),
            machine_id: spec.machine_id.and_then(clean_machine_id),
            macs: spec
                .macs
                .iter()
                .filter_map(|mac| normalize_mac(mac))
                .collect(),
            hostname: spec.hostname.and_then(short_hostname),
        }
    }

    fn known(asset_id: &str, agent_id: &str, spec: Ids<'_>) -> KnownAsset {
        KnownAsset {
            asset_id: asset_id.into(),
            agent_ids: vec![agent_id.into()],
            status: Lifecycle::Active,
            ids: ids(spec),
        }
    }

    fn observed(agent_id: &str, spec: Ids<'_>) -> Observed {
        Observed {
            agent_id: agent_id.into(),
            ids: ids(spec),
        }
    }

    /// The physical server `web-01` as first recorded.
    fn web01() -> Ids<'static> {
        Ids {
            uuid: Some(UUID_A),
            serial: Some("7QXK2M3"),
            machine_id: Some(MID_A),
            macs: &["b0:7b:25:00:00:01"],
            hostname: Some("web-01"),
        }
    }

    fn existing_id(result: &Match) -> Option<&str> {
        match result {
            Match::Existing { asset_id, .. } => Some(asset_id),
            _ => None,
        }
    }

    #[test]
    fn matching_table() {
        let fleet = vec![
            known("asset-web01", "agent-1", web01()),
            known(
                "asset-db01",
                "agent-2",
                Ids {
                    uuid: Some("11111111-2222-3333-4444-555555555555"),
                    serial: Some("SRV0002"),
                    machine_id: Some("22222222222222222222222222222222"),
                    macs: &["b0:7b:25:00:00:02"],
                    hostname: Some("db-01"),
                },
            ),
        ];
        // (case, observation, expected: Some(asset) = Existing, None = not merged)
        let cases: Vec<(&str, Observed, Option<&str>)> = vec![
            (
                "same agent id",
                observed("agent-1", web01()),
                Some("asset-web01"),
            ),
            (
                "renamed host, same agent id",
                observed(
                    "agent-1",
                    Ids {
                        hostname: Some("web-99"),
                        ..web01()
                    },
                ),
                Some("asset-web01"),
            ),
            (
                "renamed host, new agent id, same hardware",
                observed(
                    "agent-9",
                    Ids {
                        hostname: Some("web-99"),
                        ..web01()
                    },
                ),
                Some("asset-web01"),
            ),
            (
                "reinstall on the same hardware: new agent, new machine-id",
                observed(
                    "agent-9",
                    Ids {
                        machine_id: Some(MID_B),
                        macs: &[],
                        ..web01()
                    },
                ),
                Some("asset-web01"),
            ),
            (
                "agent id wins over hostname of another asset",
                observed(
                    "agent-2",
                    Ids {
                        hostname: Some("web-01"),
                        ..Ids::default()
                    },
                ),
                Some("asset-db01"),
            ),
            (
                "VM without DMI: machine-id and MAC agree",
                observed(
                    "agent-9",
                    Ids {
                        uuid: None,
                        serial: None,
                        hostname: None,
                        ..web01()
                    },
                ),
                Some("asset-web01"),
            ),
            (
                "cloned VM: same machine-id, new DMI UUID and MACs",
                observed(
                    "agent-9",
                    Ids {
                        uuid: Some(UUID_B),
                        macs: &["52:54:00:aa:bb:cc"],
                        serial: None,
                        ..web01()
                    },
                ),
                None,
            ),
            (
                "hostname alone",
                observed(
                    "agent-9",
                    Ids {
                        hostname: Some("web-01"),
                        ..Ids::default()
                    },
                ),
                None,
            ),
            (
                "junk serial and UUID alone",
                observed(
                    "agent-9",
                    Ids {
                        uuid: Some("00000000-0000-0000-0000-000000000000"),
                        serial: Some("To be filled by O.E.M."),
                        ..Ids::default()
                    },
                ),
                None,
            ),
            ("nothing known", observed("agent-9", Ids::default()), None),
        ];
        for (case, observation, expected) in cases {
            let result = match_asset(&observation, &fleet);
            assert_eq!(existing_id(&result), expected, "{case}: {result:?}");
        }
    }

    #[test]
    fn agent_id_match_is_certain_and_notes_a_rename() {
        let fleet = [known("asset-web01", "agent-1", web01())];
        let result = match_asset(
            &observed(
                "agent-1",
                Ids {
                    hostname: Some("web-99"),
                    ..web01()
                },
            ),
            &fleet,
        );
        let Match::Existing {
            confidence,
            reasons,
            ..
        } = result
        else {
            panic!("expected a match, got {result:?}");
        };
        assert_eq!(confidence, 1.0);
        assert_eq!(
            reasons,
            ["same agent id", "hostname changed from web-01 to web-99"]
        );
    }

    #[test]
    fn reinstall_with_same_hardware_is_strong() {
        let fleet = [known("asset-web01", "agent-1", web01())];
        let result = match_asset(
            &observed(
                "agent-new",
                Ids {
                    machine_id: Some(MID_B),
                    macs: &[],
                    ..web01()
                },
            ),
            &fleet,
        );
        let Match::Existing {
            confidence,
            reasons,
            ..
        } = result
        else {
            panic!("expected a match, got {result:?}");
        };
        assert!(confidence > 0.85, "{confidence}");
        assert!(
            reasons.contains(&"same DMI UUID".to_string()),
            "{reasons:?}"
        );
        assert!(reasons.contains(&"same serial".to_string()), "{reasons:?}");
    }

    #[test]
    fn cloned_vm_is_new_and_says_why() {
        let original = Ids {
            uuid: Some(UUID_A),
            serial: None,
            machine_id: Some(MID_A),
            macs: &["52:54:00:00:00:01"],
            hostname: Some("tmpl"),
        };
        let fleet = [known("asset-vm1", "agent-1", original)];
        let clone = Ids {
            uuid: Some(UUID_B),
            macs: &["52:54:00:00:00:02"],
            ..original
        };
        let result = match_asset(&observed("agent-2", clone), &fleet);
        let Match::New { reasons } = result else {
            panic!("a clone must not merge: {result:?}");
        };
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].contains("asset-vm1"), "{reasons:?}");
        assert!(reasons[0].contains("cloned VM"), "{reasons:?}");
    }

    #[test]
    fn cloned_vm_without_dmi_is_ambiguous_not_merged() {
        let original = Ids {
            machine_id: Some(MID_A),
            macs: &["52:54:00:00:00:01"],
            ..Ids::default()
        };
        let fleet = [known("asset-vm1", "agent-1", original)];
        let clone = Ids {
            macs: &["52:54:00:00:00:02"],
            ..original
        };
        let result = match_asset(&observed("agent-2", clone), &fleet);
        assert!(matches!(result, Match::Ambiguous { .. }), "{result:?}");
    }

    #[test]
    fn hostname_alone_is_a_weak_hint_only_when_nothing_contradicts() {
        let no_hardware = Ids {
            hostname: Some("kiosk"),
            ..Ids::default()
        };
        let fleet = [known("asset-kiosk", "agent-1", no_hardware)];
        let result = match_asset(&observed("agent-2", no_hardware), &fleet);
        let Match::Ambiguous { candidates } = result else {
            panic!("expected ambiguous, got {result:?}");
        };
        assert_eq!(candidates[0].asset_id, "asset-kiosk");
        assert!(candidates[0].confidence < CONFIDENT);

        // Same name on different hardware: a replacement machine, so new.
        let fleet = [known("asset-web01", "agent-1", web01())];
        let replacement = Ids {
            uuid: Some(UUID_B),
            serial: Some("NEWSERIAL"),
            machine_id: Some(MID_B),
            macs: &["b0:7b:25:00:00:99"],
            hostname: Some("web-01"),
        };
        let result = match_asset(&observed("agent-2", replacement), &fleet);
        assert!(matches!(result, Match::New { .. }), "{result:?}");
    }

    #[test]
    fn serials_shared_by_many_assets_are_ignored() {
        // A placeholder serial the junk list does not know.
        let cheap = |n: &'static str, mac: &'static [&'static str]| Ids {
            serial: Some("SN-CHEAPBOARD"),
            macs: mac,
            hostname: Some(n),
            ..Ids::default()
        };
        let fleet = [
            known("asset-1", "agent-1", cheap("pc-1", &["00:11:22:00:00:01"])),
            known("asset-2", "agent-2", cheap("pc-2", &["00:11:22:00:00:02"])),
        ];
        let result = match_asset(
            &observed("agent-3", cheap("pc-3", &["00:11:22:00:00:03"])),
            &fleet,
        );
        assert_eq!(result, Match::New { reasons: vec![] });
    }

    #[test]
    fn junk_identifiers_are_cleaned_away() {
        for junk in [
            "",
            "  ",
            "To be filled by O.E.M.",
            "Default string",
            "0123456789",
            "None",
            "XXXXXXXX",
            "System Serial Number",
        ] {
            assert_eq!(clean_serial(junk), None, "{junk:?}");
        }
        for junk in [
            "00000000-0000-0000-0000-000000000000",
            "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
            "03000200-0400-0500-0006-000700080009",
            "",
        ] {
            assert_eq!(clean_uuid(junk), None, "{junk:?}");
        }
        assert_eq!(
            clean_uuid(" 4C4C4544-0051 ").as_deref(),
            Some("4c4c4544-0051")
        );
        assert_eq!(clean_machine_id("uninitialized"), None);
        assert_eq!(clean_machine_id(&"0".repeat(32)), None);
        assert_eq!(normalize_mac("00:00:00:00:00:00"), None);
        assert_eq!(
            normalize_mac("AA-BB-CC-DD-EE-0F").as_deref(),
            Some("aa:bb:cc:dd:ee:0f")
        );
        assert_eq!(normalize_mac("aa:bb:cc"), None);
        assert_eq!(
            short_hostname("Web-01.Example.com").as_deref(),
            Some("web-01")
        );
        assert_eq!(short_hostname("localhost"), None);
    }

    #[test]
    fn agent_state_copied_to_other_hardware_is_ambiguous() {
        let fleet = [known("asset-web01", "agent-1", web01())];
        let result = match_asset(
            &observed(
                "agent-1",
                Ids {
                    uuid: Some(UUID_B),
                    ..web01()
                },
            ),
            &fleet,
        );
        let Match::Ambiguous { candidates } = result else {
            panic!("expected ambiguous, got {result:?}");
        };
        assert!(candidates[0].reasons.iter().any(|r| r.contains("DMI UUID")));
    }

    #[test]
    fn two_strong_candidates_are_ambiguous() {
        // One record holds the hardware ids, another the OS ids: a botched
        // earlier split. The operator must merge them, not matching.
        let fleet = [
            known(
                "asset-a",
                "agent-1",
                Ids {
                    machine_id: None,
                    macs: &[],
                    hostname: None,
                    ..web01()
                },
            ),
            known(
                "asset-b",
                "agent-2",
                Ids {
                    uuid: None,
                    serial: None,
                    hostname: None,
                    ..web01()
                },
            ),
        ];
        let result = match_asset(&observed("agent-3", web01()), &fleet);
        let Match::Ambiguous { candidates } = result else {
            panic!("expected ambiguous, got {result:?}");
        };
        let ids: Vec<_> = candidates.iter().map(|c| c.asset_id.as_str()).collect();
        assert_eq!(ids, ["asset-a", "asset-b"]);
    }

    #[test]
    fn identifiers_on_several_assets_identify_none() {
        let fleet = [
            known("asset-a", "agent-1", web01()),
            known("asset-b", "agent-2", web01()),
        ];
        let result = match_asset(&observed("agent-3", web01()), &fleet);
        assert_eq!(result, Match::New { reasons: vec![] });
    }

    #[test]
    fn disposed_assets_are_never_matched_silently() {
        let mut asset = known("asset-old", "agent-1", web01());
        asset.status = Lifecycle::Disposed;
        for agent in ["agent-1", "agent-2"] {
            let result = match_asset(&observed(agent, web01()), std::slice::from_ref(&asset));
            assert!(
                matches!(result, Match::Ambiguous { .. }),
                "{agent}: {result:?}"
            );
        }
    }

    #[test]
    fn identifiers_from_inventory_match_the_record() {
        use crate::assets::model::tests::{server, server_facts, server_interfaces};
        let from_inventory = Identifiers::from_inventory(&server_facts(), &server_interfaces());
        assert_eq!(
            from_inventory,
            Identifiers::of_asset(&server("a1", "agent-1"))
        );
        assert_eq!(from_inventory.macs.len(), 1);
    }

    fn arbitrary_ids() -> impl Strategy<Value = Identifiers> {
        let uuids = prop::option::of(prop::sample::select(vec![
            UUID_A,
            UUID_B,
            "00000000-0000-0000-0000-000000000000",
            "11111111-2222-3333-4444-555555555555",
        ]));
        let serials = prop::option::of(prop::sample::select(vec!["S1", "S2", "None", "s1"]));
        let machine_ids = prop::option::of(prop::sample::select(vec![MID_A, MID_B]));
        let macs = prop::collection::btree_set(
            prop::sample::select(vec!["aa:00:00:00:00:01", "aa:00:00:00:00:02"]),
            0..=2,
        );
        let hostnames = prop::option::of(prop::sample::select(vec!["a", "b"]));
        (uuids, serials, machine_ids, macs, hostnames).prop_map(
            |(uuid, serial, machine_id, macs, hostname)| Identifiers {
                dmi_uuid: uuid.and_then(clean_uuid),
                serial: serial.and_then(clean_serial),
                machine_id: machine_id.map(String::from),
                macs: macs.into_iter().map(String::from).collect(),
                hostname: hostname.map(String::from),
            },
        )
    }

    proptest! {
        #[test]
        fn different_valid_dmi_uuids_never_match(
            observed_ids in arbitrary_ids(),
            agent in prop::sample::select(vec!["agent-0", "agent-1", "agent-2", "agent-9"]),
            fleet in prop::collection::vec(arbitrary_ids(), 0..5),
        ) {
            let known: Vec<KnownAsset> = fleet
                .into_iter()
                .enumerate()
                .map(|(index, ids)| KnownAsset {
                    asset_id: format!("asset-{index}"),
                    agent_ids: vec![format!("agent-{index}")],
                    status: Lifecycle::Active,
                    ids,
                })
                .collect();
            let observation = Observed { agent_id: agent.into(), ids: observed_ids.clone() };
            let result = match_asset(&observation, &known);
            if let Match::Existing { asset_id, confidence, .. } = &result {
                let matched = known.iter().find(|asset| &asset.asset_id == asset_id).unwrap();
                if let (Some(mine), Some(theirs)) = (&observed_ids.dmi_uuid, &matched.ids.dmi_uuid) {
                    prop_assert_eq!(mine, theirs);
                }
                prop_assert!((CONFIDENT..=1.0).contains(confidence));
            }
        }
    }
}
