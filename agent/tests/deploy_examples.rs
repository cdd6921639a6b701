//! The agent example under deploy/ parses and validates, so it never rots.
#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn deploy_agent_toml_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.toml");
    // Absolute paths in the example point into the temp dir instead.
    let text = std::fs::read_to_string(&source)
        .unwrap()
        .replace(
            "/var/lib/steward-agent",
            &dir.path().join("state").display().to_string(),
        )
        .replace("/etc/steward/", &format!("{}/", dir.path().display()));
    for file in ["agent-token", "ca.pem", "agent.pem", "agent.key"] {
        std::fs::write(dir.path().join(file), "0123456789abcdef0123456789\n").unwrap();
    }
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).unwrap();
    let config = steward_agent::AgentConfig::load(&path).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.collectors[0].server_name, "collector.example.net");
    assert_eq!(config.interval, std::time::Duration::from_secs(10));
    assert_eq!(config.spool.max_bytes, 256 << 20);
    assert!(config.retired_keys.is_empty());
    assert!(config.client_cert.is_some() && config.token.is_empty());
}
