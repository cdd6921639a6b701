//! Windows, through the Windows Update Agent COM API driven by a short
//! PowerShell script (no PowerShell module to install, works on every
//! supported Windows).
//!
//! The search runs offline (`Online = $false`): it answers from the result of
//! Windows Update's own last scan instead of contacting Microsoft or WSUS,
//! which can take minutes. The time of that scan becomes `lists_age_days`.
//!
//! The script prints tab-separated lines, one record per line, so the parser
//! needs no JSON crate and the format is fully under our control:
//! ```text
//! update<TAB>MsrcSeverity<TAB>CategoryID,CategoryID<TAB>RebootRequired<TAB>Title
//! reboot<TAB>True|False
//! last_search<TAB>unix seconds
//! last_install<TAB>unix seconds
//! done<TAB>number of updates
//! ```
//! The `done` line proves the script ran to the end; without it the output is
//! rejected rather than read as "fewer updates".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{BoxFuture, CommandRunner, PatchBackend, PatchError, PatchReport, age_days};

const NAME: &str = "windows-update";
const PROGRAM: &str = "powershell.exe";

/// Classification GUID of "Security Updates"; category IDs, unlike category
/// names, are the same in every display language.
const SECURITY_UPDATES_CATEGORY: &str = "0fa1201d-4330-4fa8-8ae9-b877473b6441";

/// Runs inside `powershell.exe -EncodedCommand`. UTF-8 output so update titles
/// survive any console code page.
const SCRIPT: &str = r#"$ErrorActionPreference = 'Stop'
[Console]::OutputEncoding = [System.Text.Encoding]::UTF8
$session = New-Object -ComObject Microsoft.Update.Session
$searcher = $session.CreateUpdateSearcher()
$searcher.Online = $false
$result = $searcher.Search('IsInstalled=0 and IsHidden=0')
foreach ($update in $result.Updates) {
    $categories = ($update.Categories | ForEach-Object { $_.CategoryID }) -join ','
    "update`t$($update.MsrcSeverity)`t$categories`t$($update.RebootRequired)`t$($update.Title)"
}
"reboot`t$((New-Object -ComObject Microsoft.Update.SystemInfo).RebootRequired)"
$results = (New-Object -ComObject Microsoft.Update.AutoUpdate).Results
foreach ($pair in @(@('last_search', $results.LastSearchSuccessDate), @('last_install', $results.LastInstallationSuccessDate))) {
    if ($pair[1]) {
        $utc = [DateTime]::SpecifyKind($pair[1], [DateTimeKind]::Utc)
        "$($pair[0])`t$(([DateTimeOffset]$utc).ToUnixTimeSeconds())"
    }
}
"done`t$($result.Updates.Count)"
"#;

#[derive(Debug, Clone, Default)]
pub struct WindowsUpdateBackend;

impl WindowsUpdateBackend {
    pub fn new() -> Self {
        Self
    }
}

impl PatchBackend for WindowsUpdateBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn report<'a>(
        &'a self,
        runner: &'a CommandRunner,
    ) -> BoxFuture<'a, Result<PatchReport, PatchError>> {
        Box::pin(async move {
            let encoded = encode_powershell_command(SCRIPT);
            let output = runner
                .run(
                    PROGRAM,
                    &[
                        "-NoProfile",
                        "-NonInteractive",
                        "-ExecutionPolicy",
                        "Bypass",
                        "-EncodedCommand",
                        &encoded,
                    ],
                )
                .await?
                .accept(&[0])?;
            let scan = parse_windows_update_output(&output.stdout)?;
            let now = SystemTime::now();
            let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            Ok(PatchReport {
                pending: count(scan.updates.len()),
                security: Some(count(
                    scan.updates
                        .iter()
                        .filter(|update| update.is_security())
                        .count(),
                )),
                reboot_required: scan.reboot_required,
                last_update_age_days: scan.last_install.map(|time| age_days(time, now)),
                lists_age_days: scan.last_search.map(|time| age_days(time, now)),
                running_kernel: sysinfo::System::kernel_version().ok(),
                newest_installed_kernel: None,
                backend: NAME,
            })
        })
    }
}

/// What the script reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowsUpdateScan {
    pub updates: Vec<WindowsUpdate>,
    pub reboot_required: Option<bool>,
    pub last_search: Option<SystemTime>,
    pub last_install: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsUpdate {
    pub title: String,
    /// `Critical`, `Important`, ...; `None` for non-security updates.
    pub msrc_severity: Option<String>,
    /// Lower-case category GUIDs (classification and product).
    pub category_ids: Vec<String>,
    /// Installing this update will need a restart.
    pub reboot_required: bool,
}

impl WindowsUpdate {
    /// In the "Security Updates" classification, or rated by the MSRC
    /// (which only rates security bulletins).
    pub fn is_security(&self) -> bool {
        self.msrc_severity.is_some()
            || self
                .category_ids
                .iter()
                .any(|id| id == SECURITY_UPDATES_CATEGORY)
    }
}

/// Parses the script's output (see the module docs for the format).
pub fn parse_windows_update_output(text: &str) -> Result<WindowsUpdateScan, PatchError> {
    let mut scan = WindowsUpdateScan::default();
    let mut done = None;
    for line in text.lines().map(|line| line.trim_end_matches('\r')) {
        let mut fields = line.split('\t');
        match fields.next() {
            Some("update") => {
                let severity = fields.next().unwrap_or_default().trim();
                let categories = fields.next().unwrap_or_default();
                let reboot = fields.next().unwrap_or_default();
                // The title is last, so a stray tab in it cannot shift fields.
                let title = fields.collect::<Vec<_>>().join("\t");
                scan.updates.push(WindowsUpdate {
                    title: title.trim().to_string(),
                    msrc_severity: (!severity.is_empty()).then(|| severity.to_string()),
                    category_ids: categories
                        .split(',')
                        .map(|id| id.trim().to_ascii_lowercase())
                        .filter(|id| !id.is_empty())
                        .collect(),
                    reboot_required: reboot.trim().eq_ignore_ascii_case("true"),
                });
            }
            Some("reboot") => scan.reboot_required = fields.next().and_then(parse_bool),
            Some("last_search") => scan.last_search = fields.next().and_then(parse_unix_seconds),
            Some("last_install") => scan.last_install = fields.next().and_then(parse_unix_seconds),
            Some("done") => {
                done = fields
                    .next()
                    .and_then(|count| count.trim().parse::<usize>().ok())
            }
            _ => {}
        }
    }
    match done {
        Some(count) if count == scan.updates.len() => Ok(scan),
        Some(count) => Err(PatchError::Parse {
            program: PROGRAM,
            detail: format!(
                "script announced {count} updates but listed {}",
                scan.updates.len()
            ),
        }),
        None => Err(PatchError::Parse {
            program: PROGRAM,
            detail: "the update script stopped before its end marker".to_string(),
        }),
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        value if value.eq_ignore_ascii_case("true") => Some(true),
        value if value.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Windows reports "never" as a date near year 1 or 1601; anything before
/// 2000 is treated as unknown.
fn parse_unix_seconds(text: &str) -> Option<SystemTime> {
    let seconds = text.trim().parse::<i64>().ok()?;
    let seconds = u64::try_from(seconds).ok().filter(|&s| s >= 946_684_800)?;
    Some(UNIX_EPOCH + Duration::from_secs(seconds))
}

/// `-EncodedCommand` takes Base64 of the UTF-16LE script, which sidesteps
/// every quoting rule of `CreateProcess` and PowerShell's own parser.
pub fn encode_powershell_command(script: &str) -> String {
    let bytes: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64(&bytes)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, symbol) in symbols.iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[*symbol as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::patch::fixture;

    #[test]
    fn script_output_fixture() {
        let text = std::fs::read_to_string(fixture("windows-update.txt")).unwrap();
        let scan = parse_windows_update_output(&text).unwrap();
        assert_eq!(scan.updates.len(), 4);
        let security: Vec<&str> = scan
            .updates
            .iter()
            .filter(|u| u.is_security())
            .map(|u| u.title.as_str())
            .collect();
        assert_eq!(
            security,
            [
                "2024-11 Cumulative Update for Windows 11 Version 23H2 for x64-based Systems (KB5046633)",
                "2024-11 Security Update for Microsoft Office 2016 (KB5002645) 64-Bit Edition",
            ]
        );
        assert!(scan.updates[0].reboot_required);
        assert_eq!(scan.updates[0].msrc_severity.as_deref(), Some("Critical"));
        assert_eq!(scan.reboot_required, Some(false));
        assert_eq!(
            scan.last_search,
            Some(UNIX_EPOCH + Duration::from_secs(1_731_916_800))
        );
        assert_eq!(
            scan.last_install,
            Some(UNIX_EPOCH + Duration::from_secs(1_731_398_400))
        );
    }

    #[test]
    fn truncated_output_is_an_error_not_fewer_updates() {
        let text = "update\t\t\tFalse\tSome update\r\n";
        let error = parse_windows_update_output(text).unwrap_err();
        assert!(matches!(error, PatchError::Parse { .. }), "{error:?}");
        let mismatch = "update\t\t\tFalse\tSome update\r\ndone\t2\r\n";
        assert!(parse_windows_update_output(mismatch).is_err());
        let empty = "reboot\tTrue\r\ndone\t0\r\n";
        let scan = parse_windows_update_output(empty).unwrap();
        assert_eq!((scan.updates.len(), scan.reboot_required), (0, Some(true)));
    }

    #[test]
    fn never_searched_dates_are_unknown() {
        assert_eq!(parse_unix_seconds("-62135596800"), None);
        assert_eq!(parse_unix_seconds("0"), None);
        assert_eq!(parse_unix_seconds("x"), None);
    }

    #[test]
    fn encoded_command_is_base64_of_utf16le() {
        assert_eq!(encode_powershell_command("dir"), "ZABpAHIA");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // The real script encodes to well-formed Base64.
        let encoded = encode_powershell_command(SCRIPT);
        assert_eq!(encoded.len() % 4, 0);
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        );
    }
}
