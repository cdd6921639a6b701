//! `steward-collector token create|list|revoke --config FILE`: API tokens
//! in the collector's database, managed from a separate process while the
//! collector runs (SQLite WAL, or the PostgreSQL database `[storage]
//! postgres` names; collectors read the table per request).
//!
//! A new token is printed once, on stdout alone (so `TOKEN=$(…)` works),
//! and stored only as its SHA-256.

use std::path::Path;

use super::admin::on_postgres;
use crate::CollectorConfig;
use crate::access::{Scope, TokenHash, is_config_token_name, new_token, valid_token_name};
use crate::store::{ApiTokenRow, ApiTokenTable, StoreError, TokenTableError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCommand {
    Create { name: String, scope: Scope },
    List,
    Revoke { name: String },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenCliError {
    #[error(transparent)]
    Config(#[from] steward_core::config_file::ConfigError),
    #[error(
        "invalid token name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-'; \
         names config-N are reserved for collector.toml's tokens"
    )]
    InvalidName(String),
    #[error("no unrevoked API token named {0:?}")]
    NoSuchToken(String),
    #[error(transparent)]
    Table(#[from] TokenTableError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a command prints: `stdout` for the result, `stderr` for remarks.
#[derive(Debug, Default)]
pub struct TokenOutput {
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` against the database named by the config at `config_path`.
pub fn run(config_path: &Path, command: TokenCommand) -> Result<TokenOutput, TokenCliError> {
    let config = CollectorConfig::load(config_path)?;
    let now_ms = steward_core::now_ms();
    match command {
        TokenCommand::Create { name, scope } => {
            let token = create_in(&config, &name, scope, now_ms)?;
            Ok(TokenOutput {
                stdout: format!("{token}\n"),
                stderr: format!(
                    "Created API token {name:?} with the {scope} scope. It is shown only now; \
                     store it safely (send it as `Authorization: Bearer <token>`).\n"
                ),
            })
        }
        TokenCommand::Revoke { name } => {
            let revoked = match &config.postgres {
                Some(settings) => on_postgres(settings, &config.instance, async |store| {
                    store.revoke_api_token(name.clone(), now_ms).await
                })?,
                None => ApiTokenTable::open(&config.sqlite_path)?.revoke(&name, now_ms)?,
            };
            if !revoked {
                return Err(TokenCliError::NoSuchToken(name));
            }
            Ok(TokenOutput {
                stdout: String::new(),
                stderr: format!("Revoked API token {name:?}; it is refused from now on.\n"),
            })
        }
        TokenCommand::List => {
            let rows: Vec<ApiTokenRow> = match &config.postgres {
                Some(settings) => on_postgres(settings, &config.instance, async |store| {
                    store.api_tokens().await
                })?,
                None => ApiTokenTable::open(&config.sqlite_path)?.list()?,
            };
            let mut stdout = format!(
                "{:<24} {:<6} {:<24} {:<24} {}\n",
                "NAME", "SCOPE", "CREATED", "LAST USED", "REVOKED"
            );
            let time = |ms: Option<i64>| ms.map_or_else(|| "-".to_string(), crate::api::rfc3339);
            for row in rows {
                stdout.push_str(&format!(
                    "{:<24} {:<6} {:<24} {:<24} {}\n",
                    row.name,
                    row.scope.as_str(),
                    time(Some(row.created_ms)),
                    time(row.last_used_ms),
                    time(row.revoked_ms),
                ));
            }
            for index in 0..config.api_tokens.len() {
                stdout.push_str(&format!(
                    "{:<24} {:<6} {:<24} {:<24} {}\n",
                    format!("config-{}", index + 1),
                    "admin",
                    "(collector.toml)",
                    "-",
                    "-"
                ));
            }
            Ok(TokenOutput {
                stdout,
                stderr: String::new(),
            })
        }
    }
}

/// Creates a token named `name` in the database `config` names (SQLite or
/// PostgreSQL); returns the plaintext, which nothing keeps.
pub fn create_in(
    config: &CollectorConfig,
    name: &str,
    scope: Scope,
    now_ms: i64,
) -> Result<String, TokenCliError> {
    let Some(settings) = &config.postgres else {
        return create(&config.sqlite_path, name, scope, now_ms);
    };
    check_name(name)?;
    let token = new_token();
    let hash = TokenHash::of(&token);
    let created = on_postgres(settings, &config.instance, async |store| {
        store
            .create_api_token(name.to_string(), scope, hash, now_ms)
            .await
    })?;
    if !created {
        return Err(TokenTableError::NameTaken(name.to_string()).into());
    }
    Ok(token)
}

fn check_name(name: &str) -> Result<(), TokenCliError> {
    if !valid_token_name(name) || is_config_token_name(name) {
        return Err(TokenCliError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// Creates a token named `name` in the SQLite database at `database`;
/// returns the plaintext, which nothing keeps. Shared by the CLI and `init`.
pub fn create(
    database: &Path,
    name: &str,
    scope: Scope,
    now_ms: i64,
) -> Result<String, TokenCliError> {
    check_name(name)?;
    let table = ApiTokenTable::open(database)?;
    let token = new_token();
    table.create(name, scope, &TokenHash::of(&token), now_ms)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_config_names_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("t.db");
        for bad in ["config-1", "two words", ""] {
            assert!(
                matches!(
                    create(&database, bad, Scope::Read, 0),
                    Err(TokenCliError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
        let token = create(&database, "config-x", Scope::Read, 0).unwrap();
        assert!(token.starts_with(crate::access::TOKEN_PREFIX));
    }
}
