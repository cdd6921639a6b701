//! Metric history export: committed samples, as Prometheus remote_write 1.0,
//! to the endpoints in `[[export.remote_write]]` (Prometheus, VictoriaMetrics,
//! Mimir, Thanos receive...).
//!
//! Only samples whose batch has committed are exported (ingest offers them
//! after the commit, as it does to the rules engine), so the receiver never
//! holds a sample Steward could lose. Ingest never waits on export: each
//! endpoint has a bounded in-memory queue that drops its oldest samples when
//! full, counted in `/metrics`. The queue is not durable: samples queued when
//! the collector stops are not exported (they stay in Steward's store).
//!
//! - `config.rs`: `[[export.remote_write]]`, validated.
//! - `remote_write.rs`: pure: queue, payload encoding, retry verdicts, backoff.
//! - `service.rs`: the handle ingest offers samples to, and one sender task
//!   per endpoint (HTTP through `notify::http`'s client).

pub mod config;
pub mod remote_write;
pub mod service;

pub use config::{ExportConfig, RawExport, RemoteWriteTarget};
pub use service::{ExportError, ExportHandle, RemoteWriter};
