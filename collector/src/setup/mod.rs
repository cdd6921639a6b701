//! First-run helpers: `init DIR` writes a working setup; `quickstart` runs a
//! collector and a local agent from it in one process; `token` manages API
//! tokens.

pub mod admin;
pub mod init;
#[cfg(feature = "embedded-agent")]
pub mod quickstart;
pub mod token_cli;
