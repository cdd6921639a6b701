//! Identity administration from the command line, beside a running
//! collector: enrollment tokens, the CA fingerprint, agent revocation.
//!
//! These open the collector's database themselves: the SQLite file (WAL:
//! the running collector keeps serving), or, when `[storage] postgres` is
//! set, the PostgreSQL database the collectors share. Either way every
//! running collector notices a revocation within a second or two.

use std::future::Future;
use std::time::Duration;

use steward_core::text::rfc3339_ms;

use crate::CollectorConfig;
use crate::enrollment::{EnrollmentSecret, TagError, parse_tag, sha256_hex};
use crate::store::postgres::{PgError, PgSettings, PgStore};
use crate::store::{AdminDb, EnrollmentTokenRow, NewEnrollmentToken, StoreError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tag(#[from] TagError),
    #[error("{0}")]
    Invalid(String),
    #[error("no enrollment token has id {0} (or it is already revoked)")]
    NoSuchToken(String),
    #[error("agent {0} is not enrolled (or is already revoked)")]
    NotEnrolled(String),
    #[error("[tls] has no `ca`: this collector has no CA to fingerprint")]
    NoCa,
}

/// Options of `enroll-token create`.
#[derive(Debug, Clone)]
pub struct TokenOptions {
    pub ttl: Duration,
    pub uses: u32,
    /// `KEY=VALUE` as given.
    pub tags: Vec<String>,
    /// May enroll agent ids that streamed with the shared token before.
    pub adopt_existing: bool,
}

/// A created token: the secret to print once, and what to say about it.
#[derive(Debug)]
pub struct CreatedToken {
    pub secret: EnrollmentSecret,
    pub expires_ms: i64,
    pub tags: Vec<String>,
}

pub fn create_token(
    config: &CollectorConfig,
    options: &TokenOptions,
) -> Result<CreatedToken, AdminError> {
    if options.uses == 0 {
        return Err(AdminError::Invalid("--uses must be at least 1".into()));
    }
    if options.ttl < Duration::from_secs(60) {
        return Err(AdminError::Invalid("--ttl must be at least 1m".into()));
    }
    let tags = options
        .tags
        .iter()
        .map(|tag| parse_tag(tag))
        .collect::<Result<Vec<_>, _>>()?;
    let now_ms = steward_core::now_ms();
    let expires_ms = now_ms.saturating_add(options.ttl.as_millis().min(i64::MAX as u128) as i64);
    let secret = EnrollmentSecret::generate();
    let token = NewEnrollmentToken {
        id: secret.id.clone(),
        secret_sha256: secret.hash(),
        created_ms: now_ms,
        expires_ms,
        uses: options.uses,
        tags: tags.clone(),
        adopts_existing: options.adopt_existing,
    };
    match &config.postgres {
        Some(settings) => on_postgres(settings, &config.instance, async |store| {
            store.create_enrollment_token(&token).await
        })?,
        None => AdminDb::open(&config.sqlite_path)?.create_token(&token)?,
    }
    Ok(CreatedToken {
        secret,
        expires_ms,
        tags,
    })
}

/// `enroll-token list` as text: never the secrets (they are not stored).
pub fn list_tokens(config: &CollectorConfig) -> Result<String, AdminError> {
    let now_ms = steward_core::now_ms();
    let mut out = format!(
        "{:<14} {:<24} {:<24} {:>9}  {:<8} TAGS\n",
        "ID", "CREATED", "EXPIRES", "USES LEFT", "STATE"
    );
    let tokens: Vec<EnrollmentTokenRow> = match &config.postgres {
        Some(settings) => on_postgres(settings, &config.instance, async |store| {
            store.enrollment_tokens().await
        })?,
        None => AdminDb::open(&config.sqlite_path)?.tokens()?,
    };
    for token in tokens {
        let state = if token.revoked_ms.is_some() {
            "revoked"
        } else if token.expires_ms <= now_ms {
            "expired"
        } else if token.uses_left == 0 {
            "used"
        } else {
            "active"
        };
        out.push_str(&format!(
            "{:<14} {:<24} {:<24} {:>9}  {:<8} {}\n",
            token.id,
            rfc3339_ms(token.created_ms),
            rfc3339_ms(token.expires_ms),
            token.uses_left,
            state,
            token.tags.join(",")
        ));
    }
    Ok(out)
}

pub fn revoke_token(config: &CollectorConfig, id: &str) -> Result<(), AdminError> {
    let now_ms = steward_core::now_ms();
    let revoked = match &config.postgres {
        Some(settings) => on_postgres(settings, &config.instance, async |store| {
            store.revoke_enrollment_token(id, now_ms).await
        })?,
        None => AdminDb::open(&config.sqlite_path)?.revoke_token(id, now_ms)?,
    };
    if revoked {
        Ok(())
    } else {
        Err(AdminError::NoSuchToken(id.to_string()))
    }
}

/// `sha256:<hex>` of the CA certificate (DER) named by `[tls] ca`.
pub fn ca_fingerprint(config: &CollectorConfig) -> Result<String, AdminError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let ca = config
        .tls
        .as_ref()
        .and_then(|tls| tls.ca_pem.as_ref())
        .ok_or(AdminError::NoCa)?;
    let der = CertificateDer::pem_slice_iter(ca)
        .next()
        .and_then(Result::ok)
        .ok_or(AdminError::NoCa)?;
    Ok(format!("sha256:{}", sha256_hex(&der)))
}

/// Revokes the agent's certificates; recorded with `by` and the time.
pub fn revoke_agent(config: &CollectorConfig, agent_id: &str, by: &str) -> Result<(), AdminError> {
    let by = if by.trim().is_empty() {
        "unknown"
    } else {
        by.trim()
    };
    let now_ms = steward_core::now_ms();
    let revoked = match &config.postgres {
        Some(settings) => on_postgres(settings, &config.instance, async |store| {
            store
                .revoke_agent(agent_id.to_string(), by.to_string(), now_ms)
                .await
        })?,
        None => AdminDb::open(&config.sqlite_path)?.revoke_agent(agent_id, by, now_ms)?,
    };
    if revoked {
        Ok(())
    } else {
        Err(AdminError::NotEnrolled(agent_id.to_string()))
    }
}

/// Runs `work` on the shared PostgreSQL database (`[storage] postgres`),
/// connected as `instance`, in a runtime of its own: the administration
/// commands are synchronous. Not to be called from inside a runtime.
pub(crate) fn on_postgres<T, F>(
    settings: &PgSettings,
    instance: &str,
    work: impl FnOnce(PgStore) -> F,
) -> Result<T, StoreError>
where
    F: Future<Output = Result<T, PgError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| StoreError::Failed(format!("cannot start a runtime: {error}")))?;
    runtime.block_on(async {
        let store = PgStore::open(settings, instance).await?;
        let outcome = work(store.clone()).await;
        store.close().await;
        Ok(outcome?)
    })
}
