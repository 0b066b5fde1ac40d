//! Compiles `proto/` into Rust with a pure-Rust protobuf compiler (protox),
//! so a fresh clone builds with cargo alone: no `protoc` on the machine.
//! The descriptor set is kept too, for gRPC server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/hotline/v1/messages.proto",
        "proto/hotline/v1/federation.proto",
        "proto/hotline/v1/operator.proto",
        "proto/hotline/v1/audit.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("hotline_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
