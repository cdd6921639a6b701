//! `steward-collector token create|list|revoke --config FILE`: API tokens
//! in the collector's database, managed from a separate process while the
//! collector runs (SQLite WAL; the collector reads the table per request).
//!
//! A new token is printed once, on stdout alone (so `TOKEN=$(…)` works),
//! and stored only as its SHA-256.

use std::path::Path;

use crate::access::{Scope, TokenHash, is_config_token_name, new_token, valid_token_name};
use crate::store::{ApiTokenTable, StoreError, TokenTableError};

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
    let config = crate::CollectorConfig::load(config_path)?;
    let now_ms = steward_core::now_ms();
    match command {
        TokenCommand::Create { name, scope } => {
            let token = create(&config.sqlite_path, &name, scope, now_ms)?;
            Ok(TokenOutput {
                stdout: format!("{token}\n"),
                stderr: format!(
                    "Created API token {name:?} with the {scope} scope. It is shown only now; \
                     store it safely (send it as `Authorization: Bearer <token>`).\n"
                ),
            })
        }
        TokenCommand::Revoke { name } => {
            let table = ApiTokenTable::open(&config.sqlite_path)?;
            if !table.revoke(&name, now_ms)? {
                return Err(TokenCliError::NoSuchToken(name));
            }
            Ok(TokenOutput {
                stdout: String::new(),
                stderr: format!("Revoked API token {name:?}; it is refused from now on.\n"),
            })
        }
        TokenCommand::List => {
            let table = ApiTokenTable::open(&config.sqlite_path)?;
            let mut stdout = format!(
                "{:<24} {:<6} {:<24} {:<24} {}\n",
                "NAME", "SCOPE", "CREATED", "LAST USED", "REVOKED"
            );
            let time = |ms: Option<i64>| ms.map_or_else(|| "-".to_string(), crate::api::rfc3339);
            for row in table.list()? {
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

/// Creates a token named `name` in the database at `database`; returns the
/// plaintext, which nothing keeps. Shared by the CLI and `init`.
pub fn create(
    database: &Path,
    name: &str,
    scope: Scope,
    now_ms: i64,
) -> Result<String, TokenCliError> {
    if !valid_token_name(name) || is_config_token_name(name) {
        return Err(TokenCliError::InvalidName(name.to_string()));
    }
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
