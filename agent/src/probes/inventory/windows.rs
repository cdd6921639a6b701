//! Windows hardware identity from CIM (`Win32_ComputerSystemProduct`), the
//! same SMBIOS fields Linux reads from `/sys/class/dmi/id`.
//!
//! The process invocation is a few lines and only runs on Windows (the caller
//! checks `cfg!(target_os = "windows")`); it compiles everywhere so Linux CI
//! type-checks it. All parsing is in [`parse_computer_system_product`], tested
//! here against `ConvertTo-Json` output.

use serde_json::Value;

use super::dmi::{HardwareIdentity, clean_value};
use super::{InventoryError, command};

/// Redirected PowerShell writes in the OEM code page unless told otherwise,
/// which would mangle non-ASCII vendor names; hence the UTF-8 preamble.
/// `Select-Object` keeps the JSON small; the parser copes with the full
/// object too.
const SCRIPT: &str = "[Console]::OutputEncoding = [System.Text.Encoding]::UTF8; \
    Get-CimInstance -ClassName Win32_ComputerSystemProduct | \
    Select-Object Vendor,Name,IdentifyingNumber,UUID | ConvertTo-Json -Compress";

/// Runs PowerShell and parses its answer. Windows only in practice.
pub fn read_hardware() -> Result<HardwareIdentity, InventoryError> {
    let output = command::run(
        "powershell.exe",
        &[
            "-NoLogo",
            "-NoProfile",
            "-NonInteractive",
            "-Command",
            SCRIPT,
        ],
        command::DEFAULT_TIMEOUT,
    )?;
    parse_computer_system_product(&output)
}

/// Parses `Get-CimInstance Win32_ComputerSystemProduct | ConvertTo-Json`
/// (with or without `Select-Object`, Windows PowerShell 5.1 or PowerShell 7
/// formatting). Only top-level properties are read: the full object nests
/// `CimInstanceProperties`, whose entries have `Name` keys of their own. If
/// PowerShell returns an array (several instances), the first one is used.
pub fn parse_computer_system_product(text: &str) -> Result<HardwareIdentity, InventoryError> {
    let parse_error = |detail: String| InventoryError::Parse {
        what: "Win32_ComputerSystemProduct JSON",
        detail,
    };
    // Windows PowerShell 5.1 writes a UTF-8 byte-order mark when redirected;
    // serde_json does not accept one. Nesting is bounded by serde_json's
    // recursion limit, so hostile input cannot overflow the stack.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let document: Value =
        serde_json::from_str(text).map_err(|error| parse_error(error.to_string()))?;
    let product = match &document {
        Value::Array(items) => items
            .first()
            .ok_or_else(|| parse_error("empty array".into()))?,
        other => other,
    };
    let Value::Object(product) = product else {
        return Err(parse_error("not an object".into()));
    };
    let field = |key: &str| {
        product
            .get(key)
            .and_then(Value::as_str)
            .and_then(clean_value)
    };
    Ok(HardwareIdentity {
        sys_vendor: field("Vendor"),
        product_name: field("Name"),
        product_serial: field("IdentifyingNumber"),
        // Lower case, like the Linux kernel prints it.
        product_uuid: field("UUID").map(|uuid| uuid.to_ascii_lowercase()),
        board_serial: None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/inventory/windows")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn reads_the_full_cim_object_without_confusing_nested_names() {
        let identity =
            parse_computer_system_product(&fixture("computersystemproduct-full.json")).unwrap();
        assert_eq!(
            identity,
            HardwareIdentity {
                sys_vendor: Some("LENOVO".into()),
                product_name: Some("20XWCTO1WW".into()),
                product_serial: Some("PF3ABC12".into()),
                product_uuid: Some("7c9a3e4f-2b1d-11b2-a85c-c3d5e2f1a0b9".into()),
                board_serial: None,
            }
        );
    }

    #[test]
    fn reads_the_selected_compressed_form_the_agent_asks_for() {
        let identity =
            parse_computer_system_product(&fixture("computersystemproduct-select.json")).unwrap();
        assert_eq!(identity.sys_vendor.as_deref(), Some("VMware, Inc."));
        assert_eq!(identity.product_name.as_deref(), Some("VMware7,1"));
        assert_eq!(
            identity.product_serial.as_deref(),
            Some("VMware-56 4d 7b 0e 3a 9c 1f 2d-8e 41 6b 5a 9c 20 d3 11")
        );
        assert_eq!(
            identity.product_uuid.as_deref(),
            Some("0e7b4d56-9c3a-2d1f-8e41-6b5a9c20d311")
        );
    }

    #[test]
    fn takes_the_first_of_several_instances_and_drops_placeholders() {
        let text = r#"[{"Vendor":"System manufacturer","Name":"System Product Name",
            "IdentifyingNumber":"System Serial Number","UUID":"03000200-0400-0500-0006-000700080009"},
            {"Vendor":"Other"}]"#;
        assert_eq!(
            parse_computer_system_product(text).unwrap(),
            HardwareIdentity::default()
        );
    }

    /// Windows PowerShell 5.1 escapes `'` as `\u0027` and `&` as `\u0026`,
    /// and writes a byte-order mark when redirected.
    #[test]
    fn decodes_escapes_and_a_byte_order_mark_like_powershell_writes_them() {
        let text = "\u{feff}{\"Vendor\":\"O\\u0027Brien \\u0026 Co \\\"x\\\" \\/ \\ud83d\\ude00\",\
                    \"Name\":\"naïve ü\"}\r\n";
        let identity = parse_computer_system_product(text).unwrap();
        assert_eq!(
            identity.sys_vendor.as_deref(),
            Some("O'Brien & Co \"x\" / 😀")
        );
        assert_eq!(identity.product_name.as_deref(), Some("naïve ü"));
    }

    #[test]
    fn rejects_output_that_is_not_a_product_object() {
        for text in [
            "",
            "[]",
            "\"text\"",
            "WARNING: something\n{}",
            "{\"Vendor\": }",
            "{\"Vendor\": \"a\",}",
            "{'Vendor': 'a'}",
            "{} extra",
            "{\"Vendor\": \"bad \\q escape\"}",
            // A lone UTF-16 surrogate cannot be a Rust string; PowerShell
            // writes non-ASCII text unescaped, so it does not produce one.
            "{\"Vendor\": \"\\ud800\"}",
        ] {
            let error = parse_computer_system_product(text).unwrap_err();
            assert!(
                matches!(error, InventoryError::Parse { .. }),
                "{text:?}: {error}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let text = "[".repeat(100_000);
        let error = parse_computer_system_product(&text).unwrap_err();
        assert!(error.to_string().contains("recursion"), "{error}");
    }
}
