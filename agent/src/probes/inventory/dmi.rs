//! The machine's hardware identity: vendor, product, serial numbers, UUID.
//!
//! On Linux these come from the SMBIOS tables the kernel exposes under
//! `/sys/class/dmi/id/`. `product_serial`, `product_uuid` and `board_serial`
//! are readable by root only; an agent running unprivileged simply does not
//! know them, which is not an error. VMs without SMBIOS (Firecracker, many
//! ARM boards) have no directory at all.
//!
//! Firmware fills unset fields with placeholders ("To be filled by O.E.M.",
//! all-zero UUIDs). Those are dropped here: an asset database that keys on a
//! serial would otherwise merge every machine with the same placeholder.

use std::path::Path;

use tracing::debug;

use super::fact;
pub use steward_core::inventory::clean_firmware_value as clean_value;

/// What identifies the physical (or virtual) machine. Filled from DMI on
/// Linux, from `system_profiler` on macOS and from CIM on Windows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardwareIdentity {
    pub sys_vendor: Option<String>,
    pub product_name: Option<String>,
    pub product_serial: Option<String>,
    pub product_uuid: Option<String>,
    pub board_serial: Option<String>,
}

impl HardwareIdentity {
    /// The known values as `(fact key, value)` pairs.
    pub fn facts(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            (fact::DMI_SYS_VENDOR, &self.sys_vendor),
            (fact::DMI_PRODUCT_NAME, &self.product_name),
            (fact::DMI_PRODUCT_SERIAL, &self.product_serial),
            (fact::DMI_PRODUCT_UUID, &self.product_uuid),
            (fact::DMI_BOARD_SERIAL, &self.board_serial),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.as_deref().map(|value| (key, value)))
    }
}

/// Reads `sys/class/dmi/id/*` under `root`. Every field is optional: missing
/// or unreadable files (permissions, no SMBIOS) give `None`.
pub fn read(root: &Path) -> HardwareIdentity {
    let dir = root.join("sys/class/dmi/id");
    let field = |name: &str| {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => clean_value(&String::from_utf8_lossy(&bytes)),
            Err(error) => {
                debug!(message = "DMI field not readable.", path = %path.display(), %error);
                None
            }
        }
    };
    HardwareIdentity {
        sys_vendor: field("sys_vendor"),
        product_name: field("product_name"),
        product_serial: field("product_serial"),
        // The kernel prints the UUID in lower case; CIM and system_profiler
        // use upper case. Lower-case all of them so one machine seen through
        // two sources compares equal.
        product_uuid: field("product_uuid").map(|uuid| uuid.to_ascii_lowercase()),
        board_serial: field("board_serial"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory/root")
    }

    #[test]
    fn reads_the_dmi_fixture_tree() {
        assert_eq!(
            read(&fixture_root()),
            HardwareIdentity {
                sys_vendor: Some("Dell Inc.".into()),
                product_name: Some("PowerEdge R640".into()),
                product_serial: Some("7QXK2M3".into()),
                product_uuid: Some("4c4c4544-0051-5810-804b-b7c04f324d33".into()),
                board_serial: Some(".7QXK2M3.CNFCP0098B00JQ.".into()),
            }
        );
    }

    #[test]
    fn missing_dmi_directory_knows_nothing() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(read(root.path()), HardwareIdentity::default());
    }

    #[test]
    fn unreadable_serial_and_uuid_are_none_not_an_error() {
        // As root, mode 000 files are still readable, so a directory stands in
        // for "exists but cannot be read" (EISDIR instead of EACCES).
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("sys/class/dmi/id");
        std::fs::create_dir_all(dir.join("product_serial")).unwrap();
        std::fs::create_dir_all(dir.join("product_uuid")).unwrap();
        std::fs::write(dir.join("sys_vendor"), "QEMU\n").unwrap();
        std::fs::write(dir.join("product_name"), "Standard PC (Q35 + ICH9, 2009)\n").unwrap();
        let identity = read(root.path());
        assert_eq!(identity.sys_vendor.as_deref(), Some("QEMU"));
        assert_eq!(
            identity.product_name.as_deref(),
            Some("Standard PC (Q35 + ICH9, 2009)")
        );
        assert_eq!(identity.product_serial, None);
        assert_eq!(identity.product_uuid, None);
        assert_eq!(
            identity.facts().map(|(key, _)| key).collect::<Vec<_>>(),
            [fact::DMI_SYS_VENDOR, fact::DMI_PRODUCT_NAME]
        );
    }
}
