//! Compiles `steward/v1/*.proto` and `prometheus/remote.proto` with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "steward/v1/ingest.proto",
        "steward/v1/enrollment.proto",
        // Not Steward's protocol: what the collector's remote_write export sends.
        "prometheus/remote.proto",
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
