//! The gossip datagram wire format: the codec lives in the `heimdall-gossip-wire` crate (so
//! the fuzz target builds without the node's runtime); this module re-exports it.

pub use heimdall_gossip_wire::*;
