//! Compiles `steward/v1/*.proto`, `prometheus/remote.proto` and the trimmed
//! OTLP metrics protos under `opentelemetry/` with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "steward/v1/ingest.proto",
        "steward/v1/enrollment.proto",
        // Not Steward's protocol: what the collector's remote_write export sends.
        "prometheus/remote.proto",
        // Not Steward's protocol either: what the collector's OTLP export sends.
        "opentelemetry/proto/common/v1/common.proto",
        "opentelemetry/proto/resource/v1/resource.proto",
        "opentelemetry/proto/metrics/v1/metrics.proto",
        "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::CompactCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
