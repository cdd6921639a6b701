//! Inventory contracts that the agent and the collector both compute. A
//! change here changes the wire meaning: both sides must agree.

use std::collections::BTreeMap;

/// FNV-1a over `name\tversion\n` lines in name order: the agent sends it with
/// every package diff and the collector compares it with what it stored, so a
/// lost diff is noticed and the full list resent. Stable across versions and
/// platforms (no std hasher, whose output may change).
pub fn packages_fingerprint(packages: &BTreeMap<String, String>) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    let mut feed = |bytes: &[u8]| {
        for &byte in bytes {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, version) in packages {
        feed(name.as_bytes());
        feed(b"\t");
        feed(version.as_bytes());
        feed(b"\n");
    }
    hash
}

/// Trims a firmware string and drops the placeholders vendors leave in unset
/// SMBIOS fields, so "To Be Filled By O.E.M." never identifies a machine.
pub fn clean_firmware_value(raw: &str) -> Option<String> {
    let value = raw.trim().trim_matches('\0').trim();
    if value.is_empty() {
        return None;
    }
    const PLACEHOLDERS: &[&str] = &[
        "to be filled by o.e.m.",
        "to be filled by oem",
        "default string",
        "system serial number",
        "system product name",
        "system manufacturer",
        "not specified",
        "not applicable",
        "not available",
        "none",
        "n/a",
        "0",
        "o.e.m.",
        "oem",
        "0123456789",
        "123456789",
        // AMI firmware's default system UUID, shared by countless boards.
        "03000200-0400-0500-0006-000700080009",
    ];
    let lower = value.to_ascii_lowercase();
    if PLACEHOLDERS.contains(&lower.as_str()) {
        return None;
    }
    // All-zero and all-F UUIDs (and serials made only of those digits) are
    // "unset" in SMBIOS.
    let digits: Vec<char> = lower.chars().filter(|c| *c != '-' && *c != ' ').collect();
    if digits.len() >= 8 && (digits.iter().all(|c| *c == '0') || digits.iter().all(|c| *c == 'f')) {
        return None;
    }
    Some(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fingerprint_is_fnv1a_over_name_tab_version_lines() {
        // The empty list hashes to the FNV-1a 64 offset basis.
        assert_eq!(
            packages_fingerprint(&BTreeMap::new()),
            0xcbf2_9ce4_8422_2325
        );
        // Pinned values, computed with an independent FNV-1a implementation:
        // changing them breaks every collector's comparison.
        assert_eq!(
            packages_fingerprint(&map(&[("bash", "5.2.15-2+b8")])),
            0x7fe9_a2ca_7560_2bcb
        );
        assert_eq!(
            packages_fingerprint(&map(&[
                ("bash", "5.2.15-2+b8"),
                ("zlib1g", "1:1.2.13.dfsg-1")
            ])),
            0xdb7c_2db1_f7bb_43bb
        );
        // Order of insertion does not matter (BTreeMap), content does.
        let a = map(&[("x", "1"), ("y", "2")]);
        let b = map(&[("y", "2"), ("x", "1")]);
        assert_eq!(packages_fingerprint(&a), packages_fingerprint(&b));
        assert_ne!(
            packages_fingerprint(&a),
            packages_fingerprint(&map(&[("x", "1"), ("y", "3")]))
        );
        // The separators keep "ab"+"c" apart from "a"+"bc".
        assert_ne!(
            packages_fingerprint(&map(&[("ab", "c")])),
            packages_fingerprint(&map(&[("a", "bc")]))
        );
    }

    #[test]
    fn drops_firmware_placeholders() {
        let cases = [
            ("Dell Inc.\n", Some("Dell Inc.")),
            ("  VMware-56 4d 1c 3e  \n", Some("VMware-56 4d 1c 3e")),
            ("To Be Filled By O.E.M.\n", None),
            ("Default string\n", None),
            ("System Serial Number", None),
            ("Not Specified", None),
            ("None", None),
            ("0", None),
            ("", None),
            ("\n", None),
            ("00000000-0000-0000-0000-000000000000", None),
            ("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", None),
            ("03000200-0400-0500-0006-000700080009", None),
            (
                "ec2a1b7e-3c1d-9f4b-8a55-0b1e2d3c4f5a",
                Some("ec2a1b7e-3c1d-9f4b-8a55-0b1e2d3c4f5a"),
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(clean_firmware_value(raw).as_deref(), expected, "{raw:?}");
        }
    }
}
