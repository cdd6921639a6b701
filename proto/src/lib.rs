//! Steward's wire protocol, package `steward.v1`.
//!
//! Generated from `proto/steward/v1/*.proto`, with the codec the generated
//! services use ([`codec::CompactCodec`]).
//! Only the agent's shipper and the collector's `ingest` module may use it.

#![allow(clippy::all, missing_docs)]

pub mod codec;

pub mod v1 {
    tonic::include_proto!("steward.v1");
}

/// Prometheus remote_write 1.0 messages (`prometheus/remote.proto`, trimmed
/// from Prometheus' `prompb`). Only the collector's `export` module uses them.
pub mod prometheus {
    tonic::include_proto!("prometheus");
}
