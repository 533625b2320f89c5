//! Integration suite of the wire crate: annotated byte vectors, malformed input, a differential
//! test against hickory-proto and a fuzz-style no-panic test.

mod differential;
mod fuzz;
mod malformed;
mod vectors;
