//! Cleaning the identifiers agents report (DMI UUIDs, serials, machine-ids,
//! MACs, host names) into comparable values, with firmware placeholders and
//! generated MACs dropped.
//!
//! A leaf: pure string functions that import nothing from the rest of
//! `assets`, so the record (`model`) and matching (`identity`) clean values
//! the same way without depending on each other.

use steward_core::inventory::clean_firmware_value as clean_value;

/// Interface name prefixes whose MACs are generated (containers, bridges,
/// tunnels, overlays) and change on restart.
const VIRTUAL_INTERFACE_PREFIXES: &[&str] = &[
    "veth",
    "docker",
    "br-",
    "virbr",
    "cni",
    "flannel",
    "cali",
    "vxlan",
    "tun",
    "tap",
    "wg",
    "tailscale",
    "zt",
    "kube",
    "weave",
    "vnet",
    "podman",
    "lo",
];

/// A DMI product UUID, lower case; `None` for placeholders.
pub fn clean_uuid(raw: &str) -> Option<String> {
    clean_value(raw).map(|uuid| uuid.to_ascii_lowercase())
}

/// A serial number; `None` for placeholders, including values made of one
/// repeated character ("XXXXXXXX", "........").
pub fn clean_serial(raw: &str) -> Option<String> {
    let serial = clean_value(raw)?;
    let lower = serial.to_ascii_lowercase();
    const MORE_PLACEHOLDERS: &[&str] = &[
        "chassis serial number",
        "serial number",
        "system serial",
        "default",
        "unknown",
        "1234567890",
        "00000000",
    ];
    let mut chars = lower.chars();
    let first = chars.next()?;
    if MORE_PLACEHOLDERS.contains(&lower.as_str()) || chars.all(|c| c == first) {
        return None;
    }
    Some(serial)
}

/// A systemd machine-id (32 hex digits), lower case; `None` when malformed,
/// all zero or "uninitialized".
pub fn clean_machine_id(raw: &str) -> Option<String> {
    let id = raw.trim().to_ascii_lowercase();
    let valid =
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) && id.chars().any(|c| c != '0');
    valid.then_some(id)
}

/// A MAC as `aa:bb:cc:dd:ee:ff`; `None` when malformed, all zero or broadcast.
pub fn normalize_mac(raw: &str) -> Option<String> {
    let mac = raw.trim().to_ascii_lowercase().replace('-', ":");
    let groups: Vec<&str> = mac.split(':').collect();
    let valid = groups.len() == 6
        && groups
            .iter()
            .all(|group| group.len() == 2 && group.chars().all(|c| c.is_ascii_hexdigit()));
    if !valid || mac == "00:00:00:00:00:00" || mac == "ff:ff:ff:ff:ff:ff" {
        return None;
    }
    Some(mac)
}

/// Whether an interface's MAC is generated rather than burnt in.
pub fn is_virtual_interface(name: &str) -> bool {
    VIRTUAL_INTERFACE_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// The short host name, lower case; `None` for empty and `localhost`.
pub fn short_hostname(raw: &str) -> Option<String> {
    let short = raw.trim().split('.').next()?.to_ascii_lowercase();
    (!short.is_empty() && short != "localhost").then_some(short)
}
