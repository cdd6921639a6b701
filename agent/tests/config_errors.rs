//! The real binary refuses invalid configuration, naming file, line and key.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn run(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not used before validation").unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_steward-agent"))
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&output.stderr).replace(path.to_str().unwrap(), "agent.toml");
    (output.status.code(), stderr)
}

const VALID: &str =
    "collector = \"https://127.0.0.1:7443\"\ntoken = \"0123456789abcdef\"\nca = \"ca.pem\"\n";

#[test]
fn bad_duration_is_refused_with_file_line_and_key() {
    let (code, stderr) = run(&format!("{VALID}interval = \"often\"\n"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("agent.toml:4: key `interval`: invalid duration \"often\""),
        "{stderr}"
    );
}

#[test]
fn unknown_key_is_refused_with_file_line_and_key() {
    let (code, stderr) = run(&format!("{VALID}colector = \"x\"\n"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("agent.toml:4: key `colector`: unknown field `colector`"),
        "{stderr}"
    );
}

#[test]
fn missing_ca_file_is_refused_with_file_line_and_key() {
    let (code, stderr) = run(&VALID.replace("ca.pem", "nowhere.pem"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("agent.toml:3: key `ca`: cannot read"),
        "{stderr}"
    );
}
