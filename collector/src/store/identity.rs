//! Agent identity rows: enrollment tokens (hashed), the agent ids bound to
//! certificates, their certificates, and identity events.
//!
//! The functions here run inside the writer's transactions (the collector)
//! or on an [`AdminDb`] connection (the `enroll-token` and `agent revoke`
//! commands, another process writing the same WAL file). Token secrets never
//! reach this module: callers pass their SHA-256.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::StoreError;

/// A new enrollment token, as stored (the secret only as its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnrollmentToken {
    pub id: String,
    pub secret_sha256: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub uses: u32,
    pub tags: Vec<String>,
    /// May claim an agent id that has streamed with the shared token.
    pub adopts_existing: bool,
}

/// A stored enrollment token, for `enroll-token list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentTokenRow {
    pub id: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub uses_left: u32,
    pub tags: Vec<String>,
    pub revoked_ms: Option<i64>,
}

/// A certificate the collector signed for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub agent_id: String,
    pub sha256: String,
    pub serial: String,
    pub issued_ms: i64,
    pub not_after_ms: i64,
}

/// Why a token did not buy a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollRefusal {
    #[error("unknown, used-up, expired or revoked enrollment token")]
    InvalidToken,
    #[error("agent id {0} is bound to a live certificate; revoke it first")]
    AlreadyEnrolled(String),
    /// A revoked id comes back only with a token made after the revocation:
    /// the revoking admin decides, not whoever holds an older fleet token.
    #[error(
        "agent id {0} was revoked after this token was created; create a new enrollment token to enroll it again"
    )]
    RevokedAfterToken(String),
    /// The id streamed with the shared token before: taking it over needs
    /// a token made for that (`--adopt-existing`).
    #[error(
        "agent id {0} has streamed with the shared agent token; enrolling it takes over its identity and asset, which needs a token created with --adopt-existing"
    )]
    ExistingAgent(String),
}

/// What an agent id is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityBinding {
    pub revoked: bool,
    /// SHA-256 (hex) of every certificate of its current enrollment.
    pub certificates: Vec<String>,
}

/// An identity change for the running collector to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityEvent {
    pub id: i64,
    pub agent_id: String,
    pub ts_ms: i64,
    /// `enrolled` or `revoked`.
    pub kind: String,
    /// Human text for the asset history ("revoked by alice").
    pub detail: String,
    pub tags: Vec<String>,
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

fn parse_tags(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

pub(super) fn insert_token(
    connection: &Connection,
    token: &NewEnrollmentToken,
) -> rusqlite::Result<()> {
    connection.execute(
        "INSERT INTO enrollment_tokens (id, secret_sha256, created_ms, expires_ms, uses_left, tags, adopts_existing)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            token.id,
            token.secret_sha256,
            token.created_ms,
            token.expires_ms,
            token.uses,
            tags_json(&token.tags),
            token.adopts_existing
        ],
    )?;
    Ok(())
}

pub(super) fn tokens(connection: &Connection) -> rusqlite::Result<Vec<EnrollmentTokenRow>> {
    let mut statement = connection.prepare(
        "SELECT id, created_ms, expires_ms, uses_left, tags, revoked_ms
         FROM enrollment_tokens ORDER BY created_ms, id",
    )?;
    statement
        .query_map([], |row| {
            Ok(EnrollmentTokenRow {
                id: row.get(0)?,
                created_ms: row.get(1)?,
                expires_ms: row.get(2)?,
                uses_left: row.get(3)?,
                tags: parse_tags(&row.get::<_, String>(4)?),
                revoked_ms: row.get(5)?,
            })
        })?
        .collect()
}

/// Whether an enrollment token with this secret could be redeemed now. A
/// cheap read before the CA signs anything; [`redeem`] checks again inside
/// its transaction.
pub(super) fn token_usable(
    connection: &Connection,
    secret_sha256: &str,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    connection
        .query_row(
            "SELECT 1 FROM enrollment_tokens
             WHERE secret_sha256 = ?1 AND revoked_ms IS NULL AND uses_left > 0 AND expires_ms > ?2",
            params![secret_sha256, now_ms],
            |_| Ok(()),
        )
        .optional()
        .map(|found| found.is_some())
}

/// Binds `certificate.agent_id` to `certificate` if the token may still be
/// used; everything is checked before anything is written.
pub(super) fn redeem(
    transaction: &Transaction<'_>,
    secret_sha256: &str,
    certificate: &IssuedCertificate,
    now_ms: i64,
) -> rusqlite::Result<Result<Vec<String>, EnrollRefusal>> {
    let token: Option<(String, String, i64, bool)> = transaction
        .query_row(
            "SELECT id, tags, created_ms, adopts_existing FROM enrollment_tokens
             WHERE secret_sha256 = ?1 AND revoked_ms IS NULL AND uses_left > 0 AND expires_ms > ?2",
            params![secret_sha256, now_ms],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    let Some((token_id, tags, token_created_ms, adopts_existing)) = token else {
        return Ok(Err(EnrollRefusal::InvalidToken));
    };
    // `Some(None)`: bound to a live certificate; `Some(Some(ms))`: revoked then.
    let revoked_ms: Option<Option<i64>> = transaction
        .query_row(
            "SELECT revoked_ms FROM agent_identities WHERE agent_id = ?1",
            [&certificate.agent_id],
            |row| row.get(0),
        )
        .optional()?;
    match revoked_ms {
        Some(None) => {
            return Ok(Err(EnrollRefusal::AlreadyEnrolled(
                certificate.agent_id.clone(),
            )));
        }
        Some(Some(revoked_ms)) if token_created_ms < revoked_ms => {
            return Ok(Err(EnrollRefusal::RevokedAfterToken(
                certificate.agent_id.clone(),
            )));
        }
        Some(Some(_)) => {}
        None => {
            let streamed: bool = transaction.query_row(
                "SELECT EXISTS (SELECT 1 FROM agents WHERE id = ?1)",
                [&certificate.agent_id],
                |row| row.get(0),
            )?;
            if streamed && !adopts_existing {
                return Ok(Err(EnrollRefusal::ExistingAgent(
                    certificate.agent_id.clone(),
                )));
            }
        }
    }
    transaction.execute(
        "UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE id = ?1",
        [&token_id],
    )?;
    let tags = parse_tags(&tags);
    bind(
        transaction,
        certificate,
        Some(&token_id),
        &tags,
        &format!("enrolled with token {token_id}"),
    )?;
    Ok(Ok(tags))
}

/// Makes `certificate` the agent id's only one, un-revoking it, and records
/// an `enrolled` event.
fn bind(
    connection: &Connection,
    certificate: &IssuedCertificate,
    token_id: Option<&str>,
    tags: &[String],
    detail: &str,
) -> rusqlite::Result<()> {
    connection.execute(
        "INSERT INTO agent_identities (agent_id, enrolled_ms, token_id, tags)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (agent_id) DO UPDATE SET enrolled_ms = excluded.enrolled_ms,
             token_id = excluded.token_id, tags = excluded.tags,
             revoked_ms = NULL, revoked_by = NULL",
        params![
            certificate.agent_id,
            certificate.issued_ms,
            token_id,
            tags_json(tags)
        ],
    )?;
    connection.execute(
        "DELETE FROM agent_certificates WHERE agent_id = ?1",
        [&certificate.agent_id],
    )?;
    insert_certificate(connection, certificate)?;
    insert_event(
        connection,
        &certificate.agent_id,
        certificate.issued_ms,
        "enrolled",
        detail,
        tags,
    )
}

fn insert_certificate(
    connection: &Connection,
    certificate: &IssuedCertificate,
) -> rusqlite::Result<()> {
    connection.execute(
        "INSERT INTO agent_certificates (sha256, agent_id, serial, issued_ms, not_after_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            certificate.sha256,
            certificate.agent_id,
            certificate.serial,
            certificate.issued_ms,
            certificate.not_after_ms
        ],
    )?;
    Ok(())
}

fn insert_event(
    connection: &Connection,
    agent_id: &str,
    ts_ms: i64,
    kind: &str,
    detail: &str,
    tags: &[String],
) -> rusqlite::Result<()> {
    connection.execute(
        "INSERT INTO agent_identity_events (agent_id, ts_ms, kind, detail, tags)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![agent_id, ts_ms, kind, detail, tags_json(tags)],
    )?;
    Ok(())
}

/// Adds a renewed certificate, if `presented_sha256` is a current
/// certificate of a live identity. Returns whether it was added.
pub(super) fn renew(
    transaction: &Transaction<'_>,
    presented_sha256: &str,
    certificate: &IssuedCertificate,
) -> rusqlite::Result<bool> {
    let current: bool = transaction.query_row(
        "SELECT COUNT(*) > 0 FROM agent_certificates c
             JOIN agent_identities i ON i.agent_id = c.agent_id
             WHERE c.sha256 = ?1 AND c.agent_id = ?2 AND i.revoked_ms IS NULL",
        params![presented_sha256, certificate.agent_id],
        |row| row.get(0),
    )?;
    if !current {
        return Ok(false);
    }
    // Only the presented certificate (still in use until the agent switches)
    // and the new one stay valid: an older one, perhaps copied off the host,
    // must not live on (or mint more) until it expires.
    transaction.execute(
        "DELETE FROM agent_certificates WHERE agent_id = ?1 AND sha256 != ?2",
        params![certificate.agent_id, presented_sha256],
    )?;
    insert_certificate(transaction, certificate)?;
    Ok(true)
}

pub(super) fn binding(
    connection: &Connection,
    agent_id: &str,
) -> rusqlite::Result<Option<IdentityBinding>> {
    let revoked: Option<bool> = connection
        .query_row(
            "SELECT revoked_ms IS NOT NULL FROM agent_identities WHERE agent_id = ?1",
            [agent_id],
            |row| row.get(0),
        )
        .optional()?;
    let Some(revoked) = revoked else {
        return Ok(None);
    };
    let mut statement =
        connection.prepare("SELECT sha256 FROM agent_certificates WHERE agent_id = ?1")?;
    let certificates = statement
        .query_map([agent_id], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(Some(IdentityBinding {
        revoked,
        certificates,
    }))
}

fn event_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<IdentityEvent> {
    Ok(IdentityEvent {
        id: row.get(0)?,
        agent_id: row.get(1)?,
        ts_ms: row.get(2)?,
        kind: row.get(3)?,
        detail: row.get(4)?,
        tags: parse_tags(&row.get::<_, String>(5)?),
    })
}

const EVENT_COLUMNS: &str = "id, agent_id, ts_ms, kind, detail, tags";

pub(super) fn events_after(
    connection: &Connection,
    after_id: i64,
) -> rusqlite::Result<Vec<IdentityEvent>> {
    let mut statement = connection.prepare(&format!(
        "SELECT {EVENT_COLUMNS} FROM agent_identity_events WHERE id > ?1 ORDER BY id LIMIT 1000"
    ))?;
    statement.query_map([after_id], event_row)?.collect()
}

pub(super) fn unapplied_events(connection: &Connection) -> rusqlite::Result<Vec<IdentityEvent>> {
    let mut statement = connection.prepare(&format!(
        "SELECT {EVENT_COLUMNS} FROM agent_identity_events WHERE applied = 0 ORDER BY id LIMIT 100"
    ))?;
    statement.query_map([], event_row)?.collect()
}

pub(super) fn mark_applied(connection: &Connection, id: i64) -> rusqlite::Result<()> {
    connection.execute(
        "UPDATE agent_identity_events SET applied = 1 WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

pub(super) fn last_event_id(connection: &Connection) -> rusqlite::Result<i64> {
    connection.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM agent_identity_events",
        [],
        |row| row.get(0),
    )
}

/// Marks the agent id revoked (its certificates stop working, and no
/// shared-token hello may claim it). Returns false if it was not enrolled
/// or already revoked.
fn revoke_agent(
    connection: &Connection,
    agent_id: &str,
    by: &str,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let changed = connection.execute(
        "UPDATE agent_identities SET revoked_ms = ?2, revoked_by = ?3
         WHERE agent_id = ?1 AND revoked_ms IS NULL",
        params![agent_id, now_ms, by],
    )?;
    if changed == 0 {
        return Ok(false);
    }
    connection.execute(
        "DELETE FROM agent_certificates WHERE agent_id = ?1",
        [agent_id],
    )?;
    let when = jiff::Timestamp::from_millisecond(now_ms)
        .map(|at| at.to_string())
        .unwrap_or_default();
    insert_event(
        connection,
        agent_id,
        now_ms,
        "revoked",
        &format!("certificate revoked by {by} at {when}"),
        &[],
    )?;
    Ok(true)
}

/// The database opened by a command other than the collector (token and
/// revocation administration, `init`): its own connection, migrated, with a
/// busy timeout so it waits for the running collector's writer.
pub struct AdminDb {
    connection: Connection,
}

impl std::fmt::Debug for AdminDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminDb { .. }")
    }
}

impl AdminDb {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            connection: super::open_for_administration(path)?,
        })
    }

    pub fn create_token(&self, token: &NewEnrollmentToken) -> Result<(), StoreError> {
        Ok(insert_token(&self.connection, token)?)
    }

    pub fn tokens(&self) -> Result<Vec<EnrollmentTokenRow>, StoreError> {
        Ok(tokens(&self.connection)?)
    }

    /// Returns false when no unrevoked token has this id.
    pub fn revoke_token(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let changed = self.connection.execute(
            "UPDATE enrollment_tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, now_ms],
        )?;
        Ok(changed > 0)
    }

    pub fn revoke_agent(
        &mut self,
        agent_id: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let transaction = self.connection.transaction()?;
        let revoked = revoke_agent(&transaction, agent_id, by, now_ms)?;
        transaction.commit()?;
        Ok(revoked)
    }

    /// Binds a certificate signed without a token (by `init`, for the local agent).
    pub fn bind_certificate(&mut self, certificate: &IssuedCertificate) -> Result<(), StoreError> {
        let transaction = self.connection.transaction()?;
        bind(
            &transaction,
            certificate,
            None,
            &[],
            "certificate signed by init",
        )?;
        transaction.commit()?;
        Ok(())
    }
}

/// The collector's own uses, through the writer thread and the readers.
impl super::SqliteStore {
    /// Redeems an enrollment token for `certificate`; resolves after commit.
    pub async fn redeem_enrollment(
        &self,
        secret_sha256: String,
        certificate: IssuedCertificate,
        now_ms: i64,
    ) -> Result<Result<Vec<String>, EnrollRefusal>, StoreError> {
        self.write(move |transaction| redeem(transaction, &secret_sha256, &certificate, now_ms))
            .await
    }

    /// See [`token_usable`].
    pub async fn enrollment_token_usable(
        &self,
        secret_sha256: String,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.read(move |connection| token_usable(connection, &secret_sha256, now_ms))
            .await
    }

    pub async fn renew_certificate(
        &self,
        presented_sha256: String,
        certificate: IssuedCertificate,
    ) -> Result<bool, StoreError> {
        self.write(move |transaction| renew(transaction, &presented_sha256, &certificate))
            .await
    }

    pub async fn identity_binding(
        &self,
        agent_id: &str,
    ) -> Result<Option<IdentityBinding>, StoreError> {
        let agent_id = agent_id.to_string();
        self.read(move |connection| binding(connection, &agent_id))
            .await
    }

    pub async fn identity_events_after(
        &self,
        after_id: i64,
    ) -> Result<Vec<IdentityEvent>, StoreError> {
        self.read(move |connection| events_after(connection, after_id))
            .await
    }

    pub async fn last_identity_event(&self) -> Result<i64, StoreError> {
        self.read(last_event_id).await
    }

    pub async fn unapplied_identity_events(&self) -> Result<Vec<IdentityEvent>, StoreError> {
        self.read(unapplied_events).await
    }

    pub async fn mark_identity_event_applied(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |transaction| mark_applied(transaction, id))
            .await
    }

    /// Revokes from inside the collector (`POST /api/v1/agents/{id}/revoke`).
    pub async fn revoke_agent(
        &self,
        agent_id: String,
        by: String,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |transaction| revoke_agent(transaction, &agent_id, &by, now_ms))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(agent_id: &str, sha256: &str, now_ms: i64) -> IssuedCertificate {
        IssuedCertificate {
            agent_id: agent_id.into(),
            sha256: sha256.into(),
            serial: "01".into(),
            issued_ms: now_ms,
            not_after_ms: now_ms + 1000,
        }
    }

    #[test]
    fn an_id_that_streamed_with_the_shared_token_needs_an_adopting_token() {
        let dir = tempfile::tempdir().unwrap();
        let mut admin = AdminDb::open(&dir.path().join("db.sqlite")).unwrap();
        admin
            .connection
            .execute(
                "INSERT INTO agents (id, hostname, version, facts, first_seen_ms, last_seen_ms)
                 VALUES ('old-host', 'h', '1', '{}', 1, 2)",
                [],
            )
            .unwrap();
        for (id, hash, adopts_existing) in [("plain", "h-plain", false), ("adopt", "h-adopt", true)]
        {
            admin
                .create_token(&NewEnrollmentToken {
                    id: id.into(),
                    secret_sha256: hash.into(),
                    created_ms: 0,
                    expires_ms: 100,
                    uses: 2,
                    tags: Vec::new(),
                    adopts_existing,
                })
                .unwrap();
        }
        let mut redeem_with = |hash: &str, agent: &str| {
            let transaction = admin.connection.transaction().unwrap();
            let outcome = redeem(&transaction, hash, &certificate(agent, hash, 5), 5).unwrap();
            transaction.commit().unwrap();
            outcome
        };
        assert_eq!(
            redeem_with("h-plain", "old-host"),
            Err(EnrollRefusal::ExistingAgent("old-host".into()))
        );
        assert!(
            redeem_with("h-plain", "new-host").is_ok(),
            "a new id needs no adoption"
        );
        assert!(redeem_with("h-adopt", "old-host").is_ok());
    }

    #[test]
    fn a_token_is_used_up_and_a_live_id_cannot_enroll_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut admin = AdminDb::open(&path).unwrap();
        admin
            .create_token(&NewEnrollmentToken {
                id: "t1".into(),
                secret_sha256: "hash".into(),
                created_ms: 0,
                expires_ms: 10_000,
                uses: 2,
                tags: vec!["env:prod".into()],
                adopts_existing: false,
            })
            .unwrap();
        let redeem_now = |admin: &mut AdminDb, agent: &str, sha: &str, now: i64| {
            let transaction = admin.connection.transaction().unwrap();
            let outcome = redeem(&transaction, "hash", &certificate(agent, sha, now), now).unwrap();
            transaction.commit().unwrap();
            outcome
        };
        assert_eq!(
            redeem_now(&mut admin, "a", "c1", 1),
            Ok(vec!["env:prod".to_string()])
        );
        assert_eq!(
            redeem_now(&mut admin, "a", "c2", 2),
            Err(EnrollRefusal::AlreadyEnrolled("a".into()))
        );
        assert!(admin.revoke_agent("a", "alice", 3).unwrap());
        assert!(!admin.revoke_agent("a", "alice", 3).unwrap(), "already");
        let binding = binding(&admin.connection, "a").unwrap().unwrap();
        assert!(binding.revoked && binding.certificates.is_empty());
        assert_eq!(
            redeem_now(&mut admin, "a", "c3", 4),
            Err(EnrollRefusal::RevokedAfterToken("a".into())),
            "a token older than the revocation cannot undo it"
        );
        assert_eq!(
            redeem_now(&mut admin, "b", "c4", 5),
            Ok(vec!["env:prod".to_string()]),
            "the refusal spent no use"
        );
        assert_eq!(admin.tokens().unwrap()[0].uses_left, 0);
        admin
            .create_token(&NewEnrollmentToken {
                id: "t2".into(),
                secret_sha256: "hash2".into(),
                created_ms: 6,
                expires_ms: 10_000,
                uses: 1,
                tags: Vec::new(),
                adopts_existing: false,
            })
            .unwrap();
        let transaction = admin.connection.transaction().unwrap();
        let outcome = redeem(&transaction, "hash2", &certificate("a", "c5", 7), 7).unwrap();
        transaction.commit().unwrap();
        assert!(outcome.is_ok(), "re-enrol after revoke with a newer token");
        let events = events_after(&admin.connection, 0).unwrap();
        let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
        assert_eq!(kinds, ["enrolled", "revoked", "enrolled", "enrolled"]);
        assert!(
            events[1].detail.contains("revoked by alice"),
            "{}",
            events[1].detail
        );
    }

    #[test]
    fn only_a_current_certificate_of_a_live_identity_is_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let mut admin = AdminDb::open(&dir.path().join("db.sqlite")).unwrap();
        admin.bind_certificate(&certificate("a", "c1", 0)).unwrap();
        let renew_now = |admin: &mut AdminDb, presented: &str, new: &str, now: i64| {
            let transaction = admin.connection.transaction().unwrap();
            let renewed = renew(&transaction, presented, &certificate("a", new, now)).unwrap();
            transaction.commit().unwrap();
            renewed
        };
        assert!(!renew_now(&mut admin, "unknown", "c2", 10));
        assert!(renew_now(&mut admin, "c1", "c2", 10));
        // The presented one keeps working until the agent switches.
        let certificates = binding(&admin.connection, "a")
            .unwrap()
            .unwrap()
            .certificates;
        assert_eq!(certificates.len(), 2);
        // A copy of c1 renewing too (c1 -> x) drops c2, and the genuine
        // agent's next renewal from c2 is refused: the fork shows up as an
        // agent that cannot renew, and revocation ends both.
        assert!(renew_now(&mut admin, "c1", "x", 20));
        assert!(!renew_now(&mut admin, "c2", "c3", 30), "c2 was dropped");
        admin.bind_certificate(&certificate("a", "c2", 40)).unwrap();
        assert!(renew_now(&mut admin, "c2", "c3", 1005));
        let mut certificates = binding(&admin.connection, "a")
            .unwrap()
            .unwrap()
            .certificates;
        certificates.sort();
        assert_eq!(certificates, ["c2", "c3"]);
        assert!(admin.revoke_agent("a", "bob", 1006).unwrap());
        assert!(!renew_now(&mut admin, "c3", "c4", 1007), "revoked");
    }

    #[test]
    fn expired_and_revoked_tokens_buy_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut admin = AdminDb::open(&dir.path().join("db.sqlite")).unwrap();
        for (id, hash) in [("old", "h-old"), ("gone", "h-gone")] {
            admin
                .create_token(&NewEnrollmentToken {
                    id: id.into(),
                    secret_sha256: hash.into(),
                    created_ms: 0,
                    expires_ms: 100,
                    uses: 1,
                    tags: Vec::new(),
                    adopts_existing: false,
                })
                .unwrap();
        }
        assert!(admin.revoke_token("gone", 1).unwrap());
        let transaction = admin.connection.transaction().unwrap();
        assert_eq!(
            redeem(&transaction, "h-old", &certificate("a", "c", 200), 200).unwrap(),
            Err(EnrollRefusal::InvalidToken)
        );
        assert_eq!(
            redeem(&transaction, "h-gone", &certificate("a", "c", 5), 5).unwrap(),
            Err(EnrollRefusal::InvalidToken)
        );
    }
}
