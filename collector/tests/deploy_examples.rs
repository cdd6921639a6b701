//! Every example config under deploy/ parses and validates, so examples never rot.
#![allow(clippy::unwrap_used)]

use std::path::Path;

/// Copies an example beside stand-in files for the paths it names, then loads it.
fn stage(example: &str, files: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(example);
    let text = std::fs::read_to_string(&source).unwrap();
    // Absolute paths in the example point into the temp dir instead.
    let text = text
        .replace("/var/lib/steward/", &format!("{}/", dir.path().display()))
        .replace(
            "/var/lib/steward-agent",
            &dir.path().join("state").display().to_string(),
        )
        .replace("/etc/steward/", &format!("{}/", dir.path().display()));
    for file in files {
        std::fs::write(dir.path().join(file), "0123456789abcdef0123456789\n").unwrap();
    }
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/default-rules.toml");
    std::fs::copy(rules, dir.path().join("default-rules.toml")).unwrap();
    let path = dir.path().join(example);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn deploy_collector_toml_is_valid() {
    let (_dir, path) = stage(
        "collector.toml",
        &["server.pem", "server.key", "ca.pem", "ca.key", "api-token"],
    );
    let config =
        steward_collector::CollectorConfig::load(&path).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.http_listen.port(), 7080);
    assert!(
        config
            .tls
            .as_ref()
            .is_some_and(|tls| tls.ca_key_pem.is_some())
    );
    assert!(config.agent_tokens.is_empty(), "enrolled agents only");
    assert_eq!(config.enrollment.cert_lifetime.as_secs(), 90 * 24 * 3600);
    assert_eq!(config.rules.len(), 11, "the default rules are included");
}

#[test]
fn deploy_collector_full_toml_with_notifications_is_valid() {
    let (_dir, path) = stage(
        "collector-full.toml",
        &[
            "server.pem",
            "server.key",
            "ca.pem",
            "ca.key",
            "api-token",
            "smtp-password",
        ],
    );
    let config =
        steward_collector::CollectorConfig::load(&path).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.notify.channels.len(), 5);
    assert_eq!(config.notify.routes.len(), 2);
    assert_eq!(config.notify.escalations.len(), 1);
    assert_eq!(config.base_url, "https://steward.example.net");
}
