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

/// OTLP metrics v1 messages and the `MetricsService` client/server, trimmed
/// from open-telemetry/opentelemetry-proto (`opentelemetry/proto/**`). Only
/// the collector's `export` module (and tests' receivers) use them. The
/// modules follow the proto packages, which the generated code relies on.
pub mod opentelemetry {
    pub mod proto {
        pub mod common {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.common.v1");
            }
        }
        pub mod resource {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.resource.v1");
            }
        }
        pub mod metrics {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.metrics.v1");
            }
        }
        pub mod collector {
            pub mod metrics {
                pub mod v1 {
                    tonic::include_proto!("opentelemetry.proto.collector.metrics.v1");
                }
            }
        }
    }
}
