//! Integration harness for Heimdall: a real authoritative upstream ([`auth::AuthServer`]),
//! real `heimdall` processes ([`node::Node`]), DNS client helpers ([`client`]), a client of the
//! internal cluster gRPC service and cluster launch helpers ([`cluster`]), unique
//! loopback addresses ([`addr`]), condition waits with deadlines ([`wait`]), and the
//! docker-compose fleet of deploy/ as a fixture ([`fleet`]).
//!
//! All traffic stays on 127.0.0.0/8; every server binds its own random `127.A.B.C`, so
//! tests can run in parallel threads and processes.

pub mod addr;
pub mod auth;
pub mod client;
pub mod cluster;
pub mod control;
pub mod fleet;
pub mod node;
pub mod prom;
pub mod wait;

pub use addr::{bind_unique_pair, dead_addr, unique_addr};
pub use auth::{AuthServer, QuestionCase, SPOOFED_ADDR, Zone, fqdn, large_txt};
pub use client::{
    TcpReply, build_query, compare_records, dig, dig_answers, dig_available, exchange_tcp,
    exchange_udp, query_tcp, query_udp, send_raw_tcp, send_raw_udp, tcp_pipeline,
};
pub use node::{Node, NodeOpts, run_heimdall};
pub use wait::{wait_for, wait_until, wait_until_instant};
