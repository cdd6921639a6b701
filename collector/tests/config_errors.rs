//! The real binary refuses invalid configuration, naming file, line and key.
#![allow(clippy::unwrap_used)]

use std::process::Command;

/// Runs `init`, edits the written collector.toml, starts the collector with it.
fn run_with(edit: impl FnOnce(String) -> String) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let init = Command::new(env!("CARGO_BIN_EXE_steward-collector"))
        .args([
            "init",
            dir.path().to_str().unwrap(),
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(init.status.success());
    let path = dir.path().join("collector.toml");
    std::fs::write(&path, edit(std::fs::read_to_string(&path).unwrap())).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_steward-collector"))
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&output.stderr).replace(path.to_str().unwrap(), "collector.toml");
    (output.status.code(), stderr)
}

#[test]
fn unknown_key_is_refused_with_file_line_and_key() {
    let (code, stderr) = run_with(|text| text + "bogus = 1\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("collector.toml:27: key `storage.bogus`: unknown field `bogus`"),
        "{stderr}"
    );
}

#[test]
fn bad_duration_is_refused_with_file_line_and_key() {
    let (code, stderr) = run_with(|text| text.replace("\"30d\"", "\"a month\""));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("collector.toml:26: key `storage.retention`: invalid duration"),
        "{stderr}"
    );
}

#[test]
fn missing_certificate_file_is_refused_with_file_line_and_key() {
    let (code, stderr) = run_with(|text| text.replace("server.pem", "missing.pem"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("collector.toml:11: key `tls.cert`: cannot read"),
        "{stderr}"
    );
}
