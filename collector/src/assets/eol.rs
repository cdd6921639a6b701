//! End-of-life dates of common operating system releases, matched by the
//! os-release `ID` (`os_id`) and `VERSION_ID` (`os_version`).
//!
//! The dates are when the vendor's free security support ends, taken from
//! the vendors' lifecycle pages and rounded to the announced month where
//! only a month is given; paid extended support (Ubuntu Pro/ESM, RHEL ELS,
//! Windows ESU) is not counted. Sources:
//! - Debian: end of LTS, <https://wiki.debian.org/LTS>.
//! - Ubuntu: end of standard support, <https://ubuntu.com/about/release-cycle>.
//! - RHEL: end of maintenance support,
//!   <https://access.redhat.com/support/policy/updates/errata>; Rocky Linux
//!   and AlmaLinux follow the RHEL dates; CentOS 7 ended with RHEL 7,
//!   CentOS Linux 8 on 2021-12-31.
//! - Windows 10: <https://learn.microsoft.com/lifecycle/products/windows-10-home-and-pro>.
//! - macOS: Apple announces nothing; a release is taken as unsupported when
//!   the release two versions newer ships (approximate: Big Sur with
//!   Sonoma's release, Monterey with Sequoia's).
//!
//! The table is deliberately small; an unknown release is simply not
//! flagged. Extend it as releases age.

/// One release and the day its security support ended or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EolRelease {
    pub os_id: &'static str,
    /// Leading numeric components to match: `"12"` matches `12`, `12.4`,
    /// `12 (bookworm)`; `"22.04"` matches `22.04` only.
    pub version: &'static str,
    /// `YYYY-MM-DD`.
    pub eol: &'static str,
}

const fn release(os_id: &'static str, version: &'static str, eol: &'static str) -> EolRelease {
    EolRelease {
        os_id,
        version,
        eol,
    }
}

pub const EOL_TABLE: &[EolRelease] = &[
    release("debian", "9", "2022-06-30"),
    release("debian", "10", "2024-06-30"),
    release("debian", "11", "2026-08-31"),
    release("debian", "12", "2028-06-30"),
    release("ubuntu", "16.04", "2021-04-30"),
    release("ubuntu", "18.04", "2023-05-31"),
    release("ubuntu", "20.04", "2025-05-31"),
    release("ubuntu", "22.04", "2027-04-30"),
    release("ubuntu", "24.04", "2029-04-30"),
    release("rhel", "7", "2024-06-30"),
    release("rhel", "8", "2029-05-31"),
    release("rhel", "9", "2032-05-31"),
    release("centos", "7", "2024-06-30"),
    release("centos", "8", "2021-12-31"),
    release("rocky", "8", "2029-05-31"),
    release("rocky", "9", "2032-05-31"),
    release("almalinux", "8", "2029-05-31"),
    release("almalinux", "9", "2032-05-31"),
    release("windows", "10", "2025-10-14"),
    release("macos", "11", "2023-09-26"),
    release("macos", "12", "2024-09-16"),
];

/// First Windows 11 build; Windows 11 still reports itself as "10.0.x".
const FIRST_WINDOWS_11_BUILD: u64 = 22_000;

/// The table entry for a release, if the table knows it.
pub fn lookup(os_id: &str, os_version: &str) -> Option<&'static EolRelease> {
    let os_id = os_id.trim().to_ascii_lowercase();
    let reported = numeric_components(os_version);
    if os_id == "windows" && reported.iter().any(|&part| part >= FIRST_WINDOWS_11_BUILD) {
        return None;
    }
    EOL_TABLE.iter().find(|entry| {
        let wanted = numeric_components(entry.version);
        entry.os_id == os_id && !wanted.is_empty() && reported.starts_with(&wanted)
    })
}

/// The runs of digits in `text`, as numbers: `"22.04"` → `[22, 4]`,
/// `"10 (19045)"` → `[10, 19045]`.
fn numeric_components(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .filter_map(|part| part.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::dates;

    #[test]
    fn releases_match_by_id_and_leading_version() {
        let cases = [
            ("debian", "12", Some("2028-06-30")),
            ("debian", "12 (bookworm)", Some("2028-06-30")),
            ("debian", "9", Some("2022-06-30")),
            ("Debian", "10", Some("2024-06-30")),
            ("debian", "13", None),
            ("ubuntu", "22.04", Some("2027-04-30")),
            ("ubuntu", "22.10", None),
            ("ubuntu", "16.04", Some("2021-04-30")),
            ("rhel", "9.3", Some("2032-05-31")),
            ("rocky", "8.9", Some("2029-05-31")),
            ("almalinux", "9.4", Some("2032-05-31")),
            ("centos", "7", Some("2024-06-30")),
            ("rhel", "10.0", None),
            ("windows", "10 (19045)", Some("2025-10-14")),
            ("windows", "10.0.19045", Some("2025-10-14")),
            ("windows", "10.0.22631", None),
            ("windows", "11 (22631)", None),
            ("macos", "11.7.10", Some("2023-09-26")),
            ("macos", "12.7", Some("2024-09-16")),
            ("macos", "14.5", None),
            ("arch", "", None),
            ("ubuntu", "", None),
        ];
        for (os_id, version, expected) in cases {
            assert_eq!(
                lookup(os_id, version).map(|entry| entry.eol),
                expected,
                "{os_id} {version}"
            );
        }
    }

    #[test]
    fn every_table_date_is_valid() {
        for entry in EOL_TABLE {
            assert!(dates::date_ms(entry.eol).is_some(), "{entry:?}");
            assert!(!numeric_components(entry.version).is_empty(), "{entry:?}");
        }
    }
}
