//! First-run helpers: `init DIR` writes a working setup; `quickstart` runs a
//! collector and a local agent from it in one process.

pub mod init;
pub mod quickstart;
