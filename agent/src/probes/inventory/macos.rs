//! macOS hardware identity from `system_profiler SPHardwareDataType`.
//!
//! The process invocation is a few lines and only runs on macOS (the caller
//! checks `cfg!(target_os = "macos")`); it compiles everywhere so Linux CI
//! type-checks it. All parsing is in [`parse_hardware_overview`], tested here
//! against captured text. Installed packages (`pkgutil --pkgs`) are parsed in
//! [`super::packages`].

use super::dmi::{HardwareIdentity, clean_value};
use super::{InventoryError, command};

/// Runs `system_profiler` and parses its answer. macOS only in practice.
pub fn read_hardware() -> Result<HardwareIdentity, InventoryError> {
    let output = command::run(
        "system_profiler",
        &["SPHardwareDataType"],
        command::DEFAULT_TIMEOUT,
    )?;
    let mut identity = parse_hardware_overview(&output);
    // system_profiler does not name the vendor; it only runs on Apple
    // hardware.
    if identity != HardwareIdentity::default() {
        identity.sys_vendor = Some("Apple Inc.".to_string());
    }
    Ok(identity)
}

/// Parses the indented `Key: Value` text of `system_profiler
/// SPHardwareDataType`. The product name is the model identifier
/// (`MacBookPro18,3`), which is what SMBIOS reports as the product name on
/// a Mac, rather than the marketing name ("MacBook Pro").
pub fn parse_hardware_overview(text: &str) -> HardwareIdentity {
    let mut identity = HardwareIdentity::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "Model Identifier" => &mut identity.product_name,
            // "Serial Number (system)" since macOS 10.15; plain before.
            "Serial Number (system)" | "Serial Number" => &mut identity.product_serial,
            "Hardware UUID" => &mut identity.product_uuid,
            _ => continue,
        };
        if slot.is_none() {
            *slot = clean_value(value);
        }
    }
    // Lower case, like the Linux kernel prints it.
    identity.product_uuid = identity.product_uuid.map(|uuid| uuid.to_ascii_lowercase());
    identity
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/inventory/macos")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn parses_apple_silicon_and_intel_hardware_overviews() {
        let cases = [
            (
                "sphardware-apple-silicon.txt",
                "MacBookPro18,3",
                "K7XQ9M2VJD",
                "5b1a9c4e-7d3f-5e2a-9b8c-1f0e6d4a3c2b",
            ),
            (
                "sphardware-intel.txt",
                "Macmini8,1",
                "C07XK2ABJYVX",
                "8f3e2d1c-4b5a-5c6d-9e8f-7a6b5c4d3e2f",
            ),
        ];
        for (file, model, serial, uuid) in cases {
            assert_eq!(
                parse_hardware_overview(&fixture(file)),
                HardwareIdentity {
                    sys_vendor: None,
                    product_name: Some(model.into()),
                    product_serial: Some(serial.into()),
                    product_uuid: Some(uuid.into()),
                    board_serial: None,
                },
                "{file}"
            );
        }
    }

    #[test]
    fn unrelated_text_knows_nothing() {
        assert_eq!(
            parse_hardware_overview("Hardware:\n\n    Hardware Overview:\n"),
            HardwareIdentity::default()
        );
    }
}
