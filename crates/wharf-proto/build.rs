//! Compiles `proto/wharf/v1/*.proto` with the protoc binary vendored from crates.io, so building
//! Wharf never needs a system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The protos live outside this package: without these lines cargo would not notice a
    // change to them.
    println!("cargo:rerun-if-changed=../../proto/wharf/v1/verifier.proto");
    println!("cargo:rerun-if-changed=../../proto/wharf/v1/events.proto");
    println!("cargo:rerun-if-changed=../../proto/wharf/v1/refusal.proto");
    println!("cargo:rerun-if-changed=../../proto/wharf/v1/grant.proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_with_config(
            config,
            &[
                "../../proto/wharf/v1/verifier.proto",
                "../../proto/wharf/v1/events.proto",
                "../../proto/wharf/v1/refusal.proto",
                "../../proto/wharf/v1/grant.proto",
            ],
            &["../../proto"],
        )?;
    Ok(())
}
