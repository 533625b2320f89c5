//! Compiles the `.proto` files into Rust with tonic-prost-build, using the protoc binary
//! shipped by protoc-bin-vendored (no system protoc needed).

use std::path::PathBuf;

/// The `.proto` files of the crate, relative to the crate root (also the include root).
const PROTOS: &[&str] = &["heimdall/v1/raft.proto", "heimdall/v1/control.proto"];

/// Points `PROTOC` at the vendored binary and generates messages, clients and servers, plus a
/// file descriptor set for server reflection.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: a build script is a single-threaded process at this point; nothing else reads
    // or writes the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("heimdall_descriptor.bin"))
        .compile_protos(PROTOS, &["."])?;
    println!("cargo:rerun-if-changed=heimdall");
    Ok(())
}
