//! steward-core: what both Steward programs share, and nothing that belongs
//! to only one of them.
//!
//! Layout:
//! - [`config_file`]: TOML loading with errors that name file, line and key.
//! - [`clock`]: wall-clock milliseconds, and a clock that follows tokio's
//!   (paused) time in tests.
//! - [`ids`]: random UUIDs and tokens.
//! - [`tls`]: the process's rustls crypto provider and trust roots.
//! - [`process`]: tracing subscriber and shutdown signals for binaries.
//! - [`inventory`]: inventory contracts both sides compute (the package-list
//!   fingerprint, firmware placeholder cleaning).
//! - [`text`]: hygiene for strings that come from agents (control
//!   characters) and time formatting.
//!
//! It must never depend on the agent's probes or the collector's store: both
//! programs stand on it, not the other way round.

pub mod clock;
pub mod config_file;
pub mod ids;
pub mod inventory;
pub mod process;
pub mod text;
pub mod tls;

pub use clock::{Clock, now_ms};
