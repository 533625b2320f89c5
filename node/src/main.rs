//! The `heimdall` binary.
fn main() {}
