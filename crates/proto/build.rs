//! Generates the gRPC code with the vendored `protoc`: build machines have none installed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/shoal/v1/shoal.proto"],
        &["proto"],
    )?;
    Ok(())
}
