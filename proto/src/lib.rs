//! Steward's wire protocol, package `steward.v1`.
//!
//! Generated from `proto/steward/v1/*.proto`; this crate holds nothing else.
//! Only the agent's shipper and the collector's `ingest` module may use it.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("steward.v1");
}
