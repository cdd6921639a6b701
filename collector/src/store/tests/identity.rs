//! The store suite for agent identity, enrollment and API tokens, on both backends.
use super::*;
use crate::access::{Scope, TokenHash};
use crate::store::postgres::PgStore;
use crate::store::postgres::testdb::TestDb;

fn certificate(agent_id: &str, sha256: &str, now_ms: i64) -> IssuedCertificate {
    IssuedCertificate {
        agent_id: agent_id.into(),
        sha256: sha256.into(),
        serial: "01".into(),
        issued_ms: now_ms,
        not_after_ms: now_ms + 1000,
    }
}

fn token(id: &str, hash: &str, created_ms: i64, expires_ms: i64, uses: u32) -> NewEnrollmentToken {
    NewEnrollmentToken {
        id: id.into(),
        secret_sha256: hash.into(),
        created_ms,
        expires_ms,
        uses,
        tags: vec!["env:prod".into()],
        adopts_existing: false,
    }
}

/// Enrollment tokens are created and revoked by the administration
/// commands, not through [`Store`]: `AdminDb` on SQLite, `PgStore` on PostgreSQL.
async fn create_token(backend: &TestBackend, token: NewEnrollmentToken) {
    match backend {
        TestBackend::Sqlite(dir) => AdminDb::open(&dir.path().join("s.db"))
            .unwrap()
            .create_token(&token)
            .unwrap(),
        TestBackend::Postgres(db) => admin_pg(db)
            .await
            .create_enrollment_token(&token)
            .await
            .unwrap(),
    }
}

async fn revoke_token(backend: &TestBackend, id: &str, now_ms: i64) -> bool {
    match backend {
        TestBackend::Sqlite(dir) => AdminDb::open(&dir.path().join("s.db"))
            .unwrap()
            .revoke_token(id, now_ms)
            .unwrap(),
        TestBackend::Postgres(db) => admin_pg(db)
            .await
            .revoke_enrollment_token(id, now_ms)
            .await
            .unwrap(),
    }
}

async fn uses_left(backend: &TestBackend, id: &str) -> u32 {
    let tokens = match backend {
        TestBackend::Sqlite(dir) => AdminDb::open(&dir.path().join("s.db"))
            .unwrap()
            .tokens()
            .unwrap(),
        TestBackend::Postgres(db) => admin_pg(db).await.enrollment_tokens().await.unwrap(),
    };
    tokens
        .iter()
        .find(|token| token.id == id)
        .unwrap()
        .uses_left
}

async fn admin_pg(db: &TestDb) -> PgStore {
    PgStore::open(&db.settings(), "admin").await.unwrap()
}

on_both_backends! {
    async fn enrollment_tokens_are_spent_and_refused_expired_or_revoked(backend: &TestBackend) {
        let store = backend.open().await;
        create_token(backend, token("t1", "h1", 0, 10_000, 2)).await;
        assert!(store.enrollment_token_usable("h1".into(), 1).await.unwrap());
        let redeem = async |hash: &str, agent: &str, sha: &str, now: i64| {
            store
                .redeem_enrollment(hash.into(), certificate(agent, sha, now), now)
                .await
                .unwrap()
        };
        assert_eq!(redeem("h1", "a", "c1", 1).await, Ok(vec!["env:prod".to_string()]));
        assert_eq!(
            redeem("h1", "a", "c2", 2).await,
            Err(EnrollRefusal::AlreadyEnrolled("a".into()))
        );
        assert_eq!(uses_left(backend, "t1").await, 1, "the refusal spent no use");
        assert!(redeem("h1", "b", "c3", 3).await.is_ok());
        assert_eq!(uses_left(backend, "t1").await, 0);
        assert!(!store.enrollment_token_usable("h1".into(), 4).await.unwrap());
        assert_eq!(redeem("h1", "c", "c4", 4).await, Err(EnrollRefusal::InvalidToken));
        assert_eq!(redeem("unknown", "c", "c4", 4).await, Err(EnrollRefusal::InvalidToken));

        create_token(backend, token("old", "h-old", 0, 100, 1)).await;
        assert!(!store.enrollment_token_usable("h-old".into(), 100).await.unwrap());
        assert_eq!(redeem("h-old", "c", "c5", 200).await, Err(EnrollRefusal::InvalidToken));

        create_token(backend, token("gone", "h-gone", 0, 10_000, 1)).await;
        assert!(revoke_token(backend, "gone", 5).await);
        assert!(!revoke_token(backend, "gone", 6).await, "already revoked");
        assert!(!store.enrollment_token_usable("h-gone".into(), 7).await.unwrap());
        assert_eq!(redeem("h-gone", "c", "c6", 7).await, Err(EnrollRefusal::InvalidToken));

        let binding = store.identity_binding("b").await.unwrap().unwrap();
        assert_eq!((binding.revoked, binding.certificates), (false, vec!["c3".to_string()]));
        assert_eq!(store.identity_binding("c").await.unwrap(), None);
    }
}

on_both_backends! {
    async fn an_id_that_streamed_with_the_shared_token_needs_an_adopting_token(backend: &TestBackend) {
        let store = backend.open().await;
        store
            .record_hello(AgentHello { agent_id: "old-host".into(), ..hello() })
            .await
            .unwrap();
        create_token(backend, token("plain", "h-plain", 0, 100, 2)).await;
        create_token(
            backend,
            NewEnrollmentToken { adopts_existing: true, ..token("adopt", "h-adopt", 0, 100, 1) },
        )
        .await;
        let redeem = async |hash: &str, agent: &str| {
            store
                .redeem_enrollment(hash.into(), certificate(agent, hash, 5), 5)
                .await
                .unwrap()
        };
        assert_eq!(
            redeem("h-plain", "old-host").await,
            Err(EnrollRefusal::ExistingAgent("old-host".into()))
        );
        assert!(redeem("h-plain", "new-host").await.is_ok(), "a new id needs no adoption");
        assert!(redeem("h-adopt", "old-host").await.is_ok());
    }
}

on_both_backends! {
    async fn revocation_is_an_event_and_only_a_newer_token_re_enrolls(backend: &TestBackend) {
        let store = backend.open().await;
        assert_eq!(store.last_identity_event().await.unwrap(), 0);
        create_token(backend, token("t1", "h1", 0, 10_000, 3)).await;
        let redeem = async |hash: &str, agent: &str, sha: &str, now: i64| {
            store
                .redeem_enrollment(hash.into(), certificate(agent, sha, now), now)
                .await
                .unwrap()
        };
        assert!(redeem("h1", "a", "c1", 1).await.is_ok());
        let enrolled = store.last_identity_event().await.unwrap();
        assert!(store.revoke_agent("a".into(), "alice".into(), 3).await.unwrap());
        assert!(!store.revoke_agent("a".into(), "alice".into(), 3).await.unwrap(), "already");
        assert!(!store.revoke_agent("nobody".into(), "alice".into(), 3).await.unwrap());
        let binding = store.identity_binding("a").await.unwrap().unwrap();
        assert!(binding.revoked && binding.certificates.is_empty());
        assert_eq!(
            redeem("h1", "a", "c2", 4).await,
            Err(EnrollRefusal::RevokedAfterToken("a".into())),
            "a token older than the revocation cannot undo it"
        );
        // What another collector's watcher, polling from its cursor, sees.
        let revoked = store.identity_events_after(enrolled).await.unwrap();
        assert_eq!(revoked.len(), 1);
        assert_eq!((revoked[0].agent_id.as_str(), revoked[0].kind.as_str()), ("a", "revoked"));
        assert!(revoked[0].detail.contains("revoked by alice"), "{}", revoked[0].detail);
        assert_eq!(store.last_identity_event().await.unwrap(), revoked[0].id);

        create_token(backend, token("t2", "h2", 6, 10_000, 1)).await;
        assert!(redeem("h2", "a", "c3", 7).await.is_ok(), "re-enrol with a newer token");
        let binding = store.identity_binding("a").await.unwrap().unwrap();
        assert_eq!((binding.revoked, binding.certificates), (false, vec!["c3".to_string()]));
        let events = store.identity_events_after(0).await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
        assert_eq!(kinds, ["enrolled", "revoked", "enrolled"]);
        assert_eq!(events[0].tags, ["env:prod"]);
        assert!(events.windows(2).all(|pair| pair[0].id < pair[1].id));

        // Recorded on the asset once: marked events are not handed out again.
        let unapplied = store.unapplied_identity_events().await.unwrap();
        assert_eq!(unapplied, events);
        store.mark_identity_event_applied(events[1].id).await.unwrap();
        let left: Vec<i64> = store
            .unapplied_identity_events()
            .await
            .unwrap()
            .iter()
            .map(|event| event.id)
            .collect();
        assert_eq!(left, [events[0].id, events[2].id]);
    }
}

on_both_backends! {
    async fn only_a_current_certificate_of_a_live_identity_is_renewed(backend: &TestBackend) {
        let store = backend.open().await;
        create_token(backend, token("t1", "h1", 0, 10_000, 1)).await;
        assert!(store
            .redeem_enrollment("h1".into(), certificate("a", "c1", 0), 0)
            .await
            .unwrap()
            .is_ok());
        let renew = async |presented: &str, new: &str, now: i64| {
            store
                .renew_certificate(presented.into(), certificate("a", new, now))
                .await
                .unwrap()
        };
        let certificates = async || {
            let mut certificates = store.identity_binding("a").await.unwrap().unwrap().certificates;
            certificates.sort();
            certificates
        };
        assert!(!renew("unknown", "c2", 10).await);
        assert!(renew("c1", "c2", 10).await);
        assert_eq!(certificates().await, ["c1", "c2"], "the presented one keeps working");
        // A copy of c1 renewing too drops c2: the genuine agent cannot renew.
        assert!(renew("c1", "x", 20).await);
        assert!(!renew("c2", "c3", 30).await, "c2 was dropped");
        assert_eq!(certificates().await, ["c1", "x"]);
        assert!(store.revoke_agent("a".into(), "bob".into(), 40).await.unwrap());
        assert!(!renew("x", "c4", 50).await, "revoked");
        assert!(certificates().await.is_empty());
    }
}

on_both_backends! {
    async fn api_tokens_are_created_found_touched_and_revoked(backend: &TestBackend) {
        let store = backend.open().await;
        let first = TokenHash::of("first-token-value");
        assert!(store.create_api_token("ci".into(), Scope::Write, first, 1).await.unwrap());
        assert!(
            !store
                .create_api_token("ci".into(), Scope::Read, TokenHash::of("x"), 2)
                .await
                .unwrap(),
            "the name of an unrevoked token is taken"
        );
        let found = store.active_api_token(first).await.unwrap().unwrap();
        assert_eq!((found.name.as_str(), found.scope), ("ci", Scope::Write));
        assert_eq!(store.active_api_token(TokenHash::of("x")).await.unwrap(), None);
        store.touch_api_token(found.id, 7).await.unwrap();
        let listed = store.api_tokens().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].created_ms, listed[0].last_used_ms), (1, Some(7)));

        assert!(store.revoke_api_token("ci".into(), 3).await.unwrap());
        assert!(!store.revoke_api_token("ci".into(), 4).await.unwrap(), "already revoked");
        assert_eq!(store.active_api_token(first).await.unwrap(), None);
        assert!(
            store
                .create_api_token("ci".into(), Scope::Read, TokenHash::of("second"), 5)
                .await
                .unwrap(),
            "a revoked name can be given to a new token"
        );
        let listed = store.api_tokens().await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!((listed[0].revoked_ms, listed[1].revoked_ms), (Some(3), None));
        assert_eq!(listed[1].scope, Scope::Read);
    }
}

/// Two collectors on one PostgreSQL database.
async fn two_collectors() -> Option<(TestDb, Store, Store)> {
    let db = TestDb::create().await?;
    let a = Store::open_postgres(&db.settings(), "collector-a")
        .await
        .unwrap();
    let b = Store::open_postgres(&db.settings(), "collector-b")
        .await
        .unwrap();
    Some((db, a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_collectors_redeeming_the_last_use_of_a_token_one_wins() {
    let Some((db, a, b)) = two_collectors().await else {
        return;
    };
    let admin = admin_pg(&db).await;
    for round in 0..10 {
        let hash = format!("h{round}");
        admin
            .create_enrollment_token(&token(&format!("t{round}"), &hash, 0, 10_000, 1))
            .await
            .unwrap();
        let (x, y) = (format!("x{round}"), format!("y{round}"));
        let (first, second) = tokio::join!(
            a.redeem_enrollment(hash.clone(), certificate(&x, &format!("cx{round}"), 1), 1),
            b.redeem_enrollment(hash.clone(), certificate(&y, &format!("cy{round}"), 1), 1),
        );
        let outcomes = [first.unwrap(), second.unwrap()];
        let won = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {outcomes:?}");
        assert!(outcomes.contains(&Err(EnrollRefusal::InvalidToken)));
        let bound = [a.identity_binding(&x).await, a.identity_binding(&y).await];
        assert_eq!(
            bound
                .iter()
                .filter(|binding| binding.as_ref().unwrap().is_some())
                .count(),
            1,
            "only the winner is bound"
        );
    }
    let tokens = admin.enrollment_tokens().await.unwrap();
    assert!(tokens.iter().all(|token| token.uses_left == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_collectors_enrolling_one_id_with_two_tokens_one_wins() {
    let Some((db, a, b)) = two_collectors().await else {
        return;
    };
    let admin = admin_pg(&db).await;
    for round in 0..10 {
        let (ha, hb) = (format!("ha{round}"), format!("hb{round}"));
        for hash in [&ha, &hb] {
            admin
                .create_enrollment_token(&token(hash, hash, 0, 10_000, 1))
                .await
                .unwrap();
        }
        let agent = format!("agent{round}");
        let (first, second) = tokio::join!(
            a.redeem_enrollment(ha.clone(), certificate(&agent, &ha, 1), 1),
            b.redeem_enrollment(hb.clone(), certificate(&agent, &hb, 1), 1),
        );
        let outcomes = [first.unwrap(), second.unwrap()];
        assert_eq!(
            outcomes.iter().filter(|outcome| outcome.is_ok()).count(),
            1,
            "{outcomes:?}"
        );
        assert!(outcomes.contains(&Err(EnrollRefusal::AlreadyEnrolled(agent.clone()))));
        let binding = a.identity_binding(&agent).await.unwrap().unwrap();
        assert_eq!(binding.certificates.len(), 1);
    }
    let left: u32 = admin
        .enrollment_tokens()
        .await
        .unwrap()
        .iter()
        .map(|token| token.uses_left)
        .sum();
    assert_eq!(left, 10, "each refused enrollment gave its use back");
}

#[tokio::test]
async fn a_revocation_through_one_collector_reaches_the_others_and_is_applied_once() {
    let Some((db, a, b)) = two_collectors().await else {
        return;
    };
    admin_pg(&db)
        .await
        .create_enrollment_token(&token("t1", "h1", 0, 10_000, 1))
        .await
        .unwrap();
    assert!(
        a.redeem_enrollment("h1".into(), certificate("x", "c1", 1), 1)
            .await
            .unwrap()
            .is_ok()
    );
    // Collector a's watcher started here.
    let seen = a.last_identity_event().await.unwrap();
    assert!(b.revoke_agent("x".into(), "alice".into(), 2).await.unwrap());
    assert!(
        !a.revoke_agent("x".into(), "bob".into(), 3).await.unwrap(),
        "already revoked"
    );
    let events = a.identity_events_after(seen).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind.as_str(), events[0].agent_id.as_str()),
        ("revoked", "x")
    );
    assert!(a.identity_binding("x").await.unwrap().unwrap().revoked);

    // Recording on the asset is once for the cluster: a claims both events,
    // b is handed none while a's lease runs, and a gets its claims again.
    assert_eq!(a.unapplied_identity_events().await.unwrap().len(), 2);
    assert!(b.unapplied_identity_events().await.unwrap().is_empty());
    let claimed = a.unapplied_identity_events().await.unwrap();
    assert_eq!(claimed.len(), 2, "a retries what it could not record yet");
    a.mark_identity_event_applied(claimed[0].id).await.unwrap();
    // a's lease lapses (it cannot record the event, or it stopped): the
    // others have one lease to take it over before a may claim it again.
    set_identity_claims_until(&db, "- 1000").await;
    assert!(a.unapplied_identity_events().await.unwrap().is_empty());
    let taken = b.unapplied_identity_events().await.unwrap();
    assert_eq!(
        taken.iter().map(|event| event.id).collect::<Vec<_>>(),
        [claimed[1].id]
    );
    assert!(a.unapplied_identity_events().await.unwrap().is_empty());
    // Nobody took it over in time: its last holder may claim it again.
    set_identity_claims_until(&db, "- 60000").await;
    assert_eq!(a.unapplied_identity_events().await.unwrap().len(), 1);
    assert!(b.unapplied_identity_events().await.unwrap().is_empty());
    a.mark_identity_event_applied(claimed[1].id).await.unwrap();
    assert!(a.unapplied_identity_events().await.unwrap().is_empty());
    assert!(b.unapplied_identity_events().await.unwrap().is_empty());
}

/// Moves every claim's lease end to the database's now plus `offset` (SQL).
async fn set_identity_claims_until(db: &TestDb, offset: &str) {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    client
        .execute(
            &format!(
                "UPDATE agent_identity_events SET claimed_until_ms =
                     (extract(epoch FROM clock_timestamp()) * 1000)::bigint {offset}
                 WHERE claimed_by IS NOT NULL"
            ),
            &[],
        )
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
}

/// The administration commands act on PostgreSQL when `[storage] postgres`
/// is set: what they write, the collectors read.
#[tokio::test]
async fn the_admin_commands_write_to_postgres_when_it_is_configured() {
    use crate::setup::{admin, token_cli};
    let Some(db) = TestDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("collector.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\n\
             [tls]\nenabled = false\n\n[auth]\nagent_tokens = [\"0123456789abcdef0123\"]\n\n\
             [storage]\npostgres = \"{}\"\ninstance = \"cli\"\n",
            db.url
        ),
    )
    .unwrap();
    let config = crate::CollectorConfig::load(&config_path).unwrap();
    assert!(config.postgres.is_some());
    // The commands are synchronous and start their own runtime.
    let (secret, listed, api_token, api_listed) = tokio::task::spawn_blocking(move || {
        let created = admin::create_token(
            &config,
            &admin::TokenOptions {
                ttl: std::time::Duration::from_secs(3600),
                uses: 1,
                tags: vec!["env=prod".into()],
                adopt_existing: false,
            },
        )
        .unwrap();
        let listed = admin::list_tokens(&config).unwrap();
        let api_token = token_cli::run(
            &config_path,
            token_cli::TokenCommand::Create {
                name: "ci".into(),
                scope: Scope::Read,
            },
        )
        .unwrap()
        .stdout;
        let duplicate = token_cli::run(
            &config_path,
            token_cli::TokenCommand::Create {
                name: "ci".into(),
                scope: Scope::Read,
            },
        );
        assert!(
            matches!(
                duplicate,
                Err(token_cli::TokenCliError::Table(TokenTableError::NameTaken(
                    _
                )))
            ),
            "{duplicate:?}"
        );
        let api_listed = token_cli::run(&config_path, token_cli::TokenCommand::List)
            .unwrap()
            .stdout;
        (created.secret, listed, api_token, api_listed)
    })
    .await
    .unwrap();
    assert!(listed.contains(&secret.id), "{listed}");
    assert!(api_listed.contains("ci"), "{api_listed}");

    let store = Store::open_postgres(&db.settings(), "collector-a")
        .await
        .unwrap();
    let now = steward_core::now_ms();
    assert!(
        store
            .enrollment_token_usable(secret.hash(), now)
            .await
            .unwrap()
    );
    let found = store
        .active_api_token(TokenHash::of(api_token.trim()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.name.as_str(), found.scope), ("ci", Scope::Read));
    assert_eq!(
        store
            .redeem_enrollment(secret.hash(), certificate("x", "c1", now), now)
            .await
            .unwrap(),
        Ok(vec!["env:prod".to_string()])
    );

    let config_path = dir.path().join("collector.toml");
    let seen = store.last_identity_event().await.unwrap();
    let secret_id = secret.id.clone();
    tokio::task::spawn_blocking(move || {
        let config = crate::CollectorConfig::load(&config_path).unwrap();
        admin::revoke_agent(&config, "x", "alice").unwrap();
        assert!(matches!(
            admin::revoke_agent(&config, "x", "alice"),
            Err(admin::AdminError::NotEnrolled(_))
        ));
        admin::revoke_token(&config, &secret_id).unwrap();
        token_cli::run(
            &config_path,
            token_cli::TokenCommand::Revoke { name: "ci".into() },
        )
        .unwrap();
    })
    .await
    .unwrap();
    let events = store.identity_events_after(seen).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "revoked");
    assert!(store.identity_binding("x").await.unwrap().unwrap().revoked);
    assert_eq!(
        store
            .active_api_token(TokenHash::of(api_token.trim()))
            .await
            .unwrap(),
        None
    );
}
