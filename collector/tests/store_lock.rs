//! One process at a time on a SQLite store: the running collector and the
//! offline `compact` both hold `<database>.lock`, so compaction cannot write
//! chunks a running collector also holds in memory (they would be stored
//! twice), and a second collector on the same file is refused.

use steward_collector::{CollectorConfig, CollectorError, compact_store, lock_sqlite_store};

const CONFIG: &str = r#"
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[tls]
enabled = false

[auth]
agent_tokens = ["store-lock-test-token-0123456789"]

[storage]
sqlite = "steward.db"
"#;

#[tokio::test]
async fn a_held_store_refuses_compaction_and_a_second_holder_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let config = CollectorConfig::load(&path).unwrap();

    let held = lock_sqlite_store(&config)
        .unwrap()
        .expect("a SQLite store is locked");
    let refused = compact_store(&config, true).await.unwrap_err();
    assert!(
        matches!(refused, CollectorError::StoreInUse { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("stop it first"), "{refused}");
    assert!(matches!(
        lock_sqlite_store(&config),
        Err(CollectorError::StoreInUse { .. })
    ));

    drop(held);
    compact_store(&config, true).await.unwrap();
    assert!(lock_sqlite_store(&config).unwrap().is_some());
}
