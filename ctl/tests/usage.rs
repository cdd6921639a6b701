//! Usage errors exit with status 2 before any request is made. Being an
//! integration test of this package, it also makes `cargo test --workspace`
//! build the `stewardctl` binary that the end-to-end tests in `tests/` run.

use std::process::{Command, Output};

fn stewardctl(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stewardctl"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .output()
        .expect("stewardctl runs")
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    let home = tempfile::tempdir().unwrap();
    let no_command = stewardctl(home.path(), &[]);
    assert_eq!(no_command.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_command.stderr).contains("Usage: stewardctl"));

    let unknown_flag = stewardctl(home.path(), &["incidents", "--bogus"]);
    assert_eq!(unknown_flag.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown_flag.stderr).contains("'--bogus'"));

    let no_url = stewardctl(home.path(), &["incidents"]);
    assert_eq!(no_url.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&no_url.stderr);
    assert!(stderr.contains("no collector URL"), "{stderr}");
    assert!(stderr.contains("STEWARD_URL"), "{stderr}");
}
