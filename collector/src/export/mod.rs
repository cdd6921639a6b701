//! Metric history export: committed samples to the endpoints in
//! `[[export.remote_write]]` (Prometheus remote_write 1.0: Prometheus,
//! VictoriaMetrics, Mimir, Thanos receive...) and `[[export.otlp]]`
//! (OTLP/gRPC metrics: an OpenTelemetry Collector, most observability
//! backends).
//!
//! Only samples whose batch has committed are exported (ingest offers them
//! after the commit, as it does to the rules engine), so the receiver never
//! holds a sample Steward could lose. Ingest never waits on export: each
//! endpoint has a bounded in-memory queue that drops its oldest samples when
//! full, counted in `/metrics`. The queue is not durable: samples queued when
//! the collector stops are not exported (they stay in Steward's store).
//!
//! - `config.rs`: `[[export.remote_write]]` and `[[export.otlp]]`, validated.
//! - `queue.rs`: pure, shared: the queue, retry verdicts, backoff.
//! - `remote_write.rs`, `otlp.rs`: pure: each wire format and what its
//!   receiver's answers mean.
//! - `transport.rs`: one request over HTTP (`notify::http`'s client) or gRPC.
//! - `service.rs`: the handle ingest offers samples to, and one sender task
//!   per endpoint, the same loop for both exporters.

pub mod config;
pub mod otlp;
pub mod queue;
pub mod remote_write;
pub mod service;
pub mod transport;

pub use config::{ExportConfig, OtlpTarget, RawExport, RemoteWriteTarget};
pub use service::{ExportError, ExportHandle, ExportTask};
